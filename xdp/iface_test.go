package xdp

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/xdpingest/xdpingest/datapath/kernel"
	"github.com/xdpingest/xdpingest/internal/frames"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// With SocketIfindex set to the bed's link, the kernel sockets take only
// what came in over that link: not what a process of the receiving host
// sends to the link's own address (which SO_BINDTODEVICE lets through),
// not what comes over loopback or another interface (which binding alone
// keeps out, shown on sockets bound to no interface), and not a datagram
// reassembled from fragments of which one came over another interface.
func TestSocketFilterInterfaceOnBed(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{})
	peer, err := b.AddPeer("other")
	if err != nil {
		t.Fatal(err)
	}
	p := loadT(t, Config{Ports: []uint16{9000, 9001}, SocketIfindex: b.Rx.Index})
	open := func(cfg kernel.Config) []*kernel.Receiver {
		cfg.Filter = p.SocketFilter()
		var rs []*kernel.Receiver
		if err := b.Rx.Do(func() (err error) {
			var kp *kernel.Path
			if kp, err = kernel.Open(cfg); err == nil {
				rs = kp.Workers()
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return rs
	}
	bound := open(kernel.Config{Ports: []uint16{9000}, Device: b.Rx.Link})
	unbound := open(kernel.Config{Ports: []uint16{9001}})
	rs := append(bound, unbound...)
	var a arrivals
	for _, r := range rs {
		a.run("kernel", r)
	}

	type send struct {
		from     *testbed.Side
		src, dst netip.Addr
		name     string
	}
	sends := []send{
		{b.Gen, testbed.GenIPv4, testbed.RxIPv4, "link v4"},
		{b.Gen, testbed.GenIPv6, testbed.RxIPv6, "link v6"},
		{b.Rx, testbed.RxIPv4, testbed.RxIPv4, "local to link addr v4"},
		{b.Rx, testbed.RxIPv6, testbed.RxIPv6, "local to link addr v6"},
		{b.Rx, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.1"), "loopback v4"},
		{b.Rx, netip.IPv6Loopback(), netip.IPv6Loopback(), "loopback v6"},
		{peer.Side, peer.IPv4, testbed.RxIPv4, "other if to link addr v4"},
		{peer.Side, peer.IPv6, testbed.RxIPv6, "other if to link addr v6"},
		{peer.Side, peer.IPv4, peer.RxEnd.IPv4, "other if v4"},
		{peer.Side, peer.IPv6, peer.RxEnd.IPv6, "other if v6"},
	}
	var want []string
	refused := uint64(0) // by the filter, as other_iface
	for _, s := range sends {
		for _, port := range []uint16{9000, 9001} {
			msg := payload(s.name, 40+int(port-9000))
			testutil.SendUDPFrom(t, s.from, s.src, netip.AddrPortFrom(s.dst, port), msg)
			switch {
			case s.from == b.Gen:
				want = append(want, describe(s.src, msg))
			case port == 9001, s.from == b.Rx && s.dst == s.src && !s.dst.IsLoopback():
				refused++ // the rest, binding keeps out
			}
		}
	}

	// A datagram in two fragments, one over the link and one over the
	// peer's: skb_iif comes from the first, skb->dev from the one that
	// completes it. Binding judges skb_iif, so with the first from the
	// peer only the unbound socket sees it.
	gen, err := b.Gen.RawSender()
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	other, err := peer.Side.RawSender()
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	id := uint16(4000)
	for _, firstFromPeer := range []bool{false, true} {
		for _, port := range []uint16{9000, 9001} {
			id++
			s := frames.Spec{Src: netip.AddrPortFrom(testbed.GenIPv4, 5000), Dst: netip.AddrPortFrom(testbed.RxIPv4, port),
				Payload: []byte(payload("mixed fragments", 2000)), ID: id}
			s.SrcMAC, s.DstMAC = b.Gen.MAC, b.Rx.MAC
			viaLink := frames.Fragment(s, 1500)
			s.SrcMAC, s.DstMAC = peer.MAC, peer.RxEnd.MAC
			viaPeer := frames.Fragment(s, 1500)
			if len(viaLink) != 2 {
				t.Fatalf("%d fragments, want 2", len(viaLink))
			}
			first, second := viaLink[0], viaPeer[1]
			firstTx, secondTx := gen, other
			if firstFromPeer {
				first, second = viaPeer[0], viaLink[1]
				firstTx, secondTx = other, gen
			}
			if err := firstTx.Send(first); err != nil {
				t.Fatal(err)
			}
			if err := secondTx.Send(second); err != nil {
				t.Fatal(err)
			}
			if port == 9001 || !firstFromPeer {
				refused++
			}
		}
	}

	a.wait(len(want))
	var got []string
	for _, g := range a.stop(t, asReceivers(rs)...) {
		got = append(got, describe(g.src.Addr(), g.payload))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the kernel sockets got %d datagrams, want the %d that came over the link:\ngot  %q\nwant %q", len(got), len(want), got, want)
	}
	sc, err := p.SocketCounters()
	if err != nil {
		t.Fatal(err)
	}
	if sc[SocketOtherIface].Packets != refused || sc[SocketAccepted].Packets != uint64(len(want)) || sc.Refused().Packets != refused {
		t.Errorf("socket counters %+v: want %d accepted, %d other_iface and nothing else", sc, len(want), refused)
	}
}
