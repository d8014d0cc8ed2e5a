package kernel

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// BenchmarkReceive compares, on the test bed, receive loops fed by the
// sendmmsg generator at full rate from the Gen namespace with 22-byte
// payloads (64-byte IPv4 frames without FCS). One op is one datagram
// received; "pps" is datagrams received per second, "rx/sent" the share of
// what the generator sent that the loop read (the rest overflowed the
// socket), "rx-cpu-ns/op" the receiving thread's CPU time per datagram
// (steadier than wall time when other processes share the CPUs). With two
// CPUs allowed the generator is pinned to the first and the receiver to the
// second. The generator's CPU, which also runs the receive softirq, is
// usually the limit.
//
//   - kernel: this package, 1 worker, default addresses (an IPv4 and an IPv6
//     wildcard socket, so poll and the ready-set bookkeeping are exercised).
//   - kernel-v4: this package, 1 worker, one IPv4 socket.
//   - kernel-v4-nocoalesce: the same with Config.Coalesce off: the worker
//     sleeps in poll(2) as soon as its socket is drained.
//   - recvmmsg: one blocking socket read with recvmmsg(MSG_WAITFORONE) into
//     preallocated buffers, source addresses but no control messages.
//   - readfromudp: net.UDPConn.ReadFromUDP, one datagram per call.
//
// Run them alternately, one process per run (the figures in
// docs/BENCHMARKS.md came from this):
//
//	go test -c -o /tmp/kernel.test ./datapath/kernel
//	for i in 1 2 3 4 5 6 7 8; do
//	  for p in kernel kernel-v4 kernel-v4-nocoalesce recvmmsg readfromudp; do
//	    /tmp/kernel.test -test.run '^$' -test.bench "Receive/$p\$" -test.benchtime 1000000x
//	  done
//	  for p in kernel kernel-v4 kernel-v4-readts recvmmsg readfromudp; do
//	    /tmp/kernel.test -test.run '^$' -test.bench "Drain/$p\$" -test.benchtime 400000x
//	  done
//	done
func BenchmarkReceive(b *testing.B) {
	bed := newBed(b, testbed.Config{})
	const port = 6000
	dst := netip.AddrPortFrom(testbed.RxIPv4, port)
	b.Run("kernel", func(b *testing.B) {
		rs, _ := openRx(b, bed, Config{Ports: []uint16{port}, RcvBuf: 4 << 20, ForceRcvBuf: true})
		benchLoop(b, bed, dst, kernelLoop(rs[0]))
		b.ReportMetric(float64(rs[0].Stats().Packets)/float64(rs[0].Stats().Batches), "dgrams/batch")
	})
	b.Run("kernel-v4", func(b *testing.B) {
		rs, _ := openRx(b, bed, Config{Ports: []uint16{port}, Addrs: []netip.Addr{testbed.RxIPv4}, RcvBuf: 4 << 20, ForceRcvBuf: true})
		benchLoop(b, bed, dst, kernelLoop(rs[0]))
		b.ReportMetric(float64(rs[0].Stats().Packets)/float64(rs[0].Stats().Batches), "dgrams/batch")
	})
	b.Run("kernel-v4-nocoalesce", func(b *testing.B) {
		rs, _ := openRx(b, bed, Config{Ports: []uint16{port}, Addrs: []netip.Addr{testbed.RxIPv4}, RcvBuf: 4 << 20, ForceRcvBuf: true,
			Coalesce: -1})
		benchLoop(b, bed, dst, kernelLoop(rs[0]))
		b.ReportMetric(float64(rs[0].Stats().Packets)/float64(rs[0].Stats().Batches), "dgrams/batch")
	})
	b.Run("recvmmsg", func(b *testing.B) {
		benchLoop(b, bed, dst, plainRecvmmsgLoop(b, bed, dst, 4<<20))
	})
	b.Run("readfromudp", func(b *testing.B) {
		benchLoop(b, bed, dst, readFromUDPLoop(b, bed, dst, 4<<20))
	})
}

// A loop reads datagrams, adding each to *n, until *n >= atLeast.
type loop func(n *uint64, atLeast uint64)

// benchLoop runs the generator and rx until rx has read b.N datagrams.
func benchLoop(b *testing.B, bed *testbed.Bed, dst netip.AddrPort, rx loop) {
	b.ReportAllocs()
	cpus := testutil.CPUs(2)
	pin := func(i int) { pinTo(cpus, i) }

	g := newGen(b, bed, bench.UDPGenConfig{Dst: dst, Duration: 5 * time.Minute, Size: 22})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var res bench.UDPGenResult
	wg.Add(1)
	go func() {
		defer wg.Done()
		pin(0)
		res, _ = g.Run(ctx)
	}()

	// The receive loop runs on its own pinned goroutine; the benchmark's
	// goroutine only times it.
	started := make(chan struct{})
	done := make(chan struct{})
	var n uint64
	var sentAtStart uint64
	var cpu time.Duration
	go func() {
		defer close(done)
		pin(1)
		rx(&n, 1) // warm up: one datagram
		close(started)
		c0 := threadCPU()
		rx(&n, uint64(b.N)+1)
		cpu = threadCPU() - c0
	}()
	<-started
	sentAtStart = g.Sent()
	b.ResetTimer()
	start := time.Now()
	<-done
	elapsed := time.Since(start)
	b.StopTimer()
	sent := g.Sent() - sentAtStart
	cancel()
	wg.Wait()
	got := n - 1
	b.ReportMetric(float64(got)/elapsed.Seconds(), "pps")
	if sent > 0 {
		b.ReportMetric(float64(got)/float64(sent), "rx/sent")
	}
	if got > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(got), "rx-cpu-ns/op")
	}
	_ = res
}

// threadCPU returns the CPU time (user and system) the calling thread has
// used. Unlike wall time it does not grow while other processes hold the
// CPU, so it is the steadier figure on a shared machine.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func kernelLoop(r *Receiver) loop {
	batch := make([]datapath.Datagram, 64)
	return func(n *uint64, atLeast uint64) {
		var bytes int
		for *n < atLeast {
			k, err := r.Receive(batch)
			if err != nil {
				return
			}
			for i := range batch[:k] {
				bytes += len(batch[i].Payload)
			}
			*n += uint64(k)
		}
		sinkInt = bytes
	}
}

var sinkInt int

// plainRecvmmsgLoop is the baseline: one blocking socket, recvmmsg with
// MSG_WAITFORONE into preallocated buffers and source addresses.
func plainRecvmmsgLoop(b *testing.B, bed *testbed.Bed, dst netip.AddrPort, rcvbuf int) loop {
	var fd int
	if err := bed.Rx.Do(func() (err error) {
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf); err != nil {
			return err
		}
		// A timeout lets the loop see stop without traffic.
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		return unix.Bind(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()})
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(fd) })
	const vlen, size = 64, 2048
	hdrs := make([]unix.Mmsghdr, vlen)
	iovs := make([]unix.Iovec, vlen)
	bufs := make([]byte, vlen*size)
	names := make([]unix.RawSockaddrInet6, vlen)
	for i := range hdrs {
		iovs[i].Base = &bufs[i*size]
		iovs[i].SetLen(size)
		hdrs[i].Hdr.Iov = &iovs[i]
		hdrs[i].Hdr.SetIovlen(1)
		hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&names[i]))
	}
	return func(n *uint64, atLeast uint64) {
		var bytes int
		for *n < atLeast {
			for i := range hdrs {
				hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
			}
			r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), vlen, unix.MSG_WAITFORONE, 0, 0)
			if errno != 0 {
				if errno == unix.EAGAIN || errno == unix.EINTR {
					continue // SO_RCVTIMEO without traffic
				}
				return
			}
			for i := range int(r) {
				bytes += int(hdrs[i].Len)
			}
			*n += uint64(r)
		}
		sinkInt = bytes
	}
}

// readFromUDPLoop is the naive loop: one datagram and one *net.UDPAddr per
// call.
func readFromUDPLoop(b *testing.B, bed *testbed.Bed, dst netip.AddrPort, rcvbuf int) loop {
	var c *net.UDPConn
	if err := bed.Rx.Do(func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(dst))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	// SetReadBuffer is capped at net.core.rmem_max; force it, as the
	// other loops do.
	rc, err := c.SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf)
	})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 2048)
	return func(n *uint64, atLeast uint64) {
		var bytes int
		// One deadline for the whole run: a deadline per read would add a
		// timer update to every datagram of this loop and not the others.
		c.SetReadDeadline(time.Now().Add(2 * time.Minute))
		for *n < atLeast {
			k, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			bytes += k + len(from.IP)
			*n++
		}
		sinkInt = bytes
	}
}

// BenchmarkDrain measures what the receive loops cost on their own: the
// generator fills the socket (with the loop idle) with drainRound
// datagrams, then the loop reads them all, timed, and again until b.N have
// been read. Every read finds a full queue, so batches are full and no loop
// ever sleeps; "pps" is the drain rate, "rx-cpu-ns/op" the receiving
// thread's CPU time per datagram. kernel-v4-readts is kernel-v4 with
// Config.ReadTimestamps (no SO_TIMESTAMPNS). Unlike BenchmarkReceive, where the
// generator's CPU is the limit, this is bound by the receiver alone.
func BenchmarkDrain(b *testing.B) {
	bed := newBed(b, testbed.Config{})
	const port = 6001
	dst := netip.AddrPortFrom(testbed.RxIPv4, port)
	b.Run("kernel", func(b *testing.B) {
		rs, _ := openRx(b, bed, Config{Ports: []uint16{port}, RcvBuf: drainRcvBuf, ForceRcvBuf: true})
		drainLoop(b, bed, dst, kernelLoop(rs[0]))
		b.ReportMetric(float64(rs[0].Stats().Packets)/float64(rs[0].Stats().Batches), "dgrams/batch")
	})
	b.Run("kernel-v4", func(b *testing.B) {
		rs, _ := openRx(b, bed, Config{Ports: []uint16{port}, Addrs: []netip.Addr{testbed.RxIPv4}, RcvBuf: drainRcvBuf, ForceRcvBuf: true})
		drainLoop(b, bed, dst, kernelLoop(rs[0]))
		b.ReportMetric(float64(rs[0].Stats().Packets)/float64(rs[0].Stats().Batches), "dgrams/batch")
	})
	b.Run("kernel-v4-readts", func(b *testing.B) {
		rs, _ := openRx(b, bed, Config{Ports: []uint16{port}, Addrs: []netip.Addr{testbed.RxIPv4}, RcvBuf: drainRcvBuf, ForceRcvBuf: true,
			ReadTimestamps: true})
		drainLoop(b, bed, dst, kernelLoop(rs[0]))
		b.ReportMetric(float64(rs[0].Stats().Packets)/float64(rs[0].Stats().Batches), "dgrams/batch")
	})
	b.Run("recvmmsg", func(b *testing.B) {
		drainLoop(b, bed, dst, plainRecvmmsgLoop(b, bed, dst, drainRcvBuf))
	})
	b.Run("readfromudp", func(b *testing.B) {
		drainLoop(b, bed, dst, readFromUDPLoop(b, bed, dst, drainRcvBuf))
	})
}

const (
	drainRound = 20_000
	// drainRcvBuf holds a round with room to spare: a 22-byte datagram
	// takes about 1 KiB of receive buffer (its skb's truesize).
	drainRcvBuf = 64 << 20
)

func drainLoop(b *testing.B, bed *testbed.Bed, dst netip.AddrPort, rx loop) {
	b.ReportAllocs()
	cpus := testutil.CPUs(2)
	g := newGen(b, bed, bench.UDPGenConfig{Dst: dst, Count: drainRound, Size: 22})
	fill := make(chan int) // generator: send a round
	filled := make(chan error)
	drain := make(chan uint64) // receiver: read up to this total
	drained := make(chan time.Duration)
	go func() {
		pinTo(cpus, 0)
		for range fill {
			_, err := g.Run(context.Background())
			filled <- err
		}
	}()
	go func() {
		pinTo(cpus, 1)
		var n uint64
		for target := range drain {
			c0 := threadCPU()
			rx(&n, target)
			drained <- threadCPU() - c0
		}
	}()
	defer close(fill)
	defer close(drain)

	b.ResetTimer()
	var cpu time.Duration
	var elapsed time.Duration
	var total uint64
	for total < uint64(b.N) {
		b.StopTimer()
		fill <- 1
		if err := <-filled; err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Millisecond) // let the softirqs finish queueing
		b.StartTimer()
		start := time.Now()
		total += drainRound
		drain <- total
		cpu += <-drained
		elapsed += time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(float64(total)/elapsed.Seconds(), "pps")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(total), "rx-cpu-ns/op")
}

// pinTo locks the calling goroutine to its thread for good (the thread ends
// with the goroutine) and, when two CPUs are allowed, pins it to cpus[i].
func pinTo(cpus []int, i int) {
	runtime.LockOSThread()
	if len(cpus) >= 2 {
		var one unix.CPUSet
		one.Set(cpus[i])
		unix.SchedSetaffinity(0, &one)
	}
}
