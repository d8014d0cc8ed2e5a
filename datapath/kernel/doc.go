// Package kernel is the receive path that needs no XDP: per worker, one
// SO_REUSEPORT UDP socket for every configured address and port, read with
// recvmmsg(2) into memory allocated once. It is the fallback when AF_XDP
// cannot be used (no privilege, no XDP, a bind refused) and the baseline
// AF_XDP is measured against.
//
// # What a Receiver owns
//
// [Open] returns one [Receiver] per worker. A Receiver owns its sockets and,
// for its batch size, an array of mmsghdrs, iovecs, payload buffers,
// sockaddr storage and control buffers that every recvmmsg reuses; it never
// makes a net.Addr. Each [datapath.Datagram] gets its payload (in place),
// source (from the sockaddr, IPv4 as a 4-byte address: IPv6 sockets are
// IPV6_V6ONLY), destination (on a wildcard socket the header's address
// from IP_PKTINFO or IPV6_PKTINFO, else the bound address; and the socket's
// port), the kernel's receive time (SO_TIMESTAMPNS; with
// Config.ReadTimestamps the time the batch was read, which costs the kernel
// and the worker less) and, as Queue, the worker index. Frame stays nil:
// this path sees no frame. The IPv6 source's zone is not set (making one
// would allocate).
//
// Queue on this path is the worker index, not a NIC queue: the kernel picks
// the socket of a SO_REUSEPORT group by its flow hash, or by the CPU that
// processed the packet when steering is on (see below), and with RSS and
// IRQ affinity that CPU stands for a queue.
//
// # Waiting: poll on the worker's own thread
//
// A worker with several sockets (ports times families) must sleep until any
// of them is readable, and wake at once on Close. The choices were: Go's
// poller (one socket per RawConn, so several sockets need a goroutine each,
// or an epoll descriptor nested in the poller), a private epoll plus an
// eventfd, or poll(2) on the sockets plus an eventfd. This package uses
// poll(2), called from Receive on the caller's thread, for two reasons.
// First, an epoll registration (Go's poller included) stays on the socket's
// wait queue for good, so the softirq that queues every datagram also runs
// the epoll callback; with poll the wait-queue entry exists only while the
// worker sleeps, and a busy worker costs the receiving CPU nothing extra.
// On a veth that CPU is the sender's, the bottleneck of every benchmark
// here. Second, the worker is a pinned thread anyway (steering only helps if
// it is), so blocking that thread in a system call costs no other goroutine
// anything. Receive reads sockets with MSG_DONTWAIT while they have data,
// keeps a socket it read a full batch from marked ready (and asks poll
// without waiting, every few reads, for the others, so that one busy socket
// cannot starve them), and sleeps in poll only when all are drained. Close
// sets a flag, writes the eventfd (which stays readable), then takes the
// mutex a running Receive holds, so it closes descriptors only after
// Receive has left them; a blocked Receive returns net.ErrClosed within
// microseconds. Drain writes the same eventfd, and from then on Receive
// reads every socket once more whenever it finds nothing, and returns
// io.EOF instead of sleeping.
//
// Waking a sleeping worker is work for the CPU that queues the datagram
// (try_to_wake_up and, on a VM, an inter-processor interrupt that exits to
// the hypervisor), and a worker that keeps up sleeps after every few
// datagrams. So after a read that found datagrams, Receive first sleeps a
// fixed Config.Coalesce (20µs) in nanosleep(2), on no socket's wait queue,
// and reads again; only when that read finds nothing does it sleep in poll.
// On the test bed this grew batches from about 18 to about 52 datagrams and
// raised the rate a sendmmsg generator reaches by a third or more (noisy;
// BenchmarkReceive kernel-v4 against kernel-v4-nocoalesce). The cost is up
// to Coalesce of latency while traffic flows; an idle worker sleeps in poll
// and uses no CPU.
//
// # Broadcasts and multicasts
//
// The kernel gives a unicast datagram to one socket of the SO_REUSEPORT
// group of its address and port, but a datagram to an IPv4 broadcast or
// multicast address, or an IPv6 multicast address, to every socket that
// matches: one copy per worker. Worker 0 delivers it; every other worker
// reads its copy, recognises it by its packet info (IP_PKTINFO's
// ipi_spec_dst, the address the kernel would answer from, differs from
// the header's destination only for a broadcast or multicast route;
// IPV6_PKTINFO's address is multicast), and counts it in
// [Receiver.Copies] instead of delivering it. So every such datagram is
// delivered once, or, if worker 0's buffer was full, counted in worker 0's
// SocketOverflows. The frame's own kind (broadcast, multicast or unicast
// MAC) says nothing here: the kernel copies a broadcast address in a
// unicast frame, and gives a unicast address in a broadcast frame (as
// some load balancers send) to one socket. Workers other than 0 ask for
// the packet info on every socket, also those bound to an address. The
// copies still take room in the other workers' receive buffers until they
// are read.
//
// # Losses
//
// Datagrams the kernel dropped because a socket's receive buffer was full
// are counted in Stats.SocketOverflows: the sockets have SO_RXQ_OVFL, whose
// control message carries the socket's 32-bit drop counter; the Receiver
// keeps the last value per socket and adds the growth (less what the
// socket filter refused: see below). The kernel attaches
// that message only to datagrams queued after a drop, so a burst's last
// drops would stay unseen while no datagram follows; an idle Receiver that
// has read since the last check therefore reads the counters back with
// SO_MEMINFO (at most every 50 ms, bounding its sleep by that much). A
// datagram larger than Config.MaxPayload is dropped and counted in
// Stats.Malformed.
//
// Config.RcvBuf is set with SO_RCVBUF, which the kernel caps at
// net.core.rmem_max; Open reads it back (getsockopt reports twice the
// usable size) and returns a warning when it was capped. With
// Config.ForceRcvBuf Open uses SO_RCVBUFFORCE, which ignores rmem_max but
// needs CAP_NET_ADMIN (it falls back, with a warning, without it): the
// choice of an operator who wants the buffer without raising a global
// sysctl.
//
// # Interface and socket filter
//
// With Config.Device every socket is bound to that interface
// (SO_BINDTODEVICE) before it binds its address, so that a wildcard socket
// takes only what arrives on that interface: not what arrives on another
// one (whatever its destination address: Linux accepts any local address on
// any interface), not what is sent to a loopback address. One exception is
// Linux's: a local process that sends to an address of the bound interface
// reaches the socket, because the kernel gives such a datagram, routed over
// loopback, the interface that owns the address as its input interface.
// Binding to an interface needs no privilege since Linux 5.7 (CAP_NET_RAW
// before). xdpingest's socket filter closes that gap: with
// xdp.Config.SocketIfindex it refuses a datagram whose device or input
// interface, as the filter sees them, is not the bound interface (for the
// datagram above, both are loopback).
//
// With Config.Filter every socket gets a BPF socket filter (SO_ATTACH_BPF),
// also before bind, so that no datagram is queued to a socket unfiltered:
// xdpingest's filter applies the deny and allow lists to each datagram the
// kernel delivers, after reassembly. The kernel counts a datagram its
// filter drops as a drop of the socket (sk_drops, UDP_MIB_INERRORS), the
// same counter a full receive buffer moves, one per buffer (a UDP GRO
// buffer of several datagrams counts once). A Filter that is also a
// [RefusalCounter] (xdpingest's is) counts the buffers it refuses per
// socket, by the socket's cookie (SO_COOKIE, read at Open), and
// Stats.SocketOverflows is then each socket's drops minus its refusals:
// what full buffers lost, no more. The refusals are read at Stats time,
// not on the receive path, and only for sockets whose drops moved (see
// socketOverflows for why reading the drops first and keeping a running
// maximum never counts a refusal as an overflow). With any other filter
// SocketOverflows includes the refusals.
//
// # Changing ports
//
// [SetPorts] changes the ports of the Receivers of one Open while they
// receive (a configuration reload): it opens every socket of the added
// ports first, all or nothing, then hands them to each Receiver, which
// takes them into its set at a point where its receive loop holds no
// index into it (woken from poll through the eventfd, or switched by
// SetPorts when no Receive is running). The sockets of removed ports get
// a classic BPF filter that refuses everything, so that nothing new is
// queued to them, and are read until empty before they are closed, so
// that what was queued before the change is delivered; their drops from
// then on are not counted as overflows. A port added back while its old
// sockets are still open gets them back.
//
// # Steering
//
// With Config.CPUs (worker i pinned by the caller to CPUs[i], one worker per
// CPU) Open attaches a classic BPF program to every SO_REUSEPORT group
// (SO_ATTACH_REUSEPORT_CBPF) that loads the current CPU (SKF_AD_CPU) and
// returns the index of that CPU's worker's socket, so a datagram is read on
// the CPU whose softirq queued it, with its cache lines warm. Packets
// processed on a CPU without a worker get an out-of-range index, and the
// kernel falls back to its flow hash. This applies when workers cover the
// CPUs that serve the NIC's queues (workers = CPUs); it relies on the group
// index being the order of bind, so a group must hold only one Open's
// sockets. SO_INCOMING_CPU (honoured for UDP groups since Linux 6.2) would do
// the same without that ordering assumption, at the cost of a scan of the
// group per packet; the program works on every kernel since 4.5.
package kernel
