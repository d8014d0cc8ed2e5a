package pipeline

import (
	"encoding/binary"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/sink"
)

// scriptRx delivers its batches one per Receive once started, then calls
// the consumer's idle function, as an AF_XDP socket does before it waits in
// poll(), and waits for Drain. before and after run around that last call.
type scriptRx struct {
	batches       [][]datapath.Datagram
	next          int
	hold          time.Duration
	idle          func()
	start, end    chan struct{}
	endOnce       sync.Once
	before, after func()
	idleEach      bool // call idle before every batch, as in sparse traffic
}

func (r *scriptRx) OnIdle(f func()) time.Duration { r.idle = f; return r.hold }

func (r *scriptRx) Receive(b []datapath.Datagram) (int, error) {
	if r.next == 0 {
		r.idle()
		<-r.start
	}
	if r.next < len(r.batches) {
		if r.idleEach && r.next > 0 {
			r.idle()
		}
		n := copy(b, r.batches[r.next])
		r.next++
		return n, nil
	}
	r.before()
	r.idle()
	r.after()
	<-r.end
	return 0, io.EOF
}

func (r *scriptRx) Release([]datapath.Datagram) {}
func (r *scriptRx) Drain()                      { r.endOnce.Do(func() { close(r.end) }) }
func (r *scriptRx) Queue() int                  { return 0 }
func (r *scriptRx) Stats() datapath.Stats       { return datapath.Stats{} }
func (r *scriptRx) Close() error                { r.Drain(); return nil }

// writeLog records the size of every Write, the sequence numbers written,
// and the Flushes (a writer flushes when it runs dry, before it sleeps).
type writeLog struct {
	mu      sync.Mutex
	sizes   []int
	seqs    []uint64
	flushes int
}

func (s *writeLog) Name() string           { return "log" }
func (s *writeLog) Writer(int) sink.Writer { return s }
func (s *writeLog) Stats() sink.Stats      { return sink.Stats{Dropped: map[string]uint64{}} }
func (s *writeLog) Close() error           { return nil }
func (s *writeLog) Write(dgs []datapath.Datagram) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sizes = append(s.sizes, len(dgs))
	for i := range dgs {
		s.seqs = append(s.seqs, binary.BigEndian.Uint64(dgs[i].Payload))
	}
	return nil
}
func (s *writeLog) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushes++
	return nil
}

func (s *writeLog) snapshot() (sizes []int, seqs []uint64, flushes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sizes), slices.Clone(s.seqs), s.flushes
}

// openLen is the number of datagrams in w's open chunk, -1 without one,
// and whether every writer of w has work queued.
func openLen(w *worker) (int, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.open == nil {
		return -1, w.writersBusy()
	}
	return len(w.open.dgs), w.writersBusy()
}

// While the receiver keeps returning batches, the worker keeps its chunk
// open across them for up to the receiver's hold, ships it when it is full,
// and ships the rest when the receiver is about to wait, unless the writer
// has work (then the writer ships it when it runs dry): one hand-off to a
// sleeping writer per chunk, not per batch, and nothing waits for more
// traffic. A chunk older than the hold, or a receiver that wants none held,
// is shipped after every batch that finds the writer idle (not checked: a
// busy writer lets the batches coalesce as before), and all arrives too.
func TestPipelineHoldsChunksWhileReceiving(t *testing.T) {
	src := netip.MustParseAddrPort("198.18.0.1:5000")
	dst := netip.MustParseAddrPort("198.18.0.2:9000")
	const batches, per = 20, 64
	for _, tc := range []struct {
		name    string
		hold    time.Duration
		spacing int64 // RxTime between datagrams, ns
		// what the open chunk holds before the last idle call, and the
		// Writes; nil: not checked (a busy writer lets batches coalesce)
		before int
		sizes  []int
	}{
		{"dense", time.Hour, 0, batches*per - chunkDatagrams, []int{chunkDatagrams, batches*per - chunkDatagrams}},
		{"older than the hold", time.Microsecond, int64(time.Millisecond), -1, nil},
		{"no hold", 0, 0, -1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rx := &scriptRx{hold: tc.hold, start: make(chan struct{}), end: make(chan struct{})}
			var seq uint64
			for range batches {
				var b []datapath.Datagram
				for range per {
					p := binary.BigEndian.AppendUint64(nil, seq)
					b = append(b, datapath.Datagram{Payload: p, Src: src, Dst: dst, RxTime: int64(seq) * tc.spacing})
					seq++
				}
				rx.batches = append(rx.batches, b)
			}
			log := &writeLog{}
			p, err := New(Config{Receivers: []datapath.Receiver{rx}, CPUs: []int{-1}, Sinks: []sink.Sink{log},
				QueueBytes: 8 * chunkMem, BlockOnFull: true, BatchSize: per})
			if err != nil {
				t.Fatal(err)
			}
			w := p.workers[0]
			before, after, busy := -2, -2, false
			rx.before = func() { before, _ = openLen(w) }
			rx.after = func() { after, busy = openLen(w) }
			p.Start()
			// The writer flushes once it finds its queue empty, then sleeps
			// until a chunk comes (or its 1-second tick).
			deadline := time.Now().Add(5 * time.Second)
			for _, _, f := log.snapshot(); f == 0; _, _, f = log.snapshot() {
				if time.Now().After(deadline) {
					t.Fatal("the writer never ran dry")
				}
				time.Sleep(time.Millisecond)
			}
			close(rx.start)
			for _, s, _ := log.snapshot(); len(s) < int(seq); _, s, _ = log.snapshot() {
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d datagrams written", len(s), seq)
				}
				time.Sleep(time.Millisecond)
			}
			rx.Drain()
			if err := waitErr(t, p, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			sizes, seqs, _ := log.snapshot()
			for i, s := range seqs {
				if s != uint64(i) {
					t.Fatalf("datagram %d written as %d: out of order or twice", i, s)
				}
			}
			if after != -1 && !busy {
				t.Errorf("the open chunk had %d datagrams after the receiver's idle call with the writer idle, want it shipped", after)
			}
			if c := p.SinkCounts(0); c.Queued != 0 || c.QueueFull != 0 {
				t.Errorf("counts after the end: %+v", c)
			}
			if tc.sizes == nil {
				return
			}
			if before != tc.before || !slices.Equal(sizes, tc.sizes) {
				t.Errorf("open chunk before the idle call %d, Writes %v; want %d and %v", before, sizes, tc.before, tc.sizes)
			}
		})
	}
}

// Sparse traffic behind a stalled writer: the receiver waits between every
// datagram, and its idle calls must not ship a chunk per datagram while the
// writer has work, or the queue fills with chunks of one datagram each.
func TestIdleKeepsCoalescingBehindABusyWriter(t *testing.T) {
	src := netip.MustParseAddrPort("198.18.0.1:5000")
	dst := netip.MustParseAddrPort("198.18.0.2:9000")
	const n = 2000
	rx := &scriptRx{hold: time.Hour, start: make(chan struct{}), end: make(chan struct{}), idleEach: true,
		before: func() {}, after: func() {}}
	for i := range n {
		p := binary.BigEndian.AppendUint64(nil, uint64(i))
		rx.batches = append(rx.batches, []datapath.Datagram{{Payload: p, Src: src, Dst: dst, RxTime: int64(i) * int64(time.Second)}})
	}
	rec := &recordSink{gate: make(chan struct{})}
	p, err := New(Config{Receivers: []datapath.Receiver{rx}, CPUs: []int{-1}, Sinks: []sink.Sink{rec},
		QueueBytes: 4 * chunkMem, BatchSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	close(rx.start)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Wait until the receiver has delivered everything: the first
		// datagram in the stalled Write, the others queued or open.
		c := p.SinkCounts(0)
		if c.QueueFull > 0 || c.Queued == n-1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the receiver's datagrams never all got queued: %+v", c)
		}
		time.Sleep(time.Millisecond)
	}
	close(rec.gate)
	for len(rec.got()) < n && p.SinkCounts(0).QueueFull == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d written", len(rec.got()), n)
		}
		time.Sleep(time.Millisecond)
	}
	rx.Drain()
	if err := waitErr(t, p, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if c := p.SinkCounts(0); c.QueueFull != 0 || len(rec.got()) != n {
		t.Fatalf("%d written, %d dropped as queue_full behind a stalled writer with room for %d datagrams in full chunks", len(rec.got()), c.QueueFull, 4*chunkDatagrams)
	}
}

// A chunk the receiver's idle call queues behind a stuck writer (--on-full
// block) waits inside Receive; Health must still see the worker stuck, as
// it does when the wait comes while handling a batch.
func TestIdleDispatchStuckShowsInHealth(t *testing.T) {
	src := netip.MustParseAddrPort("198.18.0.1:5000")
	dst := netip.MustParseAddrPort("198.18.0.2:9000")
	const per = 64
	rx := &scriptRx{hold: time.Hour, start: make(chan struct{}), end: make(chan struct{}), after: func() {}}
	// Three full chunks (the stuck writer's Write and its queue of two),
	// then one batch more, held open until the receiver goes idle.
	var seq uint64
	for range 3*chunkDatagrams/per + 1 {
		var b []datapath.Datagram
		for range per {
			b = append(b, datapath.Datagram{Payload: binary.BigEndian.AppendUint64(nil, seq), Src: src, Dst: dst})
			seq++
		}
		rx.batches = append(rx.batches, b)
	}
	stuck, fine := &recordSink{gate: make(chan struct{})}, &recordSink{}
	// The idle call ships only when some writer has nothing queued: let
	// the healthy one finish the three chunks first.
	rx.before = func() {
		for end := time.Now().Add(10 * time.Second); len(fine.got()) < 3*chunkDatagrams && time.Now().Before(end); {
			time.Sleep(time.Millisecond)
		}
	}
	p, err := New(Config{Receivers: []datapath.Receiver{rx}, CPUs: []int{-1}, Sinks: []sink.Sink{stuck, fine},
		QueueBytes: 2 * chunkMem, BlockOnFull: true, BatchSize: per, StuckAfter: 50 * time.Millisecond, HealthTick: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	close(rx.start)
	deadline := time.Now().Add(10 * time.Second)
	for len(p.Health()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	h := p.Health()
	close(stuck.gate)
	if len(h) != 1 || !strings.Contains(h[0], "stuck") {
		t.Errorf("a worker waiting for room to queue its idle chunk: health %q, want one stuck worker", h)
	}
	for len(stuck.got()) < int(seq) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	rx.Drain()
	if err := waitErr(t, p, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if len(stuck.got()) != int(seq) || len(fine.got()) != int(seq) {
		t.Fatalf("written %d and %d of %d", len(stuck.got()), len(fine.got()), seq)
	}
}
