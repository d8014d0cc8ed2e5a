package measure

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/datapath/afxdp"
	"github.com/xdpingest/xdpingest/datapath/kernel"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/version"
	"github.com/xdpingest/xdpingest/tuning"
	"github.com/xdpingest/xdpingest/xdp"
)

// pktbench latency: one-way latency from the moment a paced sender hands a
// datagram to the kernel (AF_XDP TX or sendmmsg; the CLOCK_MONOTONIC time
// is in the payload, see bench.PutStamp) to the moment the receiver hands
// it over: a Go receiver's Receive (or ReadFromUDP) returning it, xskdrop
// taking its batch off the RX ring, and for the server the relay sink's
// datagram arriving at a collector on the server's loopback. Every AF_XDP
// way of waiting is a path of its own.

// The latency paths.
const (
	LatAFXDP     = "afxdp"        // datapath/afxdp, its default nap (PathOptions.Nap)
	LatAFXDPPoll = "afxdp-poll"   // datapath/afxdp, no nap: poll() as soon as the ring is empty
	LatAFXDPBusy = "afxdp-busy"   // datapath/afxdp with Config.BusyPoll: no nap, a recvfrom per empty check
	LatAFXDPSpin = "afxdp-spin"   // datapath/afxdp's low-latency setting: Config.SpinFor = LowLatencySpin
	LatCref      = "afxdp-c"      // bench/cref/xskdrop with its nap (of PathOptions.Nap, while the last frame came less than 64 naps ago)
	LatCrefPoll  = "afxdp-c-poll" // xskdrop without a nap
	LatCrefSpin  = "afxdp-c-spin" // xskdrop checking its ring without ever sleeping
	LatKernel    = "kernel"       // datapath/kernel, recvmmsg
	LatStdnet    = "stdnet"       // net.UDPConn.ReadFromUDP
	// LatServer is xdpingest run with a UDP relay sink to a collector in
	// the receiving namespace (127.0.0.1, recvmmsg): latency to the relay's
	// datagram arriving there, which includes the relay's send and the
	// loopback, a few µs beyond the sink's write.
	LatServer = "server"
	// LatServerLow is the same with xdpingest run --latency low.
	LatServerLow = "server-low"
)

// LatencyPaths are every path Latency takes, in the default order.
func LatencyPaths() []string {
	return []string{LatAFXDP, LatAFXDPPoll, LatAFXDPBusy, LatAFXDPSpin, LatCref, LatCrefPoll, LatCrefSpin, LatKernel, LatStdnet, LatServer, LatServerLow}
}

// LatencyOptions are a latency sweep's settings.
type LatencyOptions struct {
	// Paths are run in this order, alternating, at every rate.
	Paths []string
	// Rates are the send rates in datagrams per second.
	Rates []float64
	// Size is the frame size (Ethernet header included, FCS excluded);
	// the payload must hold a sequence number and a stamp.
	Size int
	// Gen is GenAFXDP (AF_XDP TX, default) or GenSendmmsg.
	Gen  string
	IPv6 bool
	// Duration is each run's length; Reps the repetitions of every path
	// at every rate (A B C A B C ...), merged into one histogram.
	Duration time.Duration
	Reps     int
	XDPMode  xdp.Mode
	// Rx holds the receivers' settings (Spin, Nap, SchedSlice,
	// WorkerNice, Frames, RingSize, Xdpingest, Xskdrop); the sweep sets
	// the rest.
	Rx      PathOptions
	Command []string
	// Progress, if set, is called before each run (Result nil) and after.
	Progress func(LatencyStep)
}

// LatencyStep is where a sweep is: run N of Total.
type LatencyStep struct {
	N, Total  int
	Rate      float64
	Rep, Reps int
	Path      string
	Result    *LatencyRun // nil when the run starts
}

// LatencyReport is what a sweep measured, as pktbench latency --json
// writes it. Latencies are in microseconds.
type LatencyReport struct {
	Tool      string    `json:"tool"`
	Version   string    `json:"version"`
	Started   time.Time `json:"started"`
	Command   []string  `json:"command"`
	Machine   Machine   `json:"machine"`
	Generator string    `json:"generator"`
	Size      int       `json:"size"`
	IPv6      bool      `json:"ipv6"`
	Duration  float64   `json:"duration_seconds"` // per run
	Reps      int       `json:"reps"`
	Rates     []float64 `json:"rates"`
	Paths     []string  `json:"paths"`
	// Resolution is the histogram's: a percentile is at most this fraction
	// above the exact value (and exact below 256 ns).
	Resolution float64 `json:"resolution"`
	// ClockErrorUs bounds the offset between pktbench's clock and another
	// process's CLOCK_MONOTONIC (xskdrop's): see bench.MonoAnchorError.
	ClockErrorUs float64 `json:"clock_error_us"`
	Complete     bool    `json:"complete"`
	Error        string  `json:"error,omitempty"`

	Results []*LatencyResult `json:"results"`
}

// LatencyResult is one path at one rate, its repetitions merged.
type LatencyResult struct {
	Path     string  `json:"path"`
	Rate     float64 `json:"rate"`
	Describe string  `json:"describe"`
	// Sent is what the sender handed to the kernel, Measured the stamped
	// datagrams the receiver handed over (each counted once); Lost and
	// Dups come from the sequence numbers, on the paths that read them
	// (all but afxdp-c: there Lost is Sent - Measured).
	Sent     uint64 `json:"sent"`
	Measured uint64 `json:"measured"`
	Lost     uint64 `json:"lost"`
	Dups     uint64 `json:"dups"`
	// Unstamped are datagrams too short for a stamp, Negative those
	// stamped later than received (neither is measured).
	Unstamped uint64 `json:"unstamped,omitempty"`
	Negative  uint64 `json:"negative,omitempty"`
	// SentPPS is the rate the sender achieved (the median of the runs').
	SentPPS float64 `json:"sent_pps"`

	P50  float64 `json:"p50_us"`
	P90  float64 `json:"p90_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p99_9_us"`
	Max  float64 `json:"max_us"`
	Min  float64 `json:"min_us"`
	Mean float64 `json:"mean_us"`
	// Buckets are the histogram's buckets that hold values: the largest
	// value of the bucket in µs, and the count. A CDF in full.
	Buckets [][2]float64 `json:"buckets"`
	// Drops by reason over the runs (the receivers' and the server's).
	Drops map[string]uint64 `json:"drops,omitempty"`

	Runs []*LatencyRun `json:"runs"`

	hist bench.Histogram
}

// LatencyRun is one run's counts and percentiles.
type LatencyRun struct {
	Rep      int     `json:"rep"`
	Sent     uint64  `json:"sent"`
	Measured uint64  `json:"measured"`
	Lost     uint64  `json:"lost"`
	SentPPS  float64 `json:"sent_pps"`
	P50      float64 `json:"p50_us"`
	P99      float64 `json:"p99_us"`
	Max      float64 `json:"max_us"`

	dups, unstamped, negative uint64
	drops                     map[string]uint64
	hist                      *bench.Histogram
}

// Result returns the result of path at rate, adding an empty one.
func (r *LatencyReport) Result(path string, rate float64) *LatencyResult {
	for _, g := range r.Results {
		if g.Path == path && g.Rate == rate {
			return g
		}
	}
	g := &LatencyResult{Path: path, Rate: rate}
	r.Results = append(r.Results, g)
	return g
}

func us(ns int64) float64 { return float64(ns) / 1e3 }

// add merges a run into the result.
func (g *LatencyResult) add(run *LatencyRun) {
	g.Runs = append(g.Runs, run)
	g.hist.Merge(run.hist)
	g.Sent += run.Sent
	g.Measured += run.Measured
	g.Lost += run.Lost
	g.Dups += run.dups
	g.Unstamped += run.unstamped
	g.Negative += run.negative
	for k, v := range run.drops {
		if g.Drops == nil {
			g.Drops = map[string]uint64{}
		}
		g.Drops[k] += v
	}
	var pps []float64
	for _, r := range g.Runs {
		pps = append(pps, r.SentPPS)
	}
	g.SentPPS = median(pps)
	h := &g.hist
	g.P50, g.P90, g.P99, g.P999 = us(h.Quantile(0.5)), us(h.Quantile(0.9)), us(h.Quantile(0.99)), us(h.Quantile(0.999))
	g.Max, g.Min, g.Mean = us(h.Max()), us(h.Min()), h.Mean()/1e3
	g.Buckets = g.Buckets[:0]
	h.Buckets(func(i int, n uint64) {
		_, hi := bench.HistBucketRange(i)
		g.Buckets = append(g.Buckets, [2]float64{us(min(hi, h.Max())), float64(n)})
	})
}

// WriteJSON writes the report to a file, indented.
func (r *LatencyReport) WriteJSON(name string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(name, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("can't write the JSON report: %w", err)
	}
	return nil
}

// check refuses what would fail only later, after the bed was built.
func (o *LatencyOptions) check() error {
	if len(o.Paths) == 0 || len(o.Rates) == 0 {
		return errors.New("a latency sweep needs at least one path and one rate")
	}
	if o.Reps < 1 || o.Duration <= 0 {
		return fmt.Errorf("a latency sweep needs at least one repetition (not %d) of a positive duration (not %v)", o.Reps, o.Duration)
	}
	for _, r := range o.Rates {
		if r < 1 || r > 20e6 {
			return fmt.Errorf("rate %v: want 1 to 20M datagrams per second", r)
		}
	}
	if o.Gen == "" {
		o.Gen = GenAFXDP
	}
	if o.Gen != GenAFXDP && o.Gen != GenSendmmsg {
		return fmt.Errorf("generator %q: pktbench latency sends with afxdp or sendmmsg (the live generator can't stamp the time)", o.Gen)
	}
	hl := bench.HeaderLen(o.IPv6)
	if o.Size < hl+bench.StampedLen || o.Size > afxdp.DefaultFrameSize-256 {
		return fmt.Errorf("frame size %d: want %d (headers, a sequence number and a stamp) to %d", o.Size, hl+bench.StampedLen, afxdp.DefaultFrameSize-256)
	}
	for _, p := range o.Paths {
		if !slices.Contains(LatencyPaths(), p) {
			return fmt.Errorf("unknown latency path %q: want some of %s", p, strings.Join(LatencyPaths(), ", "))
		}
		if IsLatServer(p) && o.Rx.Xdpingest == "" {
			return fmt.Errorf("the %s path needs the xdpingest binary: set Rx.Xdpingest", p)
		}
		if IsLatCref(p) && o.Rx.Xskdrop == "" {
			return fmt.Errorf("the %s path needs the xskdrop binary: set Rx.Xskdrop", p)
		}
	}
	return nil
}

// IsLatServer says the latency path runs the xdpingest binary.
func IsLatServer(p string) bool { return p == LatServer || p == LatServerLow }

// IsLatCref says the latency path runs bench/cref/xskdrop.
func IsLatCref(p string) bool { return p == LatCref || p == LatCrefPoll || p == LatCrefSpin }

// crefSpinForever is xskdrop's run of empty checks in afxdp-c-spin: it
// never sleeps within a run.
const crefSpinForever = 1 << 40

// latencyPort is the first run's UDP port; each run takes the next, so
// that nothing of one run reaches the next one's receiver.
const latencyPort = 9500

// latencySinkPort is where the server path's relay sends, on 127.0.0.1.
const latencySinkPort = 9499

// Latency builds a one-queue test bed, runs every path at every rate with
// the sender pinned to one CPU and the receiver to another, and returns the
// report, complete or not (nil when the options are wrong). The bed is
// removed whatever happens.
func Latency(ctx context.Context, o LatencyOptions) (rep *LatencyReport, err error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	allowed, err := tuning.AllowedCPUs()
	if err != nil {
		return nil, err
	}
	cpus := allowed.List()
	rep = &LatencyReport{Tool: "pktbench latency", Version: version.String(), Started: time.Now().UTC(), Command: o.Command,
		Machine: ReadMachine(), Generator: o.Gen, Size: o.Size, IPv6: o.IPv6, Duration: o.Duration.Seconds(), Reps: o.Reps,
		Rates: o.Rates, Paths: o.Paths, Resolution: 1.0 / (1 << bench.HistSubBits), ClockErrorUs: bench.MonoAnchorError().Seconds() * 1e6}
	rep.Machine.AllowedCPUs = allowed.String()

	bed, err := testbed.New(testbed.Config{Queues: 1})
	if err != nil {
		return rep, fmt.Errorf("can't build the test bed: %w", err)
	}
	defer func() {
		if cerr := bed.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("can't remove the test bed: %w", cerr))
		}
		if err != nil {
			rep.Error = err.Error()
		}
	}()
	// The sender on the first CPU (the veth processes the frames there,
	// inside its send), the receiver on the next, as compare does.
	genCPU, rxCPUs := cpus[0], cpus[:1]
	if len(cpus) > 1 {
		rxCPUs = cpus[1:2]
	}
	src, dst := bed.Gen.IPv4, bed.Rx.IPv4
	if o.IPv6 {
		src, dst = bed.Gen.IPv6, bed.Rx.IPv6
	}
	po := o.Rx
	po.Side, po.Iface, po.Queues, po.CPUs, po.XDPMode, po.Meter = bed.Rx, bed.Rx.Link, []int{0}, rxCPUs, o.XDPMode, true
	snd := latSender{kind: o.Gen, side: bed.Gen, iface: Iface{Name: bed.Gen.Link, Index: bed.Gen.Index, MAC: bed.Gen.MAC},
		srcMAC: bed.Gen.MAC, dstMAC: bed.Rx.MAC, src: netip.AddrPortFrom(src, 10000), size: o.Size, duration: o.Duration, cpu: genCPU}
	st := LatencyStep{Total: len(o.Rates) * o.Reps * len(o.Paths), Reps: o.Reps}
	runs := 0
	for _, rate := range o.Rates {
		for r := 1; r <= o.Reps; r++ {
			for _, path := range o.Paths {
				if err := ctx.Err(); err != nil {
					return rep, err
				}
				st.N++
				st.Rate, st.Rep, st.Path, st.Result = rate, r, path, nil
				if o.Progress != nil {
					o.Progress(st)
				}
				runs++
				po.Port = latencyPort + uint16(runs%400)
				snd.dst, snd.rate = netip.AddrPortFrom(dst, po.Port), rate
				run, desc, err := latencyOnce(ctx, path, po, snd)
				if err != nil {
					return rep, fmt.Errorf("%s at %v/s, repetition %d: %w", path, rate, r, err)
				}
				run.Rep = r
				g := rep.Result(path, rate)
				g.Describe = desc
				g.add(run)
				st.Result = run
				if o.Progress != nil {
					o.Progress(st)
				}
			}
		}
	}
	rep.Complete = true
	return rep, nil
}

// latencyOnce starts a path, runs the sender against it, waits for what is
// in flight and stops the path.
func latencyOnce(ctx context.Context, path string, po PathOptions, snd latSender) (*LatencyRun, string, error) {
	// The interface's counters count from the bed's start: the run's
	// drops are their growth.
	eth0 := map[string]uint64{}
	if eth := newEthStats(po.Side, po.Iface); eth != nil {
		eth.add(eth0)
		eth.close()
	}
	rx, err := startLatencyPath(path, po)
	if err != nil {
		return nil, "", err
	}
	desc := rx.Describe()
	sent, elapsed, serr := snd.run(ctx)
	if serr == nil {
		serr = ctx.Err()
	}
	if serr == nil {
		// What is in rings and buffers arrives within microseconds, but a
		// receiver descheduled on a busy machine can stall for tens of
		// milliseconds: wait for everything, or for 250 ms without
		// progress (what is missing then was dropped), 2 s at most.
		last, moved := rx.Measured(), time.Now()
		for t0 := time.Now(); time.Since(t0) < 2*time.Second && last < sent+latWarm && time.Since(moved) < 250*time.Millisecond; {
			time.Sleep(10 * time.Millisecond)
			if n := rx.Measured(); n != last {
				last, moved = n, time.Now()
			}
		}
	}
	out, err := rx.Stop()
	if err = errors.Join(serr, err); err != nil {
		return nil, desc, err
	}
	for k, v := range out.drops {
		if strings.HasPrefix(k, "if_") {
			if v -= min(v, eth0[k]); v == 0 {
				delete(out.drops, k)
			} else {
				out.drops[k] = v
			}
		}
	}
	run := &LatencyRun{Sent: sent, Measured: out.hist.Count() + out.hist.Negative, hist: &out.hist,
		unstamped: out.unstamped, negative: out.hist.Negative, drops: out.drops}
	if elapsed > 0 {
		run.SentPPS = float64(sent) / elapsed.Seconds()
	}
	if out.meter != nil {
		l := out.meter.LossAgainst(map[uint16]uint64{0: sent})
		run.Lost, run.dups = l.Missing, l.Dups
	} else if sent > run.Measured {
		run.Lost = sent - run.Measured
	}
	run.P50, run.P99, run.Max = us(out.hist.Quantile(0.5)), us(out.hist.Quantile(0.99)), us(out.hist.Max())
	return run, desc, nil
}

// latOut is what a latency receiver measured.
type latOut struct {
	hist      bench.Histogram
	meter     *bench.SeqMeter // nil on afxdp-c
	unstamped uint64
	drops     map[string]uint64
}

// latRx is a running latency receiver.
type latRx interface {
	Describe() string
	// Measured is the number of datagrams handed over so far, the
	// sender's warm-up included.
	Measured() uint64
	Stop() (latOut, error)
}

func startLatencyPath(name string, o PathOptions) (latRx, error) {
	switch name {
	case LatAFXDP, LatAFXDPPoll, LatAFXDPBusy, LatAFXDPSpin:
		return startLatAFXDP(name, o)
	case LatKernel, LatStdnet:
		return startLatKernel(name, o)
	case LatCref, LatCrefPoll, LatCrefSpin:
		switch name {
		case LatCrefPoll:
			o.Nap = -1
		case LatCrefSpin:
			o.Spin = crefSpinForever
		}
		r, err := startCrefMode(o, crefLatency)
		if err != nil {
			return nil, err
		}
		return latCref{r: r, nap: max(cmp.Or(o.Nap, afxdp.DefaultNap), 0)}, nil
	case LatServer, LatServerLow:
		o.LowLatency = name == LatServerLow
		return startLatServer(o)
	}
	return nil, fmt.Errorf("unknown latency path %q: want one of %s", name, strings.Join(LatencyPaths(), ", "))
}

// --- receive loops that read the stamps ---

// latLoops are Go receive loops that record latencies: loop i keeps
// hists[i] and unstamped[i], read once the loops are done.
type latLoops struct {
	loops     *loops
	hists     []bench.Histogram
	unstamped []uint64
	measured  atomic.Uint64
}

// record reads the clock once, when Receive has handed a batch over, and
// records every datagram's latency; the sequence meter counts it once.
func (g *latLoops) record(i int, l *loop, batch []datapath.Datagram) {
	now := bench.MonoNow()
	for j := range batch {
		g.recordOne(i, l, batch[j].Payload, now)
	}
	g.measured.Add(uint64(len(batch)))
}

func (g *latLoops) recordOne(i int, l *loop, p []byte, now int64) {
	sent, ok := bench.ReadStamp(p)
	if !ok {
		g.unstamped[i]++
		return
	}
	if seq, _ := bench.DecodeWide(p); seq>>bench.StreamShift == latWarmStream {
		return
	}
	g.hists[i].Record(now - sent)
	if l.meter != nil {
		l.meter.Add(p)
	}
}

// startLatLoops runs n receive loops: receive(i) returns loop i's next
// batch (net.ErrClosed when closed). stdnet passes recv instead: one
// datagram at a time.
func startLatLoops(n int, o PathOptions, receive func(i int, batch []datapath.Datagram) (int, error)) *latLoops {
	g := &latLoops{hists: make([]bench.Histogram, n), unstamped: make([]uint64, n)}
	g.loops = startLoops(n, o, func(i int, l *loop) error {
		batch := make([]datapath.Datagram, 64)
		for {
			k, err := receive(i, batch)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return nil
				}
				return err
			}
			g.record(i, l, batch[:k])
		}
	})
	return g
}

// wait waits for the loops and merges what they measured.
func (g *latLoops) wait() (latOut, error) {
	m, err := g.loops.wait()
	out := latOut{meter: m, drops: map[string]uint64{}}
	for i := range g.hists {
		out.hist.Merge(&g.hists[i])
		out.unstamped += g.unstamped[i]
	}
	return out, err
}

// --- afxdp ---

type latAFXDP struct {
	name string
	nap  time.Duration
	a    *attached
	p    *afxdp.Path
	g    *latLoops
}

func startLatAFXDP(name string, o PathOptions) (latRx, error) {
	a, err := attach(o, xdp.Redirect, xdp.OutcomeRedirect)
	if err != nil {
		return nil, err
	}
	cfg := afxdp.Config{Iface: o.Iface, Queues: o.Queues, SpinChecks: o.Spin, Nap: o.Nap,
		NumFrames: o.Frames, FillRingSize: o.RingSize, RxRingSize: o.RingSize}
	switch name {
	case LatAFXDPPoll:
		cfg.Nap = -1
	case LatAFXDPBusy:
		cfg.BusyPoll = true
	case LatAFXDPSpin:
		cfg.SpinFor = afxdp.LowLatencySpin
	}
	var p *afxdp.Path
	if err := nsDo(o.Side, func() (err error) { p, err = afxdp.Open(cfg, a.prog); return err }); err != nil {
		a.close()
		return nil, err
	}
	socks := p.Sockets()
	r := &latAFXDP{name: name, nap: cmp.Or(o.Nap, afxdp.DefaultNap), a: a, p: p}
	r.g = startLatLoops(len(socks), o, func(i int, batch []datapath.Datagram) (int, error) { return socks[i].Receive(batch) })
	return r, nil
}

func (r *latAFXDP) Describe() string {
	wait := fmt.Sprintf("naps of up to %v while traffic is dense, else poll()", r.nap)
	switch {
	case r.name == LatAFXDPSpin:
		wait = fmt.Sprintf("spins until %v after the last datagram (the low-latency setting)", afxdp.LowLatencySpin)
	case r.name == LatAFXDPPoll || r.nap < 0:
		wait = "poll() when empty, no nap"
	case r.name == LatAFXDPBusy:
		wait = "busy poll: no nap, a recvfrom per empty check, then poll() (veth copy mode gives the socket no NAPI to poll)"
	}
	return fmt.Sprintf("AF_XDP %s mode, %s, XDP %s mode", r.p.Mode(), wait, r.a.att.Mode)
}

func (r *latAFXDP) Measured() uint64 { return r.g.measured.Load() }

func (r *latAFXDP) Stop() (latOut, error) {
	cerr := r.p.Close()
	out, lerr := r.g.wait()
	r.a.drops(out.drops)
	addXSKDrops(out.drops, r.p.Stats())
	return out, errors.Join(lerr, cerr, r.a.close())
}

// --- kernel and stdnet ---

type latKernel struct {
	k *kernelRx
	g *latLoops
}

func startLatKernel(name string, o PathOptions) (latRx, error) {
	r := &kernelRx{name: name}
	var err error
	if r.a, err = attach(o, xdp.Pass, xdp.OutcomePassMatch); err != nil {
		return nil, err
	}
	if err := r.open(o, name == LatKernel); err != nil {
		r.a.close()
		return nil, err
	}
	if name == LatKernel {
		g := startLatLoops(len(r.rs), o, func(i int, batch []datapath.Datagram) (int, error) { return r.rs[i].Receive(batch) })
		return &latKernel{k: r, g: g}, nil
	}
	buf := make([]byte, 9216)
	g := startLatLoops(1, o, func(i int, batch []datapath.Datagram) (int, error) {
		n, _, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			return 0, err
		}
		batch[0] = datapath.Datagram{Payload: buf[:n]}
		return 1, nil
	})
	return &latKernel{k: r, g: g}, nil
}

func (r *latKernel) Describe() string      { return r.k.Describe() }
func (r *latKernel) Measured() uint64      { return r.g.measured.Load() }
func (r *latKernel) Stop() (latOut, error) { return stopLatKernel(r.k, r.g) }

// stopLatKernel reads the sockets' drop counters (gone once they are
// closed), closes them and waits for the loops.
func stopLatKernel(k *kernelRx, g *latLoops) (latOut, error) {
	drops := map[string]uint64{}
	k.addDrops(drops)
	var errs []error
	for _, rx := range k.rs {
		errs = append(errs, rx.Close())
	}
	if k.conn != nil {
		errs = append(errs, k.conn.Close())
	}
	out, lerr := g.wait()
	for key, v := range drops {
		out.drops[key] = v
	}
	errs = append(errs, lerr, k.a.close())
	return out, errors.Join(errs...)
}

// --- afxdp-c ---

type latCref struct {
	r   *crefRx
	nap time.Duration
}

func (c latCref) Describe() string {
	if c.r.spin >= crefSpinForever {
		return c.r.Describe() + ", never sleeps"
	}
	if c.nap == 0 {
		return c.r.Describe() + ", poll() when empty, no nap"
	}
	return c.r.Describe() + fmt.Sprintf(", naps of %v while the last frame came less than 64 naps ago, else poll()", c.nap)
}

func (c latCref) Measured() uint64 {
	var n uint64
	for _, p := range c.r.procs {
		n += p.packets.Load()
	}
	return n
}

func (c latCref) Stop() (latOut, error) {
	s, _, err := c.r.Stop()
	out := latOut{drops: s.Drops}
	var errs []error
	for _, p := range c.r.procs {
		p.mu.Lock()
		out.hist.Merge(&p.lat)
		out.unstamped += p.stats["lat_unstamped"]
		if p.stats["lat_count"] != p.lat.Count() {
			errs = append(errs, fmt.Errorf("xskdrop on queue %d measured %d datagrams, and its histogram holds %d", p.queue, p.stats["lat_count"], p.lat.Count()))
		}
		errs = append(errs, p.latErr)
		p.mu.Unlock()
	}
	return out, errors.Join(append(errs, err)...)
}

// --- server ---

// latServer is xdpingest relaying to a collector: the kernel path's
// receiver on 127.0.0.1 in the receiving namespace, on a thread of its own
// (not pinned: the server's worker has the receiving CPU).
type latServer struct {
	srv *serverRx
	k   *kernelRx
	g   *latLoops
}

func startLatServer(o PathOptions) (latRx, error) {
	k := &kernelRx{name: LatKernel}
	err := nsDo(o.Side, func() (err error) {
		var kp *kernel.Path
		if kp, err = kernel.Open(kernel.Config{Ports: []uint16{latencySinkPort}, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
			Workers: 1, RcvBuf: kernelRcvBuf, ForceRcvBuf: true}); err == nil {
			k.rs = kp.Workers()
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("can't open the relay's collector on 127.0.0.1:%d: %w", latencySinkPort, err)
	}
	co := o
	co.CPUs = nil
	g := startLatLoops(1, co, func(i int, batch []datapath.Datagram) (int, error) { return k.rs[i].Receive(batch) })
	srv, err := startServer(o, fmt.Sprintf("udp://127.0.0.1:%d", latencySinkPort))
	if err != nil {
		stopLatKernel(k, g)
		return nil, err
	}
	return &latServer{srv: srv.(*serverRx), k: k, g: g}, nil
}

func (r *latServer) Describe() string {
	return r.srv.Describe() + fmt.Sprintf(", to a recvmmsg collector on 127.0.0.1:%d", latencySinkPort)
}

func (r *latServer) Measured() uint64 { return r.g.measured.Load() }

func (r *latServer) Stop() (latOut, error) {
	s, _, serr := r.srv.Stop()
	out, err := stopLatKernel(r.k, r.g)
	for key, v := range s.Drops {
		out.drops["server_"+key] = v
	}
	return out, errors.Join(serr, err)
}
