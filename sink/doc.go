// Package sink owns where received datagrams go: pcap files, a Kafka
// topic, a NATS JetStream stream, a UDP collector (from our address or the
// exporter's), or nowhere (discard), each for every port or some
// (Spec.Ports).
//
// A sink is made from a URL ([Parse], then [Open]) and hands out one
// [Writer] per worker, so that workers never share a buffer, a file or a
// lock on the write path. Writers take datagrams in batches, in place: they
// copy what they keep before Write returns. Every datagram offered is
// accounted for, as written, in flight, or dropped with a named reason
// ([Stats]); a loss nobody can see is a bug.
//
// The package also synthesizes the Ethernet/IP/UDP headers of datagrams that
// arrive without a frame (the kernel path), with [AppendFrame], so that pcap
// files look the same whichever path filled them. Subpackage pcapfile holds
// the pcap format and a reader; natsmsg holds the message format of the NATS
// sink and its decoder, for consumers. docs/SINKS.md describes the URLs,
// the files, the records and the messages. Secrets come from files or the
// environment (SecretRef), never from a URL.
package sink
