package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/bench/measure"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/version"
	"github.com/xdpingest/xdpingest/tuning"
	"github.com/xdpingest/xdpingest/xdp"
)

const comparePort = 9000

// compareOpts are compare's settings after parsing.
type compareOpts struct {
	sizes, queues []int
	paths         []string
	gen           string
	flows         int
	ipv6          bool
	duration      time.Duration
	reps          int
	xdpMode       xdp.Mode
	xdpingest     string
	pcapDir       string
	gro           bool
	rx            pathOpts // the receivers' settings (Spin, Nap, Slice, Frames, RingSize)
	jsonOut       string
	svgOut        string
	pngOut        string
}

// cmdCompare is `pktbench compare`.
func cmdCompare(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		sizes    = fs.String("sizes", "64,512,1472", "frame `sizes` in bytes, Ethernet header included, FCS excluded")
		queues   = fs.String("queues", "1,2", "queue `counts` to sweep: the bed gets that many queues, with one generator per queue, each pinned to a CPU of its own")
		paths    = fs.String("paths", strings.Join(measure.DefaultPaths(), ","), "receive `paths` to compare, in the order run")
		gen      = fs.String("gen", measure.GenLive, "generator: live, afxdp or sendmmsg")
		flows    = fs.Int("flows", 1, "flows per generator (source ports)")
		ipv6     = fs.Bool("ipv6", false, "send IPv6 instead of IPv4")
		duration = fs.Duration("duration", 5*time.Second, "length of each run")
		reps     = fs.Int("reps", 3, "repetitions of every path, alternating (A B C A B C ...)")
		xdpMode  = fs.String("xdp-mode", "native", "XDP attach `mode` on the receiving veth: native or generic")
		server   = fs.String("xdpingest", "", "server path: the xdpingest `binary` (default: the one next to pktbench)")
		pcapDir  = fs.String("pcap-dir", "", "server-pcap path: write the files under this `dir` (default /dev/shm: the pipeline's cost, not the disk's)")
		gro      = fs.Bool("gro", false, "turn GRO on on the receiving veth, as a NIC has it (the kernel path's UDP GRO needs it; off by default, as a veth has it). With it, about 1 live frame in 60 arrives with a wrong IP length (counted xdp_truncated, then lost): GRO seems to rewrite the head frame of each merged batch in place, and the live generator sends that page again")
		jsonOut  = fs.String("json", "", "write every run and summary to this `file`")
		svgOut   = fs.String("svg", "", "draw the chart (median Mpps per path and size) into this SVG `file`")
		pngOut   = fs.String("png", "", "draw the chart into this PNG `file`")
	)
	rxf := addRxFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: pktbench compare [flags]

Builds a test bed of its own (two network namespaces joined by a veth pair,
addresses from 198.18.0.0/15 and 2001:db8::/32), and for every queue count
and frame size runs each path against the generator at full rate, in
alternating repetitions. Prints a table; --json, --svg and --png write the
results and a chart. The bed is removed on every exit, Ctrl-C included.
Needs root.

`)
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	o := compareOpts{gen: *gen, flows: *flows, ipv6: *ipv6, duration: *duration, reps: *reps,
		jsonOut: *jsonOut, svgOut: *svgOut, pngOut: *pngOut}
	var err error
	if o.sizes, err = parseInts(*sizes); err != nil {
		return usageError(stderr, "compare", "--sizes: %v", err)
	}
	if o.queues, err = parseInts(*queues); err != nil {
		return usageError(stderr, "compare", "--queues: %v", err)
	}
	for _, p := range strings.Split(*paths, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(measure.KnownPaths(), p) {
			return usageError(stderr, "compare", "unknown path %q in --paths: want some of %s", p, strings.Join(measure.KnownPaths(), ","))
		}
		if slices.Contains(o.paths, p) {
			return usageError(stderr, "compare", "path %s is named twice in --paths", p)
		}
		o.paths = append(o.paths, p)
	}
	minSize := bench.MinFrameSize(o.ipv6)
	for _, s := range o.sizes {
		if s < minSize || s > 3800 {
			return usageError(stderr, "compare", "frame size %d: want %d to 3800 bytes (AF_XDP copy mode takes up to 3840 in 4096-byte frames)", s, minSize)
		}
	}
	for _, q := range o.queues {
		if q < 1 || q > 64 {
			return usageError(stderr, "compare", "queue count %d: want 1 to 64", q)
		}
	}
	if o.duration < 10*time.Millisecond || o.reps < 1 {
		return usageError(stderr, "compare", "--duration %v and --reps %d: want at least 10ms and 1", o.duration, o.reps)
	}
	if o.flows < 1 {
		return usageError(stderr, "compare", "--flows %d: want at least 1", o.flows)
	}
	switch o.gen {
	case measure.GenLive, measure.GenAFXDP, measure.GenSendmmsg:
	default:
		return usageError(stderr, "compare", "unknown generator %q: want live, afxdp or sendmmsg", o.gen)
	}
	if o.xdpMode, err = xdp.ParseMode(*xdpMode); err != nil {
		return usageError(stderr, "compare", "%v", err)
	}
	o.pcapDir = *pcapDir
	if err := rxf.apply(&o.rx); err != nil {
		return usageError(stderr, "compare", "%v", err)
	}
	noteSlice(o.rx.Slice, stderr)
	o.gro = *gro
	if slices.ContainsFunc(o.paths, measure.IsServer) {
		if o.xdpingest, err = findXdpingest(*server); err != nil {
			return usageError(stderr, "compare", "%v", err)
		}
	}
	if os.Geteuid() != 0 {
		return usageError(stderr, "compare", "the test bed needs root (CAP_SYS_ADMIN for network namespaces, CAP_NET_ADMIN and CAP_BPF for veth and XDP)")
	}

	rep, err := compare(ctx, o, stderr)
	if rep != nil && len(rep.Results) > 0 {
		writeTable(stdout, rep)
		var werrs []error
		if o.jsonOut != "" {
			werrs = append(werrs, rep.WriteJSON(o.jsonOut))
		}
		if o.svgOut != "" {
			werrs = append(werrs, rep.WriteChart(o.svgOut, true))
		}
		if o.pngOut != "" {
			werrs = append(werrs, rep.WriteChart(o.pngOut, false))
		}
		if werr := errors.Join(werrs...); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		return failure(ctx, stderr, "compare", err)
	}
	return exitOK
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", f)
		}
		if slices.Contains(out, n) {
			return nil, fmt.Errorf("%d is named twice", n)
		}
		out = append(out, n)
	}
	return out, nil
}

// compare runs the sweep and returns the report, complete or not.
func compare(ctx context.Context, o compareOpts, stderr io.Writer) (*measure.Report, error) {
	// Beds of runs that were killed (SIGKILL leaves no chance to clean up).
	if removed, err := testbed.Sweep(); err != nil {
		fmt.Fprintf(stderr, "pktbench compare: can't remove the beds of dead processes: %v\n", err)
	} else if len(removed) > 0 {
		fmt.Fprintf(stderr, "pktbench compare: removed %d namespace(s) left by killed runs: %s\n", len(removed), strings.Join(removed, " "))
	}
	allowed, err := tuning.AllowedCPUs()
	if err != nil {
		return nil, err
	}
	cpus := allowed.List()
	rep := &measure.Report{Tool: "pktbench compare", Version: version.String(), Started: time.Now().UTC(), Command: os.Args,
		Machine: measure.ReadMachine(), Generator: o.gen, IPv6: o.ipv6, Flows: o.flows, Duration: o.duration.Seconds(), Reps: o.reps,
		Sizes: o.sizes, Queues: o.queues, Paths: o.paths}
	rep.Machine.AllowedCPUs = allowed.String()
	prog := newProgress(stderr, len(o.queues)*len(o.sizes)*o.reps*len(o.paths))
	defer prog.done()
	for _, q := range o.queues {
		if err := compareBed(ctx, o, q, cpus, rep, prog); err != nil {
			rep.Error = err.Error()
			rep.Summarize()
			return rep, err
		}
	}
	rep.Complete = true
	rep.Summarize()
	return rep, nil
}

// compareBed builds a bed with q queues, runs every size, repetition and
// path on it, and removes it whatever happens.
func compareBed(ctx context.Context, o compareOpts, q int, cpus []int, rep *measure.Report, prog *progress) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	mtu := 1500
	for _, s := range o.sizes {
		mtu = max(mtu, s-14)
	}
	bed, err := testbed.New(testbed.Config{Queues: q, MTU: mtu})
	if err != nil {
		return fmt.Errorf("can't build the test bed: %w", err)
	}
	defer func() {
		if cerr := bed.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("can't remove the test bed: %w", cerr))
		}
	}()
	if o.gro {
		// As a NIC has it by default. The XDP paths run before GRO; the
		// kernel path's UDP GRO needs it; a net.UDPConn doesn't ask for
		// UDP GRO and gets no merged buffers.
		if err := bed.Rx.Run("ethtool", "-K", bed.Rx.Link, "gro", "on"); err != nil {
			return fmt.Errorf("can't turn GRO on on the receiving veth: %w", err)
		}
	}
	// Generator i runs on CPU i (queue i of the receiving veth is then
	// processed on it: veth picks the RX queue from the sending CPU);
	// receivers get the CPUs the generators leave. With none left, receiver
	// i shares its queue's CPU, where IRQ affinity would put it on a NIC
	// (and where the frames are in cache): measured steadier and faster
	// than letting the scheduler move them.
	var genCPUs, rxCPUs []int
	for i := 0; i < q; i++ {
		genCPUs = append(genCPUs, cpus[i%len(cpus)])
	}
	if q < len(cpus) {
		rxCPUs = cpus[q:]
	} else {
		rxCPUs = genCPUs
	}
	var queues []int
	for i := 0; i < q; i++ {
		queues = append(queues, i)
	}
	genEth := newEthStats(bed.Gen, bed.Gen.Link)
	if genEth != nil {
		defer genEth.close()
	}
	src, dst := bed.Gen.IPv4, bed.Rx.IPv4
	if o.ipv6 {
		src, dst = bed.Gen.IPv6, bed.Rx.IPv6
	}
	maxSize := slices.Max(o.sizes)
	runs := 0
	for _, size := range o.sizes {
		spec := genSpec{Kind: o.gen, Side: bed.Gen, Iface: ifaceInfo{Name: bed.Gen.Link, Index: bed.Gen.Index, MAC: bed.Gen.MAC},
			SrcMAC: bed.Gen.MAC, DstMAC: bed.Rx.MAC, Src: netip.AddrPortFrom(src, 10000), Dst: netip.AddrPortFrom(dst, comparePort),
			Size: size, Flows: o.flows, Duration: o.duration, CPUs: genCPUs}
		po := pathOpts{Side: bed.Rx, Iface: bed.Rx.Link, Port: comparePort, Queues: queues, CPUs: rxCPUs, MaxFrame: maxSize,
			XDPMode: o.xdpMode, Xdpingest: o.xdpingest, PcapDir: o.pcapDir, Spin: o.rx.Spin, Nap: o.rx.Nap, Slice: o.rx.Slice, Frames: o.rx.Frames, RingSize: o.rx.RingSize, Nice: o.rx.Nice, Meter: true}
		for r := 1; r <= o.reps; r++ {
			for _, path := range o.paths {
				if err := ctx.Err(); err != nil {
					return err
				}
				prog.start(fmt.Sprintf("%d queue(s), %d bytes, rep %d/%d, %s", q, size, r, o.reps, path))
				g := rep.Group(q, size, path)
				// A port per run: frames of the last run still queued in
				// the veth's rings when its path stopped go to another
				// port, and no counter of this run sees them.
				runs++
				po.Port = comparePort + uint16(runs%1000)
				spec.Dst = netip.AddrPortFrom(dst, po.Port)
				res, desc, err := runOnce(ctx, path, po, spec, genEth)
				if err != nil {
					return fmt.Errorf("%s, %d queue(s), %d-byte frames, repetition %d: %w", path, q, size, r, err)
				}
				res.Rep = r
				g.Describe = desc
				g.Runs = append(g.Runs, res)
				prog.finish(fmt.Sprintf("%.3f Mpps, loss %.2f%%", res.Mpps, 100*float64(res.Lost)/float64(max(res.Sent, 1))))
			}
		}
	}
	return nil
}

// runOnce starts a path, runs the generators against it, and stops it.
func runOnce(ctx context.Context, path string, po pathOpts, spec genSpec, genEth *ethStats) (res *measure.RunResult, desc string, err error) {
	rx, err := startPath(path, po)
	if err != nil {
		return nil, "", err
	}
	defer func() {
		if rx != nil {
			rx.Stop()
		}
	}()
	desc = rx.Describe()
	gen0 := map[string]uint64{}
	if genEth != nil {
		genEth.add(gen0)
	}
	s0 := rx.Snapshot()
	c0, err := bench.ReadCPUStat()
	if err != nil {
		return nil, desc, err
	}
	gres, gerr := runGenerators(ctx, spec)
	c1, _ := bench.ReadCPUStat()
	if gerr != nil {
		return nil, desc, gerr
	}
	if err := ctx.Err(); err != nil {
		return nil, desc, err
	}
	// What is still in rings and socket buffers arrives within
	// microseconds; a receiver that lags gets a little longer.
	last := rx.Snapshot()
	for t0 := time.Now(); time.Since(t0) < time.Second; {
		time.Sleep(20 * time.Millisecond)
		s := rx.Snapshot()
		if s.Packets == last.Packets {
			break
		}
		last = s
	}
	final, meter, err := rx.Stop()
	rx = nil
	if err != nil {
		return nil, desc, err
	}
	d := final.sub(s0)
	res = &measure.RunResult{Sent: gres.Total, Received: d.Packets, Elapsed: gres.Elapsed.Seconds(), RxCPU: d.RxCPU.Seconds(),
		Drops: d.Drops, CPU: c1.Since(c0), Buffers: d.Buffers}
	if genEth != nil {
		gen1 := map[string]uint64{}
		genEth.add(gen1)
		for k, v := range gen1 {
			if v > gen0[k] {
				res.Drops["gen_"+k] = v - gen0[k]
			}
		}
	}
	if len(res.Drops) == 0 {
		res.Drops = nil
	}
	if gres.Elapsed > 0 {
		res.Mpps = float64(d.Packets) / gres.Elapsed.Seconds() / 1e6
		res.Gbps = float64(d.Bytes) * 8 / gres.Elapsed.Seconds() / 1e9
	}
	if d.Packets > 0 {
		res.BusyUsPerPkt = c1.BusySince(c0).Seconds() * 1e6 / float64(d.Packets)
	}
	if meter != nil {
		l := meter.LossAgainst(gres.Sent)
		res.Lost, res.Dups, res.Unexpected = l.Missing, l.Dups, l.Unexpected
	} else if gres.Total > d.Packets {
		res.Lost = gres.Total - d.Packets
	}
	return res, desc, nil
}

// progress shows where the sweep is: a line rewritten in place on a
// terminal, a line per run otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	total int
	n     int
	cur   string
	t0    time.Time
}

func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, total: total}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.tty = err == nil
	}
	return p
}

func (p *progress) start(what string) {
	p.n++
	p.cur = fmt.Sprintf("[%*d/%d] %s", len(strconv.Itoa(p.total)), p.n, p.total, what)
	p.t0 = time.Now()
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s ...", p.cur)
	}
}

func (p *progress) finish(result string) {
	line := fmt.Sprintf("%s: %s (%.1fs)", p.cur, result, time.Since(p.t0).Seconds())
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		return
	}
	fmt.Fprintln(p.w, line)
}

func (p *progress) done() {
	if p.tty && p.n > 0 {
		fmt.Fprintln(p.w)
	}
}
