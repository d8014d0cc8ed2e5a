// Package afxdp is the AF_XDP receive path: UMEM, the four rings, one
// socket per RX queue, wakeups, busy polling, statistics and a batch send
// API, written over golang.org/x/sys/unix.
//
// # Use
//
// With the XDP program loaded and attached (package xdp), in the network
// namespace of the interface:
//
//	path, err := afxdp.Open(afxdp.Config{Iface: "eth1"}, prog)
//	...
//	for _, r := range path.Receivers() { // one per RX queue
//		go worker(r) // r.Receive(batch) ... r.Release(batch[:n])
//	}
//	...
//	path.Close() // every blocked Receive returns net.ErrClosed
//
// Open makes one [Socket] per queue (all RX queues by default), binds it in
// zero-copy mode when the driver allows and in copy mode otherwise (veth,
// and any driver without AF_XDP zero-copy; [Path.Mode] says which), and
// registers it in the program's XSKMAP slot for its queue through
// [datapath.XSKRegistrar]. Each socket has a UMEM of its own: no frame is
// shared between sockets.
//
// # Rings
//
// The rings follow xdp-tools' xsk.h: producer and consumer indices are
// free-running uint32s shared with the kernel, loaded with acquire and
// published with release semantics (sync/atomic, which is stronger), cached
// locally and touched once per batch; every difference is taken in uint32
// arithmetic, so the 2^32 wrap needs no care. ring.go holds the protocol
// and is tested on plain Go memory.
//
// # Frames
//
// The UMEM is Go memory, page-aligned and pinned by the kernel when it is
// registered (Go's heap never moves objects). An mmap of our own would have
// to be unmapped on Close, and a consumer reading a batch a moment too late
// would then fault; Go memory stays readable until nothing refers to it. A
// runtime cleanup closes a socket dropped without Close, so that the kernel
// never writes into memory Go has reused.
//
// A receive frame is in one of three places: the kernel's (fill or RX
// ring), the caller's (delivered by the last Receive, listed in the socket
// until released), or free. Receive first takes back what the previous call
// delivered, tops up the fill ring (it is kept full), then drains the RX
// ring. Frames the header walk refuses are counted as malformed and go
// back at once.
//
// # Waiting
//
// When the RX ring is empty Receive checks again a few times
// ([Config.SpinChecks]). Then it sleeps, in one of two ways chosen by the
// arrival rate it measures over its sleeps (the backlog it finds after
// each, over the time it slept, in samples of four naps' worth of sleep,
// smoothed). While the traffic is dense (a nap of [Config.Nap] collects
// 128 datagrams or more: 1.28 Mpps with the default 100µs; it stays dense
// down to a quarter of that), it naps on a timer and looks again: a
// receiver waiting in poll() would be woken by the kernel once per batch
// it hands over, from the core that processes the packets, and that
// wakeup costs that core more than the receiver's timer does. The nap
// adapts to the backlog: it shrinks by a quarter when the RX ring was more
// than three quarters full at the end of one and grows back while the
// ring stays under half full; naps that find nothing for a whole
// [Config.Nap] give way to poll(). Otherwise, sparse traffic or none, it
// sleeps in poll() on the socket and an eventfd that Close signals: the
// kernel wakes it as soon as a datagram comes, where a nap would add up
// to its length to the datagram's latency and save few wakeups.
//
// With [Config.SpinFor] (xdpingest's --latency low) it does not sleep at
// all until SpinFor has passed since the last datagram: no wakeup to wait
// for, at the price of a core per queue while traffic flows, and only on a
// core of its own: a spinning receiver that shares its core gets only its
// share of it, and waits out the other tasks' slices, which is worse than
// a wakeup. Any other receiver sleeps whatever the ring's wakeup flag
// says: in copy mode the kernel never sets XDP_RING_NEED_WAKEUP on the
// fill ring, and a receiver that spins takes the core the kernel needs to
// copy frames.
// Sockets are bound with XDP_USE_NEED_WAKEUP, and the kernel is woken with
// a syscall only when a ring's flag asks (or, with [Config.BusyPoll], on
// every empty check).
//
// # Sending
//
// [Socket.ReserveTx] hands out UMEM frames to write into,
// [Socket.SubmitTx] gives them to the kernel and wakes it as the TX ring
// asks, completions come back on the next reservation; [Socket.Transmit]
// does it all for frames held elsewhere. A socket opened with
// [Config.TxOnly] has no RX ring and needs no XDP program.
//
// # Counters
//
// [Socket.Stats] adds the kernel's XDP_STATISTICS (drops because the RX
// ring was full or the fill ring empty, invalid descriptors) to the
// socket's own counts, so that every frame the program redirected is either
// delivered, malformed, or counted as lost by the kernel.
package afxdp
