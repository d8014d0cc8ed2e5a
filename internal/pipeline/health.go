package pipeline

import (
	"fmt"
	"sync"
	"time"
)

// Health: a worker is stuck when it has been handling the same batch for
// StuckAfter (blocked on a full queue under --on-full block, say, or in a
// loop that never ends). A sink is failing when, over SinkWindow, the
// pipeline offered it datagrams and it wrote none, or its error count grew
// in at least half of the window's ticks: a UDP collector that is gone
// shows only as ICMP errors, which the kernel rate-limits to about one a
// second, while almost every send still succeeds. /healthz reports either.
// An idle worker (waiting in Receive) or an idle sink is healthy.
const (
	defaultStuckAfter = 5 * time.Second
	defaultSinkWindow = 10 * time.Second
	healthTick        = time.Second
)

// healthMonitor samples the workers' progress and the sinks' counters every
// healthTick and keeps what Health reports.
type healthMonitor struct {
	p          *Pipeline
	stuckAfter time.Duration
	window     int // samples per sink window
	tick       time.Duration

	mu       sync.Mutex
	workers  []workerSample
	sinks    [][]sinkSample // a ring per sink, newest last
	problems []string

	started  sync.Once
	stopOnce sync.Once
	stop     chan struct{}
	stopped  chan struct{}
}

type workerSample struct {
	progress uint64
	since    time.Time // when progress last changed
}

type sinkSample struct {
	offered, written, errors uint64
}

func newHealthMonitor(p *Pipeline, stuckAfter, window, tick time.Duration) *healthMonitor {
	if stuckAfter <= 0 {
		stuckAfter = defaultStuckAfter
	}
	if window <= 0 {
		window = defaultSinkWindow
	}
	if tick <= 0 {
		tick = healthTick
	}
	return &healthMonitor{p: p, stuckAfter: stuckAfter, window: max(int(window/tick), 1) + 1, tick: tick,
		workers: make([]workerSample, len(p.workers)), sinks: make([][]sinkSample, len(p.sinks)),
		stop: make(chan struct{}), stopped: make(chan struct{})}
}

// start runs the monitor until close.
func (h *healthMonitor) start() {
	h.started.Do(func() { go h.run() })
}

func (h *healthMonitor) run() {
	defer close(h.stopped)
	t := time.NewTicker(h.tick)
	defer t.Stop()
	h.sample(time.Now())
	for {
		select {
		case now := <-t.C:
			h.sample(now)
		case <-h.stop:
			return
		}
	}
}

// close stops the monitor; safe to call more than once, and without start.
func (h *healthMonitor) close() {
	h.started.Do(func() { close(h.stopped) }) // never started: nothing to wait for
	h.stopOnce.Do(func() { close(h.stop) })
	<-h.stopped
}

// sample takes one reading and recomputes the problems.
func (h *healthMonitor) sample(now time.Time) {
	var problems []string
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, w := range h.p.workers {
		v := w.progress.Load()
		ws := &h.workers[i]
		if v != ws.progress || ws.since.IsZero() {
			ws.progress, ws.since = v, now
		}
		// progress is odd while the worker handles a batch.
		if v&1 == 1 && now.Sub(ws.since) >= h.stuckAfter {
			problems = append(problems, fmt.Sprintf("worker for queue %d stuck: handling one batch for %v (a sink that takes nothing under --on-full block?)",
				w.rx.Queue(), now.Sub(ws.since).Round(time.Second)))
		}
	}
	for i, s := range h.p.sinks {
		st := s.Stats()
		pc := h.p.SinkCounts(i)
		cur := sinkSample{offered: st.Offered + pc.QueueFull, written: st.Written, errors: st.Errors}
		ring := append(h.sinks[i], cur)
		if len(ring) > h.window {
			ring = ring[len(ring)-h.window:]
		}
		h.sinks[i] = ring
		if len(ring) < h.window {
			continue
		}
		old := ring[0]
		span := time.Duration(h.window-1) * h.tick
		if offered := cur.offered - old.offered; offered > 0 && cur.written == old.written {
			problems = append(problems, fmt.Sprintf("sink %s failing: wrote none of the %d datagrams offered in the last %v",
				s.Name(), offered, span))
			continue
		}
		ticks := 0
		for j := 1; j < len(ring); j++ {
			if ring[j].errors > ring[j-1].errors {
				ticks++
			}
		}
		if ticks >= 2 && 2*ticks >= len(ring)-1 {
			problems = append(problems, fmt.Sprintf("sink %s failing: %d errors in the last %v (sink_dropped_total says why)",
				s.Name(), cur.errors-old.errors, span))
		}
	}
	h.problems = problems
}

// Health returns what is wrong with the pipeline now: stuck workers and
// failing sinks, one line each; nil when all is well.
func (p *Pipeline) Health() []string {
	if p.health == nil {
		return nil
	}
	p.health.mu.Lock()
	defer p.health.mu.Unlock()
	return append([]string(nil), p.health.problems...)
}
