package pipeline

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/portset"
	"github.com/xdpingest/xdpingest/sink"
	"github.com/xdpingest/xdpingest/tuning"
)

const (
	// chunkBytes is the data capacity of one chunk: any UDP payload (at
	// most 65,535 bytes on the kernel path) and any AF_XDP frame fits.
	chunkBytes = 64 << 10
	// chunkDatagrams bounds the datagrams per chunk: as many minimum-size
	// frames as the data holds. A chunk is one hand-off to each writer,
	// which wakes a writer that sleeps, and at high rates the wakeups cost
	// more than the writers' work: 256-datagram chunks took a third more
	// CPU per packet than these (docs/BENCHMARKS.md). The descriptors
	// (unsafe.Sizeof(Datagram) each) weigh about twice the data then.
	chunkDatagrams = 1024
)

// chunkMem is the memory of one chunk, data and descriptors.
var chunkMem = chunkBytes + chunkDatagrams*int(unsafe.Sizeof(datapath.Datagram{}))

type chunk struct {
	buf  []byte
	dgs  []datapath.Datagram
	refs atomic.Int32
	free *freeList
}

func (c *chunk) release() {
	if c.refs.Add(-1) == 0 {
		c.buf = c.buf[:0]
		c.dgs = c.dgs[:0]
		c.free.put(c)
	}
}

// freeList holds a worker's free chunks and hands them out last in, first
// out: the chunk released last is the one most likely still in cache. At a
// steady rate a few chunks then cycle, rather than every chunk of the
// queue memory (78 of 208 KiB for 16 MiB), each cold in cache when the
// worker copies into it.
type freeList struct {
	mu    sync.Mutex
	stack []*chunk
	// wake holds a token after a put, for a taker waiting in get.
	wake chan struct{}
}

func newFreeList(n int) *freeList {
	return &freeList{stack: make([]*chunk, 0, n), wake: make(chan struct{}, 1)}
}

func (f *freeList) put(c *chunk) {
	f.mu.Lock()
	f.stack = append(f.stack, c)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// tryGet returns a free chunk, or nil when there is none.
func (f *freeList) tryGet() *chunk {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.stack)
	if n == 0 {
		return nil
	}
	c := f.stack[n-1]
	f.stack[n-1] = nil
	f.stack = f.stack[:n-1]
	return c
}

// get returns a free chunk, waiting for one.
func (f *freeList) get() *chunk {
	for {
		if c := f.tryGet(); c != nil {
			return c
		}
		<-f.wake
	}
}

// need is the chunk memory d takes: its frame, or its payload when there is
// no frame or the payload lies outside it.
func need(d *datapath.Datagram) int { return max(len(d.Payload), len(d.Frame)) }

// add copies d into the chunk, returning false when it doesn't fit.
func (c *chunk) add(d *datapath.Datagram) bool {
	if len(c.dgs) == cap(c.dgs) || len(c.buf)+need(d) > cap(c.buf) {
		return false
	}
	c.dgs = append(c.dgs, *d)
	nd := &c.dgs[len(c.dgs)-1]
	start := len(c.buf)
	if off, ok := payloadOffset(d); ok {
		c.buf = append(c.buf, d.Frame...)
		nd.Frame = c.buf[start:len(c.buf):len(c.buf)]
		nd.Payload = nd.Frame[off : off+len(d.Payload) : off+len(d.Payload)]
	} else {
		nd.Frame = nil
		c.buf = append(c.buf, d.Payload...)
		nd.Payload = c.buf[start:len(c.buf):len(c.buf)]
	}
	nd.Handle = 0
	return true
}

// payloadOffset is where d.Payload starts inside d.Frame; false when there
// is no frame or the payload is not inside it.
func payloadOffset(d *datapath.Datagram) (int, bool) {
	if d.Frame == nil {
		return 0, false
	}
	if len(d.Payload) == 0 {
		return len(d.Frame), true
	}
	f := uintptr(unsafe.Pointer(unsafe.SliceData(d.Frame)))
	pl := uintptr(unsafe.Pointer(unsafe.SliceData(d.Payload)))
	if pl < f || pl+uintptr(len(d.Payload)) > f+uintptr(len(d.Frame)) {
		return 0, false
	}
	return int(pl - f), true
}

// sinkQueue is one worker's queue to one sink.
type sinkQueue struct {
	ch     chan *chunk
	queued atomic.Int64 // datagrams in ch
}

// sinkCounters are the pipeline's counts for one sink, over all workers.
type sinkCounters struct {
	queueFull  atomic.Uint64 // datagrams dropped because the queue was full
	shutdown   atomic.Uint64 // datagrams dropped because the drain timed out
	tooLarge   atomic.Uint64 // datagrams larger than a chunk (none from our receivers)
	otherPorts atomic.Uint64 // datagrams for ports the sink doesn't take (?ports=)
	queued     atomic.Int64  // datagrams waiting in queues
	writeErrs  atomic.Uint64 // Write and Flush errors (the sink counts the datagrams)
	writers    atomic.Int32  // writer goroutines not yet returned
}

// worker is one receive loop.
type worker struct {
	rx     datapath.Receiver
	cpu    int // -1: not pinned
	queues []*sinkQueue
	free   *freeList
	// mu guards open and done. A writer queues the open chunk with mu
	// held, so the worker, which takes open back under mu, never queues a
	// later chunk first. The worker itself never blocks with mu held
	// (until it closes the queues at the end).
	mu   sync.Mutex
	open *chunk // the chunk being filled, not yet queued
	done bool   // the queues are closed
	// unshipped counts datagrams received and not yet queued or dropped:
	// the batch being handled and the open chunk. They are in flight for
	// every sink (SinkCounts.Queued), also while the worker waits for a
	// chunk or for room in a queue.
	unshipped atomic.Int64
	// Counted by the worker only, read by metrics.
	batchSizes []atomic.Uint64 // histogram buckets, see BatchBuckets
	// progress counts up when the worker starts handling a batch and again
	// when it is done: odd while it handles one. A worker whose progress
	// stays odd for long is stuck (see Health).
	progress atomic.Uint64
}

// Pipeline runs the workers and the sink writers.
type Pipeline struct {
	log     *slog.Logger
	sinks   []sink.Sink
	routes  []*portset.Set // per sink; nil: every port
	counts  []*sinkCounters
	workers []*worker
	block   bool
	batch   int
	slice   time.Duration
	nice    int

	sliceNoted atomic.Bool           // the kernel ignoring the slice was logged
	wg         sync.WaitGroup        // workers
	writerWG   sync.WaitGroup        // sink writers
	err        atomic.Pointer[error] // the first worker failure
	started    atomic.Int32          // workers in their loop
	// aborting makes writers drop what is queued, counted as shutdown,
	// instead of writing it: see Abort.
	aborting atomic.Bool

	health *healthMonitor
}

// Config sizes the pipeline.
type Config struct {
	Receivers []datapath.Receiver
	// CPUs[i] is the CPU for receiver i's worker, or -1.
	CPUs  []int
	Sinks []sink.Sink
	// Routes[i], when not nil, is the set of destination ports whose
	// datagrams sink i takes (?ports=); the others are counted as for other
	// ports (SinkCounts.OtherPorts). Nil, or shorter than Sinks: every port.
	Routes []*portset.Set
	// QueueBytes is the memory of one worker's queue to one sink.
	QueueBytes  int
	BlockOnFull bool
	BatchSize   int
	// Slice is the scheduler slice of every worker thread (0: the
	// kernel's); see tuning.SetThreadSlice.
	Slice time.Duration
	// Nice is the nice value of every worker thread (0: left as it is);
	// see tuning.DefaultWorkerNice.
	Nice int
	Log  *slog.Logger
	// StuckAfter and SinkWindow set what Health calls a stuck worker and
	// a failing sink (0: 5s and 10s); HealthTick is how often it looks
	// (0: every second).
	StuckAfter, SinkWindow, HealthTick time.Duration
}

// BatchBuckets are the upper bounds of the batch size histogram.
var BatchBuckets = []int{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}

// NewPipeline allocates every chunk and queue. Nothing runs until Start.
func New(cfg Config) (*Pipeline, error) {
	if len(cfg.Sinks) == 0 {
		return nil, errors.New("the pipeline needs a sink")
	}
	p := &Pipeline{log: cfg.Log, sinks: cfg.Sinks, block: cfg.BlockOnFull, batch: cfg.BatchSize, slice: cfg.Slice, nice: cfg.Nice,
		routes: make([]*portset.Set, len(cfg.Sinks))}
	copy(p.routes, cfg.Routes)
	if p.batch <= 0 {
		p.batch = 64
	}
	defer func() { p.health = newHealthMonitor(p, cfg.StuckAfter, cfg.SinkWindow, cfg.HealthTick) }()
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	for range cfg.Sinks {
		p.counts = append(p.counts, &sinkCounters{})
	}
	perSink := max(cfg.QueueBytes/chunkMem, 2)
	for i, rx := range cfg.Receivers {
		w := &worker{rx: rx, cpu: -1, batchSizes: make([]atomic.Uint64, len(BatchBuckets))}
		if i < len(cfg.CPUs) {
			w.cpu = cfg.CPUs[i]
		}
		// Enough chunks that every queue can be full and every writer
		// busy with one, plus one being filled.
		n := perSink*len(cfg.Sinks) + len(cfg.Sinks) + 1
		w.free = newFreeList(n)
		for j := 0; j < n; j++ {
			w.free.put(&chunk{buf: make([]byte, 0, chunkBytes), dgs: make([]datapath.Datagram, 0, chunkDatagrams), free: w.free})
		}
		for range cfg.Sinks {
			w.queues = append(w.queues, &sinkQueue{ch: make(chan *chunk, perSink)})
		}
		p.workers = append(p.workers, w)
	}
	return p, nil
}

// Start runs the workers and the writers.
func (p *Pipeline) Start() {
	p.health.start()
	for wi, w := range p.workers {
		for si, s := range p.sinks {
			p.writerWG.Add(1)
			p.counts[si].writers.Add(1)
			go p.write(w, s.Writer(wi), w.queues[si], p.counts[si], p.routes[si], s.Name())
		}
		p.wg.Add(1)
		go p.work(w)
	}
}

// Workers is the number of workers, one per receiver.
func (p *Pipeline) Workers() int { return len(p.workers) }

// Running is the number of workers in their receive loop.
func (p *Pipeline) Running() int { return int(p.started.Load()) }

// Wait waits for the workers (they end when their receivers are drained or
// closed) and then for the writers to empty their queues. It returns the
// first error a worker met, other than the end of its receiver.
func (p *Pipeline) Wait() error {
	p.wg.Wait()
	p.writerWG.Wait()
	p.health.close()
	return p.Err()
}

// Err returns the first error a worker met, or nil; safe from any
// goroutine (the health endpoint reads it).
func (p *Pipeline) Err() error {
	if e := p.err.Load(); e != nil {
		return *e
	}
	return nil
}

func (p *Pipeline) fail(err error) {
	p.err.CompareAndSwap(nil, &err)
}

func (p *Pipeline) work(w *worker) {
	defer p.wg.Done()
	defer func() {
		// Ship the open chunk without holding mu (dispatch may wait for
		// room), then close the queues under it: a writer in flushOpen
		// either shipped before or sees done.
		p.shipOpen(w)
		w.mu.Lock()
		defer w.mu.Unlock()
		w.done = true
		for _, q := range w.queues {
			close(q.ch)
		}
	}()
	if w.cpu >= 0 || p.slice > 0 || p.nice != 0 {
		// The thread stays locked to the end: it carries a CPU affinity
		// and scheduling settings that other goroutines must not inherit.
		runtime.LockOSThread()
	}
	if w.cpu >= 0 {
		if err := tuning.PinThread(w.cpu); err != nil {
			p.log.Warn("can't pin worker; it runs unpinned", "queue", w.rx.Queue(), "cpu", w.cpu, "err", err)
		}
	}
	if p.nice != 0 {
		if err := tuning.SetThreadNice(p.nice); err != nil {
			p.log.Warn("can't set the worker's nice value; it keeps the process's", "queue", w.rx.Queue(), "nice", p.nice, "err", err)
		}
	}
	if ok, err := tuning.SetThreadSlice(p.slice); err != nil {
		p.log.Warn("can't set the worker's scheduler slice; it keeps the kernel's", "queue", w.rx.Queue(), "slice", p.slice, "err", err)
	} else if p.slice > 0 && !ok && p.sliceNoted.CompareAndSwap(false, true) {
		p.log.Info("the kernel ignores custom scheduler slices (Linux 6.12+ has them) or the workers run under a real-time policy; workers keep the kernel's slice", "slice", p.slice)
	}
	p.started.Add(1)
	defer p.started.Add(-1)
	batch := make([]datapath.Datagram, p.batch)
	// hold is how long the open chunk may wait for more datagrams while the
	// receiver keeps returning them: it calls shipIdle before it waits in
	// the kernel. Every hand-off to a writer that sleeps wakes it, which
	// costs more than the writer's work at high rates; while traffic is
	// dense a chunk then carries many batches.
	var hold int64
	if id, ok := w.rx.(datapath.Idler); ok {
		hold = int64(id.OnIdle(func() { p.shipIdle(w) }))
	}
	for {
		n, err := w.rx.Receive(batch)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
				p.fail(fmt.Errorf("queue %d: %w", w.rx.Queue(), err))
				p.log.Error("receiver failed; its worker stops", "queue", w.rx.Queue(), "err", err)
			}
			return
		}
		w.progress.Add(1)
		w.unshipped.Add(int64(n))
		w.batchSizes[bucket(n)].Add(1)
		// Take the open chunk back. While w.open is nil no writer can ship
		// anything of this worker, so the chunks go out in order.
		w.mu.Lock()
		c := w.open
		w.open = nil
		w.mu.Unlock()
		for i := 0; i < n; i++ {
			d := &batch[i]
			if c != nil && c.add(d) {
				continue
			}
			if c != nil {
				p.dispatch(w, c)
				c = nil
			}
			if !p.block && w.queuesFull() {
				// Every sink's queue is full: what a new chunk would carry
				// is dropped when it is queued. Dropped now, without the
				// copy, the worker gets through the ring sooner and leaves
				// its core to the writers it shares it with.
				p.dropFull(w, batch[i:n])
				break
			}
			if c = p.chunk(w, batch[i:n]); c == nil {
				break // dropped and counted for every sink
			}
			if !c.add(d) {
				// Larger than any chunk: no receiver of ours delivers
				// such a datagram, but never retry it forever.
				for _, sc := range p.counts {
					sc.tooLarge.Add(1)
				}
				w.unshipped.Add(-1)
			}
		}
		w.rx.Release(batch[:n])
		// Ship the chunk before the next Receive, which may sleep, unless
		// the receiver ships it before it sleeps and the chunk is younger
		// than hold, or every writer has work queued: then the next
		// batches fill it, and a writer that runs dry ships it (see
		// write). The check and the writers' take of the open chunk are
		// both under w.mu, so a writer either sees the chunk or had work
		// queued when the worker looked.
		if c != nil {
			young := hold > 0 && len(c.dgs) > 0 && batch[n-1].RxTime-c.dgs[0].RxTime < hold
			w.mu.Lock()
			if young || w.writersBusy() {
				w.open = c
				c = nil
			}
			w.mu.Unlock()
			if c != nil {
				p.dispatch(w, c)
			}
		}
		w.progress.Add(1)
	}
}

// shipOpen queues w's open chunk, if any; called by the worker only (also
// from inside its Receive, see datapath.Idler), never with mu held.
func (p *Pipeline) shipOpen(w *worker) {
	w.mu.Lock()
	c := w.open
	w.open = nil
	w.mu.Unlock()
	if c != nil {
		p.dispatch(w, c)
	}
}

// shipIdle is shipOpen for a receiver about to wait: the open chunk stays
// while every writer has work, as after a batch (one that runs dry ships
// it), so that a slow sink's queue fills with full chunks.
func (p *Pipeline) shipIdle(w *worker) {
	w.mu.Lock()
	c := w.open
	if c == nil || w.writersBusy() {
		w.mu.Unlock()
		return
	}
	w.open = nil
	w.mu.Unlock()
	// Odd while queuing, as while handling a batch: a dispatch that waits
	// for room behind a stuck writer (--on-full block) shows in Health.
	w.progress.Add(1)
	p.dispatch(w, c)
	w.progress.Add(1)
}

// queuesFull reports whether every queue of w is full. Without w.mu: a
// snapshot, as good as any when deciding to drop.
func (w *worker) queuesFull() bool {
	for _, q := range w.queues {
		if len(q.ch) < cap(q.ch) {
			return false
		}
	}
	return true
}

// writersBusy reports whether every writer of w has a chunk queued; called
// with w.mu held.
func (w *worker) writersBusy() bool {
	for _, q := range w.queues {
		if len(q.ch) == 0 {
			return false
		}
	}
	return true
}

// flushOpen ships w's open chunk, if any: a writer calls it when its queue
// runs dry. It reports whether it shipped one.
//
// It ships only when every queue has room, so it never waits with w.mu
// held: the worker may have filled a queue (the caller's own included)
// since the caller found its queue empty, and a writer waiting on the queue
// only it drains, holding the lock the worker and the other writers need,
// would wait forever. While w.open is set the worker dispatches nothing,
// and other writers ship only under w.mu, so the room seen here stays.
// When a queue is full its writer has work, and ships the open chunk when
// that runs out.
func (p *Pipeline) flushOpen(w *worker) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done || w.open == nil {
		return false
	}
	for _, q := range w.queues {
		if len(q.ch) == cap(q.ch) {
			return false
		}
	}
	p.dispatch(w, w.open)
	w.open = nil
	return true
}

func bucket(n int) int {
	for i, b := range BatchBuckets {
		if n <= b {
			return i
		}
	}
	return len(BatchBuckets) - 1
}

// chunk takes a free chunk, waiting when blocking; without one (drop mode)
// it counts the rest of the batch as dropped for every sink.
func (p *Pipeline) chunk(w *worker, rest []datapath.Datagram) *chunk {
	if c := w.free.tryGet(); c != nil {
		return c
	}
	if p.block {
		return w.free.get()
	}
	p.dropFull(w, rest)
	return nil
}

// dropFull counts dgs, which found no free chunk, as lost for every sink
// that takes them (queue_full) and as for other ports for the rest.
func (p *Pipeline) dropFull(w *worker, dgs []datapath.Datagram) {
	n := len(dgs)
	for si, sc := range p.counts {
		m := n
		if r := p.routes[si]; r != nil {
			m = matching(dgs, r)
			sc.otherPorts.Add(uint64(n - m))
		}
		sc.queueFull.Add(uint64(m))
	}
	w.unshipped.Add(-int64(n))
}

// dispatch queues c to every sink: a full queue drops or blocks.
func (p *Pipeline) dispatch(w *worker, c *chunk) {
	n := len(c.dgs)
	if n == 0 {
		c.refs.Store(1)
		c.release()
		return
	}
	c.refs.Store(int32(len(w.queues)) + 1) // +1 held while dispatching
	// Queued for every sink first, then no longer unshipped: a chunk that
	// waits for room below is counted once for each sink. A sink that
	// takes none of the chunk's ports (?ports=) never sees it.
	var match [maxRoutedSinks]int
	for si, q := range w.queues {
		m := n
		if r := p.routes[si]; r != nil {
			m = matching(c.dgs, r)
		}
		if si < maxRoutedSinks {
			match[si] = m
		}
		if m == 0 {
			p.counts[si].otherPorts.Add(uint64(n))
			continue
		}
		q.queued.Add(int64(n))
		p.counts[si].queued.Add(int64(n))
	}
	w.unshipped.Add(-int64(n))
	for si, q := range w.queues {
		sc := p.counts[si]
		m := n
		if p.routes[si] != nil {
			if si < maxRoutedSinks {
				m = match[si]
			} else {
				m = matching(c.dgs, p.routes[si])
			}
		}
		if m == 0 {
			c.release()
			continue
		}
		if p.block {
			q.ch <- c
			continue
		}
		select {
		case q.ch <- c:
		default:
			// Counted as the sink will: what it takes lost, the rest
			// for other ports.
			sc.queueFull.Add(uint64(m))
			sc.otherPorts.Add(uint64(n - m))
			q.queued.Add(-int64(n))
			sc.queued.Add(-int64(n))
			c.release()
		}
	}
	c.release()
}

// maxRoutedSinks bounds the sinks whose match counts dispatch keeps on its
// stack; beyond it they are counted again.
const maxRoutedSinks = 16

// matching counts the datagrams of dgs whose destination port is in r.
func matching(dgs []datapath.Datagram, r *portset.Set) int {
	m := 0
	for i := range dgs {
		if r.Has(dgs[i].Dst.Port()) {
			m++
		}
	}
	return m
}

// write is one worker's writer for one sink. When its queue runs dry it
// ships the worker's open chunk, if any, and otherwise flushes; it also
// flushes at least every second, so that idle files rotate on age.
func (p *Pipeline) write(w *worker, wr sink.Writer, q *sinkQueue, sc *sinkCounters, route *portset.Set, name string) {
	defer p.writerWG.Done()
	defer sc.writers.Add(-1)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastLog time.Time
	report := func(err error) {
		if err == nil {
			return
		}
		sc.writeErrs.Add(1)
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			p.log.Warn("sink write failed (counted; further errors logged every 10s)", "sink", name, "err", err)
		}
	}
	var routed []datapath.Datagram // this sink's datagrams of a chunk, when it has ?ports=
	if route != nil {
		routed = make([]datapath.Datagram, 0, chunkDatagrams)
	}
	take := func(c *chunk) {
		n := int64(len(c.dgs))
		dgs := c.dgs
		if route != nil {
			routed = routed[:0]
			for i := range dgs {
				if route.Has(dgs[i].Dst.Port()) {
					routed = append(routed, dgs[i])
				}
			}
			dgs = routed
			sc.otherPorts.Add(uint64(int(n) - len(dgs)))
		}
		q.queued.Add(-n)
		sc.queued.Add(-n)
		if p.aborting.Load() {
			sc.shutdown.Add(uint64(len(dgs)))
		} else if len(dgs) > 0 {
			report(wr.Write(dgs))
		}
		clear(routed) // no slice into a released chunk stays behind
		c.release()
	}
	for {
		select {
		case c, ok := <-q.ch:
			if !ok {
				report(wr.Flush())
				return
			}
			take(c)
			continue
		default:
		}
		if p.flushOpen(w) {
			continue
		}
		report(wr.Flush())
		select {
		case c, ok := <-q.ch:
			if !ok {
				report(wr.Flush())
				return
			}
			take(c)
		case <-tick.C:
		}
	}
}

// SinkCounts are the pipeline's own counts for a sink.
type SinkCounts struct {
	// QueueFull, Shutdown and TooLarge count datagrams the pipeline
	// dropped for the sink: its queue was full, the drain timed out, or
	// the datagram was larger than any chunk.
	QueueFull, Shutdown, TooLarge uint64
	// OtherPorts counts datagrams for ports the sink doesn't take
	// (Config.Routes): routed elsewhere, not lost.
	OtherPorts uint64
	// Queued counts datagrams waiting for the sink's writers, in queues
	// or in a worker's open chunk.
	Queued    int64
	WriteErrs uint64
}

// SinkCounts returns the counts for sink i.
func (p *Pipeline) SinkCounts(i int) SinkCounts {
	sc := p.counts[i]
	queued := sc.queued.Load()
	for _, w := range p.workers {
		queued += w.unshipped.Load()
	}
	return SinkCounts{QueueFull: sc.queueFull.Load(), Shutdown: sc.shutdown.Load(), TooLarge: sc.tooLarge.Load(),
		OtherPorts: sc.otherPorts.Load(), Queued: queued, WriteErrs: sc.writeErrs.Load()}
}

// Abort makes the writers drop what is still queued, counted as shutdown,
// instead of writing it, and asks every sink that can (sink.Aborter) to
// stop waiting in Write. The workers end when their receivers are closed;
// a Write already in progress finishes first. The server calls it when the
// drain at shutdown runs out of time.
func (p *Pipeline) Abort() {
	if p.aborting.Swap(true) {
		return
	}
	for _, s := range p.sinks {
		if a, ok := s.(sink.Aborter); ok {
			a.Abort()
		}
	}
}

// WritersDone reports whether every writer of sink i has returned: only
// then may the sink be closed.
func (p *Pipeline) WritersDone(i int) bool { return p.counts[i].writers.Load() == 0 }

// BatchHistogram returns the bucket counts of batch sizes of worker i.
func (p *Pipeline) BatchHistogram(i int) []uint64 {
	out := make([]uint64, len(BatchBuckets))
	for j := range out {
		out[j] = p.workers[i].batchSizes[j].Load()
	}
	return out
}
