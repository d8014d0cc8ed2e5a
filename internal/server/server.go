package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/datapath/afxdp"
	"github.com/xdpingest/xdpingest/datapath/kernel"
	"github.com/xdpingest/xdpingest/internal/config"
	"github.com/xdpingest/xdpingest/internal/pipeline"
	"github.com/xdpingest/xdpingest/internal/portset"
	"github.com/xdpingest/xdpingest/sink"
	"github.com/xdpingest/xdpingest/tuning"
	"github.com/xdpingest/xdpingest/xdp"
)

// ConfigError is a problem with the settings or the interface found before
// anything was attached or changed: the command exits with status 2.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func configErr(format string, a ...any) error { return &ConfigError{Err: fmt.Errorf(format, a...)} }

// Env is what Run needs from its surroundings, replaceable in tests.
type Env struct {
	Log *slog.Logger
	// Signals delivers SIGINT, SIGTERM and SIGHUP; nil subscribes to the
	// process's own.
	Signals <-chan os.Signal
	// Reload re-reads the configuration on SIGHUP; nil keeps the one given.
	Reload func() (*config.Resolved, error)
	// Ready, when not nil, is called once the server takes traffic, with
	// the address the metrics listener got (useful with port 0).
	Ready func(metricsAddr string)
	// Roots of /proc and /sys for queue discovery (zero: the real ones).
	Roots tuning.Roots
}

// server is one run's state.
type server struct {
	cfg     *config.Resolved
	env     Env
	log     *slog.Logger
	ifindex int

	tuned *tuning.Applied
	sinks []sink.Sink
	prog  *xdp.Program
	att   *xdp.Attachment
	// path is the receive path: AF_XDP joined with the kernel sockets
	// beside it, or the kernel path alone. rxs are its receivers.
	path    datapath.Path
	rxs     []datapath.Receiver
	workers []tuning.WorkerCPU
	pipe    *pipeline.Pipeline
	metrics *metrics
	httpSrv *http.Server
	ready   atomic.Bool
	health  atomic.Pointer[pipeline.Pipeline]
	// notify is systemd's notify socket (notify.go); nil outside systemd.
	notify *notifier
}

// Run runs the server until ctx is done or SIGINT/SIGTERM arrives, then
// drains and shuts down. Errors found before anything is attached are
// *ConfigError.
func Run(ctx context.Context, cfg *config.Resolved, env Env) (err error) {
	s := &server{cfg: cfg, env: env, log: env.Log, metrics: &metrics{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.env.Roots == (tuning.Roots{}) {
		s.env.Roots = tuning.DefaultRoots()
	}
	sigs := env.Signals
	if sigs == nil {
		ch := make(chan os.Signal, 4)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		defer signal.Stop(ch)
		sigs = ch
	}
	defer func() {
		if cerr := s.close(); cerr != nil {
			s.log.Error("shutdown", "err", cerr)
			if err == nil {
				err = cerr
			}
		}
	}()
	if err := s.preflight(); err != nil {
		return err
	}
	if err := s.start(ctx); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return s.shutdown("context done")
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				s.reload()
				continue
			}
			return s.shutdown(sig.String())
		}
	}
}

// preflight checks everything that can be checked without changing
// anything: the interface, a foreign XDP program, the queues, the tuning
// profile, the metrics address.
func (s *server) preflight() error {
	c := s.cfg
	ifi, err := net.InterfaceByName(c.Iface)
	if err != nil {
		return configErr("no interface %s in this network namespace (%v)", c.Iface, err)
	}
	s.ifindex = ifi.Index
	if os.Geteuid() != 0 && c.Path != config.PathKernel {
		s.log.Warn("not running as root: attaching XDP and AF_XDP need CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW")
	}
	if e, err := xdp.Inspect(s.ifindex); err == nil && e != nil && !c.Replace {
		return configErr("interface %s already carries %s; stop its owner or pass --replace", c.Iface, e)
	}
	if c.Queues != nil {
		n, err := afxdp.RxQueues(c.Iface)
		if err == nil {
			for _, q := range c.Queues {
				if q >= n {
					return configErr("--queues %s: %s has %d RX queues (0..%d)", c.Raw.Queues, c.Iface, n, n-1)
				}
			}
		}
	}
	if !c.CPUs.IsEmpty() {
		if _, err := s.allowedCPUs(); err != nil {
			return configErr("%v", err)
		}
	}
	if c.Tune != nil {
		if _, err := tuning.PlanProfile(context.Background(), c.Iface, c.Tune, tuning.Options{Roots: s.env.Roots, NoState: true}); err != nil && errors.Is(err, tuning.ErrBadInput) {
			return configErr("--tune %s: %v", c.Raw.Tune, err)
		}
	}
	if c.MetricsAddr != "" {
		ln, err := net.Listen("tcp", c.MetricsAddr)
		if err != nil {
			return configErr("--metrics-addr %s: %v", c.MetricsAddr, err)
		}
		s.serveHTTP(ln)
	}
	return nil
}

func (s *server) serveHTTP(ln net.Listener) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.metrics, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if problems := s.healthProblems(); len(problems) > 0 {
			http.Error(w, "unhealthy: "+strings.Join(problems, "\nunhealthy: "), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go s.httpSrv.Serve(ln)
}

// healthProblems is for the health endpoint, which runs from before the
// pipeline exists: it reads the pipeline through an atomic pointer. A worker
// that failed, a worker stuck on one batch and a sink that writes nothing of
// what it is offered each make a line.
func (s *server) healthProblems() []string {
	p := s.health.Load()
	if p == nil {
		return nil
	}
	var problems []string
	if err := p.Err(); err != nil {
		problems = append(problems, err.Error())
	}
	return append(problems, p.Health()...)
}

func (s *server) start(ctx context.Context) error {
	c := s.cfg
	if c.Tune != nil {
		a, err := tuning.Apply(ctx, c.Iface, c.Tune, tuning.Options{Roots: s.env.Roots})
		s.tuned = a
		if err != nil {
			return fmt.Errorf("--tune %s: %w", c.Raw.Tune, err)
		}
		s.log.Info("tuning profile applied; reverted at exit", "profile", c.Raw.Tune, "outcome", a.Outcome().String(), "state", a.StatePath)
	}

	if err := s.attachXDP(); err != nil {
		return err
	}
	if err := s.openPath(); err != nil {
		return err
	}
	// The sinks open once the number of workers is known. Traffic for our
	// ports meanwhile reaches the sockets' rings, which wait.
	sinks, err := sink.OpenAll(ctx, c.Sinks, sink.Options{Workers: len(s.rxs), Logger: s.log, CloseTimeout: s.closeBudget()})
	if err != nil {
		return err
	}
	s.sinks = sinks
	cpus := make([]int, len(s.rxs))
	for i := range cpus {
		cpus[i] = -1
		if i < len(s.workers) {
			cpus[i] = s.workers[i].CPU
		}
	}
	routes := make([]*portset.Set, len(s.sinks))
	for i, sp := range c.Sinks {
		if sp.Ports != nil {
			routes[i] = portset.Of(sp.Ports)
			// Its metrics and log lines name the ports it takes.
			s.sinks[i] = routedSink{Sink: s.sinks[i], name: sp.String()}
		}
	}
	pipe, err := pipeline.New(pipeline.Config{Receivers: s.rxs, CPUs: cpus, Sinks: s.sinks, Routes: routes, QueueBytes: c.QueueBytes,
		BlockOnFull: c.BlockOnFull, BatchSize: c.BatchSize, Slice: c.SchedSlice, Nice: c.WorkerNice, Log: s.log})
	if err != nil {
		return err
	}
	s.pipe = pipe
	if ax := s.afxdpPart(); ax != nil && (c.Nap > 0 || c.LowLatency) && os.Getenv("GOMAXPROCS") == "" {
		// AF_XDP workers keep their P while they nap (afxdp.Config.Nap)
		// or spin (--latency low): the sink writers and the rest get Ps
		// of their own.
		n := runtime.GOMAXPROCS(0) + len(ax.Receivers())
		runtime.GOMAXPROCS(n)
		s.log.Info("GOMAXPROCS raised by the AF_XDP workers, which keep theirs while they nap (set GOMAXPROCS to choose)", "gomaxprocs", n)
	}
	s.health.Store(pipe)
	s.metrics.set(s.path, s.xdpModeName(), s.prog, s.pipe, s.sinks)
	pipe.Start()
	s.ready.Store(true)
	s.logStart()
	s.notifyReady()
	if s.env.Ready != nil {
		addr := ""
		if s.httpSrv != nil {
			addr = s.cfg.MetricsAddr
		}
		s.env.Ready(addr)
	}
	return nil
}

// routedSink is a sink with ?ports=, named with them.
type routedSink struct {
	sink.Sink
	name string
}

func (r routedSink) Name() string { return r.name }

// Connected passes on the sink's state, when it has one.
func (r routedSink) Connected() bool {
	c, ok := r.Sink.(sink.Connector)
	return !ok || c.Connected()
}

// Abort passes the drain's timeout on to a sink that waits in Write.
func (r routedSink) Abort() {
	if a, ok := r.Sink.(sink.Aborter); ok {
		a.Abort()
	}
}

// attachXDP loads and attaches the program. On the kernel path and in auto
// mode a failure to attach is not fatal: the kernel path runs without it,
// saying why, and the loaded program's socket filter still enforces --allow
// and --deny on the kernel sockets. Without even a loaded program the lists
// can't be enforced, and the server refuses to start with them.
func (s *server) attachXDP() error {
	c := s.cfg
	action := xdp.Redirect
	if c.Path == config.PathKernel {
		action = xdp.Pass
	}
	maxQ := 256
	if n, err := afxdp.RxQueues(c.Iface); err == nil && n > maxQ {
		maxQ = n
	}
	// A matched frame larger than an AF_XDP frame holds goes to the kernel
	// sockets (outcome oversize) rather than being lost after the redirect.
	maxRedirect := xdp.MaxRedirectFor(c.FrameSize, 0)
	// The socket filter refuses what reaches the kernel sockets over
	// another interface (a local process sending to our address).
	prog, err := xdp.Load(xdp.Config{Ports: c.Ports, Allow: c.Allow, Deny: c.Deny, Action: action, MaxRedirect: maxRedirect,
		SocketIfindex: s.ifindex},
		xdp.LoadOptions{MaxQueues: maxQ, MaxPrefixes: config.MaxPrefixes})
	if err == nil {
		var att *xdp.Attachment
		att, err = prog.Attach(s.ifindex, xdp.AttachOptions{Mode: c.XDPMode, Replace: c.Replace})
		if err == nil {
			s.prog, s.att = prog, att
			if att.Fallback != "" {
				s.log.Warn("XDP runs in generic mode", "reason", att.Fallback)
			}
			if att.Replaced != "" {
				s.log.Warn("replaced the interface's XDP program (--replace)", "replaced", att.Replaced)
			}
			return nil
		}
		if c.Path == config.PathAFXDP {
			prog.Close()
			return fmt.Errorf("--path afxdp needs the XDP program: %w", err)
		}
		// Unattached, it still filters the kernel sockets.
		s.prog = prog
		s.log.Warn("running the kernel path without the XDP program; the lists hold at the sockets", "reason", err.Error())
		return nil
	}
	if c.Path == config.PathAFXDP {
		return fmt.Errorf("--path afxdp needs the XDP program: %w", err)
	}
	if len(c.Allow) > 0 || len(c.Deny) > 0 {
		return fmt.Errorf("the XDP program can't be loaded (%v), and without it --allow and --deny can't be enforced: fix the cause or drop the lists", err)
	}
	s.log.Warn("running the kernel path without the XDP program", "reason", err.Error())
	return nil
}

// openPath opens the receive path: AF_XDP unless forced to the kernel path
// or unable, then the kernel path.
//
// The AF_XDP path has kernel sockets beside it, on the same ports, bound to
// the interface: they take what the program passes to the kernel for our
// ports (IPv4 fragments and IPv6 extension headers, which the kernel
// reassembles or parses; frames too large for an AF_XDP frame; matches on a
// queue without a socket), one more worker feeding the same sinks.
func (s *server) openPath() error {
	c := s.cfg
	var why string
	if c.Path != config.PathKernel && s.att != nil {
		s.planWorkers(c.Queues)
		p, err := afxdp.Open(afxdp.Config{Iface: c.Iface, Queues: c.Queues, FrameSize: c.FrameSize, NumFrames: c.Frames,
			FillRingSize: c.RingSize, RxRingSize: c.RingSize, CompletionRingSize: 64, BusyPoll: c.BusyPoll, Nap: napConfig(c.Nap), SpinFor: spinConfig(c.LowLatency)}, s.prog)
		if err == nil {
			s.path, s.rxs = p, p.Receivers()
			s.alignWorkers()
			kp, err := s.openKernel(1, nil)
			if err != nil {
				return fmt.Errorf("the kernel sockets beside AF_XDP, for what the XDP program passes: %w", err)
			}
			s.path = datapath.Join(p, kp)
			s.rxs = s.path.Receivers()
			for _, r := range kp.Workers() {
				s.workers = append(s.workers, tuning.WorkerCPU{Queue: r.Queue(), CPU: -1, Reason: "passed", Node: -1})
			}
			return nil
		}
		if c.Path == config.PathAFXDP {
			return fmt.Errorf("--path afxdp: %w", err)
		}
		why = err.Error()
	} else if c.Path != config.PathKernel {
		why = "no XDP program"
	}
	if why != "" {
		s.log.Warn("AF_XDP can't run; falling back to the kernel socket path", "reason", why)
	}
	if s.prog != nil {
		if err := s.prog.SetAction(xdp.Pass); err != nil {
			return err
		}
	}
	n := c.Workers
	if n == 0 {
		n = 1
		if q, err := afxdp.RxQueues(c.Iface); err == nil {
			n = q
		}
		if c.Queues != nil {
			n = len(c.Queues)
		}
		if allowed, err := s.allowedCPUs(); err == nil {
			n = min(n, allowed.Len())
		}
	}
	s.planSpread(n)
	cpus := make([]int, n)
	distinct := map[int]bool{}
	for i := range cpus {
		cpus[i] = s.workers[i].CPU
		distinct[cpus[i]] = true
	}
	if len(distinct) != n {
		cpus = nil
	}
	kp, err := s.openKernel(n, cpus)
	if err != nil {
		return fmt.Errorf("kernel path: %w", err)
	}
	s.path, s.rxs = kp, kp.Receivers()
	return nil
}

// openKernel opens n kernel-path receivers on the ingest ports, bound to
// the interface and filtered by the program's lists (when a program is
// loaded), steered to cpus when given.
func (s *server) openKernel(n int, cpus []int) (*kernel.Path, error) {
	c := s.cfg
	kcfg := kernel.Config{Ports: c.Ports, Workers: n, Batch: c.BatchSize, RcvBuf: c.RcvBufBytes, ForceRcvBuf: true,
		Device: c.Iface, CPUs: cpus}
	if s.prog != nil {
		kcfg.Filter = s.prog.SocketFilter()
	}
	p, err := kernel.Open(kcfg)
	if err != nil {
		return nil, err
	}
	for _, w := range p.Notes() {
		s.log.Warn(w)
	}
	return p, nil
}

// afxdpPart and kernelPart return the parts of the receive path, or nil.
func (s *server) afxdpPart() *afxdp.Path {
	if s.path != nil {
		for _, p := range datapath.Parts(s.path) {
			if ap, ok := p.(*afxdp.Path); ok {
				return ap
			}
		}
	}
	return nil
}

func (s *server) kernelPart() *kernel.Path {
	if s.path != nil {
		for _, p := range datapath.Parts(s.path) {
			if kp, ok := p.(*kernel.Path); ok {
				return kp
			}
		}
	}
	return nil
}

// allowedCPUs is the process's CPU set, narrowed by --cpus.
func (s *server) allowedCPUs() (tuning.CPUSet, error) {
	allowed, err := tuning.AllowedCPUs()
	if err != nil {
		return allowed, err
	}
	if !s.cfg.CPUs.IsEmpty() {
		allowed = allowed.Intersect(s.cfg.CPUs)
		if allowed.IsEmpty() {
			return allowed, fmt.Errorf("--cpus %s leaves no CPU this process may use", s.cfg.CPUs)
		}
	}
	return allowed, nil
}

// planWorkers chooses a CPU per queue from the IRQ affinities, or spreads
// them when discovery fails.
func (s *server) planWorkers(queues []int) {
	allowed, err := s.allowedCPUs()
	if err != nil {
		s.log.Warn("can't read the allowed CPUs; workers run unpinned", "err", err)
		return
	}
	qm, err := tuning.DiscoverQueues(s.env.Roots, s.cfg.Iface)
	if err == nil {
		ws, err := tuning.PlanWorkers(qm, queues, allowed)
		if err == nil {
			s.workers = ws
			return
		}
		s.log.Warn("can't place workers by IRQ affinity; spreading them", "err", err)
	} else {
		s.log.Warn("can't discover the queues' IRQs; spreading workers over the allowed CPUs", "err", err)
	}
	n := len(queues)
	if n == 0 {
		if q, err := afxdp.RxQueues(s.cfg.Iface); err == nil {
			n = q
		}
	}
	s.planSpread(n)
	if queues != nil {
		for i := range s.workers {
			s.workers[i].Queue = queues[i]
		}
	}
}

// planSpread puts n workers round-robin over the allowed CPUs.
func (s *server) planSpread(n int) {
	s.workers = nil
	allowed, err := s.allowedCPUs()
	list := allowed.List()
	for i := 0; i < n; i++ {
		w := tuning.WorkerCPU{Queue: i, CPU: -1, Reason: "unpinned", Node: -1}
		if err == nil && len(list) > 0 {
			w.CPU, w.Reason = list[i%len(list)], "spread"
		}
		s.workers = append(s.workers, w)
	}
}

// alignWorkers orders the planned CPUs like the AF_XDP path's receivers
// (all of s.rxs when it is called).
func (s *server) alignWorkers() {
	byQueue := map[int]tuning.WorkerCPU{}
	for _, w := range s.workers {
		byQueue[w.Queue] = w
	}
	out := make([]tuning.WorkerCPU, len(s.rxs))
	for i, rx := range s.rxs {
		w, ok := byQueue[rx.Queue()]
		if !ok {
			w = tuning.WorkerCPU{Queue: rx.Queue(), CPU: -1, Reason: "unpinned", Node: -1}
		}
		out[i] = w
	}
	s.workers = out
}

// xdpModeName is the XDP program's attach mode, or "none".
func (s *server) xdpModeName() string {
	if s.att != nil {
		return s.att.Mode.String()
	}
	return "none"
}

func (s *server) logStart() {
	c := s.cfg
	mode := s.xdpModeName()
	copyMode := "-"
	if ax := s.afxdpPart(); ax != nil {
		copyMode = ax.Mode()
	}
	var qs []string
	for _, w := range s.workers {
		cpu := "any"
		if w.CPU >= 0 {
			cpu = "cpu" + strconv.Itoa(w.CPU)
		}
		qs = append(qs, fmt.Sprintf("%d@%s(%s)", w.Queue, cpu, w.Reason))
	}
	var names []string
	for _, sk := range s.sinks {
		names = append(names, sk.Name())
	}
	s.log.Info("xdpingest started",
		"iface", c.Iface, "path", s.path.Name(), "xdp_mode", mode, "afxdp_mode", copyMode,
		"workers", strings.Join(qs, ","), "ports", config.FormatPorts(c.Ports),
		"allow", prefixes(c.Raw.Allow), "deny", prefixes(c.Raw.Deny),
		"sinks", strings.Join(names, ","), "on_full", c.Raw.OnFull, "metrics", c.MetricsAddr,
		"worker_nice", c.WorkerNice, "sched_slice", c.SchedSlice, "nap", c.Nap, "latency", latencyName(c.LowLatency))
	if c.LowLatency && s.afxdpPart() == nil {
		s.log.Warn("--latency low applies to AF_XDP workers only; the kernel path's workers wait in the kernel as before", "path", s.path.Name())
	}
}

func latencyName(low bool) string {
	if low {
		return "low"
	}
	return "default"
}

func prefixes(p []string) string {
	if len(p) == 0 {
		return "-"
	}
	return strings.Join(p, ",")
}

// shutdown stops taking new datagrams, drains rings and queues into the
// sinks, and closes them, all within the drain timeout plus a second.
//
// The drain has until the timeout less the sinks' close budget (a quarter
// of it, for flushing and acknowledgements). When it runs out, the
// pipeline aborts: what is still queued is counted as dropped (shutdown)
// rather than written, the receivers close, and the workers and writers get
// a second to return. close then closes only the sinks whose writers have
// all returned: a sink is never closed under a writer.
func (s *server) shutdown(why string) error {
	start := time.Now()
	drainBy := start.Add(s.cfg.DrainTimeout - s.closeBudget())
	s.log.Info("shutting down: draining", "signal", why)
	s.ready.Store(false)
	s.notifyStopping(why)
	// Stop new matches at the program (counted as drop_mode from now on):
	// what is already in the rings and socket buffers is drained below.
	if s.prog != nil {
		if err := s.prog.SetAction(xdp.Drop); err != nil {
			s.log.Warn("can't stop the program taking matches", "err", err)
		}
		// Frames the driver redirected just before the switch reach the
		// rings at the end of its NAPI poll: give that a moment.
		time.Sleep(20 * time.Millisecond)
	}
	s.path.Drain()
	done := make(chan error, 1)
	go func() { done <- s.pipe.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Until(drainBy)):
		s.log.Error("drain timed out; dropping what is still queued (counted as shutdown)", "timeout", s.cfg.DrainTimeout)
		s.pipe.Abort()
		for _, rx := range s.rxs {
			rx.Close()
		}
		select {
		case err = <-done:
		case <-time.After(time.Second):
			err = errors.New("workers or sink writers did not return within a second of the drain timeout; their sinks are left open")
		}
	}
	s.log.Info("drained", "took", time.Since(start).Round(time.Millisecond))
	return err
}

// closeBudget is the time sinks get to close (flush, fsync, wait for
// acknowledgements): a quarter of the drain timeout.
func (s *server) closeBudget() time.Duration { return s.cfg.DrainTimeout / 4 }

// close releases everything, in the reverse order of start: sinks (flush,
// fsync, acks), receivers, the program (detaches it), tuning, metrics.
func (s *server) close() error {
	var errs []error
	errs = append(errs, s.closeSinks()...)
	if s.path != nil {
		errs = append(errs, s.path.Close())
	}
	if s.prog != nil {
		errs = append(errs, s.prog.Close())
	}
	if s.tuned != nil {
		if _, err := s.tuned.Revert(context.Background()); err != nil {
			errs = append(errs, fmt.Errorf("revert tuning: %w", err))
		} else {
			s.log.Info("tuning profile reverted", "profile", s.cfg.Raw.Tune)
		}
	}
	if s.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		s.httpSrv.Shutdown(ctx)
		cancel()
	}
	s.logFinal()
	return errors.Join(errs...)
}

// closeSinks closes, side by side, every sink whose writers have returned;
// a sink with a writer still in Write or Flush stays open (its datagrams
// stay counted as in flight), since closing it under the writer breaks the
// sink contract.
func (s *server) closeSinks() []error {
	errs := make([]error, len(s.sinks))
	var wg sync.WaitGroup
	for i, sk := range s.sinks {
		if s.pipe != nil && !s.pipe.WritersDone(i) {
			errs[i] = fmt.Errorf("sink %s: a writer is still in Write or Flush; not closing the sink under it (what it holds is lost)", sk.Name())
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sk.Close(); err != nil {
				errs[i] = fmt.Errorf("sink %s: %w", sk.Name(), err)
			}
		}()
	}
	wg.Wait()
	return errs
}

// logFinal writes the accounting at exit.
func (s *server) logFinal() {
	if s.path == nil {
		return
	}
	rx := s.path.Stats()
	byPath := map[string]uint64{}
	for i, r := range s.rxs {
		byPath[s.path.PathOf(i)] += r.Stats().Packets
	}
	args := []any{"received", rx.Packets, "malformed", rx.Malformed}
	if s.afxdpPart() != nil {
		args = append(args, "received_afxdp", byPath["afxdp"], "received_kernel", byPath["kernel"],
			"rx_dropped", rx.XDP.RxDropped, "rx_ring_full", rx.XDP.RxRingFull)
	}
	if s.kernelPart() != nil {
		args = append(args, "socket_overflows", rx.SocketOverflows)
	}
	for i, sk := range s.sinks {
		st := sk.Stats()
		var qf, sd uint64
		var queued int64
		if s.pipe != nil {
			pc := s.pipe.SinkCounts(i)
			qf, sd, queued = pc.QueueFull, pc.Shutdown+pc.TooLarge, pc.Queued
		}
		args = append(args, "sink."+sk.Name(), fmt.Sprintf("written=%d dropped=%d queue_full=%d shutdown=%d in_flight=%d", st.Written, st.DroppedTotal(), qf, sd, st.InFlight+uint64(max(queued, 0))))
	}
	s.log.Info("xdpingest stopped", args...)
}

// spinConfig maps --latency low to afxdp.Config.SpinFor.
func spinConfig(low bool) time.Duration {
	if low {
		return afxdp.LowLatencySpin
	}
	return 0
}

// napConfig maps the config's nap (0: never) to afxdp.Config.Nap (0:
// the default, negative: never).
func napConfig(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
