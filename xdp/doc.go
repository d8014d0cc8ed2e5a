// Package xdp owns xdpingest's XDP program: its C source (bpf/ingest.c), the
// bpf2go output committed beside it, and the loader that loads, configures,
// attaches and reads it.
//
// The program parses Ethernet (with up to two VLAN tags), IPv4 and IPv6 and
// UDP, matches the destination port against a 65536-bit set, checks the
// source against optional allow and deny prefix lists, and redirects the
// datagram into the AF_XDP socket of the RX queue it arrived on. Everything
// else goes on to the kernel untouched. Every frame ends in one [Outcome],
// counted per CPU in packets and bytes ([Program.Counters]).
//
// Ports, prefixes and the [Action] for matches change at run time through
// the maps ([Program.Update]), without reattaching. [Program.Attach] uses a
// BPF link, so the kernel detaches the program when the process dies, and it
// refuses to replace a program that something else attached unless told to.
//
// [Program] implements datapath.XSKRegistrar (RegisterXSK, UnregisterXSK),
// the only thing the receive paths need from it.
package xdp
