package afxdp

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// Close while datagrams pour in, on two queues: every Receive returns
// net.ErrClosed promptly, no goroutine is left, no descriptor leaks, and
// the program's slots are emptied.
func TestCloseWhileTrafficFlows(t *testing.T) {
	b := bedT(t, 2)
	prog := programT(t, b)
	var flows []*flow
	for range 4 {
		flows = append(flows, dialT(t, b, netip.AddrPortFrom(testbed.RxIPv4, testPort)))
	}
	// Everything the test makes besides the path is open: what Close must
	// give back is measured against this.
	fds := testutil.OpenFDs(t)

	reg := &recordingRegistrar{XSKRegistrar: prog}
	path := openT(t, b, Config{NumFrames: 256, FillRingSize: 128, RxRingSize: 128}, reg)
	if got := reg.live(); len(got) != 2 {
		t.Fatalf("registered queues %v, want 0 and 1", got)
	}
	g := &gate{window: 1 << 62, stall: time.Minute} // unpaced: a flood
	var rwg sync.WaitGroup
	rerr := make([]error, len(path.Sockets()))
	returnedAt := make([]time.Time, len(path.Sockets()))
	for i, s := range path.Sockets() {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			rerr[i] = receiveAll(s, 32, func(*datapath.Datagram) { g.received.Add(1) })
			returnedAt[i] = time.Now()
		}()
	}
	var swg sync.WaitGroup
	for i, f := range flows {
		swg.Add(1)
		go func() {
			defer swg.Done()
			pinThread(i)
			sendSized(f, g, 0, 1, 1<<40) // until stopped; errors after Close are expected
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for g.received.Load() < 20_000 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if g.received.Load() == 0 {
		t.Fatal("nothing received in 20 s")
	}
	start := time.Now()
	if err := path.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	closeTook := time.Since(start)
	rwg.Wait()
	returned := make([]time.Duration, len(returnedAt))
	for i, err := range rerr {
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("receiver %d: %v, want net.ErrClosed", i, err)
		}
		returned[i] = returnedAt[i].Sub(start)
		if returned[i] > time.Second {
			t.Errorf("receiver %d returned %v after Close", i, returned[i])
		}
	}
	t.Logf("%d datagrams received; receivers returned %v after Close began; Close took %v", g.received.Load(), returned, closeTook)
	g.stop.Store(true)
	swg.Wait()

	if got := testutil.OpenFDs(t); got != fds {
		t.Errorf("%d descriptors open after Close, %d before Open", got, fds)
	}
	if err := path.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, s := range path.Sockets() {
		if _, err := s.Receive(make([]datapath.Datagram, 1)); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Receive after Close: %v", err)
		}
		s.Release(nil) // harmless
	}
	if got := reg.live(); len(got) != 0 {
		t.Errorf("queues %v still registered after Close", got)
	}
	goleak.VerifyNone(t)
}

// An idle receiver sleeps in poll(): its thread uses almost no CPU, and
// Close wakes it.
func TestIdleReceiverSleeps(t *testing.T) {
	b := bedT(t, 1)
	prog := programT(t, b)
	path := openT(t, b, Config{NumFrames: 64}, prog)
	s := path.Sockets()[0]
	type result struct {
		cpu time.Duration
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var r0, r1 unix.Rusage
		unix.Getrusage(unix.RUSAGE_THREAD, &r0)
		_, err := s.Receive(make([]datapath.Datagram, 8))
		unix.Getrusage(unix.RUSAGE_THREAD, &r1)
		cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
		done <- result{cpu, err}
	}()
	const idle = 500 * time.Millisecond
	time.Sleep(idle)
	if p := s.LoopStats().Polls; p != 1 {
		t.Errorf("%d polls while idle, want 1 (it should sleep in one poll)", p)
	}
	start := time.Now()
	s.Close()
	r := <-done
	if !errors.Is(r.err, net.ErrClosed) {
		t.Fatalf("Receive: %v, want net.ErrClosed", r.err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Receive returned %v after Close", d)
	}
	// 2% of the idle time is the budget; a spinning receiver uses ~100%.
	if r.cpu > idle/50 {
		t.Errorf("idle receiver used %v of CPU in %v", r.cpu, idle)
	}
	t.Logf("idle receiver used %v of CPU in %v", r.cpu, idle)
}

// veth has no zero-copy AF_XDP: the default falls back to copy mode and
// says so, ForceZeroCopy fails with errors.ErrUnsupported, ForceCopy binds in
// copy mode.
func TestBindModes(t *testing.T) {
	b := bedT(t, 1)
	for _, c := range []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"default", Config{}, false},
		{"force-copy", Config{ForceCopy: true}, false},
		{"force-zero-copy", Config{ForceZeroCopy: true}, true},
	} {
		c.cfg.Ifindex, c.cfg.NumFrames = b.Rx.Index, 64
		var s *Socket
		err := b.Rx.Do(func() (err error) { s, err = NewSocket(c.cfg, 0); return err })
		if c.wantErr {
			if !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "zero-copy") {
				t.Errorf("%s: %v, want a zero-copy error matching errors.ErrUnsupported", c.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if s.ZeroCopy() {
			t.Errorf("%s: zero-copy on veth", c.name)
		}
		s.Close()
	}
}

func TestBindErrors(t *testing.T) {
	b := bedT(t, 1)
	cfg := Config{Ifindex: b.Rx.Index, NumFrames: 64}
	err := b.Rx.Do(func() error { _, err := NewSocket(cfg, 3); return err })
	if err == nil || !strings.Contains(err.Error(), "queue 3") {
		t.Errorf("bind to a missing queue: %v", err)
	}
	var s *Socket
	if err := b.Rx.Do(func() (err error) { s, err = NewSocket(cfg, 0); return err }); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = b.Rx.Do(func() error { _, err := NewSocket(cfg, 0); return err })
	if !errors.Is(err, unix.EBUSY) {
		t.Errorf("second socket on a queue: %v, want EBUSY", err)
	}
	err = b.Rx.Do(func() error { _, err := NewSocket(Config{Iface: "no-such-if0"}, 0); return err })
	if err == nil || !strings.Contains(err.Error(), "no-such-if0") {
		t.Errorf("missing interface: %v", err)
	}
	// The interface lives in the bed's namespace, not in ours.
	if _, err := NewSocket(Config{Iface: b.Rx.Link}, 0); err == nil {
		t.Error("found the bed's interface outside its namespace")
	}
	if _, err := Open(Config{Iface: b.Rx.Link, NumFrames: 1000}, nil); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "power of two") {
		t.Errorf("1000 frames: %v, want a power-of-two error", err)
	}
}

func TestRxQueues(t *testing.T) {
	b := bedT(t, 3)
	var n int
	if err := b.Rx.Do(func() (err error) { n, err = RxQueues(b.Rx.Link); return err }); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("RxQueues = %d, want 3", n)
	}
	path := openT(t, b, Config{NumFrames: 64}, nil)
	if len(path.Sockets()) != 3 {
		t.Fatalf("Open made %d sockets for 3 queues", len(path.Sockets()))
	}
	for i, s := range path.Sockets() {
		if s.Queue() != i {
			t.Errorf("socket %d on queue %d", i, s.Queue())
		}
	}
	p2 := openT(t, bedT(t, 4), Config{NumFrames: 64, Queues: []int{3, 1}}, nil)
	if got := p2.Sockets(); len(got) != 2 || got[0].Queue() != 3 || got[1].Queue() != 1 {
		t.Errorf("Queues [3 1] gave %d sockets", len(got))
	}
}

func TestBusyPollOptions(t *testing.T) {
	b := bedT(t, 1)
	path := openT(t, b, Config{NumFrames: 64, BusyPoll: true, BusyPollTimeout: 50 * time.Microsecond, BusyPollBudget: 16}, nil)
	fd := path.Sockets()[0].res.fd
	for _, o := range []struct {
		name string
		opt  int
		want int
		// SO_BUSY_POLL_BUDGET can be set but not read back.
	}{{"SO_PREFER_BUSY_POLL", unix.SO_PREFER_BUSY_POLL, 1}, {"SO_BUSY_POLL", unix.SO_BUSY_POLL, 50}} {
		got, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, o.opt)
		if err != nil || got != o.want {
			t.Errorf("%s = %d, %v; want %d", o.name, got, err, o.want)
		}
	}
}

// A socket that is not read fills up and the kernel drops; the drops show
// in Stats().XDP, and stay there after Close.
func TestStatsCountKernelDrops(t *testing.T) {
	b := bedT(t, 1)
	prog := programT(t, b)
	path := openT(t, b, Config{NumFrames: 64, FillRingSize: 32, RxRingSize: 16}, prog)
	f := dialT(t, b, netip.AddrPortFrom(testbed.RxIPv4, testPort))
	g := &gate{window: 1 << 62, stall: time.Minute}
	if err := sendSized(f, g, 0, 1, 500); err != nil {
		t.Fatal(err)
	}
	s := path.Sockets()[0]
	var x datapath.XDPStatistics
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		x = s.Stats().XDP
		if x.RxDropped+x.RxRingFull+x.RxFillRingEmptyDescs > 0 {
			break
		}
	}
	if x.RxDropped+x.RxRingFull+x.RxFillRingEmptyDescs == 0 {
		t.Fatalf("500 datagrams into a socket that holds 16, and the kernel counted no loss: %+v", x)
	}
	t.Logf("kernel counters: %+v", x)
	path.Close()
	if after := s.Stats().XDP; after != x {
		// Another datagram may have been counted in between; never fewer.
		if after.RxDropped < x.RxDropped || after.RxRingFull < x.RxRingFull {
			t.Errorf("after Close: %+v, before: %+v", after, x)
		}
	}
}

// recordingRegistrar passes calls on and remembers which queues are
// registered.
type recordingRegistrar struct {
	datapath.XSKRegistrar
	mu   sync.Mutex
	regs map[int]int
}

func (r *recordingRegistrar) RegisterXSK(queue, fd int) error {
	if err := r.XSKRegistrar.RegisterXSK(queue, fd); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.regs == nil {
		r.regs = map[int]int{}
	}
	r.regs[queue] = fd
	return nil
}

func (r *recordingRegistrar) UnregisterXSK(queue int) error {
	r.mu.Lock()
	delete(r.regs, queue)
	r.mu.Unlock()
	return r.XSKRegistrar.UnregisterXSK(queue)
}

func (r *recordingRegistrar) live() map[int]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[int]int{}
	for q, fd := range r.regs {
		out[q] = fd
	}
	return out
}

// A socket dropped without Close is closed by the runtime once collected,
// so that the kernel stops writing into a UMEM Go may reuse.
func TestDroppedSocketIsClosed(t *testing.T) {
	b := bedT(t, 1)
	fds := testutil.OpenFDs(t)
	if err := b.Rx.Do(func() error {
		_, err := NewSocket(Config{Ifindex: b.Rx.Index, NumFrames: 64}, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got := testutil.OpenFDs(t); got <= fds {
		t.Fatalf("%d descriptors with the socket open, %d before", got, fds)
	}
	for deadline := time.Now().Add(5 * time.Second); testutil.OpenFDs(t) > fds; {
		if time.Now().After(deadline) {
			t.Fatalf("%d descriptors 5 s after the socket was dropped, %d before", testutil.OpenFDs(t), fds)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	// The queue is free again.
	var s *Socket
	if err := b.Rx.Do(func() (err error) { s, err = NewSocket(Config{Ifindex: b.Rx.Index, NumFrames: 64}, 0); return err }); err != nil {
		t.Fatalf("rebinding after the cleanup: %v", err)
	}
	s.Close()
}

// A UMEM of 2 MiB or more is aligned to 2 MiB and advised for transparent
// huge pages. (Nothing is asserted of a smaller one: it may land in Go heap
// memory that an earlier UMEM's advice still covers.)
func TestUMEMHugePageAdvice(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage"); err != nil {
		testutil.Skip(t, "this kernel has no transparent huge pages (CONFIG_TRANSPARENT_HUGEPAGE)")
	}
	b := bedT(t, 1)
	var s *Socket
	err := b.Rx.Do(func() (err error) {
		s, err = NewSocket(Config{Ifindex: b.Rx.Index, NumFrames: 4096}, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := uintptr(unsafe.Pointer(&s.umem[0]))
	if addr%hugePageSize != 0 {
		t.Errorf("UMEM at %#x, not 2 MiB aligned", addr)
	}
	flags, huge := vmaOf(t, addr)
	if !slices.Contains(flags, "hg") {
		t.Errorf("UMEM mapping's VmFlags %v: no huge page advice (hg)", flags)
	}
	t.Logf("AnonHugePages of the UMEM's mapping: %d kB", huge)
}

// vmaOf returns the VmFlags and AnonHugePages (kB) of this process's
// mapping that holds addr, from /proc/self/smaps.
func vmaOf(t *testing.T, addr uintptr) (flags []string, hugeKB int) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(f[0], "-"); ok && len(f) >= 5 {
			l, err1 := strconv.ParseUint(lo, 16, 64)
			h, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 == nil && err2 == nil {
				in = uint64(addr) >= l && uint64(addr) < h
				continue
			}
		}
		switch {
		case in && f[0] == "AnonHugePages:":
			hugeKB, _ = strconv.Atoi(f[1])
		case in && f[0] == "VmFlags:":
			return f[1:], hugeKB
		}
	}
	t.Fatalf("no mapping in /proc/self/smaps holds %#x", addr)
	return nil, 0
}

// Receive calls the idle function once before it sleeps in poll(), without
// its lock: a Close while the function runs neither waits for it nor lets
// Receive touch the torn-down rings after. OnIdle lets a consumer hold work
// for four naps, and for none when the socket spins or busy-polls.
func TestOnIdle(t *testing.T) {
	b := bedT(t, 1)
	prog := programT(t, b)
	path := openT(t, b, Config{NumFrames: 64}, prog)
	s := path.Sockets()[0]
	var calls atomic.Int32
	entered, release := make(chan struct{}), make(chan struct{})
	if hold := s.OnIdle(func() {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
	}); hold != 4*DefaultNap {
		t.Errorf("OnIdle: hold %v, want %v", hold, 4*DefaultNap)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Receive(make([]datapath.Datagram, 8))
		done <- err
	}()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("Receive on an empty ring never called the idle function")
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatal("Close waited for the idle function: Receive held its lock through it")
	}
	close(release)
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Receive after a Close during the idle function: %v, want net.ErrClosed", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("idle function called %d times, want 1", n)
	}

	// Once per wait: a receiver idle for a while called it once, then slept.
	path2 := openT(t, b, Config{NumFrames: 64}, prog)
	s2 := path2.Sockets()[0]
	var calls2 atomic.Int32
	s2.OnIdle(func() { calls2.Add(1) })
	go s2.Receive(make([]datapath.Datagram, 8))
	time.Sleep(300 * time.Millisecond)
	if n, p := calls2.Load(), s2.LoopStats().Polls; n != 1 || p != 1 {
		t.Errorf("idle receiver: %d idle calls and %d polls, want 1 and 1", n, p)
	}
	s2.Close()

	for _, c := range []Config{{NumFrames: 64, SpinFor: LowLatencySpin}, {NumFrames: 64, BusyPoll: true}, {NumFrames: 64, Nap: -1}} {
		p := openT(t, b, c, prog)
		if hold := p.Sockets()[0].OnIdle(func() {}); hold != 0 {
			t.Errorf("SpinFor %v, BusyPoll %v, Nap %v: hold %v, want 0", c.SpinFor, c.BusyPoll, c.Nap, hold)
		}
		p.Close()
	}
}
