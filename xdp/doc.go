// Package xdp owns xdpingest's XDP program and its socket filter: their C
// source (bpf/ingest.c), the bpf2go output committed beside it, and the
// loader that loads, configures, attaches and reads them.
//
// The program parses Ethernet (with up to two VLAN tags), IPv4 and IPv6 and
// UDP, looks the destination port up in a table of every port (which also
// gives an ingest port its counter slot), checks the source against
// optional allow and deny prefix lists, and redirects the datagram into the
// AF_XDP socket of the RX queue it arrived on. Everything else goes on to
// the kernel untouched. Every frame ends in one [Outcome], counted per CPU
// in packets and bytes ([Program.Counters]); a frame for an ingest port is
// counted in its port's slot ([Program.PortCounters]), and only there.
//
// What the program passes to the kernel although it is for an ingest port
// (fragments, IPv6 extension headers, frames larger than an AF_XDP frame
// holds, [Config.MaxRedirect], queues without a socket) is for kernel UDP
// sockets on the ingest ports. Their socket filter ([Program.SocketFilter])
// shares the lists and flags with the XDP program and applies them to each
// datagram the kernel delivers, after reassembly, counted apart
// ([Program.SocketCounters]); with [Config.SocketIfindex] it also refuses
// what came in over another interface than the sockets', loopback
// included. Loading is separate from attaching: the filter works where the
// XDP program could not be attached.
//
// The program is loaded with multi-buffer support (BPF_F_XDP_HAS_FRAGS,
// Linux 5.18), so that it can be attached where frames outgrow one buffer
// (jumbo frames); on older kernels Load takes the single-buffer build of the
// same code ([LoadOptions.SingleBuffer], [Program.MultiBuffer]).
//
// Ports, prefixes and the [Action] for matches change at run time through
// the maps ([Program.Update]), without reattaching. [Program.Attach] uses a
// BPF link, so the kernel detaches the program when the process dies, and it
// refuses to replace a program that something else attached unless told to.
//
// [Program] implements datapath.XSKRegistrar (RegisterXSK, UnregisterXSK),
// the only thing the receive paths need from it.
package xdp
