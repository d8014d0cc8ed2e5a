package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/bench/measure"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/tuning"
)

// genSpec describes a set of generators: one per CPU in CPUs (or a single
// unpinned one), generator i stamping stream Stream+i and, for afxdp,
// sending on TX queue Queues[i].
type genSpec struct {
	Kind  string
	Side  *testbed.Side
	Iface ifaceInfo

	SrcMAC, DstMAC net.HardwareAddr
	Src, Dst       netip.AddrPort // Src's port is the first flow's
	Size           int            // frame size without FCS
	Flows          int

	// Rate (pps) and Count are totals, split evenly over the generators.
	Rate     float64
	Count    uint64
	Duration time.Duration

	Stream uint16
	CPUs   []int
	Queues []int // afxdp: TX queue per generator (default 0, 1, ...)
	// AFXDPFrameSize is the UMEM chunk of the afxdp generator (2048 or 4096).
	AFXDPFrameSize int
}

// genResult is what a set of generators sent.
type genResult struct {
	// Sent per stream id: counters 0..Sent-1 went out.
	Sent    map[uint16]uint64
	Total   uint64
	Elapsed time.Duration // the longest generator's
}

func (r genResult) pps() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Total) / r.Elapsed.Seconds()
}

func (s *genSpec) check() error {
	switch s.Kind {
	case measure.GenLive, measure.GenAFXDP, measure.GenSendmmsg:
	default:
		return fmt.Errorf("unknown generator %q: want live, afxdp or sendmmsg", s.Kind)
	}
	if s.Count == 0 && s.Duration <= 0 {
		return errors.New("a generator needs --count or --duration: it never runs unbounded")
	}
	if s.Rate < 0 {
		return fmt.Errorf("negative rate %v", s.Rate)
	}
	if s.Flows <= 0 {
		s.Flows = 1
	}
	if int(s.Src.Port())+max(1, len(s.CPUs))*s.Flows-1 > 65535 {
		return fmt.Errorf("%d generator(s) of %d flows from source port %d run past 65535", max(1, len(s.CPUs)), s.Flows, s.Src.Port())
	}
	v6 := !s.Dst.Addr().Is4()
	if s.Size < bench.MinFrameSize(v6) {
		return fmt.Errorf("frame size %d is below the %d bytes of headers and a sequence number", s.Size, bench.MinFrameSize(v6))
	}
	n := max(1, len(s.CPUs))
	if int(s.Stream)+n-1 >= bench.MaxStreams {
		return fmt.Errorf("stream ids %d..%d: at most %d", s.Stream, int(s.Stream)+n-1, bench.MaxStreams-1)
	}
	if s.Kind == measure.GenAFXDP {
		if s.AFXDPFrameSize == 0 {
			s.AFXDPFrameSize = 2048
			if s.Size > 2048 {
				s.AFXDPFrameSize = 4096
			}
		}
		if s.Size > s.AFXDPFrameSize {
			return fmt.Errorf("AF_XDP sends frames of at most %d bytes, not %d", s.AFXDPFrameSize, s.Size)
		}
	}
	return nil
}

// runGenerators runs the generators and waits for all of them. They stop at
// their count or duration, or when ctx is done.
func runGenerators(ctx context.Context, spec genSpec) (genResult, error) {
	if err := spec.check(); err != nil {
		return genResult{}, err
	}
	tpl, err := bench.BuildTemplate(bench.FrameSpec{SrcMAC: spec.SrcMAC, DstMAC: spec.DstMAC, Src: spec.Src, Dst: spec.Dst, Size: spec.Size})
	if err != nil {
		return genResult{}, err
	}
	cpus := spec.CPUs
	n := max(1, len(cpus))
	res := genResult{Sent: map[uint16]uint64{}}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	// The generators fail together: one that can't start stops the rest.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := 0; i < n; i++ {
		g := genOne{spec: &spec, tpl: tpl, index: i, stream: spec.Stream + uint16(i), cpu: -1}
		if len(cpus) > 0 {
			g.cpu = cpus[i]
		}
		g.count = spec.Count / uint64(n)
		if uint64(i) < spec.Count%uint64(n) {
			g.count++
		}
		if spec.Count > 0 && g.count == 0 {
			continue
		}
		g.rate = spec.Rate / float64(n)
		g.queue = i
		if i < len(spec.Queues) {
			g.queue = spec.Queues[i]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent, elapsed, err := g.run(ctx)
			mu.Lock()
			defer mu.Unlock()
			res.Sent[g.stream] = sent
			res.Total += sent
			res.Elapsed = max(res.Elapsed, elapsed)
			if err != nil {
				errs = append(errs, fmt.Errorf("generator %d: %w", i, err))
				cancel()
			}
		}()
	}
	wg.Wait()
	return res, errors.Join(errs...)
}

// genOne is one generator of a set.
type genOne struct {
	spec   *genSpec
	tpl    bench.Template
	index  int
	stream uint16
	cpu    int // -1: not pinned
	queue  int
	count  uint64
	rate   float64
}

// run runs the generator on a thread of its own, in the namespace, pinned.
// The thread is never unlocked: the runtime discards it afterwards.
func (g *genOne) run(ctx context.Context) (uint64, time.Duration, error) {
	if err := nsEnter(g.spec.Side); err != nil {
		return 0, 0, err
	}
	if g.cpu >= 0 {
		if err := tuning.PinThread(g.cpu); err != nil {
			return 0, 0, err
		}
	}
	if err := blockAsyncSignals(); err != nil {
		return 0, 0, fmt.Errorf("can't block signals on the generator's thread: %w", err)
	}
	switch g.spec.Kind {
	case measure.GenLive:
		return g.runLive(ctx)
	case measure.GenAFXDP:
		return g.runAFXDP(ctx)
	}
	return g.runSendmmsg(ctx)
}

func (g *genOne) runLive(ctx context.Context) (uint64, time.Duration, error) {
	// A program per run: its sequence counter starts at 0.
	live, err := bench.LoadLive()
	if err != nil {
		return 0, 0, err
	}
	defer live.Close()
	cfg := g.tpl.Config()
	cfg.Ifindex = g.spec.Iface.Index
	cfg.Flows, cfg.SportBase, cfg.Stream = g.spec.Flows, g.sportBase(), g.stream
	cfg.Count, cfg.Duration, cfg.Rate = g.count, g.spec.Duration, max(g.rate, 0)
	res, err := live.Run(ctx, cfg)
	return res.Sent, res.Elapsed, err
}

// sportBase is the generator's first source port: generators of a set
// use consecutive ranges of Flows ports.
func (g *genOne) sportBase() uint16 {
	return g.spec.Src.Port() + uint16(g.index*g.spec.Flows)
}

func (g *genOne) runSendmmsg(ctx context.Context) (uint64, time.Duration, error) {
	hl := len(g.tpl.Frame) - g.tpl.PayloadLen
	size := g.spec.Size - hl
	stream := g.stream
	gen, err := bench.NewUDPGen(bench.UDPGenConfig{
		Dst: g.spec.Dst, Src: g.spec.Src.Addr(), SrcPort: g.sportBase(), Flows: g.spec.Flows,
		Count: g.count, Duration: g.spec.Duration, Rate: g.rate, Size: size,
		Payload: func(buf []byte, seq uint64) []byte {
			p := buf[:size]
			bench.PutWide(p, bench.StreamSeq(stream, seq))
			return p
		},
	})
	if err != nil {
		return 0, 0, err
	}
	defer gen.Close()
	res, err := gen.Run(ctx)
	return res.Sent, res.Elapsed, err
}

// cmdGen is `pktbench gen`.
func cmdGen(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		kind    = fs.String("gen", measure.GenLive, "generator: live (XDP live frames, BPF_PROG_RUN + XDP_TX), afxdp (AF_XDP TX ring) or sendmmsg (UDP sockets)")
		iface   = fs.String("iface", "", "the `interface` to send on (required)")
		netns   = fs.String("netns", "", "run in this network `namespace` (from `ip netns list`)")
		dst     = fs.String("dst", "", "destination `IP:PORT` (required)")
		dstMAC  = fs.String("dst-mac", "", "destination `MAC` for live and afxdp (default: from the neighbour table)")
		src     = fs.String("src", "", "source `IP[:PORT]` (default: the interface's first address of the family, port 10000)")
		size    = fs.Int("size", 64, "frame size in `bytes`, Ethernet header included, FCS excluded (64: 22-byte UDP payload over IPv4)")
		flows   = fs.Int("flows", 1, "flows per generator: source ports PORT..PORT+N-1 (the next generator's follow), so that RSS spreads them")
		rate    = fs.Float64("rate", 0, "total rate limit in `pps` (0: as fast as possible)")
		count   = fs.Uint64("count", 0, "stop after this many frames in all")
		dur     = fs.Duration("duration", 0, "stop after this long")
		cpuList = fs.String("cpus", "", "one generator per `CPU` in this list, pinned (default: one, unpinned)")
		queues  = fs.String("queues", "", "afxdp: TX `queues` of the generators, one each (default 0,1,...)")
		stream  = fs.Uint("stream", 0, "`id` of the first generator's stream (top 16 bits of every sequence number)")
	)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: pktbench gen --iface IFACE --dst IP:PORT (--count N | --duration D) [flags]

Sends UDP frames whose payload starts with a 64-bit big-endian sequence
number: the generator's stream id in the top 16 bits, a counter from 0
below. It stops by itself at --count or --duration. Nothing has a default
that could flood a link: the interface and the destination are always named.

`)
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if *iface == "" || *dst == "" {
		return usageError(stderr, "gen", "--iface and --dst are required: pktbench never picks an interface or a destination by itself")
	}
	if *count == 0 && *dur <= 0 {
		return usageError(stderr, "gen", "give --count or --duration: a generator always stops by itself")
	}
	dstAP, err := netip.ParseAddrPort(*dst)
	if err != nil || dstAP.Port() == 0 {
		return usageError(stderr, "gen", "--dst %q: want IP:PORT with a port, e.g. 198.18.0.2:9000 or [2001:db8::2]:9000", *dst)
	}
	dstAP = netip.AddrPortFrom(dstAP.Addr().Unmap(), dstAP.Port())
	if *stream > 0xffff {
		return usageError(stderr, "gen", "--stream %d: at most 65535", *stream)
	}
	side, err := lookupNetns(*netns)
	if err != nil {
		return usageError(stderr, "gen", "%v", err)
	}
	spec := genSpec{Kind: *kind, Side: side, Size: *size, Flows: *flows, Rate: *rate, Count: *count, Duration: *dur, Stream: uint16(*stream)}
	if *cpuList != "" {
		set, err := tuning.ParseCPUList(*cpuList)
		if err != nil {
			return usageError(stderr, "gen", "--cpus: %v", err)
		}
		spec.CPUs = set.List()
	}
	if *queues != "" {
		q, err := tuning.ParseCPUList(*queues) // the same list syntax
		if err != nil {
			return usageError(stderr, "gen", "--queues: %v", err)
		}
		spec.Queues = q.List()
		if len(spec.Queues) != max(1, len(spec.CPUs)) {
			return usageError(stderr, "gen", "--queues names %d queues for %d generators: give one per generator (--cpus)", len(spec.Queues), max(1, len(spec.CPUs)))
		}
	}
	info, err := lookupIface(side, *iface)
	if err != nil {
		return failure(ctx, stderr, "gen", err)
	}
	spec.Iface = info
	spec.SrcMAC = info.MAC
	srcAP, err := parseSrc(*src, info, dstAP.Addr().Is4())
	if err != nil {
		return usageError(stderr, "gen", "%v", err)
	}
	spec.Src, spec.Dst = srcAP, dstAP
	if spec.Kind != measure.GenSendmmsg {
		if *dstMAC != "" {
			if spec.DstMAC, err = net.ParseMAC(*dstMAC); err != nil {
				return usageError(stderr, "gen", "--dst-mac: %v", err)
			}
		} else if spec.DstMAC, err = neighbourMAC(side, info.Index, info.Name, dstAP.Addr()); err != nil {
			return failure(ctx, stderr, "gen", err)
		}
	}
	if err := spec.check(); err != nil {
		return usageError(stderr, "gen", "%v", err)
	}
	bound := fmt.Sprintf("%d frames", spec.Count)
	if spec.Count == 0 {
		bound = spec.Duration.String()
	} else if spec.Duration > 0 {
		bound += " or " + spec.Duration.String()
	}
	rateS := "full rate"
	if spec.Rate > 0 {
		rateS = fmt.Sprintf("%.0f pps", spec.Rate)
	}
	fmt.Fprintf(stdout, "gen %s: %s -> %s on %s, %d-byte frames, %d flow(s), %d generator(s), %s, %s\n",
		spec.Kind, spec.Src, spec.Dst, info.Name, spec.Size, spec.Flows, max(1, len(spec.CPUs)), rateS, bound)
	res, err := runGenerators(ctx, spec)
	printGenResult(stdout, spec, res)
	if err != nil {
		return failure(ctx, stderr, "gen", err)
	}
	if ctx.Err() != nil {
		return exitInterrupted
	}
	return exitOK
}

func printGenResult(w io.Writer, spec genSpec, res genResult) {
	fmt.Fprintf(w, "sent %d frames in %.3fs: %.3f Mpps, %.3f Gbit/s (frames of %d bytes)\n",
		res.Total, res.Elapsed.Seconds(), res.pps()/1e6, res.pps()*float64(spec.Size)*8/1e9, spec.Size)
	if len(res.Sent) > 1 {
		for id := spec.Stream; int(id) < int(spec.Stream)+len(res.Sent); id++ {
			fmt.Fprintf(w, "  stream %d: %d\n", id, res.Sent[id])
		}
	}
}

// parseSrc parses --src, filling in the interface's address and port 10000.
func parseSrc(s string, info ifaceInfo, v4 bool) (netip.AddrPort, error) {
	const defPort = 10000
	fam := map[bool]string{true: "IPv4", false: "IPv6"}[v4]
	if s == "" {
		a, ok := info.firstAddr(v4)
		if !ok {
			return netip.AddrPort{}, fmt.Errorf("%s has no %s address to send from: give --src", info.Name, fam)
		}
		return netip.AddrPortFrom(a, defPort), nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if ap.Addr().Is4() != v4 {
			return ap, fmt.Errorf("--src %s is not %s like --dst", s, fam)
		}
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--src %q: want IP or IP:PORT", s)
	}
	if a.Unmap().Is4() != v4 {
		return netip.AddrPort{}, fmt.Errorf("--src %s is not %s like --dst", s, fam)
	}
	return netip.AddrPortFrom(a.Unmap(), defPort), nil
}
