//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Encoding says how UDPGen numbers its payloads (see the sequence encodings
// in seq.go).
type Encoding int

const (
	// EncodeWide writes the sequence number as a big-endian uint64 at the
	// start of every payload of UDPGenConfig.Size bytes (the default).
	EncodeWide Encoding = iota
	// EncodeSized writes PutSized payloads: sizes 1..SizedSpan, cycling.
	EncodeSized
)

// UDPGenConfig describes one sendmmsg generator run.
type UDPGenConfig struct {
	// Dst is where every datagram goes. Required.
	Dst netip.AddrPort
	// Src is the source address to bind (default: chosen by the route).
	Src netip.Addr
	// SrcPort is the first source port: flow i sends from SrcPort+i. Zero
	// lets the kernel pick an ephemeral port per flow.
	SrcPort uint16
	// Flows is the number of source ports (one connected socket each),
	// default 1. Batches go to the flows in turn, so a receiver that hashes
	// on the 4-tuple sees them spread.
	Flows int

	// Count is the number of datagrams to send; zero means until Duration.
	Count uint64
	// Duration bounds the run; zero means until Count. At least one of
	// Count and Duration must be set: the generator always stops by itself.
	Duration time.Duration
	// Rate limits the send rate in datagrams per second (token bucket);
	// zero sends as fast as the kernel takes them.
	Rate float64
	// Batch is the number of datagrams per sendmmsg call (default 64, at most
	// 1024).
	Batch int

	// Encoding numbers the payloads when Payload is nil.
	Encoding Encoding
	// Size is the payload size of EncodeWide (default 64, at least 8), and
	// the buffer size handed to Payload (default SizedSpan).
	Size int
	// Payload, when set, writes datagram seq's payload into buf (len(buf) is
	// the buffer size) and returns it; the result must lie within buf. It is
	// called once per datagram, in sequence order, on the Run goroutine, and
	// must not allocate if the run is to stay allocation-free.
	Payload func(buf []byte, seq uint64) []byte
	// Gate, when set, is called before each batch with the number of
	// datagrams sent so far; it may block (closed-loop pacing: wait while the
	// receiver lags). An error stops the run and is returned.
	Gate func(sent uint64) error
}

// UDPGenResult counts what a run did.
type UDPGenResult struct {
	// Sent and Bytes count datagrams the kernel accepted and their payload
	// bytes. Datagrams the veth or the receiver drop later are included.
	Sent, Bytes uint64
	// Calls counts sendmmsg calls that sent at least one datagram.
	Calls uint64
	// Retries counts sendmmsg calls refused with EAGAIN or ENOBUFS (send
	// buffer or device queue full); the generator backed off and resent.
	Retries uint64
	// Refused counts ECONNREFUSED errors: an ICMP port unreachable came back
	// to a flow's connected socket (nobody listened for a while). The
	// datagrams of the refused call were resent.
	Refused uint64
	// Elapsed is the run's wall time.
	Elapsed time.Duration
}

// PPS returns the average send rate of the run.
func (r UDPGenResult) PPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Sent) / r.Elapsed.Seconds()
}

const (
	defaultGenBatch = 64
	maxGenBatch     = 1024 // UIO_MAXIOV, the kernel's limit on vlen
	defaultWideSize = 64
	// genBurst is the token bucket's depth in time: a run that was held up
	// (a descheduled generator) may catch up by this much at once, which
	// keeps the long-run rate accurate without bursts that overflow a
	// receiver.
	genBurst = 20 * time.Millisecond
	// genStall stops a run that made no progress for this long (every
	// call refused), so that a Count-only run still ends by itself.
	genStall = 10 * time.Second
)

// UDPGen sends sequence-numbered UDP datagrams with sendmmsg from
// preallocated headers and buffers: nothing is allocated per datagram.
//
// NewUDPGen creates the sockets on the calling thread, so they belong to the
// network namespace that thread is in (call it inside testbed's Side.Do, or
// on a goroutine that entered a namespace with Side.Enter). Run may then be
// called from any goroutine. A UDPGen is used by one goroutine at a time.
type UDPGen struct {
	cfg   UDPGenConfig
	fds   []int
	srcs  []netip.AddrPort
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	bufs  []byte
	slot  int // size of one payload buffer
	sent  atomic.Uint64
	timer *time.Timer // reused for every sleep, so that pacing allocates nothing
	close bool
}

// NewUDPGen checks cfg and opens one connected UDP socket per flow.
func NewUDPGen(cfg UDPGenConfig) (*UDPGen, error) {
	if !cfg.Dst.IsValid() || cfg.Dst.Port() == 0 {
		return nil, fmt.Errorf("udpgen: destination %v: give an address and a port", cfg.Dst)
	}
	if cfg.Count == 0 && cfg.Duration <= 0 {
		return nil, errors.New("udpgen: unbounded run: set Count or Duration")
	}
	if cfg.Rate < 0 {
		return nil, fmt.Errorf("udpgen: negative rate %v", cfg.Rate)
	}
	if cfg.Flows <= 0 {
		cfg.Flows = 1
	}
	if cfg.SrcPort != 0 && int(cfg.SrcPort)+cfg.Flows-1 > 65535 {
		return nil, fmt.Errorf("udpgen: %d flows from source port %d run past 65535", cfg.Flows, cfg.SrcPort)
	}
	if cfg.Batch <= 0 {
		cfg.Batch = defaultGenBatch
	}
	if cfg.Batch > maxGenBatch {
		return nil, fmt.Errorf("udpgen: batch %d is above the kernel's limit of %d", cfg.Batch, maxGenBatch)
	}
	dst := cfg.Dst.Addr().Unmap()
	cfg.Dst = netip.AddrPortFrom(dst, cfg.Dst.Port())
	if cfg.Src.IsValid() {
		cfg.Src = cfg.Src.Unmap()
		if cfg.Src.Is4() != dst.Is4() {
			return nil, fmt.Errorf("udpgen: source %v and destination %v are of different families", cfg.Src, dst)
		}
	}
	slot := cfg.Size
	switch {
	case cfg.Payload != nil:
		if slot <= 0 {
			slot = SizedSpan
		}
	case cfg.Encoding == EncodeSized:
		slot = SizedSpan
	case cfg.Encoding == EncodeWide:
		if slot <= 0 {
			slot = defaultWideSize
		}
		if slot < 8 {
			return nil, fmt.Errorf("udpgen: wide payloads of %d bytes can't hold a 64-bit sequence number: use 8 or more", slot)
		}
	default:
		return nil, fmt.Errorf("udpgen: unknown encoding %d", cfg.Encoding)
	}
	if slot > 65535 {
		return nil, fmt.Errorf("udpgen: payload size %d is above the UDP maximum", slot)
	}
	cfg.Size = slot

	g := &UDPGen{cfg: cfg, slot: slot,
		hdrs: make([]unix.Mmsghdr, cfg.Batch),
		iovs: make([]unix.Iovec, cfg.Batch),
		bufs: make([]byte, cfg.Batch*slot),
	}
	for i := range g.hdrs {
		g.iovs[i].Base = &g.bufs[i*slot]
		g.hdrs[i].Hdr.Iov = &g.iovs[i]
		g.hdrs[i].Hdr.SetIovlen(1)
	}
	for f := 0; f < cfg.Flows; f++ {
		fd, src, err := genSocket(cfg, f)
		if err != nil {
			g.Close()
			return nil, err
		}
		g.fds = append(g.fds, fd)
		g.srcs = append(g.srcs, src)
	}
	return g, nil
}

func genSocket(cfg UDPGenConfig, flow int) (int, netip.AddrPort, error) {
	dst := cfg.Dst.Addr()
	family := unix.AF_INET6
	if dst.Is4() {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, netip.AddrPort{}, fmt.Errorf("udpgen: can't open a UDP socket: %w", err)
	}
	fail := func(what string, err error) (int, netip.AddrPort, error) {
		unix.Close(fd)
		return -1, netip.AddrPort{}, fmt.Errorf("udpgen: can't %s: %w", what, err)
	}
	if cfg.Src.IsValid() || cfg.SrcPort != 0 {
		port := uint16(0)
		if cfg.SrcPort != 0 {
			port = cfg.SrcPort + uint16(flow)
		}
		src := cfg.Src
		if !src.IsValid() {
			src = netip.IPv4Unspecified()
			if !dst.Is4() {
				src = netip.IPv6Unspecified()
			}
		}
		if err := unix.Bind(fd, genSockaddr(netip.AddrPortFrom(src, port))); err != nil {
			return fail(fmt.Sprintf("bind %v", netip.AddrPortFrom(src, port)), err)
		}
	}
	if err := unix.Connect(fd, genSockaddr(cfg.Dst)); err != nil {
		return fail(fmt.Sprintf("connect to %v", cfg.Dst), err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fail("read the local address", err)
	}
	var local netip.AddrPort
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		local = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		local = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	return fd, local, nil
}

func genSockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// SrcAddrs returns the local address of each flow's socket.
func (g *UDPGen) SrcAddrs() []netip.AddrPort { return append([]netip.AddrPort(nil), g.srcs...) }

// Sent returns the number of datagrams the current or last run has sent so
// far; safe from any goroutine.
func (g *UDPGen) Sent() uint64 { return g.sent.Load() }

// Close closes the sockets. Run must have returned.
func (g *UDPGen) Close() error {
	var errs []error
	for _, fd := range g.fds {
		if err := unix.Close(fd); err != nil {
			errs = append(errs, err)
		}
	}
	g.fds = nil
	g.close = true
	return errors.Join(errs...)
}

// Run sends until Count datagrams are out, Duration has passed, ctx is done,
// Gate returns an error or sending fails. Sequence numbers start at 0 on
// every run. It returns what it sent, and an error only for a failure (not for
// reaching Count or Duration, nor for ctx being done).
func (g *UDPGen) Run(ctx context.Context) (UDPGenResult, error) {
	var res UDPGenResult
	if g.close {
		return res, errors.New("udpgen: run after Close")
	}
	cfg := &g.cfg
	g.sent.Store(0)
	done := ctx.Done()
	start := time.Now()
	var deadline time.Time
	if cfg.Duration > 0 {
		deadline = start.Add(cfg.Duration)
	}
	// Token bucket: tokens accrue at Rate per second up to burst.
	var tokens, burst float64
	if cfg.Rate > 0 {
		burst = max(float64(cfg.Batch), cfg.Rate*genBurst.Seconds())
		// One token to start: the first datagram goes at once and n take
		// (n-1)/Rate, with no opening burst to skew a short run.
		tokens = 1
	}
	last := start
	lastProgress := start
	var seq uint64
	var flow int
	backoff := time.Duration(0)

	finish := func(err error) (UDPGenResult, error) {
		res.Elapsed = time.Since(start)
		return res, err
	}
	for {
		select {
		case <-done:
			return finish(nil)
		default:
		}
		now := time.Now()
		if !deadline.IsZero() && !now.Before(deadline) {
			return finish(nil)
		}
		k := cfg.Batch
		if cfg.Count > 0 {
			if seq >= cfg.Count {
				return finish(nil)
			}
			k = int(min(uint64(k), cfg.Count-seq))
		}
		if cfg.Rate > 0 {
			tokens = min(burst, tokens+now.Sub(last).Seconds()*cfg.Rate)
			last = now
			if tokens < 1 {
				wait := time.Duration((1 - tokens) / cfg.Rate * float64(time.Second))
				if !deadline.IsZero() {
					wait = min(wait, deadline.Sub(now))
				}
				if !g.sleep(done, wait) {
					return finish(nil)
				}
				continue
			}
			k = min(k, int(tokens))
		}
		if cfg.Gate != nil {
			if err := cfg.Gate(seq); err != nil {
				return finish(err)
			}
		}
		// Fill k slots with datagrams seq..seq+k-1.
		var bytes uint64
		for i := 0; i < k; i++ {
			buf := g.bufs[i*g.slot : (i+1)*g.slot : (i+1)*g.slot]
			var p []byte
			switch {
			case cfg.Payload != nil:
				p = cfg.Payload(buf, seq+uint64(i))
			case cfg.Encoding == EncodeSized:
				p = PutSized(buf, seq+uint64(i))
			default:
				p = buf
				PutWide(p, seq+uint64(i))
			}
			g.iovs[i].Base = unsafe.SliceData(p)
			if len(p) == 0 {
				g.iovs[i].Base = &buf[0]
			}
			g.iovs[i].SetLen(len(p))
			bytes += uint64(len(p))
		}
		// Send them, resending what the kernel did not take.
		fd := g.fds[flow]
		flow = (flow + 1) % len(g.fds)
		off := 0
		for off < k {
			r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd),
				uintptr(unsafe.Pointer(&g.hdrs[off])), uintptr(k-off), 0, 0, 0)
			if errno == 0 {
				n := int(r)
				off += n
				res.Calls++
				lastProgress = time.Now()
				backoff = 0
				continue
			}
			switch errno {
			case unix.EINTR:
				continue
			case unix.EAGAIN, unix.ENOBUFS:
				res.Retries++
			case unix.ECONNREFUSED:
				res.Refused++
			default:
				res.Sent += uint64(off)
				g.sent.Store(res.Sent)
				return finish(fmt.Errorf("udpgen: can't send to %v: %w", cfg.Dst, errno))
			}
			if time.Since(lastProgress) > genStall {
				res.Sent += uint64(off)
				g.sent.Store(res.Sent)
				return finish(fmt.Errorf("udpgen: no datagram accepted by the kernel for %v (last error: %w): is the destination reachable?", genStall, errno))
			}
			// Back off: 20µs doubling to 5ms.
			backoff = min(max(2*backoff, 20*time.Microsecond), 5*time.Millisecond)
			if !g.sleep(done, backoff) {
				res.Sent += uint64(off)
				g.sent.Store(res.Sent)
				return finish(nil)
			}
		}
		seq += uint64(k)
		res.Sent += uint64(k)
		res.Bytes += bytes
		g.sent.Store(res.Sent)
		if cfg.Rate > 0 {
			tokens -= float64(k)
		}
	}
}

// sleep sleeps for d and reports false when done closed first.
func (g *UDPGen) sleep(done <-chan struct{}, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	if g.timer == nil {
		g.timer = time.NewTimer(d)
	} else {
		// Since Go 1.23 Reset needs no drain: a stopped or fired timer's
		// channel holds no stale value.
		g.timer.Reset(d)
	}
	select {
	case <-done:
		g.timer.Stop()
		return false
	case <-g.timer.C:
		return true
	}
}
