package sink

import (
	"fmt"
	"sync/atomic"

	"github.com/xdpingest/xdpingest/datapath"
)

// discardSink counts and forgets: the baseline for benchmarks, and a way to
// run the server for its metrics alone.
type discardSink struct {
	writers []*discardWriter
	closed  atomic.Bool
}

type discardWriter struct {
	s *discardSink
	c counters
}

var discardReasons = reasons{"closed"}

const discardClosed = 0

func newDiscard(opts Options) *discardSink {
	s := &discardSink{writers: make([]*discardWriter, opts.Workers)}
	for i := range s.writers {
		s.writers[i] = &discardWriter{s: s}
	}
	return s
}

func (s *discardSink) Name() string             { return "discard" }
func (s *discardSink) Writer(worker int) Writer { return s.writers[worker] }

func (s *discardSink) Stats() Stats {
	cs := make([]*counters, len(s.writers))
	for i, w := range s.writers {
		cs[i] = &w.c
	}
	return stats(discardReasons, cs...)
}

// Close marks the sink closed; the contract says no Write runs concurrently.
func (s *discardSink) Close() error {
	s.closed.Store(true)
	return nil
}

func (w *discardWriter) Write(dgs []datapath.Datagram) error {
	n := uint64(len(dgs))
	w.c.offered.Add(n)
	if w.s.closed.Load() {
		w.c.drop(discardClosed, n)
		return fmt.Errorf("can't write to discard: %w", ErrClosed)
	}
	w.c.written.Add(n)
	w.c.writtenBytes.Add(payloadBytes(dgs))
	return nil
}

func (w *discardWriter) Flush() error { return nil }
