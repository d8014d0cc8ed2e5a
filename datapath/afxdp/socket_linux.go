package afxdp

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/datapath"
)

// Socket is one AF_XDP socket bound to one queue of one interface, with a
// UMEM of its own. As a datapath.Receiver it delivers the UDP datagrams the
// XDP program redirects to its queue; its TX methods send frames.
//
// Receive, Release and the TX methods belong to one goroutine at a time;
// Stats, Close and the accessors may be called from any goroutine.
type Socket struct {
	// Fixed at open.
	ifindex   int
	ifname    string
	queue     int
	zeroCopy  bool
	frameSize uint64
	shift     uint // log2(frameSize)
	spin      int
	nap       time.Duration // the longest nap; <= 0: no naps
	spinFor   int64         // Config.SpinFor in ns; 0: off
	busyPoll  bool
	idle      func() // see OnIdle; set under mu
	res       *resources
	cleanup   runtime.Cleanup
	reg       datapath.XSKRegistrar // nil until registered

	// mu is held by Receive, Release and the TX methods while they touch
	// the rings, and by Close while it tears them down: Close waits for a
	// Receive in progress to notice and leave (or to call its idle
	// function, which runs without mu; Receive checks closed after it).
	mu     sync.Mutex
	closed atomic.Bool // set first by Close, read by the loops
	// draining is set by Drain: Receive returns io.EOF instead of sleeping
	// once the RX ring is empty.
	draining atomic.Bool
	torn     bool // under mu: Close released everything

	// The rings and the bookkeeping of frames, under mu.
	fill prodRing[uint64]
	comp consRing[uint64]
	rx   consRing[unix.XDPDesc]
	tx   prodRing[unix.XDPDesc]

	umem   []byte
	rxFree []uint64 // free receive frames (a stack of addresses)
	txFree []uint64 // free send frames
	// last lists the frames the last Receive delivered; an entry is
	// released once it is back (see Release). It is the only record of
	// which frames the caller holds: a frame is the caller's exactly when
	// it is here and not released.
	last    []uint64
	pollfds [2]unix.PollFd

	touched byte // keeps drain's prefetching loads from being optimized away
	clock   wallClock
	lastRx  int64 // clock time of the last batch drained
	// napNow is the next nap's length in nanoseconds (see adaptNap;
	// written under mu, atomic for LoopStats). Under mu: napped says the
	// receiver napped since it last found frames; slept is when it first
	// slept (napped or polled) since then, 0 if it has not; dense says the
	// traffic comes fast enough to nap through (see Config.Nap).
	napNow atomic.Int64
	napped bool
	slept  int64
	// rate is the arrival rate measured over the sleeps, smoothed, in
	// datagrams per Nap x rateOne; dense says the traffic comes fast
	// enough to nap through (see measureRate). Under mu.
	rate  int64
	dense bool
	// sumBacklog and sumSlept add up the sleeps of the sample in the
	// making, until they cover rateWindow (see measureRate). Under mu.
	sumBacklog, sumSlept int64
	// denseWant is the rate, in datagrams per Nap, at which traffic
	// becomes dense (see measureRate); napQuiet how long naps may find
	// nothing before the receiver sleeps in poll() instead (Nap: at the
	// dense rate a nap that long collects denseWant datagrams). Fixed at
	// open; tests on a loaded machine lengthen napQuiet and lower
	// denseWant.
	denseWant  int64
	napQuiet   int64
	rateWindow int64

	txResIdx, txResN uint32 // the pending ReserveTx
	txInFlight       int    // submitted, not yet completed
	txScratch        [][]byte

	packets, bytes, batches, malformed atomic.Uint64
	polls, naps, wakeups               atomic.Uint64
	txPackets, txCompleted, kicks      atomic.Uint64

	// statsMu guards the fd against Close while Stats reads the kernel's
	// counters, and keeps the last ones read.
	statsMu sync.Mutex
	lastXDP datapath.XDPStatistics
}

var _ datapath.Receiver = (*Socket)(nil)

// released marks an entry of Socket.last that is back with the socket. No
// frame has this address: frames start at multiples of the frame size.
const released = ^uint64(0)

// resources are what the kernel holds for a socket. They live apart from
// Socket so that a cleanup can release them if a Socket is dropped without
// Close: the UMEM is Go memory the kernel writes into, and it must stay
// allocated until the socket is closed.
type resources struct {
	fd, efd int
	maps    [][]byte
	umem    []byte
}

func (r *resources) release() error {
	var errs []error
	for _, m := range r.maps {
		if err := unix.Munmap(m); err != nil {
			errs = append(errs, fmt.Errorf("can't unmap an AF_XDP ring: %w", err))
		}
	}
	r.maps = nil
	if r.fd >= 0 {
		if err := unix.Close(r.fd); err != nil {
			errs = append(errs, fmt.Errorf("can't close the AF_XDP socket: %w", err))
		}
		r.fd = -1
	}
	if r.efd >= 0 {
		unix.Close(r.efd)
		r.efd = -1
	}
	// Only now, with the socket gone, may the UMEM be collected.
	runtime.KeepAlive(r.umem)
	r.umem = nil
	return errors.Join(errs...)
}

// NewSocket opens one socket on a queue of the interface cfg names, in the
// network namespace of the calling thread, and binds it (zero-copy when the
// driver allows, else copy mode, as cfg says). The socket is not registered
// with an XDP program: Open does that, or call Register.
func NewSocket(cfg Config, queue int) (*Socket, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ifindex, ifname, err := lookupIface(cfg)
	if err != nil {
		return nil, err
	}
	return newSocket(cfg, ifindex, ifname, queue)
}

func newSocket(cfg Config, ifindex int, ifname string, queue int) (*Socket, error) {
	if cfg.ForceCopy {
		return openBound(cfg, ifindex, ifname, queue, unix.XDP_COPY)
	}
	s, zcErr := openBound(cfg, ifindex, ifname, queue, unix.XDP_ZEROCOPY)
	if zcErr == nil || cfg.ForceZeroCopy || errors.Is(zcErr, unix.EBUSY) {
		// A busy queue is busy in either mode.
		return s, zcErr
	}
	// A socket whose bind failed is not reliably reusable: start over.
	s, err := openBound(cfg, ifindex, ifname, queue, unix.XDP_COPY)
	if err != nil {
		return nil, fmt.Errorf("%w (zero-copy was refused too: %v)", err, zcErr)
	}
	return s, nil
}

// openBound makes the socket, its UMEM and rings, and binds it with mode
// (XDP_ZEROCOPY or XDP_COPY).
func openBound(cfg Config, ifindex int, ifname string, queue int, mode uint16) (s *Socket, err error) {
	where := fmt.Sprintf("%s queue %d", ifname, queue)
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, socketError(fmt.Sprintf("can't create an AF_XDP socket for %s", where), err)
	}
	res := &resources{fd: fd, efd: -1}
	defer func() {
		if err != nil {
			res.release()
		}
	}()
	// Wakes a Receive sleeping in poll() when Close is called.
	if res.efd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("can't create an eventfd for %s: %w", where, err)
	}

	// The UMEM is Go memory rather than an mmap of our own: slices of it
	// handed to consumers stay valid memory (if stale) even after Close,
	// where an unmapped region would crash a consumer that read a batch
	// late. The Go heap never moves objects; the kernel pins the pages.
	size := cfg.NumFrames * cfg.FrameSize
	res.umem = umemBytes(size)
	reg := unix.XDPUmemReg{
		Addr: uint64(uintptr(unsafe.Pointer(&res.umem[0]))),
		Len:  uint64(size),
		Size: uint32(cfg.FrameSize),
	}
	if err := setsockoptRaw(fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		return nil, socketError(fmt.Sprintf("can't register a UMEM of %d x %d bytes for %s", cfg.NumFrames, cfg.FrameSize, where), err)
	}
	rings := []struct {
		opt  int
		n    int
		name string
	}{
		{unix.XDP_UMEM_FILL_RING, cfg.FillRingSize, "fill"},
		{unix.XDP_UMEM_COMPLETION_RING, cfg.CompletionRingSize, "completion"},
		{unix.XDP_RX_RING, cfg.RxRingSize, "RX"},
		{unix.XDP_TX_RING, cfg.TxRingSize, "TX"},
	}
	for _, r := range rings {
		if r.n == 0 {
			continue
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, r.opt, r.n); err != nil {
			return nil, fmt.Errorf("can't size the %s ring of %s to %d: %w", r.name, where, r.n, err)
		}
	}
	var off unix.XDPMmapOffsets
	if err := getsockoptRaw(fd, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off)); err != nil {
		return nil, fmt.Errorf("can't read the ring offsets of %s: %w", where, err)
	}

	s = &Socket{
		ifindex:   ifindex,
		ifname:    ifname,
		queue:     queue,
		frameSize: uint64(cfg.FrameSize),
		spin:      cfg.SpinChecks,
		nap:       cfg.Nap,
		spinFor:   int64(cfg.SpinFor),
		busyPoll:  cfg.BusyPoll,
		res:       res,
		umem:      res.umem,
	}
	for s.shift = 0; 1<<s.shift < cfg.FrameSize; s.shift++ {
	}
	s.initWait(cfg)
	descSize := uint64(unsafe.Sizeof(unix.XDPDesc{}))
	mapOne := func(pgoff uint64, ro unix.XDPRingOffset, n int, entSize uint64, name string) ([]byte, error) {
		m, err := unix.Mmap(fd, int64(pgoff), int(ro.Desc+uint64(n)*entSize),
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return nil, fmt.Errorf("can't map the %s ring of %s: %w", name, where, err)
		}
		res.maps = append(res.maps, m)
		return m, nil
	}
	m, err := mapOne(unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, cfg.FillRingSize, 8, "fill")
	if err != nil {
		return nil, err
	}
	p, c, f := ringWords(m, off.Fr)
	s.fill = newProdRing(p, c, f, ringEntries[uint64](m, off.Fr, cfg.FillRingSize))
	if m, err = mapOne(unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, cfg.CompletionRingSize, 8, "completion"); err != nil {
		return nil, err
	}
	p, c, f = ringWords(m, off.Cr)
	s.comp = newConsRing(p, c, f, ringEntries[uint64](m, off.Cr, cfg.CompletionRingSize))
	if cfg.RxRingSize > 0 {
		if m, err = mapOne(unix.XDP_PGOFF_RX_RING, off.Rx, cfg.RxRingSize, descSize, "RX"); err != nil {
			return nil, err
		}
		p, c, f = ringWords(m, off.Rx)
		s.rx = newConsRing(p, c, f, ringEntries[unix.XDPDesc](m, off.Rx, cfg.RxRingSize))
	}
	if cfg.TxRingSize > 0 {
		if m, err = mapOne(unix.XDP_PGOFF_TX_RING, off.Tx, cfg.TxRingSize, descSize, "TX"); err != nil {
			return nil, err
		}
		p, c, f = ringWords(m, off.Tx)
		s.tx = newProdRing(p, c, f, ringEntries[unix.XDPDesc](m, off.Tx, cfg.TxRingSize))
	}
	s.initFrames(cfg)

	if cfg.BusyPoll {
		for _, o := range []struct {
			opt  int
			v    int
			name string
		}{
			{unix.SO_PREFER_BUSY_POLL, 1, "SO_PREFER_BUSY_POLL"},
			{unix.SO_BUSY_POLL, int(cfg.BusyPollTimeout / time.Microsecond), "SO_BUSY_POLL"},
			{unix.SO_BUSY_POLL_BUDGET, cfg.BusyPollBudget, "SO_BUSY_POLL_BUDGET"},
		} {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.opt, o.v); err != nil {
				return nil, fmt.Errorf("can't set %s=%d on %s: %w (busy polling beyond the net.core.busy_poll sysctl needs CAP_NET_ADMIN)", o.name, o.v, where, err)
			}
		}
	}

	sa := &unix.SockaddrXDP{Flags: mode | unix.XDP_USE_NEED_WAKEUP, Ifindex: uint32(ifindex), QueueID: uint32(queue)}
	// A socket closed a moment ago still holds its queue: the kernel frees
	// the queue's buffer pool in deferred work, after the close returns. So
	// EBUSY is retried for a while before it is believed.
	for wait, deadline := time.Millisecond, time.Now().Add(bindBusyWait); ; wait *= 2 {
		err = unix.Bind(fd, sa)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return nil, bindError(where, mode, err)
		}
		time.Sleep(min(wait, 50*time.Millisecond))
	}
	opts, err := unix.GetsockoptInt(fd, unix.SOL_XDP, unix.XDP_OPTIONS)
	if err != nil {
		return nil, fmt.Errorf("can't read the options of %s: %w", where, err)
	}
	s.zeroCopy = opts&unix.XDP_OPTIONS_ZEROCOPY != 0

	s.pollfds = [2]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(res.efd), Events: unix.POLLIN}}
	s.cleanup = runtime.AddCleanup(s, func(r *resources) { r.release() }, res)
	return s, nil
}

// bindBusyWait bounds the retries of a bind refused with EBUSY.
const bindBusyWait = time.Second

// initFrames splits the UMEM: the first frames receive and start in the
// fill ring (as many as it holds, the rest wait in rxFree); the last
// TxFrames send.
func (s *Socket) initFrames(cfg Config) {
	rxN, n := cfg.rxFrames(), cfg.NumFrames
	s.rxFree = make([]uint64, 0, rxN)
	s.last = make([]uint64, 0, rxN)
	for i := rxN - 1; i >= 0; i-- {
		s.rxFree = append(s.rxFree, uint64(i)<<s.shift)
	}
	if cfg.TxFrames > 0 {
		s.txFree = make([]uint64, 0, cfg.TxFrames)
		s.txScratch = make([][]byte, cfg.TxFrames)
		for i := n - 1; i >= rxN; i-- {
			s.txFree = append(s.txFree, uint64(i)<<s.shift)
		}
	}
	if rxN > 0 && cfg.RxRingSize > 0 {
		s.refill()
	} else {
		// A TX-only socket gives the kernel no frames to receive into.
		s.rxFree = s.rxFree[:0]
	}
}

func ringWords(m []byte, o unix.XDPRingOffset) (prod, cons, flags *uint32) {
	return (*uint32)(unsafe.Pointer(&m[o.Producer])),
		(*uint32)(unsafe.Pointer(&m[o.Consumer])),
		(*uint32)(unsafe.Pointer(&m[o.Flags]))
}

func ringEntries[T any](m []byte, o unix.XDPRingOffset, n int) []T {
	return unsafe.Slice((*T)(unsafe.Pointer(&m[o.Desc])), n)
}

// hugePageSize is the size of a transparent huge page on x86-64 and arm64
// with 4 KiB pages.
const hugePageSize = 2 << 20

// umemBytes allocates a UMEM of size bytes. One of 2 MiB or more is aligned
// to 2 MiB and advised for transparent huge pages (MADV_HUGEPAGE; THP's
// default mode, madvise, backs only advised memory): the receiver reads the
// first cache line of frames spread over the whole UMEM, one 4 KiB page per
// two frames, more pages than the TLB holds. The advice is ignored where THP is
// off or compiled out; the kernel pins the pages whatever their size when
// the UMEM is registered, which is also when they are faulted in. The
// alignment costs up to 2 MiB more per socket (allocated with the UMEM,
// resident when the Go heap hands out reused memory, which it zeroes). The
// advice outlives the UMEM: Go heap objects later placed in that range may
// get huge pages too, which costs nothing but the pages' granularity.
func umemBytes(size int) []byte {
	if size < hugePageSize {
		return alignedBytes(size, os.Getpagesize())
	}
	b := alignedBytes(size, hugePageSize)
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
	return b
}

func alignedBytes(size, align int) []byte {
	b := make([]byte, size+align)
	off := (align - int(uintptr(unsafe.Pointer(&b[0]))%uintptr(align))) % align
	return b[off : off+size : off+size]
}

func setsockoptRaw(fd, opt int, p unsafe.Pointer, size uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), size, 0)
	if e != 0 {
		return e
	}
	return nil
}

func getsockoptRaw(fd, opt int, p unsafe.Pointer, size uintptr) error {
	l := uint32(size)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	if uintptr(l) != size {
		return fmt.Errorf("the kernel returned %d bytes, want %d", l, size)
	}
	return nil
}

// socketError names the missing privilege or kernel feature.
func socketError(what string, err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("%s: %w: run as root or grant CAP_NET_RAW (and CAP_IPC_LOCK or a higher RLIMIT_MEMLOCK for the UMEM)", what, err)
	case errors.Is(err, unix.EAFNOSUPPORT):
		return fmt.Errorf("%s: %w: the kernel has no AF_XDP (CONFIG_XDP_SOCKETS): %w", what, err, errors.ErrUnsupported)
	case errors.Is(err, unix.ENOMEM), errors.Is(err, unix.ENOBUFS):
		return fmt.Errorf("%s: %w: the UMEM could not be pinned: raise RLIMIT_MEMLOCK (ulimit -l) or lower NumFrames", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func bindError(where string, mode uint16, err error) error {
	m := "copy"
	if mode == unix.XDP_ZEROCOPY {
		m = "zero-copy"
	}
	hint := ""
	switch {
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EPROTONOSUPPORT):
		hint = ": the driver does not support this mode"
		err = fmt.Errorf("%w (%w)", err, errors.ErrUnsupported)
	case errors.Is(err, unix.EBUSY):
		hint = ": another AF_XDP socket is bound to this queue"
	case errors.Is(err, unix.EINVAL):
		hint = ": the queue may not exist (see ethtool -l)"
	case errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
		hint = ": no such interface in this network namespace"
	}
	return fmt.Errorf("can't bind an AF_XDP socket to %s in %s mode: %w%s", where, m, err, hint)
}

// Register puts the socket into the XDP program's slot for its queue, so
// that the program redirects the queue's matched datagrams to it. Close
// unregisters it.
func (s *Socket) Register(reg datapath.XSKRegistrar) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return net.ErrClosed
	}
	if s.rx.entries == nil {
		return fmt.Errorf("can't register the TX-only AF_XDP socket of %s queue %d: it has no RX ring", s.ifname, s.queue)
	}
	if err := reg.RegisterXSK(s.queue, s.res.fd); err != nil {
		return fmt.Errorf("can't register the AF_XDP socket of %s queue %d with the XDP program: %w", s.ifname, s.queue, err)
	}
	s.reg = reg
	return nil
}

// Queue implements datapath.Receiver.
func (s *Socket) Queue() int { return s.queue }

// ZeroCopy reports whether the socket is bound in zero-copy mode (else it
// is in copy mode: the kernel copies each frame into the UMEM).
func (s *Socket) ZeroCopy() bool { return s.zeroCopy }

// Ifindex is the interface the socket is bound to.
func (s *Socket) Ifindex() int { return s.ifindex }

// FrameSize is the UMEM chunk size.
func (s *Socket) FrameSize() int { return int(s.frameSize) }

// Receive implements datapath.Receiver. It releases what the previous call
// delivered, tops up the fill ring, and takes up to len(batch) frames from
// the RX ring, each walked with datapath.ParseFrame. Frames the walk refuses
// are counted in Stats().Malformed and go straight back to the fill ring.
//
// RxTime is one clock reading per batch, taken when the batch is drained: in
// copy mode there is no per-frame hardware timestamp, and one reading per
// frame would cost more than the rest of the walk. The reading is the
// monotonic clock anchored to CLOCK_REALTIME at most a second earlier (see
// wallClock).
//
// When the RX ring is empty it checks again SpinChecks times, then sleeps in
// poll() until the kernel has frames or Close is called.
func (s *Socket) Receive(batch []datapath.Datagram) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return 0, net.ErrClosed
	}
	s.releaseLast()
	s.refill()
	if len(batch) == 0 {
		return 0, nil
	}
	if s.rx.entries == nil {
		return 0, fmt.Errorf("can't receive on the TX-only AF_XDP socket of %s queue %d", s.ifname, s.queue)
	}
	idled := false
	for empty := 0; ; {
		if n := s.drain(batch); n > 0 {
			return n, nil
		}
		if s.closed.Load() {
			return 0, net.ErrClosed
		}
		if s.draining.Load() {
			return 0, io.EOF
		}
		// Only a zero-copy driver sets the flag on the fill ring; busy
		// polling wants the syscall on every check.
		if s.busyPoll || s.fill.needsWakeup() {
			s.wakeRx()
		}
		if empty++; empty <= s.spin {
			continue
		}
		empty = 0
		switch {
		case s.spinFor > 0:
			// Low latency: no sleep at all while traffic is recent.
			// A negative difference is the wall clock stepped back:
			// expired, not a reason to spin until it catches up.
			if d := s.clock.now() - s.lastRx; d >= 0 && d < s.spinFor {
				continue
			}
		case s.nap > 0 && !s.busyPoll && !idled:
			// While traffic is dense, sleep on a timer: off the socket's
			// wait queue, the kernel has no one to wake (see Config.Nap);
			// unless naps have found nothing for napQuiet: a pause, or
			// the end of the traffic. After the idle function, which
			// comes only then, straight back to poll().
			if s.dense && !(s.napped && expired(s.clock.now()-s.slept, s.napQuiet)) {
				if s.slept == 0 {
					s.slept = s.clock.now()
				}
				s.sleepFor(time.Duration(s.napNow.Load()))
				s.napped = true
				continue
			}
			// The next nap starts from the longest again, and what piles
			// up during poll() says nothing about the nap.
			s.napped = false
			s.napNow.Store(int64(s.nap))
		}
		if s.idle != nil && !idled {
			// Once per Receive, then look at the ring again: frames may
			// have come while the consumer finished its work. Without mu:
			// the consumer may take its time, and Close must not wait for
			// it; a Close meanwhile is seen before the rings are touched.
			idled = true
			s.mu.Unlock()
			s.idle()
			s.mu.Lock()
			if s.closed.Load() {
				return 0, net.ErrClosed
			}
			continue
		}
		if s.slept == 0 {
			s.slept = s.clock.now()
		}
		if err := s.sleep(); err != nil {
			return 0, err
		}
	}
}

// OnIdle implements datapath.Idler: Receive calls f before it waits in
// poll(). A consumer may hold datagrams back for up to four naps: in
// dense traffic Receive naps, and returns within a nap or calls f; a
// socket that spins or busy-polls for latency, or doesn't nap, wants
// nothing held.
func (s *Socket) OnIdle(f func()) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idle = f
	if s.spinFor > 0 || s.busyPoll || s.nap <= 0 {
		return 0
	}
	return 4 * s.nap
}

// expired reports whether an interval d measured on the wall clock has
// reached limit; a negative one (the clock stepped back) has.
func expired(d, limit int64) bool { return d < 0 || d >= limit }

// drain moves up to len(batch) frames from the RX ring into the batch and
// returns how many it delivered (possibly 0, also when frames were there but
// all malformed).
func (s *Socket) drain(batch []datapath.Datagram) int {
	idx, n := s.rx.peek(uint32(len(batch)))
	if n == 0 {
		return 0
	}
	now := s.clock.now()
	s.lastRx = now
	if s.slept != 0 {
		// n plus what is left: the backlog that piled up while the
		// receiver slept (the producer index was loaded afresh, the ring
		// having been empty).
		backlog := n + s.rx.cachedProd - s.rx.cachedCons
		s.measureRate(backlog, now-s.slept)
		if s.napped {
			s.adaptNap(backlog)
		}
		s.slept, s.napped = 0, false
	}
	// Locals: every store into the batch would otherwise make the compiler
	// reload these from s.
	var (
		q      = uint32(s.queue)
		mask   = s.frameSize - 1
		umem   = s.umem
		last   = s.last
		descs  = s.rx.entries
		rmask  = s.rx.mask
		k, bad int
		bytes  uint64
	)
	// Touch each frame's first cache line (where its headers are) before
	// walking any: the kernel wrote the frames on another core, so each is
	// a cache miss, and independent loads let the core wait for all of
	// them at once instead of one per walk.
	var touch byte
	for i := uint32(0); i < n; i++ {
		touch += umem[descs[(idx+i)&rmask].Addr]
	}
	s.touched = touch
	// The common cases the XDP program redirects, untagged IPv4 without
	// options and untagged IPv6, both to UDP, are walked here exactly as
	// datapath.ParseFrame walks them, in a loop without calls; the first
	// frame of any other kind (or anything wrong) leaves the loop for
	// ParseFrame, which decides. FuzzDrainWalk holds the two to the same
	// answers. Written out because of the call, not the walk: Go's register
	// ABI has no callee-saved registers, so a call in the loop spills and
	// reloads every value the loop keeps, which costs about as much as the
	// walk, and the walk is too big for the compiler to inline.
	for i := uint32(0); i < n; {
		for ; i < n; i++ {
			desc := &descs[(idx+i)&rmask]
			addr, end := desc.Addr, desc.Addr+uint64(desc.Len)
			f := umem[addr:end:end]
			d := &batch[k]
			switch {
			case len(f) >= 42 && f[12] == 0x08 && f[13] == 0x00 && f[14] == 0x45:
				// IPv4 at 14: total length 16, flags and fragment offset
				// 20, protocol 23, addresses 26 and 30; UDP at 34: ports
				// 34 and 36, length 38; payload at 42.
				total := int(f[16])<<8 | int(f[17])
				ulen := int(f[38])<<8 | int(f[39])
				if total > len(f)-14 || f[20]&0x3f|f[21] != 0 || f[23] != 17 || ulen < 8 || ulen > total-20 {
					goto slow
				}
				d.Payload = f[42 : 34+ulen : 34+ulen]
				d.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(f[26:30])), uint16(f[34])<<8|uint16(f[35]))
				d.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(f[30:34])), uint16(f[36])<<8|uint16(f[37]))
			case len(f) >= 62 && f[12] == 0x86 && f[13] == 0xDD && f[14]>>4 == 6:
				// IPv6 at 14: payload length 18, next header 20,
				// addresses 22 and 38; UDP at 54: ports 54 and 56,
				// length 58; payload at 62.
				plen := int(f[18])<<8 | int(f[19])
				ulen := int(f[58])<<8 | int(f[59])
				if f[20] != 17 || plen > len(f)-54 || ulen < 8 || ulen > plen {
					goto slow
				}
				d.Payload = f[62 : 54+ulen : 54+ulen]
				d.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(f[22:38])), uint16(f[54])<<8|uint16(f[55]))
				d.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(f[38:54])), uint16(f[56])<<8|uint16(f[57]))
			default:
				goto slow
			}
			d.Frame = f
			d.VLAN = [2]uint16{}
			d.NVLAN = 0
			d.RxTime = now
			d.Queue = q
			d.Handle = addr &^ mask
			// Indexed, not appended: append's growth path is a call, and
			// last has room for every receive frame.
			last = last[:len(last)+1]
			last[len(last)-1] = addr &^ mask
			bytes += uint64(len(d.Payload))
			k++
		}
	slow:
		if i == n {
			break
		}
		desc := &descs[(idx+i)&rmask]
		addr, end := desc.Addr, desc.Addr+uint64(desc.Len)
		i++
		d := &batch[k]
		if err := datapath.ParseFrame(umem[addr:end:end], d); err != nil {
			s.rxFree = append(s.rxFree, addr&^mask)
			bad++
			continue
		}
		d.RxTime = now
		d.Queue = q
		d.Handle = addr &^ mask
		last = append(last, addr&^mask)
		bytes += uint64(len(d.Payload))
		k++
	}
	s.last = last
	s.rx.release()
	if bad > 0 {
		s.malformed.Add(uint64(bad))
		s.refill()
	}
	if k > 0 {
		s.packets.Add(uint64(k))
		s.bytes.Add(bytes)
		s.batches.Add(1)
	}
	return k
}

// minNap is the shortest nap adaptNap comes down to.
const minNap = 5 * time.Microsecond

// denseBacklog is the rate, in datagrams per Config.Nap, at which traffic
// becomes dense enough to nap through: 128 (1.28 Mpps with the default
// 100µs nap), or a sixteenth of a smaller RX ring. It stays dense until
// the rate falls under a quarter of that.
const denseBacklog = 128

// rateOne is 1 in the fixed point of Socket.rate.
const rateOne = 16

// initWait sets what the wait between batches depends on.
func (s *Socket) initWait(cfg Config) {
	s.napNow.Store(int64(cfg.Nap))
	s.denseWant = int64(max(1, min(denseBacklog, cfg.RxRingSize/16)))
	s.napQuiet = int64(cfg.Nap)
	s.rateWindow = 4 * int64(cfg.Nap)
}

// measureRate adds the backlog that piled up during the last sleep, of
// elapsed nanoseconds from its start to the drain that found the backlog,
// to a sample of the arrival rate; once the sample covers four Naps of
// sleep (so that a sender's bursts don't pass for its rate) it is
// smoothed over four samples (a pause in dense traffic makes one low
// sample). Traffic becomes dense at denseWant
// datagrams per Nap and stays dense down to a quarter of that, so that it
// does not flap between the two ways of waiting, and so that a rate that
// poll()'s wakeups would slow down (they cost the core that processes the
// packets) is not taken for sparse. Below the dense rate a nap collects
// few datagrams: poll() wakes the receiver about as often, and each time
// as soon as a datagram comes, where a nap adds up to its length to the
// datagram's latency.
func (s *Socket) measureRate(backlog uint32, elapsed int64) {
	if s.nap <= 0 || elapsed <= 0 {
		return
	}
	s.sumBacklog += int64(backlog)
	s.sumSlept += elapsed
	if s.sumSlept < s.rateWindow {
		return
	}
	sample := min(s.sumBacklog*int64(s.nap)*rateOne/s.sumSlept, 64*s.denseWant*rateOne)
	s.sumBacklog, s.sumSlept = 0, 0
	s.rate += (sample - s.rate) / 4
	if s.dense {
		s.dense = s.rate*4 >= s.denseWant*rateOne
	} else {
		s.dense = s.rate >= s.denseWant*rateOne
	}
}

// adaptNap sets the next nap's length from the backlog the last one let
// pile up in the RX ring. A long nap costs fewer wakeups (each a pair of
// context switches, and in a VM a timer reprogrammed through the
// hypervisor); a nap during which the ring fills past three quarters risks
// overflowing it at the next burst. So the nap shrinks by a quarter
// whenever the ring was more than three quarters full at the end of one
// (down to minNap), and grows by an eighth, back up to Config.Nap, while it
// was under half full. The gap between the bounds matters: a steady rate
// fills the ring to the same level every nap, so with close bounds a nap
// that a scheduling hiccup shrank would stay short.
func (s *Socket) adaptNap(backlog uint32) {
	now := time.Duration(s.napNow.Load())
	switch {
	case backlog > s.rx.size/4*3:
		s.napNow.Store(int64(max(now-now/4, min(minNap, s.nap))))
	case backlog < s.rx.size/2 && now < s.nap:
		s.napNow.Store(int64(min(now+now/8+1, s.nap)))
	}
}

// sleepFor sleeps on a timer (EINTR cuts it short, harmlessly).
//
// A raw syscall: the goroutine keeps its P through the nap. Through the
// runtime's syscall path, sysmon takes the P away during a nap and the
// receiver has to win one back after it, which costs as much as the wakeup
// the nap avoids. The nap is at most 1ms (and a signal ends it), so the P is not
// held long; a program that runs other goroutines beside its receivers
// gives them Ps of their own (xdpingest raises GOMAXPROCS by its workers).
func (s *Socket) sleepFor(d time.Duration) {
	s.naps.Add(1)
	ts := unix.NsecToTimespec(int64(d))
	unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// sleep waits in poll() until the socket has frames or Close signals.
func (s *Socket) sleep() error {
	s.polls.Add(1)
	_, err := unix.Ppoll(s.pollfds[:], nil, nil)
	if err != nil && err != unix.EINTR {
		return fmt.Errorf("can't poll the AF_XDP socket of %s queue %d: %w", s.ifname, s.queue, err)
	}
	return nil
}

// wakeRx asks the kernel to process the fill ring (and, with busy polling,
// to run the device's NAPI) without blocking.
func (s *Socket) wakeRx() {
	s.wakeups.Add(1)
	// Raw syscall: unix.Recvfrom would build a Sockaddr.
	unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.res.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
}

// Release implements datapath.Receiver: the batch's frames go back to the
// fill ring. Frames this socket did not deliver in its last Receive, or
// that are back already, are ignored.
//
// Each datagram is looked up in the list of frames the last Receive
// delivered, expecting the batch in the order it was delivered (any slice
// of it); a batch in another order costs a search per datagram.
func (s *Socket) Release(batch []datapath.Datagram) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return
	}
	last := s.last
	j := 0 // where the next datagram is expected in last
	for i := range batch {
		h := batch[i].Handle
		if j >= len(last) || last[j] != h {
			if j = slices.Index(last, h); j < 0 || h == released {
				j = 0
				continue
			}
		}
		last[j] = released
		s.rxFree = append(s.rxFree, h)
		j++
	}
	s.refill()
}

// releaseLast takes back what the last Receive delivered and the caller
// did not release, straight into the fill ring when there is room (the
// common case: the ring had room for them when they were taken out).
// Recently used frames go back first, ahead of any in rxFree: they are the
// ones most likely still in cache, and which frames the kernel gets does
// not matter otherwise.
func (s *Socket) releaseLast() {
	last := s.last
	if len(last) == 0 {
		return
	}
	s.last = last[:0]
	idx, n := s.fill.reserve(uint32(len(last)))
	j := uint32(0)
	for _, h := range last {
		if h == released {
			continue
		}
		if j < n {
			*s.fill.at(idx + j) = h
			j++
		} else {
			s.rxFree = append(s.rxFree, h)
		}
	}
	s.fill.cancel(n - j)
	if j > 0 {
		s.fill.submit()
	}
}

// refill moves every free receive frame the fill ring has room for into it:
// the kernel can only receive into frames it was given.
func (s *Socket) refill() {
	want := uint32(len(s.rxFree))
	if want == 0 {
		return
	}
	idx, n := s.fill.reserve(want)
	if n == 0 {
		return
	}
	free := s.rxFree
	top := len(free) - 1
	for i := uint32(0); i < n; i++ {
		*s.fill.at(idx + i) = free[top-int(i)]
	}
	s.rxFree = free[:len(free)-int(n)]
	s.fill.submit()
}

// Stats implements datapath.Receiver. The XDP counters come from the
// kernel (XDP_STATISTICS); after Close they are the last ones read.
func (s *Socket) Stats() datapath.Stats {
	x, _ := s.XDPStats()
	return datapath.Stats{
		Packets:   s.packets.Load(),
		Bytes:     s.bytes.Load(),
		Batches:   s.batches.Load(),
		Malformed: s.malformed.Load(),
		XDP:       x,
	}
}

// XDPStats reads the socket's XDP_STATISTICS. After Close it returns the
// last counters read, with no error.
func (s *Socket) XDPStats() (datapath.XDPStatistics, error) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	if s.res.fd < 0 {
		return s.lastXDP, nil
	}
	var st unix.XDPStatistics
	if err := getsockoptRaw(s.res.fd, unix.XDP_STATISTICS, unsafe.Pointer(&st), unsafe.Sizeof(st)); err != nil {
		return s.lastXDP, fmt.Errorf("can't read the statistics of the AF_XDP socket of %s queue %d: %w", s.ifname, s.queue, err)
	}
	s.lastXDP = datapath.XDPStatistics{
		RxDropped:            st.Rx_dropped,
		RxInvalidDescs:       st.Rx_invalid_descs,
		TxInvalidDescs:       st.Tx_invalid_descs,
		RxRingFull:           st.Rx_ring_full,
		RxFillRingEmptyDescs: st.Rx_fill_ring_empty_descs,
		TxRingEmptyDescs:     st.Tx_ring_empty_descs,
	}
	return s.lastXDP, nil
}

// LoopStats are counters of the receive loop itself, for tuning.
type LoopStats struct {
	// Polls counts sleeps in poll(); Naps sleeps on a timer (see
	// Config.Nap); Wakeups counts recvfrom calls made because the kernel
	// asked (or busy polling is on).
	Polls, Naps, Wakeups uint64
	// Nap is the length of the next nap (see Config.Nap); 0 when the
	// socket never naps.
	Nap time.Duration
	// TxPackets counts frames submitted; TxCompleted those the kernel
	// handed back; Kicks the sendto calls that woke TX.
	TxPackets, TxCompleted, Kicks uint64
}

// LoopStats returns the loop counters; safe from any goroutine.
func (s *Socket) LoopStats() LoopStats {
	return LoopStats{
		Polls: s.polls.Load(), Naps: s.naps.Load(), Wakeups: s.wakeups.Load(), Nap: max(time.Duration(s.napNow.Load()), 0),
		TxPackets: s.txPackets.Load(), TxCompleted: s.txCompleted.Load(), Kicks: s.kicks.Load(),
	}
}

// Close implements datapath.Receiver: it wakes a blocked Receive, waits for
// it to return net.ErrClosed (or to be in its idle function, after which it
// returns net.ErrClosed), unregisters the socket from the XDP program,
// and closes and unmaps everything. Slices from earlier batches stay
// readable memory but no longer mean anything.
func (s *Socket) Close() error {
	s.shutdown()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.torn {
		return nil
	}
	s.torn = true
	var errs []error
	if s.reg != nil {
		if err := s.reg.UnregisterXSK(s.queue); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, fmt.Errorf("can't unregister the AF_XDP socket of %s queue %d: %w", s.ifname, s.queue, err))
		}
		s.reg = nil
	}
	s.XDPStats() // keep the final counters
	s.cleanup.Stop()
	s.statsMu.Lock()
	errs = append(errs, s.res.release())
	s.statsMu.Unlock()
	return errors.Join(errs...)
}

// Drain implements datapath.Receiver: from now on Receive returns what the
// RX ring holds and then io.EOF instead of sleeping. It wakes a Receive
// sleeping in poll(). The caller stops new frames first (the server switches
// the XDP program away from redirecting), so that the ring only empties.
func (s *Socket) Drain() {
	if !s.draining.CompareAndSwap(false, true) {
		return
	}
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	if s.res.efd >= 0 {
		one := [8]byte{1}
		unix.Write(s.res.efd, one[:])
	}
}

// shutdown marks the socket closed and wakes a Receive sleeping in poll();
// the eventfd stays readable, so a Receive about to sleep won't sleep
// either.
func (s *Socket) shutdown() {
	if s.closed.CompareAndSwap(false, true) {
		one := [8]byte{1}
		unix.Write(s.res.efd, one[:])
	}
}

// wallClock gives CLOCK_REALTIME nanoseconds from one monotonic clock read:
// time.Now reads both clocks, and in a VM each read costs tens of
// nanoseconds, once per batch. The anchor is renewed every second, so a
// step of the wall clock shows within a second and NTP's slewing (at most
// 500 ppm) adds at most half a millisecond of error.
type wallClock struct {
	anchor time.Time // with its monotonic reading
	wall   int64     // anchor in Unix nanoseconds
}

func (c *wallClock) now() int64 {
	d := time.Since(c.anchor)
	if c.wall == 0 || d > time.Second || d < 0 {
		c.anchor = time.Now()
		c.wall = c.anchor.UnixNano()
		return c.wall
	}
	return c.wall + int64(d)
}
