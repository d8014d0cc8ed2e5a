//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/bench/measure"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/xdp"
)

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
	o := measure.Options{Gen: *gen, Flows: *flows, IPv6: *ipv6, Duration: *duration, Reps: *reps, GRO: *gro, Command: os.Args}
	var err error
	if o.Sizes, err = parseInts(*sizes); err != nil {
		return usageError(stderr, "compare", "--sizes: %v", err)
	}
	if o.Queues, err = parseInts(*queues); err != nil {
		return usageError(stderr, "compare", "--queues: %v", err)
	}
	if o.Paths, err = parsePaths(*paths, measure.KnownPaths()); err != nil {
		return usageError(stderr, "compare", "%v", err)
	}
	minSize := bench.MinFrameSize(o.IPv6)
	for _, s := range o.Sizes {
		if s < minSize || s > 3800 {
			return usageError(stderr, "compare", "frame size %d: want %d to 3800 bytes (AF_XDP copy mode takes up to 3840 in 4096-byte frames)", s, minSize)
		}
	}
	for _, q := range o.Queues {
		if q < 1 || q > 64 {
			return usageError(stderr, "compare", "queue count %d: want 1 to 64", q)
		}
	}
	if o.Duration < 10*time.Millisecond || o.Reps < 1 {
		return usageError(stderr, "compare", "--duration %v and --reps %d: want at least 10ms and 1", o.Duration, o.Reps)
	}
	if o.Flows < 1 {
		return usageError(stderr, "compare", "--flows %d: want at least 1", o.Flows)
	}
	switch o.Gen {
	case measure.GenLive, measure.GenAFXDP, measure.GenSendmmsg:
	default:
		return usageError(stderr, "compare", "unknown generator %q: want live, afxdp or sendmmsg", o.Gen)
	}
	if o.XDPMode, err = xdp.ParseMode(*xdpMode); err != nil {
		return usageError(stderr, "compare", "%v", err)
	}
	o.Rx.PcapDir = *pcapDir
	if err := rxf.apply(&o.Rx); err != nil {
		return usageError(stderr, "compare", "%v", err)
	}
	if err := findBinaries(&o.Rx, o.Paths, *server); err != nil {
		return usageError(stderr, "compare", "%v", err)
	}
	if os.Geteuid() != 0 {
		return usageError(stderr, "compare", "the test bed needs root (CAP_SYS_ADMIN for network namespaces, CAP_NET_ADMIN and CAP_BPF for veth and XDP)")
	}
	noteSlice(o.Rx.SchedSlice, stderr)

	// Beds of runs that were killed (SIGKILL leaves no chance to clean up).
	sweepBeds(stderr, "compare")
	prog := newProgress(stderr)
	o.Progress = prog.step
	rep, err := measure.Compare(ctx, o)
	prog.done()
	if rep != nil && len(rep.Results) > 0 {
		writeTable(stdout, rep)
		if werr := writeOutputs(rep, *jsonOut, *svgOut, *pngOut); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		return failure(ctx, stderr, "compare", err)
	}
	return exitOK
}

// sweepBeds removes the beds of runs that were killed (SIGKILL leaves no
// chance to clean up), saying what it removed.
func sweepBeds(stderr io.Writer, cmd string) {
	if removed, err := testbed.Sweep(); err != nil {
		fmt.Fprintf(stderr, "pktbench %s: can't remove the beds of dead processes: %v\n", cmd, err)
	} else if len(removed) > 0 {
		fmt.Fprintf(stderr, "pktbench %s: removed %d namespace(s) left by killed runs: %s\n", cmd, len(removed), strings.Join(removed, " "))
	}
}

// report is what compare and latency write besides their table.
type report interface {
	WriteJSON(path string) error
	WriteChart(path string, svg bool) error
}

// writeOutputs writes the JSON and the charts the flags asked for (""
// skips one), all of them even when one fails.
func writeOutputs(r report, jsonPath, svgPath, pngPath string) error {
	var errs []error
	if jsonPath != "" {
		errs = append(errs, r.WriteJSON(jsonPath))
	}
	if svgPath != "" {
		errs = append(errs, r.WriteChart(svgPath, true))
	}
	if pngPath != "" {
		errs = append(errs, r.WriteChart(pngPath, false))
	}
	return errors.Join(errs...)
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

// progress shows where the sweep is: a line rewritten in place on a
// terminal, a line per run otherwise.
type progress struct {
	w   io.Writer
	tty bool
	n   int
	cur string
	t0  time.Time
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.tty = err == nil
	}
	return p
}

// step shows a run starting (s.Result nil) or done.
func (p *progress) step(s measure.Step) {
	if s.Result == nil {
		p.start(s.N, s.Total, fmt.Sprintf("%d queue(s), %d bytes, rep %d/%d, %s", s.Queues, s.Size, s.Rep, s.Reps, s.Path))
		return
	}
	p.finish(fmt.Sprintf("%.3f Mpps, loss %.2f%%", s.Result.Mpps, 100*float64(s.Result.Lost)/float64(max(s.Result.Sent, 1))))
}

func (p *progress) start(n, total int, what string) {
	p.n = n
	p.cur = fmt.Sprintf("[%*d/%d] %s", len(strconv.Itoa(total)), n, total, what)
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
