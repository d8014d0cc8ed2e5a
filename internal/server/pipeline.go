package server

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
	"github.com/xdpingest/xdpingest/sink"
	"github.com/xdpingest/xdpingest/tuning"
)

// The pipeline moves datagrams from receivers to sinks.
//
// One worker per receiver, on a locked OS thread pinned to the CPU that
// serves its queue, calls Receive, copies the batch into a chunk, hands the
// frames back to the receiver at once, and queues the chunk to every sink.
// One goroutine per worker and sink writes the chunks in order. A chunk
// goes back to its worker's free list when every sink is done with it.
//
// Memory is bounded: each worker owns a fixed set of chunks (QueueBytes per
// sink, counting both the data and the datagram descriptors), allocated at
// start. When a sink's queue is full, OnFull says what happens: drop the
// datagrams for that sink and count them (queue_full), or block the worker,
// so the receive ring backs up and the kernel counts the loss (AF_XDP
// rx_ring_full / rx_dropped, socket overflows).
//
// Small batches are coalesced while the writers are behind: after a batch,
// the worker ships its chunk at once only if some writer has nothing queued
// (it would otherwise wait for the next batch); when every writer has work,
// the worker keeps filling the chunk with the next batches. A writer that
// runs dry takes the worker's open chunk and ships it itself, so a datagram
// never waits for more traffic, and a slow sink fills its queue with full
// chunks rather than with hundreds of chunks of a datagram or two.

const (
	// chunkBytes is the data capacity of one chunk. Small enough that a
	// queue of a few MiB holds hundreds of chunks even when the link is
	// quiet and every chunk carries a small batch; a full batch of large
	// frames spreads over several.
	chunkBytes = 32 << 10
	// chunkDatagrams bounds the datagrams per chunk. At 256, minimum-size
	// frames use half the data; the descriptors (unsafe.Sizeof(Datagram)
	// each) weigh about as much as the data.
	chunkDatagrams = 256
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
// queue memory (512 of 32 KiB for 16 MiB), each cold in cache when the
// worker copies into it: with a FIFO list the copy into chunks took 17% of
// the machine's time with 2 queues on the test bed.
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

// add copies d into the chunk, returning false when it doesn't fit.
func (c *chunk) add(d *datapath.Datagram) bool {
	need := max(len(d.Payload), len(d.Frame))
	if len(c.dgs) == cap(c.dgs) || len(c.buf)+need > cap(c.buf) {
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
	queueFull atomic.Uint64 // datagrams dropped because the queue was full
	queued    atomic.Int64  // datagrams waiting in queues
	writeErrs atomic.Uint64 // Write and Flush errors (the sink counts the datagrams)
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
	open *chunk       // the chunk being filled, not yet queued
	done bool         // the queues are closed
	held atomic.Int64 // datagrams in open, counted in flight for every sink
	// Counted by the worker only, read by metrics.
	batchSizes []atomic.Uint64 // histogram buckets, see batchBuckets
}

// Pipeline runs the workers and the sink writers.
type Pipeline struct {
	log     *slog.Logger
	sinks   []sink.Sink
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
}

// PipelineConfig sizes the pipeline.
type PipelineConfig struct {
	Receivers []datapath.Receiver
	// CPUs[i] is the CPU for receiver i's worker, or -1.
	CPUs  []int
	Sinks []sink.Sink
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
}

// batchBuckets are the upper bounds of the batch size histogram.
var batchBuckets = []int{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}

// NewPipeline allocates every chunk and queue. Nothing runs until Start.
func NewPipeline(cfg PipelineConfig) (*Pipeline, error) {
	if len(cfg.Sinks) == 0 {
		return nil, errors.New("the pipeline needs a sink")
	}
	p := &Pipeline{log: cfg.Log, sinks: cfg.Sinks, block: cfg.BlockOnFull, batch: cfg.BatchSize, slice: cfg.Slice, nice: cfg.Nice}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	for range cfg.Sinks {
		p.counts = append(p.counts, &sinkCounters{})
	}
	perSink := max(cfg.QueueBytes/chunkMem, 2)
	for i, rx := range cfg.Receivers {
		w := &worker{rx: rx, cpu: -1, batchSizes: make([]atomic.Uint64, len(batchBuckets))}
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
	for wi, w := range p.workers {
		for si, s := range p.sinks {
			p.writerWG.Add(1)
			go p.write(w, s.Writer(wi), w.queues[si], p.counts[si], s.Name())
		}
		p.wg.Add(1)
		go p.work(w)
	}
}

// Running is the number of workers in their receive loop.
func (p *Pipeline) Running() int { return int(p.started.Load()) }

// Wait waits for the workers (they end when their receivers are drained or
// closed) and then for the writers to empty their queues. It returns the
// first error a worker met, other than the end of its receiver.
func (p *Pipeline) Wait() error {
	p.wg.Wait()
	p.writerWG.Wait()
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
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.open != nil {
			p.dispatch(w, w.open)
			w.open = nil
			w.held.Store(0)
		}
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
	for {
		n, err := w.rx.Receive(batch)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
				p.fail(fmt.Errorf("queue %d: %w", w.rx.Queue(), err))
				p.log.Error("receiver failed; its worker stops", "queue", w.rx.Queue(), "err", err)
			}
			return
		}
		w.batchSizes[bucket(n)].Add(1)
		// Take the open chunk back. While w.open is nil no writer can ship
		// anything of this worker, so the chunks go out in order.
		w.mu.Lock()
		c := w.open
		w.open = nil
		w.held.Store(0)
		w.mu.Unlock()
		for i := 0; i < n; i++ {
			if c == nil {
				if c = p.chunk(w, n-i); c == nil {
					break // dropped and counted for every sink
				}
			}
			if !c.add(&batch[i]) {
				p.dispatch(w, c)
				c = nil
				i-- // retry this datagram in a new chunk
			}
		}
		w.rx.Release(batch[:n])
		// Ship the chunk before the next Receive, which may sleep, unless
		// every writer has work queued: then the next batches fill it, and
		// a writer that runs dry ships it (see write). The check and the
		// writers' take of the open chunk are both under w.mu, so a writer
		// either sees the chunk or had work queued when the worker looked.
		if c != nil {
			w.mu.Lock()
			if w.writersBusy() {
				w.open = c
				w.held.Store(int64(len(c.dgs)))
				c = nil
			}
			w.mu.Unlock()
			if c != nil {
				p.dispatch(w, c)
			}
		}
	}
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
// runs dry. It reports whether there was one.
func (p *Pipeline) flushOpen(w *worker) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done || w.open == nil {
		return false
	}
	p.dispatch(w, w.open)
	w.open = nil
	w.held.Store(0)
	return true
}

func bucket(n int) int {
	for i, b := range batchBuckets {
		if n <= b {
			return i
		}
	}
	return len(batchBuckets) - 1
}

// chunk takes a free chunk, waiting when blocking; without one (drop mode)
// it counts the rest of the batch as dropped for every sink.
func (p *Pipeline) chunk(w *worker, rest int) *chunk {
	if c := w.free.tryGet(); c != nil {
		return c
	}
	if p.block {
		return w.free.get()
	}
	for _, sc := range p.counts {
		sc.queueFull.Add(uint64(rest))
	}
	return nil
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
	for si, q := range w.queues {
		sc := p.counts[si]
		q.queued.Add(int64(n))
		sc.queued.Add(int64(n))
		if p.block {
			q.ch <- c
			continue
		}
		select {
		case q.ch <- c:
		default:
			q.queued.Add(-int64(n))
			sc.queued.Add(-int64(n))
			sc.queueFull.Add(uint64(n))
			c.release()
		}
	}
	c.release()
}

// write is one worker's writer for one sink. When its queue runs dry it
// ships the worker's open chunk, if any, and otherwise flushes; it also
// flushes at least every second, so that idle files rotate on age.
func (p *Pipeline) write(w *worker, wr sink.Writer, q *sinkQueue, sc *sinkCounters, name string) {
	defer p.writerWG.Done()
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
	take := func(c *chunk) {
		n := int64(len(c.dgs))
		q.queued.Add(-n)
		sc.queued.Add(-n)
		report(wr.Write(c.dgs))
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
	QueueFull uint64
	Queued    int64
	WriteErrs uint64
}

// SinkCounts returns the counts for sink i.
func (p *Pipeline) SinkCounts(i int) SinkCounts {
	sc := p.counts[i]
	queued := sc.queued.Load()
	for _, w := range p.workers {
		queued += w.held.Load()
	}
	return SinkCounts{QueueFull: sc.queueFull.Load(), Queued: queued, WriteErrs: sc.writeErrs.Load()}
}

// BatchHistogram returns the bucket counts of batch sizes of worker i.
func (p *Pipeline) BatchHistogram(i int) []uint64 {
	out := make([]uint64, len(batchBuckets))
	for j := range out {
		out[j] = p.workers[i].batchSizes[j].Load()
	}
	return out
}
