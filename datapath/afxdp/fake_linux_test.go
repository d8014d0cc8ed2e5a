package afxdp

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/frames"
)

// fakeKernel is a Socket whose rings and UMEM are plain Go memory, with the
// kernel's half of the protocol played by the test: no syscalls, so the
// receive path can be tested and measured on its own.
type fakeKernel struct {
	s        *Socket
	fill     *fakeShared[uint64]
	rx       *fakeShared[unix.XDPDesc]
	headroom uint64
}

func newFakeKernel(t testing.TB, cfg Config, start uint32) *fakeKernel {
	t.Helper()
	cfg.Iface = "fake"
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	k := &fakeKernel{
		fill:     newFakeShared[uint64](cfg.FillRingSize, start),
		rx:       newFakeShared[unix.XDPDesc](cfg.RxRingSize, start),
		headroom: 256, // where copy mode puts a frame in its chunk
	}
	comp := newFakeShared[uint64](cfg.CompletionRingSize, start)
	res := &resources{fd: -1, efd: -1, umem: alignedBytes(cfg.NumFrames*cfg.FrameSize, 4096)}
	s := &Socket{ifname: "fake", frameSize: uint64(cfg.FrameSize), spin: cfg.SpinChecks, nap: cfg.Nap, spinFor: int64(cfg.SpinFor), res: res, umem: res.umem}
	for 1<<s.shift < cfg.FrameSize {
		s.shift++
	}
	s.initWait(cfg)
	s.fill = newProdRing(&k.fill.prod, &k.fill.cons, &k.fill.flags, k.fill.entries)
	s.comp = newConsRing(&comp.prod, &comp.cons, &comp.flags, comp.entries)
	s.rx = newConsRing(&k.rx.prod, &k.rx.cons, &k.rx.flags, k.rx.entries)
	s.initFrames(cfg)
	// Receive sleeps in poll() on the eventfd alone (fd -1 is ignored), so
	// that Close can wake it.
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	res.efd = efd
	s.pollfds = [2]unix.PollFd{{Fd: -1}, {Fd: int32(efd), Events: unix.POLLIN}}
	t.Cleanup(func() { s.Close() })
	k.s = s
	return k
}

// deliver plays the kernel receiving frames: it takes up to len(frames)
// addresses from the fill ring, copies frame i into the chunk, and posts an
// RX descriptor for it. It returns how many it delivered.
func (k *fakeKernel) deliver(frames [][]byte) int {
	fp := atomic.LoadUint32(&k.fill.prod)
	fc := k.fill.cons
	rc := atomic.LoadUint32(&k.rx.cons)
	rp := k.rx.prod
	n := min(fp-fc, uint32(len(k.rx.entries))-(rp-rc), uint32(len(frames)))
	fm, rm := uint32(len(k.fill.entries)-1), uint32(len(k.rx.entries)-1)
	for i := uint32(0); i < n; i++ {
		addr := k.fill.entries[(fc+i)&fm] + k.headroom
		l := copy(k.s.umem[addr:], frames[i])
		k.rx.entries[(rp+i)&rm] = unix.XDPDesc{Addr: addr, Len: uint32(l)}
	}
	atomic.StoreUint32(&k.fill.cons, fc+n)
	atomic.StoreUint32(&k.rx.prod, rp+n)
	return int(n)
}

// wake plays the kernel waking a receiver asleep in poll(): it makes the
// eventfd readable; unwake reads it back, so that the next poll() sleeps.
func (k *fakeKernel) wake() {
	one := [8]byte{1}
	unix.Write(k.s.res.efd, one[:])
}

func (k *fakeKernel) unwake() {
	var b [8]byte
	unix.Read(k.s.res.efd, b[:])
}

// waitFor waits until counter moves past from, failing after 5 s.
func waitFor(t testing.TB, counter *atomic.Uint64, from uint64, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for counter.Load() == from {
		if time.Now().After(deadline) {
			t.Fatalf("Receive did not %s", what)
		}
		time.Sleep(5 * time.Microsecond)
	}
}

// deliverInPlace is deliver without the copy and without writing
// descriptors: the benchmark pre-writes the RX ring once (prewriteRx) with
// descriptors for frames that already hold the frame, and the fake kernel
// only moves the indices, so that the benchmark measures our side. The
// addresses in the fill ring are consumed unread: nothing on our side
// checks that the kernel returns the frames it was given.
func (k *fakeKernel) deliverInPlace(n uint32) uint32 {
	fp := atomic.LoadUint32(&k.fill.prod)
	fc := k.fill.cons
	rc := atomic.LoadUint32(&k.rx.cons)
	rp := k.rx.prod
	n = min(fp-fc, uint32(len(k.rx.entries))-(rp-rc), n)
	atomic.StoreUint32(&k.fill.cons, fc+n)
	atomic.StoreUint32(&k.rx.prod, rp+n)
	return n
}

// prewriteRx writes frame f into every chunk and points RX descriptor i at
// chunk i.
func (k *fakeKernel) prewriteRx(f []byte) {
	for i := range k.rx.entries {
		addr := uint64(i)*k.s.frameSize + k.headroom
		copy(k.s.umem[addr:], f)
		k.rx.entries[i] = unix.XDPDesc{Addr: addr, Len: uint32(len(f))}
	}
}

var (
	fsrc = netip.MustParseAddrPort("198.18.0.1:4000")
	fdst = netip.MustParseAddrPort("198.18.0.2:9000")
)

// The receive path on fake memory, across the index wrap, with malformed
// frames among good ones, small batches and releases in every order: each
// good frame is delivered once, intact; every frame goes back to the fill
// ring; nothing leaks.
func TestReceiveOnFakeKernel(t *testing.T) {
	for _, start := range starts {
		k := newFakeKernel(t, Config{NumFrames: 64, FillRingSize: 32, RxRingSize: 16, SpinChecks: 1}, start)
		s := k.s
		if got := k.fill.prod - start; got != 32 {
			t.Fatalf("the fill ring got %d frames at start, want it full (32)", got)
		}
		tr := bench.NewTracker(5000)
		buf := make([]byte, bench.SizedSpan)
		batch := make([]datapath.Datagram, 7)
		malformed := 0
		for seq := uint64(0); seq < 5000; {
			var fs [][]byte
			for j := 0; j < 5 && seq < 5000; j++ {
				if seq%97 == 13 && j == 0 {
					fs = append(fs, frames.ARP(nil, fsrc.Addr(), fdst.Addr()))
					malformed++
				}
				fs = append(fs, frames.Build(frames.Spec{Src: fsrc, Dst: fdst, Payload: bench.PutSized(buf, seq)}))
				seq++
			}
			if got := k.deliver(fs); got != len(fs) {
				t.Fatalf("fake kernel delivered %d of %d: the fill ring ran dry (frames leak)", got, len(fs))
			}
			for k.rx.prod != atomic.LoadUint32(&k.rx.cons) {
				n, err := s.Receive(batch)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range batch[:n] {
					if d.Src != fsrc || d.Dst != fdst || d.Handle%uint64(s.FrameSize()) != 0 {
						t.Fatalf("datagram %+v", d)
					}
					i, ok := bench.DecodeSized(d.Payload)
					tr.Mark(i, ok)
				}
				// Release some explicitly, some twice, leave the rest to
				// the next Receive.
				switch seq % 3 {
				case 0:
					s.Release(batch[:n])
					s.Release(batch[:n])
				case 1:
					s.Release(batch[:n/2])
				}
			}
		}
		s.Release(batch) // may hold the last batch
		if err := tr.Check(); err != nil {
			t.Fatal(err)
		}
		st := s.Stats()
		if st.Packets != 5000 || st.Malformed != uint64(malformed) {
			t.Errorf("stats %+v, want 5000 packets, %d malformed", st, malformed)
		}
		// Every receive frame is in the fill ring or free: none lost.
		inFill := k.fill.prod - k.fill.cons
		if int(inFill)+len(s.rxFree) != 64 {
			t.Errorf("%d frames in the fill ring + %d free, want all 64", inFill, len(s.rxFree))
		}
	}
}

// The nap shrinks by a quarter after one that let the RX ring fill past
// three quarters, grows by an eighth after one that left it under half
// full, stays between, never leaves [minNap, Config.Nap], and starts again
// from Config.Nap after a sleep in poll(). The batch is smaller than the
// backlogs, so that the backlog counts what stays in the ring too.
func TestNapAdaptsToBacklog(t *testing.T) {
	const nap = time.Millisecond
	k := newFakeKernel(t, Config{NumFrames: 256, RxRingSize: 64, FillRingSize: 128, SpinChecks: 1, Nap: nap}, 0)
	s := k.s
	// A test goroutine can lose the CPU for a while on a loaded machine:
	// naps go on for 64 ms without a frame, and any backlog makes the
	// traffic dense, so that Receive does not go to poll() between steps.
	s.napQuiet, s.denseWant, s.rateWindow = int64(64*nap), 1, 0
	burst := sizedBursts()
	batch := make([]datapath.Datagram, 16)
	takeAll := func(got, n int) {
		t.Helper()
		for got < n {
			m, err := s.Receive(batch)
			if err != nil || m == 0 {
				t.Fatalf("Receive: %d, %v with %d of %d taken", m, err, got, n)
			}
			got += m
		}
	}
	k.deliver(burst(1))
	if n, err := s.Receive(batch); n != 1 || err != nil {
		t.Fatalf("Receive: %d, %v", n, err)
	}
	// Sparse so far: Receive sleeps in poll(); a burst woken from there
	// makes the traffic dense and leaves the nap at Config.Nap.
	polls := s.polls.Load()
	done := make(chan int, 1)
	go func() {
		got, _ := s.Receive(batch)
		done <- got
	}()
	waitFor(t, &s.polls, polls, "sleep in poll()")
	k.deliver(burst(50))
	k.wake()
	takeAll(<-done, 50)
	k.unwake()
	if got := s.LoopStats().Nap; got != nap || s.naps.Load() != 0 {
		t.Fatalf("after a poll() the nap is %v with %d naps, want Config.Nap %v and none", got, s.naps.Load(), nap)
	}
	// afterNap waits until Receive naps, delivers n frames, takes them all
	// and returns the next nap's length.
	afterNap := func(n int) time.Duration {
		t.Helper()
		naps, polls := s.naps.Load(), s.polls.Load()
		done := make(chan int, 1)
		go func() {
			got, _ := s.Receive(batch)
			done <- got
		}()
		waitFor(t, &s.naps, naps, "nap")
		k.deliver(burst(n))
		var got int
		select {
		case got = <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("a burst that arrived during a nap was not picked up")
		}
		if s.polls.Load() != polls {
			t.Fatalf("Receive went to poll() between two steps")
		}
		if want := min(n, len(batch)); got != want {
			t.Fatalf("Receive after a nap took %d frames, want %d", got, want)
		}
		takeAll(got, n)
		return s.LoopStats().Nap
	}
	want := nap
	for i, c := range []struct {
		backlog int
		next    func(time.Duration) time.Duration
	}{
		{50, func(d time.Duration) time.Duration { return d - d/4 }}, // > 48 of 64: shrink
		{50, func(d time.Duration) time.Duration { return d - d/4 }},
		{40, func(d time.Duration) time.Duration { return d }},           // between: keep
		{20, func(d time.Duration) time.Duration { return d + d/8 + 1 }}, // < 32: grow
	} {
		want = c.next(want)
		if got := afterNap(c.backlog); got != want {
			t.Fatalf("step %d: backlog %d: next nap %v, want %v", i, c.backlog, got, want)
		}
	}
	for range 10 {
		afterNap(20)
	}
	if got := s.LoopStats().Nap; got != nap {
		t.Errorf("after ten light naps the nap is %v, want back at Config.Nap %v", got, nap)
	}
	for range 30 {
		afterNap(60)
	}
	if got := s.LoopStats().Nap; got != minNap {
		t.Errorf("after thirty floods the nap is %v, want minNap %v", got, minNap)
	}
	// Idle until poll(): the nap starts again from Config.Nap.
	polls = s.polls.Load()
	go func() {
		s.Receive(batch)
		close(done)
	}()
	waitFor(t, &s.polls, polls, "sleep in poll() when idle")
	if got := s.LoopStats().Nap; got != nap {
		t.Errorf("after going to poll() the nap is %v, want Config.Nap %v", got, nap)
	}
	// The fake kernel wakes no poll(); Close does.
	s.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end poll()")
	}
}

// While traffic is dense, an empty ring makes Receive nap on a timer and
// look again, so a frame that arrives meanwhile is picked up without any
// wakeup from the kernel (the fake kernel gives none); once naps have found
// nothing for napQuiet it sleeps in poll(). napQuiet is 64 naps of 1 ms
// here, which a test goroutine descheduled on a loaded machine still meets.
func TestReceiveNapsWhileTrafficIsDense(t *testing.T) {
	const nap = time.Millisecond
	k := newFakeKernel(t, Config{NumFrames: 256, RxRingSize: 64, SpinChecks: 1, Nap: nap}, 0)
	s := k.s
	s.napQuiet, s.denseWant, s.rateWindow = int64(64*nap), 1, 0
	burst := sizedBursts()
	batch := make([]datapath.Datagram, 64)
	type result struct {
		n   int
		err error
	}
	res := make(chan result)
	receive := func() {
		n, err := s.Receive(batch)
		res <- result{n, err}
	}
	// Dense: a burst found after a sleep in poll().
	go receive()
	waitFor(t, &s.polls, 0, "sleep in poll() before any traffic")
	k.deliver(burst(32))
	k.wake()
	if r := <-res; r.n != 32 || r.err != nil {
		t.Fatalf("Receive: %d, %v", r.n, r.err)
	}
	k.unwake()
	go receive()
	waitFor(t, &s.naps, 0, "nap while traffic is dense")
	if p := s.polls.Load(); p != 1 {
		t.Fatalf("%d polls, want the first one only: Receive should nap while traffic is dense", p)
	}
	k.deliver(burst(32))
	select {
	case r := <-res:
		if r.n != 32 || r.err != nil {
			t.Fatalf("Receive after a nap: %d, %v", r.n, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("frames that arrived during a nap were not picked up")
	}
	if p := s.polls.Load(); p != 1 {
		t.Errorf("%d polls while traffic was dense, want the first one only", p)
	}
	// Now idle: naps for a while, then poll() until Close.
	naps0 := s.naps.Load()
	go receive()
	waitFor(t, &s.polls, 1, "sleep in poll() when idle")
	naps := s.naps.Load() - naps0
	// napQuiet is 64 naps; a nap that oversleeps (timer slack, a busy
	// machine) makes fewer.
	if naps < 2 || naps > 66 {
		t.Errorf("%d naps before poll(), want up to 64", naps)
	}
	time.Sleep(20 * time.Millisecond)
	if n := s.naps.Load() - naps0; n != naps {
		t.Errorf("%d naps while in poll(), want none", n-naps)
	}
	s.Close()
	if r := <-res; !errors.Is(r.err, net.ErrClosed) {
		t.Fatalf("Receive: %v, want net.ErrClosed", r.err)
	}
}

// The rate measured over the sleeps decides between napping and poll():
// traffic becomes dense at 1.28 Mpps (128 datagrams per 100µs nap, the
// default ring), stays dense through a pause and down to a quarter of
// that, and once sparse needs the dense rate again.
func TestDenseTrafficHysteresis(t *testing.T) {
	s := newFakeKernel(t, Config{}, 0).s
	const nap = int64(DefaultNap)
	// sample feeds n samples, each of sleeps of one nap's length that find
	// per datagrams each, over the sample's window (four naps).
	sample := func(n int, per uint32) {
		for range n {
			for range 4 {
				s.measureRate(per, nap)
			}
		}
	}
	steps := []struct {
		what  string
		n     int
		per   uint32
		dense bool
	}{
		{"1 Mpps from the start", 20, 100, false},
		{"2 Mpps", 6, 200, true},
		{"one pause of 2 ms", 0, 0, true},
		{"1 Mpps after 2", 20, 100, true},
		{"400 kpps", 20, 40, true},
		{"100 kpps", 20, 10, false},
		{"1 Mpps after 100 kpps", 20, 100, false},
	}
	for _, c := range steps {
		if c.what == "one pause of 2 ms" {
			s.measureRate(10, 20*nap) // a window of its own
		}
		sample(c.n, c.per)
		if s.dense != c.dense {
			t.Errorf("%s: dense %v, want %v (rate %d per nap)", c.what, s.dense, c.dense, s.rate/rateOne)
		}
	}
}

// Sparse traffic, one frame per sleep, is waited for in poll(), where the
// kernel's wakeup comes as soon as a frame does: Receive never naps on it,
// with the default nap and ring.
func TestReceivePollsWhileTrafficIsSparse(t *testing.T) {
	k := newFakeKernel(t, Config{NumFrames: 4096}, 0)
	s := k.s
	buf := make([]byte, bench.SizedSpan)
	batch := make([]datapath.Datagram, 64)
	type result struct {
		n   int
		err error
	}
	res := make(chan result)
	for i := range 20 {
		polls := s.polls.Load()
		go func() {
			n, err := s.Receive(batch)
			res <- result{n, err}
		}()
		waitFor(t, &s.polls, polls, "sleep in poll()")
		time.Sleep(200 * time.Microsecond) // one frame per 200µs or more: 5k/s at most
		k.deliver([][]byte{frames.Build(frames.Spec{Src: fsrc, Dst: fdst, Payload: bench.PutSized(buf, uint64(i))})})
		k.wake()
		if r := <-res; r.n != 1 || r.err != nil {
			t.Fatalf("Receive: %d, %v", r.n, r.err)
		}
		k.unwake()
	}
	if n := s.naps.Load(); n != 0 {
		t.Errorf("%d naps on sparse traffic, want none", n)
	}
}

// With SpinFor, Receive neither naps nor polls while traffic is recent: a
// frame delivered while it checks is taken with no wakeup; SpinFor after
// the last frame it sleeps in poll().
func TestReceiveSpinsForLowLatency(t *testing.T) {
	const spinFor = 50 * time.Millisecond
	k := newFakeKernel(t, Config{NumFrames: 256, SpinFor: spinFor}, 0)
	s := k.s
	buf := make([]byte, bench.SizedSpan)
	batch := make([]datapath.Datagram, 64)
	frame := func(seq uint64) [][]byte {
		return [][]byte{frames.Build(frames.Spec{Src: fsrc, Dst: fdst, Payload: bench.PutSized(buf, seq)})}
	}
	type result struct {
		n   int
		err error
	}
	res := make(chan result)
	receive := func() {
		n, err := s.Receive(batch)
		res <- result{n, err}
	}
	go receive()
	waitFor(t, &s.polls, 0, "sleep in poll() before any traffic")
	k.deliver(frame(0))
	k.wake()
	if r := <-res; r.n != 1 || r.err != nil {
		t.Fatalf("Receive: %d, %v", r.n, r.err)
	}
	k.unwake()
	for i := range 5 {
		go receive()
		time.Sleep(2 * time.Millisecond)
		k.deliver(frame(uint64(i + 1)))
		select {
		case r := <-res:
			if r.n != 1 || r.err != nil {
				t.Fatalf("Receive: %d, %v", r.n, r.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a frame that arrived while Receive spun was not picked up")
		}
	}
	if p, n := s.polls.Load(), s.naps.Load(); p != 1 || n != 0 {
		t.Errorf("%d polls and %d naps while traffic was recent, want the first poll only", p, n)
	}
	start := time.Now()
	go receive()
	waitFor(t, &s.polls, 1, "sleep in poll() when idle")
	if d := time.Since(start); d > 5*spinFor {
		t.Logf("went to poll() %v after the last frame (SpinFor %v): a loaded machine", d, spinFor)
	}
	if n := s.naps.Load(); n != 0 {
		t.Errorf("%d naps with SpinFor, want none", n)
	}
	// The wall clock stepped back an hour since the last frame (NTP after
	// boot, a VM resumed): idle, the receiver goes to poll() as before,
	// instead of spinning a core until the clock catches up.
	k.deliver(frame(6))
	k.wake()
	if r := <-res; r.n != 1 || r.err != nil {
		t.Fatalf("Receive: %d, %v", r.n, r.err)
	}
	k.unwake()
	s.lastRx += int64(time.Hour)
	polls := s.polls.Load()
	go receive()
	waitFor(t, &s.polls, polls, "sleep in poll() when idle after the wall clock stepped back")
	s.Close()
	if r := <-res; !errors.Is(r.err, net.ErrClosed) {
		t.Fatalf("Receive: %v, want net.ErrClosed", r.err)
	}
}

// BenchmarkDrain measures our side of the receive path on fake memory: the
// fake kernel posts descriptors and Receive drains them, walks each frame's
// headers, fills the batch and hands back the previous batch. One op is one
// datagram; batches of 64.
//
// "warm": the descriptors are written once and the fake kernel only moves
// the ring indices, over 128 frames whose headers stay in cache; this is
// our code's own cost. "copy": the fake kernel takes frames from the fill
// ring and writes each 64-byte frame into its chunk, as copy mode does, in
// a 4096-frame UMEM (its cost is in the figure). "cold": like copy but
// without the write, so every header is a cache miss (the 2 KB stride maps
// them all to the same few cache sets), as when the frames come from
// another core's cache.
func BenchmarkDrain(b *testing.B) {
	for _, c := range []struct {
		name string
		spec frames.Spec
	}{
		{"ipv4", frames.Spec{Src: fsrc, Dst: fdst, Payload: make([]byte, 18)}},
		{"ipv6", frames.Spec{Src: netip.MustParseAddrPort("[2001:db8::1]:4000"), Dst: netip.MustParseAddrPort("[2001:db8::2]:9000"), Payload: make([]byte, 18)}},
	} {
		for _, mode := range []string{"warm", "copy", "cold"} {
			b.Run(c.name+"/"+mode, func(b *testing.B) {
				const batchSize = 64
				nf := 4096
				if mode == "warm" {
					nf = 256
				}
				k := newFakeKernel(b, Config{NumFrames: nf, FillRingSize: nf / 2, RxRingSize: nf / 2}, 0)
				f := frames.Build(c.spec)
				for a := 0; a < len(k.s.umem); a += k.s.FrameSize() {
					copy(k.s.umem[a+int(k.headroom):], f)
				}
				if mode == "warm" {
					k.prewriteRx(f)
				}
				fs := make([][]byte, batchSize)
				for i := range fs {
					fs[i] = f
				}
				batch := make([]datapath.Datagram, batchSize)
				b.ReportAllocs()
				b.ResetTimer()
				for done := 0; done < b.N; {
					switch mode {
					case "warm":
						k.deliverInPlace(uint32(batchSize))
					case "copy":
						k.deliver(fs)
					case "cold":
						k.deliverCold(uint32(batchSize), uint32(len(f)))
					}
					n, err := k.s.Receive(batch)
					if err != nil || n == 0 {
						b.Fatal(n, err)
					}
					done += n
				}
			})
		}
	}
}

// deliverCold posts descriptors for the frames the fill ring gives, which
// already hold the frame (written long ago).
func (k *fakeKernel) deliverCold(n uint32, flen uint32) uint32 {
	fp := atomic.LoadUint32(&k.fill.prod)
	fc := k.fill.cons
	rc := atomic.LoadUint32(&k.rx.cons)
	rp := k.rx.prod
	n = min(fp-fc, uint32(len(k.rx.entries))-(rp-rc), n)
	fm, rm := uint32(len(k.fill.entries)-1), uint32(len(k.rx.entries)-1)
	for i := uint32(0); i < n; i++ {
		k.rx.entries[(rp+i)&rm] = unix.XDPDesc{Addr: k.fill.entries[(fc+i)&fm] + k.headroom, Len: flen}
	}
	atomic.StoreUint32(&k.fill.cons, fc+n)
	atomic.StoreUint32(&k.rx.prod, rp+n)
	return n
}

// FuzzDrainWalk holds the drain loop's written-out walk (untagged IPv4 and
// IPv6) to datapath.ParseFrame: for any frame, drain delivers exactly what
// ParseFrame produces, or counts it malformed exactly when ParseFrame
// refuses it.
func FuzzDrainWalk(f *testing.F) {
	q := frames.VLAN{TPID: frames.EtherTypeVLAN, ID: 5}
	s6 := netip.MustParseAddrPort("[2001:db8::1]:4000")
	d6 := netip.MustParseAddrPort("[2001:db8::2]:9000")
	for _, s := range []frames.Spec{
		{Src: fsrc, Dst: fdst},
		{Src: fsrc, Dst: fdst, Payload: []byte("x")},
		{Src: fsrc, Dst: fdst, Payload: make([]byte, 100)},
		{Src: fsrc, Dst: fdst, Payload: make([]byte, 30), IPOptions: []byte{1, 1, 1, 1}},
		{Src: fsrc, Dst: fdst, Payload: make([]byte, 30), VLANs: []frames.VLAN{q}},
		{Src: fsrc, Dst: fdst, Payload: make([]byte, 30), MoreFrags: true},
		{Src: s6, Dst: d6},
		{Src: s6, Dst: d6, Payload: []byte("hello")},
		{Src: s6, Dst: d6, Payload: make([]byte, 100), HopByHop: true},
		{Src: s6, Dst: d6, Payload: make([]byte, 30), VLANs: []frames.VLAN{q, q}},
		{Src: s6, Dst: d6, Payload: make([]byte, 30), Proto: frames.ProtoTCP},
	} {
		f.Add(frames.Build(s))
	}
	f.Add(frames.ARP(nil, fsrc.Addr(), fdst.Addr()))
	k := newFakeKernel(f, Config{NumFrames: 16, FillRingSize: 8, RxRingSize: 8}, 0)
	batch := make([]datapath.Datagram, 4)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > k.s.FrameSize()-int(k.headroom) {
			return
		}
		s := k.s
		s.releaseLast()
		s.refill()
		if k.deliver([][]byte{frame}) != 1 {
			t.Fatal("the fake kernel has no frame to deliver into: frames leak")
		}
		bad := s.malformed.Load()
		n := s.drain(batch)
		var want datapath.Datagram
		err := datapath.ParseFrame(frame, &want)
		if err != nil {
			if n != 0 || s.malformed.Load() != bad+1 {
				t.Fatalf("ParseFrame: %v, but drain delivered %d datagrams and counted %d malformed", err, n, s.malformed.Load()-bad)
			}
			return
		}
		if n != 1 {
			t.Fatalf("ParseFrame accepted the frame, drain delivered %d", n)
		}
		got := batch[0]
		off := func(d datapath.Datagram) int {
			if len(d.Payload) == 0 {
				return len(d.Frame) - cap(d.Payload[:0:0]) // only lengths compare
			}
			return len(d.Frame) - len(d.Frame[int(uintptrOff(d.Frame, d.Payload)):])
		}
		if got.Src != want.Src || got.Dst != want.Dst || got.NVLAN != want.NVLAN || got.VLAN != want.VLAN ||
			len(got.Frame) != len(want.Frame) || !bytes.Equal(got.Payload, want.Payload) ||
			len(got.Payload) != cap(got.Payload) || off(got) != off(want) {
			t.Fatalf("drain delivered\n%+v\nParseFrame gives\n%+v", got, want)
		}
	})
}

// uintptrOff is the offset of p's first byte in frame (p is a slice of it).
func uintptrOff(frame, p []byte) uintptr {
	return uintptr(unsafe.Pointer(unsafe.SliceData(p))) - uintptr(unsafe.Pointer(unsafe.SliceData(frame)))
}

// sizedBursts returns a function that builds the next n frames of fsrc ->
// fdst, their payloads numbered on from 0.
func sizedBursts() func(n int) [][]byte {
	buf := make([]byte, bench.SizedSpan)
	seq := uint64(0)
	return func(n int) [][]byte {
		var fs [][]byte
		for range n {
			fs = append(fs, frames.Build(frames.Spec{Src: fsrc, Dst: fdst, Payload: bench.PutSized(buf, seq)}))
			seq++
		}
		return fs
	}
}
