package server

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/pipeline"
	"github.com/xdpingest/xdpingest/sink"
)

// gatedSink holds every Write until its gate opens, and notes a Close that
// comes while a Write is in progress.
type gatedSink struct {
	mu          sync.Mutex
	gate        chan struct{}
	writing     int
	closed      bool
	closedUnder bool
}

func (s *gatedSink) Name() string           { return "gated" }
func (s *gatedSink) Writer(int) sink.Writer { return s }
func (s *gatedSink) Flush() error           { return nil }
func (s *gatedSink) Stats() sink.Stats      { return sink.Stats{Dropped: map[string]uint64{}} }
func (s *gatedSink) Write([]datapath.Datagram) error {
	s.mu.Lock()
	s.writing++
	s.mu.Unlock()
	<-s.gate
	s.mu.Lock()
	s.writing--
	s.mu.Unlock()
	return nil
}
func (s *gatedSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closedUnder = s.closedUnder || s.writing > 0
	s.closed = true
	return nil
}

// Issue 10, defect 4: after a drain that timed out, the server closes a sink
// only once its writers have returned; one still in Write stays open.
func TestCloseSinksNotUnderAWriter(t *testing.T) {
	dgs := make([]datapath.Datagram, 100)
	for i := range dgs {
		dgs[i].Payload = []byte("x")
	}
	f := datapath.NewFake(0, dgs)
	g := &gatedSink{gate: make(chan struct{})}
	p, err := pipeline.New(pipeline.Config{Receivers: []datapath.Receiver{f}, CPUs: []int{-1}, Sinks: []sink.Sink{g},
		QueueBytes: 1 << 20, BlockOnFull: true, BatchSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g.mu.Lock()
		w := g.writing
		g.mu.Unlock()
		if w > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no Write started")
		}
		time.Sleep(time.Millisecond)
	}
	s := &server{sinks: []sink.Sink{g}, pipe: p, log: slog.New(slog.DiscardHandler)}
	p.Abort()
	f.Close()
	if errs := s.closeSinks(); errs[0] == nil || g.closed {
		t.Fatalf("closeSinks closed a sink under its writer (err %v)", errs[0])
	}
	close(g.gate)
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if errs := s.closeSinks(); errs[0] != nil || !g.closed || g.closedUnder {
		t.Fatalf("after the writers returned: err %v, closed %v, closed under a writer %v", errs[0], g.closed, g.closedUnder)
	}
}
