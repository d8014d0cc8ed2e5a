package pipeline

import (
	"context"
	"io"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/frames"
	"github.com/xdpingest/xdpingest/internal/testutil"
	"github.com/xdpingest/xdpingest/sink"
	"github.com/xdpingest/xdpingest/sink/pcapfile"
	"github.com/xdpingest/xdpingest/tuning"
)

// sized returns n datagrams numbered from first: every other one with a
// frame (as AF_XDP delivers), the rest payload only (as the kernel path).
func sized(first, n int) []datapath.Datagram {
	src := netip.MustParseAddrPort("198.18.0.1:5000")
	dst := netip.MustParseAddrPort("198.18.0.2:9000")
	buf := make([]byte, bench.SizedSpan)
	out := make([]datapath.Datagram, n)
	for i := range out {
		seq := uint64(first + i)
		p := append([]byte(nil), bench.PutSized(buf, seq)...)
		if i%2 == 0 {
			out[i] = datapath.Datagram{Frame: frames.Build(frames.Spec{Src: src, Dst: dst, Payload: p})}
		} else {
			out[i] = datapath.Datagram{Payload: p, Src: src, Dst: dst}
		}
	}
	return out
}

func TestPipelineDeliversEverythingToEverySink(t *testing.T) {
	dir := t.TempDir()
	const perWorker = 5000
	rxs := []datapath.Receiver{}
	for q := 0; q < 2; q++ {
		f := datapath.NewFake(q, sized(q*perWorker, perWorker))
		f.AtEnd = io.EOF
		rxs = append(rxs, f)
	}
	pcapSpec, err := sink.Parse("pcap:" + dir)
	if err != nil {
		t.Fatal(err)
	}
	sinks, err := sink.OpenAll(context.Background(), []sink.Spec{pcapSpec, {Kind: sink.KindDiscard}}, sink.Options{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{Receivers: rxs, CPUs: []int{-1, -1}, Sinks: sinks, QueueBytes: 1 << 20, BlockOnFull: true, BatchSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, s := range sinks {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range sinks {
		st := s.Stats()
		if st.Written != 2*perWorker || st.DroppedTotal() != 0 || st.InFlight != 0 {
			t.Errorf("sink %s: %+v", s.Name(), st)
		}
		if c := p.SinkCounts(i); c.QueueFull != 0 || c.Queued != 0 {
			t.Errorf("sink %s pipeline counts %+v", s.Name(), c)
		}
	}
	files, err := sink.PcapFiles(dir, false)
	if err != nil || len(files) < 2 {
		t.Fatalf("pcap files %v: %v", files, err)
	}
	tr := bench.NewTracker(2 * perWorker)
	for _, f := range files {
		if err := pcapfile.ReadFile(f, func(rec pcapfile.Record) error {
			var d datapath.Datagram
			if err := datapath.ParseFrame(rec.Data, &d); err != nil {
				t.Fatalf("%s: unreadable record: %v", f, err)
			}
			tr.Mark(bench.DecodeSized(d.Payload))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Check(); err != nil {
		t.Fatal(err)
	}
}

// slowSink holds every write until released, so its queue fills.
type slowSink struct {
	mu      sync.Mutex
	gate    chan struct{}
	written uint64
}

func (s *slowSink) Name() string           { return "slow" }
func (s *slowSink) Writer(int) sink.Writer { return s }
func (s *slowSink) Close() error           { return nil }
func (s *slowSink) Flush() error           { return nil }
func (s *slowSink) Stats() sink.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sink.Stats{Written: s.written}
}
func (s *slowSink) Write(d []datapath.Datagram) error {
	<-s.gate
	s.mu.Lock()
	s.written += uint64(len(d))
	s.mu.Unlock()
	return nil
}

// With --on-full drop, a stuck sink loses datagrams counted as queue_full,
// and the other sink still gets everything.
func TestPipelineDropsAndCountsWhenFull(t *testing.T) {
	const n = 20000
	f := datapath.NewFake(0, sized(0, n))
	f.AtEnd = io.EOF
	slow := &slowSink{gate: make(chan struct{})}
	fast, _ := sink.Open(context.Background(), sink.Spec{Kind: sink.KindDiscard}, sink.Options{})
	p, err := New(Config{Receivers: []datapath.Receiver{f}, CPUs: []int{-1}, Sinks: []sink.Sink{slow, fast}, QueueBytes: 256 << 10, BatchSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	// Let the worker run into the full queue, then open the gate.
	deadline := time.Now().Add(10 * time.Second)
	for p.SinkCounts(0).QueueFull == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(slow.gate)
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	c := p.SinkCounts(0)
	if c.QueueFull == 0 {
		t.Fatal("no queue_full drops with a stuck sink")
	}
	if got := slow.Stats().Written + c.QueueFull; got != n || c.Queued != 0 {
		t.Fatalf("slow sink: written %d + queue_full %d = %d, want %d (queued %d)", slow.Stats().Written, c.QueueFull, got, n, c.Queued)
	}
	// The other sink may lose some too (its writer races a receiver that
	// runs at memory speed), but every datagram is accounted for.
	if st := fast.Stats(); st.Written+p.SinkCounts(1).QueueFull != n {
		t.Fatalf("fast sink: written %d, queue_full %d, want %d together", st.Written, p.SinkCounts(1).QueueFull, n)
	}
}

// Behind a writer that is stuck, single-datagram batches fill chunks
// instead of taking one chunk each, so a queue of a few chunks holds
// hundreds of datagrams; and once the writer moves again, the last,
// partly filled chunk is written without waiting for more traffic.
func TestPipelineCoalescesWhileWritersAreBehind(t *testing.T) {
	const n = 700
	src := netip.MustParseAddrPort("198.18.0.1:5000")
	dst := netip.MustParseAddrPort("198.18.0.2:9000")
	dgs := make([]datapath.Datagram, n)
	for i := range dgs {
		dgs[i] = datapath.Datagram{Payload: make([]byte, 16), Src: src, Dst: dst}
	}
	f := datapath.NewFake(0, dgs) // blocks once they are all delivered
	slow := &slowSink{gate: make(chan struct{})}
	// Four chunks per queue: 700 datagrams one chunk each would overflow.
	p, err := New(Config{Receivers: []datapath.Receiver{f}, CPUs: []int{-1}, Sinks: []sink.Sink{slow}, QueueBytes: 4 * chunkMem, BatchSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	deadline := time.Now().Add(10 * time.Second)
	for f.Stats().Packets < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := f.Stats().Packets; got != n {
		t.Fatalf("received %d of %d", got, n)
	}
	time.Sleep(20 * time.Millisecond) // the last batch is being added
	c := p.SinkCounts(0)
	if c.QueueFull != 0 {
		t.Fatalf("%d datagrams dropped as queue_full behind a stuck writer with room for %d bytes", c.QueueFull, 4*chunkMem)
	}
	// One datagram is in the blocked Write, the rest in flight.
	if c.Queued != n-1 {
		t.Fatalf("in flight %d, want %d", c.Queued, n-1)
	}
	close(slow.gate)
	for slow.Stats().Written < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := slow.Stats().Written; got != n {
		t.Fatalf("written %d of %d with no more traffic", got, n)
	}
	if q := p.SinkCounts(0).Queued; q != 0 {
		t.Fatalf("in flight %d after everything was written", q)
	}
	f.Drain()
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
}

// The free list hands out the chunk released last, and a taker waiting in
// get gets the next one released.
func TestFreeListLIFO(t *testing.T) {
	f := newFreeList(3)
	a, b, c := &chunk{free: f}, &chunk{free: f}, &chunk{free: f}
	for _, x := range []*chunk{a, b, c} {
		f.put(x)
	}
	if got := f.tryGet(); got != c {
		t.Fatal("tryGet did not return the chunk put last")
	}
	f.put(c)
	for _, want := range []*chunk{c, b, a} {
		if got := f.get(); got != want {
			t.Fatalf("get returned the wrong chunk")
		}
	}
	if f.tryGet() != nil {
		t.Fatal("tryGet on an empty list returned a chunk")
	}
	got := make(chan *chunk)
	go func() { got <- f.get() }()
	select {
	case <-got:
		t.Fatal("get returned from an empty list")
	case <-time.After(20 * time.Millisecond):
	}
	b.refs.Store(1)
	b.release()
	select {
	case x := <-got:
		if x != b {
			t.Fatal("the waiting get took another chunk")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting get missed the chunk released")
	}
}

// schedRecorder is a receiver that notes the nice value and scheduler slice
// of the thread its Receive runs on.
type schedRecorder struct {
	datapath.Receiver
	once  sync.Once
	nice  int
	slice time.Duration
	err   error
}

func (r *schedRecorder) Receive(b []datapath.Datagram) (int, error) {
	r.once.Do(func() {
		if r.nice, r.err = tuning.ThreadNice(); r.err == nil {
			r.slice, r.err = tuning.ThreadSlice()
		}
	})
	return r.Receiver.Receive(b)
}

// Workers run at the configured nice value and scheduler slice, on a
// thread of their own.
func TestPipelineWorkerScheduling(t *testing.T) {
	if os.Geteuid() != 0 {
		testutil.Skip(t, "lowering a nice value needs CAP_SYS_NICE; run as root")
	}
	f := datapath.NewFake(0, sized(0, 10))
	f.AtEnd = io.EOF
	r := &schedRecorder{Receiver: f}
	out, _ := sink.Open(context.Background(), sink.Spec{Kind: sink.KindDiscard}, sink.Options{})
	p, err := New(Config{Receivers: []datapath.Receiver{r}, CPUs: []int{-1}, Sinks: []sink.Sink{out},
		QueueBytes: 1 << 20, BatchSize: 64, Nice: -4, Slice: 300 * time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.nice != -4 {
		t.Errorf("worker ran at nice %d, want -4", r.nice)
	}
	// Kernels before 6.12 have no custom slices (tuning's tests check the
	// read-back there).
	if r.slice != 300*time.Microsecond && r.slice != 0 {
		t.Errorf("worker ran with a %v slice, want 300µs", r.slice)
	}
	if n, _ := tuning.ThreadNice(); n == -4 {
		t.Error("the test's own thread got the worker's nice value")
	}
}
