package pipeline

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/sink"
)

// recordSink keeps a copy of every payload written, in order.
type recordSink struct {
	mu       sync.Mutex
	payloads [][]byte
	all      []datapath.Datagram // addresses of what was written, payloads not kept
	closed   bool
	writing  int
	// closedUnder is set when Close ran while a Write or Flush was in
	// progress: the contract forbids it.
	closedUnder bool
	gate        chan struct{} // when not nil, Write waits for it
}

func (s *recordSink) Name() string           { return "record" }
func (s *recordSink) Writer(int) sink.Writer { return s }
func (s *recordSink) Flush() error           { return nil }
func (s *recordSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writing > 0 {
		s.closedUnder = true
	}
	s.closed = true
	return nil
}
func (s *recordSink) Stats() sink.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sink.Stats{Written: uint64(len(s.payloads)), Dropped: map[string]uint64{}}
}
func (s *recordSink) Write(dgs []datapath.Datagram) error {
	s.mu.Lock()
	s.writing++
	s.mu.Unlock()
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writing--
	for i := range dgs {
		s.payloads = append(s.payloads, bytes.Clone(dgs[i].Payload))
		s.all = append(s.all, datapath.Datagram{Src: dgs[i].Src, Dst: dgs[i].Dst})
	}
	return nil
}

func (s *recordSink) dgs() []datapath.Datagram {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.all
}

func (s *recordSink) got() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.payloads
}

// waitErr waits for p.Wait, failing t when it takes longer than d.
func waitErr(t *testing.T, p *Pipeline, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("the pipeline did not finish within %v", d)
		return nil
	}
}

// Datagrams of every size a UDP socket can deliver, up to 65,535 bytes (the
// kernel path's largest buffer, beyond IPv6's 65,527), go through whole and
// in order, between small ones: a datagram larger than a chunk used to make
// its worker retry forever.
func TestPipelineDeliversLargeDatagrams(t *testing.T) {
	src := netip.MustParseAddrPort("198.18.0.1:5000")
	dst := netip.MustParseAddrPort("198.18.0.2:9000")
	sizes := []int{0, 1, 100}
	for range 100 {
		sizes = append(sizes, 64)
	}
	sizes = append(sizes, 32767, 32768, 32769, 40000, 65507, 65527, 65535)
	for range 100 {
		sizes = append(sizes, 64)
	}
	sizes = append(sizes, 65535, 65535, 9000, 65535)
	var dgs []datapath.Datagram
	for i, n := range sizes {
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(i + j)
		}
		dgs = append(dgs, datapath.Datagram{Payload: p, Src: src, Dst: dst})
	}
	for _, block := range []bool{false, true} {
		f := datapath.NewFake(0, dgs)
		f.AtEnd = io.EOF
		rec := &recordSink{}
		// A small queue: large datagrams must not need more than it has.
		p, err := New(Config{Receivers: []datapath.Receiver{f}, CPUs: []int{-1}, Sinks: []sink.Sink{rec},
			QueueBytes: 4 * chunkMem, BlockOnFull: block, BatchSize: 64})
		if err != nil {
			t.Fatal(err)
		}
		p.Start()
		if err := waitErr(t, p, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		got := rec.got()
		c := p.SinkCounts(0)
		if uint64(len(got))+c.QueueFull != uint64(len(dgs)) || c.Queued != 0 {
			t.Fatalf("block=%v: written %d + queue_full %d, want %d (queued %d)", block, len(got), c.QueueFull, len(dgs), c.Queued)
		}
		if block && len(got) != len(dgs) {
			t.Fatalf("block=%v: written %d of %d", block, len(got), len(dgs))
		}
		if block {
			for i := range dgs {
				if !bytes.Equal(got[i], dgs[i].Payload) {
					t.Fatalf("datagram %d (%d bytes) arrived as %d bytes or changed", i, len(dgs[i].Payload), len(got[i]))
				}
			}
		}
	}
}

// A writer that finds its queue empty ships the worker's open chunk. If the
// worker filled that writer's queue in between, the writer must not wait on
// the queue only it drains, holding the lock every other party needs.
func TestFlushOpenNeverWaitsOnItself(t *testing.T) {
	rec := &recordSink{}
	other := &recordSink{}
	f := datapath.NewFake(0, nil)
	p, err := New(Config{Receivers: []datapath.Receiver{f}, CPUs: []int{-1}, Sinks: []sink.Sink{rec, other},
		QueueBytes: 2 * chunkMem, BlockOnFull: true, BatchSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	w := p.workers[0]
	// The state the race leaves: the writer's own queue full, an open chunk.
	q := w.queues[0]
	for len(q.ch) < cap(q.ch) {
		c := w.free.tryGet()
		c.add(&datapath.Datagram{Payload: []byte("x")})
		c.refs.Store(1)
		q.ch <- c
	}
	open := w.free.tryGet()
	open.add(&datapath.Datagram{Payload: []byte("open")})
	w.open = open
	done := make(chan bool, 1)
	go func() { done <- p.flushOpen(w) }()
	select {
	case shipped := <-done:
		if shipped {
			t.Fatal("flushOpen shipped into a full queue")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("flushOpen blocked on a full queue with the worker's lock held")
	}
	// The worker can take its open chunk back.
	locked := make(chan struct{})
	go func() { w.mu.Lock(); close(locked); w.mu.Unlock() }()
	select {
	case <-locked:
	case <-time.After(2 * time.Second):
		t.Fatal("the worker's lock is still held")
	}
	_ = context.Background()
}

// When the drain runs out of time the pipeline aborts: what is still
// queued is counted as shutdown, the Write in progress finishes, and only
// then do the writers return; the server closes a sink only after that.
func TestPipelineAbortCountsShutdown(t *testing.T) {
	const n = 3000
	f := datapath.NewFake(0, sized(0, n)) // blocks when they are all delivered
	rec := &recordSink{gate: make(chan struct{})}
	p, err := New(Config{Receivers: []datapath.Receiver{f}, CPUs: []int{-1}, Sinks: []sink.Sink{rec},
		QueueBytes: 2 * chunkMem, BlockOnFull: true, BatchSize: 64, StuckAfter: 50 * time.Millisecond, HealthTick: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	deadline := time.Now().Add(10 * time.Second)
	for len(p.Health()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if h := p.Health(); len(h) != 1 || !strings.Contains(h[0], "stuck") {
		t.Fatalf("a worker blocked on a full queue: health %q, want one stuck worker", h)
	}
	f.Drain()
	p.Abort()
	f.Close()
	// The writer is still in Write: the sink must not be closed yet.
	time.Sleep(20 * time.Millisecond)
	if p.WritersDone(0) {
		t.Fatal("WritersDone while a writer is still in Write")
	}
	close(rec.gate)
	if err := waitErr(t, p, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if !p.WritersDone(0) {
		t.Fatal("WritersDone false after Wait")
	}
	c := p.SinkCounts(0)
	written := uint64(len(rec.got()))
	if c.Shutdown == 0 {
		t.Fatal("nothing counted as shutdown though the queue was full at the abort")
	}
	if got := written + c.Shutdown + c.QueueFull; got != f.Stats().Packets || c.Queued != 0 {
		t.Fatalf("written %d + shutdown %d + queue_full %d = %d, want the %d received (queued %d)",
			written, c.Shutdown, c.QueueFull, got, f.Stats().Packets, c.Queued)
	}
}

// dropSink takes everything and writes nothing, like a sink whose
// destination is gone.
type dropSink struct{ offered atomic.Uint64 }

func (s *dropSink) Name() string           { return "drop" }
func (s *dropSink) Writer(int) sink.Writer { return s }
func (s *dropSink) Close() error           { return nil }
func (s *dropSink) Flush() error           { return nil }
func (s *dropSink) Write(d []datapath.Datagram) error {
	s.offered.Add(uint64(len(d)))
	return nil
}
func (s *dropSink) Stats() sink.Stats {
	o := s.offered.Load()
	return sink.Stats{Offered: o, Dropped: map[string]uint64{"gone": o}}
}

// A sink that writes nothing of what it is offered makes the pipeline
// unhealthy; when traffic stops it is healthy again (nothing offered,
// nothing lost), and an idle pipeline is healthy.
func TestPipelineHealthFailingSink(t *testing.T) {
	ch := make(chan datapath.Datagram)
	f := datapath.NewFakeChan(0, ch)
	ds := &dropSink{}
	p, err := New(Config{Receivers: []datapath.Receiver{f}, CPUs: []int{-1}, Sinks: []sink.Sink{ds},
		QueueBytes: 1 << 20, BatchSize: 64, SinkWindow: 50 * time.Millisecond, HealthTick: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	time.Sleep(100 * time.Millisecond)
	if h := p.Health(); len(h) != 0 {
		t.Fatalf("idle pipeline unhealthy: %q", h)
	}
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 0; ; i++ {
			select {
			case ch <- datapath.Datagram{Payload: []byte("x")}:
			case <-stop:
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(p.Health()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if h := p.Health(); len(h) != 1 || !strings.Contains(h[0], "sink drop failing") {
		t.Fatalf("health %q, want the failing sink", h)
	}
	close(stop)
	<-sent
	deadline = time.Now().Add(10 * time.Second)
	for len(p.Health()) != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if h := p.Health(); len(h) != 0 {
		t.Fatalf("health %q once traffic stopped", h)
	}
	f.Drain()
	close(ch)
	if err := waitErr(t, p, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// errSink writes everything but counts an error for every write, like a
// UDP relay whose collector answers with ICMP errors.
type errSink struct{ written, errs atomic.Uint64 }

func (s *errSink) Name() string           { return "err" }
func (s *errSink) Writer(int) sink.Writer { return s }
func (s *errSink) Close() error           { return nil }
func (s *errSink) Flush() error           { return nil }
func (s *errSink) Write(d []datapath.Datagram) error {
	s.written.Add(uint64(len(d)))
	s.errs.Add(1)
	return nil
}
func (s *errSink) Stats() sink.Stats {
	w := s.written.Load()
	return sink.Stats{Offered: w, Written: w, Errors: s.errs.Load(), Dropped: map[string]uint64{}}
}

// A sink that keeps failing while it still writes most of what it is
// offered is unhealthy too.
func TestPipelineHealthErroringSink(t *testing.T) {
	ch := make(chan datapath.Datagram)
	f := datapath.NewFakeChan(0, ch)
	es := &errSink{}
	p, err := New(Config{Receivers: []datapath.Receiver{f}, CPUs: []int{-1}, Sinks: []sink.Sink{es},
		QueueBytes: 1 << 20, BatchSize: 64, SinkWindow: 100 * time.Millisecond, HealthTick: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for {
			select {
			case ch <- datapath.Datagram{Payload: []byte("x")}:
			case <-stop:
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(p.Health()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if h := p.Health(); len(h) != 1 || !strings.Contains(h[0], "sink err failing") || !strings.Contains(h[0], "errors") {
		t.Fatalf("health %q, want the erroring sink", h)
	}
	close(stop)
	<-sent
	deadline = time.Now().Add(10 * time.Second)
	for len(p.Health()) != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if h := p.Health(); len(h) != 0 {
		t.Fatalf("health %q once traffic stopped", h)
	}
	f.Drain()
	close(ch)
	if err := waitErr(t, p, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}
