package datapath

import (
	"net/netip"
	"time"
)

// Datagram is one received UDP datagram, described in place.
//
// Its slices point into memory the Receiver owns (a UMEM frame, a preallocated
// buffer). They stay valid until the frame is handed back with
// [Receiver.Release] or the next call to [Receiver.Receive]; a consumer that
// needs the bytes longer copies them first.
type Datagram struct {
	// Payload is the UDP payload.
	Payload []byte
	// Frame is the whole link-layer frame, starting at the Ethernet header,
	// when the path sees one (AF_XDP). It is nil on paths that only see
	// payloads (the kernel socket path); consumers that need a frame
	// synthesize one from the addresses (sink.AppendFrame does).
	Frame []byte
	// Src and Dst are the IP source and destination addresses and UDP ports.
	// IPv4 addresses are plain 4-byte addresses, never IPv4-mapped IPv6.
	Src, Dst netip.AddrPort
	// RxTime is the receive time in nanoseconds since the Unix epoch
	// (CLOCK_REALTIME).
	RxTime int64
	// Queue is the receive queue (AF_XDP) or the worker index (kernel path)
	// that delivered the datagram.
	Queue uint32
	// VLAN holds the VLAN IDs of the outer and inner tag when NVLAN says they
	// are present.
	VLAN  [2]uint16
	NVLAN uint8

	// Handle is the receiver's reference to the memory behind the datagram
	// (a UMEM address on AF_XDP). Consumers must not change it.
	Handle uint64
}

// Receiver is one worker's source of datagrams: one AF_XDP socket bound to one
// RX queue, or one worker's set of SO_REUSEPORT sockets.
//
// The contract, which every implementation keeps and the tests check:
//
//   - A Receiver is used by one goroutine at a time, except Close, Drain
//     and Stats, which may be called from any goroutine.
//   - Receive fills batch[0:n] with up to len(batch) datagrams and returns n.
//     It blocks until at least one datagram is available, so n > 0 when err
//     is nil. The batch is the caller's and is reused from call to call.
//   - Receive does not allocate in steady state.
//   - The frames behind a batch belong to the caller until it calls Release
//     with that batch, or calls Receive again (which releases what the
//     previous call returned and was not yet released). Releasing twice is
//     harmless.
//   - After Drain, Receive no longer blocks: it returns the datagrams the
//     path holds (ring, socket buffers) and then io.EOF, also when it was
//     blocked when Drain was called. Drain may be called from any goroutine,
//     more than once. It is how a consumer shuts down without losing what
//     was received: stop new traffic, Drain, Receive until io.EOF, Close.
//   - After Close, Receive returns net.ErrClosed (wrapped or not; test with
//     errors.Is), promptly, also when it was blocked when Close was called.
//     Close releases every kernel resource of the Receiver and may be called
//     more than once.
type Receiver interface {
	Receive(batch []Datagram) (n int, err error)
	Release(batch []Datagram)
	// Drain makes Receive return io.EOF once nothing is left; safe from
	// any goroutine.
	Drain()
	// Queue is the receive queue (or worker index) this Receiver serves.
	Queue() int
	// Stats returns the Receiver's counters; safe from any goroutine.
	Stats() Stats
	Close() error
}

// Idler is a Receiver that calls back before it waits in the kernel for
// traffic, so that its consumer can hold work back while datagrams keep
// coming (and hand it on in bigger pieces, with fewer wakeups) yet finish
// it before the wait.
type Idler interface {
	// OnIdle sets f, which Receive calls once, before it first waits in
	// the kernel (poll()), not before a short nap or while spinning, with
	// none of the Receiver's locks held; f must not call the Receiver. A
	// Close meanwhile does not wait for f, and that Receive then returns
	// net.ErrClosed. OnIdle returns
	// how long the consumer may hold datagrams back between two calls of
	// f: 0 when it should hold none (a receiver that spins or busy-polls
	// for latency).
	OnIdle(f func()) time.Duration
}

// Stats are a Receiver's counters since it was opened. Every field only grows.
type Stats struct {
	// Packets and Bytes count datagrams delivered to the caller, and their
	// UDP payload bytes.
	Packets uint64
	Bytes   uint64
	// Batches counts calls to Receive that returned datagrams.
	Batches uint64
	// Malformed counts frames the header walk refused. The XDP program only
	// redirects frames it parsed, so this stays zero unless the program and
	// the walk disagree; such frames are recycled, never delivered.
	Malformed uint64

	// Kernel-path losses: buffers the kernel dropped on the sockets because
	// the receive buffer was full (from the sockets' drop counters,
	// SO_RXQ_OVFL and SO_MEMINFO), one per datagram unless UDP GRO merged
	// several into one buffer. The kernel counts the buffers a socket
	// filter refuses in the same counters; they are left out when the
	// filter counts them per socket (kernel.RefusalCounter, which
	// xdpingest's socket filter is), and included otherwise. A drop is
	// counted once the receiver has seen the counter move (with the next
	// datagram on the socket, or when it goes idle), so the count may lag
	// while traffic flows.
	SocketOverflows uint64

	// AF_XDP losses and errors, from XDP_STATISTICS.
	XDP XDPStatistics
}

// XDPStatistics mirrors struct xdp_statistics of one AF_XDP socket.
type XDPStatistics struct {
	RxDropped            uint64 // dropped for reasons other than invalid descriptors
	RxInvalidDescs       uint64
	TxInvalidDescs       uint64
	RxRingFull           uint64 // dropped because the RX ring was full
	RxFillRingEmptyDescs uint64 // times the fill ring was empty when the kernel needed a frame
	TxRingEmptyDescs     uint64
}

// Add returns the field-wise sum of s and o.
func (s Stats) Add(o Stats) Stats {
	s.Packets += o.Packets
	s.Bytes += o.Bytes
	s.Batches += o.Batches
	s.Malformed += o.Malformed
	s.SocketOverflows += o.SocketOverflows
	s.XDP.RxDropped += o.XDP.RxDropped
	s.XDP.RxInvalidDescs += o.XDP.RxInvalidDescs
	s.XDP.TxInvalidDescs += o.XDP.TxInvalidDescs
	s.XDP.RxRingFull += o.XDP.RxRingFull
	s.XDP.RxFillRingEmptyDescs += o.XDP.RxFillRingEmptyDescs
	s.XDP.TxRingEmptyDescs += o.XDP.TxRingEmptyDescs
	return s
}

// XSKRegistrar is what an AF_XDP path needs from the XDP program: a slot in
// its XSKMAP per RX queue. The xdp package's Program implements it.
type XSKRegistrar interface {
	// RegisterXSK steers matched packets arriving on queue to the AF_XDP
	// socket fd.
	RegisterXSK(queue int, fd int) error
	// UnregisterXSK removes queue's socket; matched packets on that queue go
	// to the kernel again (and are counted as such by the program).
	UnregisterXSK(queue int) error
}

// What the kernel, the driver or the process's privileges cannot provide
// (a path, a feature) is reported by errors that wrap the standard
// library's errors.ErrUnsupported, here and in packages xdp and tuning:
// test with errors.Is(err, errors.ErrUnsupported).
