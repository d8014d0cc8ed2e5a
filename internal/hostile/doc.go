// Package hostile owns the hostile traffic of the end-to-end tests and the
// soak: a mix of cases sent onto a test bed, each with the exact datagrams
// (source address and port, destination port, payload bytes) that must
// reach the server's sink and those that must not, per receive path.
//
// Prepare readies a bed (testbed.Bed): it adds a pool of source addresses
// to Gen's link (allowed, denied and not-allowed ones under DefaultPolicy,
// on and off the link's prefixes, both families) and a peer namespace
// joined to Rx by its own link, which Rx routes and forwards to. Env.Mix
// then builds a Mix for the server's ingest ports and source lists
// (Config); Mix.Send sends it; Mix.Check compares what a receiver got with
// what a path must deliver (DeliveredOn(AFXDP), DeliveredOn(Kernel)):
// every datagram exactly once, byte for byte, and nothing else.
//
// The cases (Kind): payloads of every size up to 65,507 (IPv4) and 65,527
// (IPv6) bytes, as raw frames fragmented at 1500 and at the bed's MTU and
// from UDP sockets that the kernel fragments; IPv4 and IPv6 fragments in
// and out of order, overlapping (same and different bytes), duplicated,
// incomplete and tiny; IPv6 extension headers; VLAN and QinQ tags;
// malformed and truncated frames; bad and absent checksums; floods from
// denied and not-allowed sources, whole and fragmented, with allowed
// datagrams among them; traffic to the ingest ports from another interface
// and from loopback; to another port; to another MAC, another address, or
// a host behind Rx.
//
// What the kernel does with each case was found by experiment on Linux
// 6.18 and is checked by TestMixOnPlainKernel, with sockets bound to Rx's
// link and no server; what the XDP program does (Datagram.XDP) is checked
// by TestMixXDPFlags against the program in pass mode. Datagram.Note says
// why, where it is not obvious.
//
// From an end-to-end test with the server on Rx:
//
//	b := testbed.NewT(t, testbed.Config{MTU: 9000})
//	env, err := hostile.Prepare(b, nil)
//	pol := hostile.DefaultPolicy()
//	m, err := env.Mix(hostile.Config{Ports: []uint16{9000, 9001}, Policy: pol, Seed: 1})
//	srv := startServer(t, b, append([]string{"--path", "afxdp", "--ports", "9000,9001", "--sink", "pcap:" + dir}, pol.Args()...)...)
//	err = m.Send(ctx, hostile.SendOptions{})
//	// wait until the sink has written len(m.Select(hostile.DeliveredOn(hostile.AFXDP))),
//	// read every record back as a hostile.Received{Src, DstPort, Payload}, then
//	err = m.Check(got, hostile.DeliveredOn(hostile.AFXDP))
//
// Every payload starts with a 12-byte header (as much as fits: "XH", case
// ID, sequence number, size) followed by a pattern, and every case sends
// from its own source port, so that each datagram is unique. Mixes built
// from one Env never reuse a fragment identification or a case ID, so that
// fragments a mix leaves incomplete (they wait 30 s in the kernel) can't
// join another mix's datagrams.
package hostile
