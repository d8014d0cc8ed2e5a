package measure

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath/afxdp"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/tuning"
)

// latSender is pktbench latency's sender: exactly paced (bench.Pacer,
// absolute deadlines), one stream (0), its datagrams stamped with the time
// just before the call that hands them to the kernel: SubmitTx, whose
// sendto sends in copy mode, or sendmmsg. A batch of datagrams that are due
// together (only when the sender is behind, or the interval is shorter than
// a send) shares one reading.
type latSender struct {
	kind           string // GenAFXDP or GenSendmmsg
	side           *testbed.Side
	iface          Iface
	srcMAC, dstMAC net.HardwareAddr
	src, dst       netip.AddrPort
	size           int // frame bytes
	rate           float64
	duration       time.Duration
	cpu            int
}

const (
	latBatch = 64
	// latWarm datagrams of stream latWarmStream go first, at the run's
	// rate, unmeasured: the first datagrams of a run find cold caches, a
	// neighbour to resolve (sendmmsg) and a receiver that has never
	// slept.
	latWarm       = 20
	latWarmStream = 1
	// latStall ends a run whose sends made no progress for this long.
	latStall = 5 * time.Second
)

// run sends latWarm datagrams of stream latWarmStream, then rate x
// duration datagrams of stream 0, on a thread of its own in the side's
// namespace, pinned to the sender's CPU; it gives up at twice the duration
// plus a second when it can't keep the rate. It returns how many of stream
// 0 went out and how long that took.
func (s latSender) run(ctx context.Context) (sent uint64, elapsed time.Duration, err error) {
	type result struct {
		sent    uint64
		elapsed time.Duration
		err     error
	}
	res := make(chan result, 1)
	go func() {
		// Never unlocked: the thread is discarded with its namespace and
		// pinning.
		var r result
		defer func() { res <- r }()
		if r.err = nsEnter(s.side); r.err != nil {
			return
		}
		if r.err = tuning.PinThread(s.cpu); r.err != nil {
			return
		}
		if r.err = blockAsyncSignals(); r.err != nil {
			r.err = fmt.Errorf("can't block signals on the sender's thread: %w", r.err)
			return
		}
		send := s.afxdp
		if s.kind == GenSendmmsg {
			send = s.sendmmsg
		}
		warm := s
		warm.duration = time.Duration(float64(latWarm) / s.rate * float64(time.Second))
		if _, _, r.err = send(ctx, latWarmStream, warm.total()); r.err != nil {
			r.err = fmt.Errorf("warming up: %w", r.err)
			return
		}
		r.sent, r.elapsed, r.err = send(ctx, 0, s.total())
	}()
	r := <-res
	return r.sent, r.elapsed, r.err
}

// total is the number of datagrams of a run.
func (s latSender) total() uint64 { return max(1, uint64(s.rate*s.duration.Seconds())) }

// stopper says when to stop waiting: ctx done, or past the run's bound.
func (s latSender) stopper(ctx context.Context, start time.Time) func() bool {
	limit := 2*s.duration + time.Second
	return func() bool { return ctx.Err() != nil || time.Since(start) > limit }
}

func (s latSender) afxdp(ctx context.Context, stream uint16, total uint64) (uint64, time.Duration, error) {
	tpl, err := bench.BuildTemplate(bench.FrameSpec{SrcMAC: s.srcMAC, DstMAC: s.dstMAC, Src: s.src, Dst: s.dst, Size: s.size})
	if err != nil {
		return 0, 0, err
	}
	p, err := afxdp.Open(afxdp.Config{Ifindex: s.iface.Index, Queues: []int{0}, TxOnly: true}, nil)
	if err != nil {
		return 0, 0, err
	}
	defer p.Close()
	sock := p.Sockets()[0]
	bufs := make([][]byte, latBatch)
	pace := bench.NewPacer(s.rate)
	start := time.Now()
	stop := s.stopper(ctx, start)
	progress := start
	for pace.Next() < total && !stop() {
		k := pace.Wait(int(min(latBatch, total-pace.Next())), stop)
		if k == 0 {
			break
		}
		n, err := sock.ReserveTx(bufs[:k])
		if err != nil {
			return pace.Next(), time.Since(start), err
		}
		if n == 0 {
			// Every send frame is in flight: let the kernel send some.
			if err := sock.Kick(); err != nil {
				return pace.Next(), time.Since(start), err
			}
			if time.Since(progress) > latStall {
				return pace.Next(), time.Since(start), fmt.Errorf("the AF_XDP TX ring of %s made no progress for %v", s.iface.Name, latStall)
			}
			runtime.Gosched()
			continue
		}
		for i := range n {
			l := tpl.Stamp(bufs[i], bench.StreamSeq(stream, pace.Next()+uint64(i)), s.src.Port())
			bufs[i] = bufs[i][:l]
		}
		now := bench.MonoNow()
		for i := range n {
			tpl.StampTime(bufs[i], now)
		}
		// In copy mode the kernel sends inside SubmitTx's sendto.
		if err := sock.SubmitTx(bufs[:n]); err != nil {
			return pace.Next(), time.Since(start), err
		}
		pace.Sent(n)
		progress = time.Now()
	}
	elapsed := time.Since(start)
	if err := sock.FlushTx(time.Second); err != nil {
		return pace.Next(), elapsed, err
	}
	return pace.Next(), elapsed, nil
}

func (s latSender) sendmmsg(ctx context.Context, stream uint16, total uint64) (uint64, time.Duration, error) {
	hl := bench.HeaderLen(!s.dst.Addr().Is4())
	family := unix.AF_INET
	if !s.dst.Addr().Is4() {
		family = unix.AF_INET6
	}
	size := s.size - hl
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return 0, 0, fmt.Errorf("can't open the sender's UDP socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, sockaddrOf(s.src)); err != nil {
		return 0, 0, fmt.Errorf("can't bind the sender's socket to %v: %w", s.src, err)
	}
	if err := unix.Connect(fd, sockaddrOf(s.dst)); err != nil {
		return 0, 0, fmt.Errorf("can't connect the sender's socket to %v: %w", s.dst, err)
	}
	bufs := make([]byte, latBatch*size)
	iovs := make([]unix.Iovec, latBatch)
	hdrs := make([]unix.Mmsghdr, latBatch)
	for i := range hdrs {
		iovs[i].Base = &bufs[i*size]
		iovs[i].SetLen(size)
		hdrs[i].Hdr.Iov = &iovs[i]
		hdrs[i].Hdr.SetIovlen(1)
	}
	pace := bench.NewPacer(s.rate)
	start := time.Now()
	stop := s.stopper(ctx, start)
	progress := start
	for pace.Next() < total && !stop() {
		k := pace.Wait(int(min(latBatch, total-pace.Next())), stop)
		if k == 0 {
			break
		}
		for i := range k {
			bench.PutWide(bufs[i*size:], bench.StreamSeq(stream, pace.Next()+uint64(i)))
		}
		now := bench.MonoNow()
		for i := range k {
			bench.PutStamp(bufs[i*size:], now)
		}
		// A blocking socket: sendmmsg returns short only on an error after
		// the first datagram; ENOBUFS (the veth's queue) is retried.
		off := 0
		for off < k {
			r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[off])), uintptr(k-off), 0, 0, 0)
			switch errno {
			case 0:
				off += int(r)
				progress = time.Now()
				continue
			case unix.EINTR, unix.EAGAIN, unix.ENOBUFS, unix.ECONNREFUSED:
				if time.Since(progress) > latStall {
					return pace.Next() + uint64(off), time.Since(start), fmt.Errorf("no datagram to %v accepted for %v: %w", s.dst, latStall, errno)
				}
				runtime.Gosched()
				continue
			}
			return pace.Next() + uint64(off), time.Since(start), fmt.Errorf("can't send to %v: %w", s.dst, errno)
		}
		pace.Sent(k)
	}
	return pace.Next(), time.Since(start), nil
}

func sockaddrOf(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}
