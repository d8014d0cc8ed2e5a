//go:build linux

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/bench/measure"
	"github.com/xdpingest/xdpingest/xdp"
)

const latencyPathsHelp = `paths (--paths; all by default, in this order):
  afxdp         datapath/afxdp as the server runs it by default: naps of up to --nap while traffic
                is dense, poll() otherwise
  afxdp-poll    datapath/afxdp sleeping in poll() as soon as its ring is empty (the server's --nap 0)
  afxdp-busy    datapath/afxdp with busy polling (the server's --busy-poll): never naps, a
                recvfrom per empty check, then poll(); on a veth in copy mode the socket has no
                NAPI to poll, so it waits much as afxdp-poll does
  afxdp-spin    datapath/afxdp's low-latency setting (the server's --latency low): checks its ring
                without sleeping until 10ms after the last datagram
  afxdp-c       bench/cref/xskdrop, the C reference receiver: naps of --nap while the last frame
                came less than 64 naps ago, else poll()
  afxdp-c-poll  xskdrop without a nap
  afxdp-c-spin  xskdrop checking its ring without ever sleeping
  kernel        datapath/kernel, SO_REUSEPORT + recvmmsg
  stdnet        one net.UDPConn.ReadFromUDP loop
  server        xdpingest run relaying (--sink udp://127.0.0.1:9499) to a recvmmsg collector in
                the receiving namespace: latency to the relayed datagram's arrival there, which
                adds the relay's send and the loopback (a few µs) to the sink's write
  server-low    the same with xdpingest run --latency low
`

// cmdLatency is `pktbench latency`.
func cmdLatency(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("latency", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		paths    = fs.String("paths", strings.Join(measure.LatencyPaths(), ","), "receive `paths` to measure, in the order run (see below)")
		rates    = fs.String("rates", "1k,10k,100k,1M", "send `rates` in datagrams per second (k and M suffixes)")
		size     = fs.Int("size", 0, "frame size in `bytes`, Ethernet header included, FCS excluded (default 64; with --ipv6 78, the least that holds a stamp)")
		gen      = fs.String("gen", measure.GenAFXDP, "sender: afxdp (AF_XDP TX) or sendmmsg")
		ipv6     = fs.Bool("ipv6", false, "send IPv6 instead of IPv4")
		duration = fs.Duration("duration", 5*time.Second, "length of each run")
		reps     = fs.Int("reps", 1, "repetitions of every path at every rate, alternating (A B C A B C ...), merged")
		xdpMode  = fs.String("xdp-mode", "native", "XDP attach `mode` on the receiving veth: native or generic")
		server   = fs.String("xdpingest", "", "server path: the xdpingest `binary` (default: the one next to pktbench)")
		jsonOut  = fs.String("json", "", "write every result, its runs and its histogram's buckets to this `file`")
		svgOut   = fs.String("svg", "", "draw the chart (latency against percentile, a plot per rate) into this SVG `file`")
		pngOut   = fs.String("png", "", "draw the chart into this PNG `file`")
	)
	rxf := addRxFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: pktbench latency [flags]

Measures one-way latency on a test bed of its own (two network namespaces
joined by a one-queue veth pair, addresses from 198.18.0.0/15 and
2001:db8::/32): from the moment the sender hands a datagram to the kernel
to the moment the receiver hands it over. The sender, pinned to the first
CPU, paces exactly (absolute deadlines: datagram i goes at i/rate) and
writes CLOCK_MONOTONIC into each payload just before the AF_XDP TX sendto
or the sendmmsg that sends it; the receiver, pinned to the second CPU,
reads the clock once per batch when its receive call returns (xskdrop when
it takes the batch off the RX ring; the server path: see below). Both run
on this host: one clock, no synchronization needed. The first 20
datagrams of each run warm the path up and are not measured.

Prints p50, p90, p99, p99.9 and max per path and rate (exact to 1/128 of
the value: a log-linear histogram), with what was sent, measured and lost.
--json, --svg and --png write the results and a chart. The bed is removed
on every exit, Ctrl-C included. Needs root.

On a machine with two shared cores the figures are noisy: compare paths
within one run, and repeat (--reps).

%s
`, latencyPathsHelp)
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	o := measure.LatencyOptions{Gen: *gen, Size: *size, IPv6: *ipv6, Duration: *duration, Reps: *reps, Command: os.Args}
	var err error
	if o.Rates, err = parseRates(*rates); err != nil {
		return usageError(stderr, "latency", "--rates: %v", err)
	}
	if o.Paths, err = parsePaths(*paths, measure.LatencyPaths()); err != nil {
		return usageError(stderr, "latency", "%v", err)
	}
	if o.Gen != measure.GenAFXDP && o.Gen != measure.GenSendmmsg {
		return usageError(stderr, "latency", "unknown sender %q: want afxdp or sendmmsg (the live generator can't stamp the time)", o.Gen)
	}
	hl := bench.HeaderLen(o.IPv6)
	if o.Size == 0 {
		o.Size = max(64, hl+bench.StampedLen)
	}
	if o.Size < hl+bench.StampedLen || o.Size > 1792 {
		return usageError(stderr, "latency", "--size %d: want %d (headers, a sequence number and a stamp) to 1792", o.Size, hl+bench.StampedLen)
	}
	if o.Duration < 10*time.Millisecond || o.Reps < 1 {
		return usageError(stderr, "latency", "--duration %v and --reps %d: want at least 10ms and 1", o.Duration, o.Reps)
	}
	if o.XDPMode, err = xdp.ParseMode(*xdpMode); err != nil {
		return usageError(stderr, "latency", "%v", err)
	}
	if err := rxf.apply(&o.Rx); err != nil {
		return usageError(stderr, "latency", "%v", err)
	}
	if slices.ContainsFunc(o.Paths, measure.IsLatServer) {
		if o.Rx.Xdpingest, err = findXdpingest(*server); err != nil {
			return usageError(stderr, "latency", "%v", err)
		}
	}
	if slices.ContainsFunc(o.Paths, measure.IsLatCref) {
		if o.Rx.Xskdrop, err = findXskdrop(); err != nil {
			return usageError(stderr, "latency", "%v", err)
		}
	}
	if os.Geteuid() != 0 {
		return usageError(stderr, "latency", "the test bed needs root (CAP_SYS_ADMIN for network namespaces, CAP_NET_ADMIN and CAP_BPF for veth and XDP)")
	}
	noteSlice(o.Rx.SchedSlice, stderr)
	sweepBeds(stderr, "latency")

	prog := newProgress(stderr)
	o.Progress = func(s measure.LatencyStep) {
		if s.Result == nil {
			prog.start(s.N, s.Total, fmt.Sprintf("%s/s, rep %d/%d, %s", measure.FormatRate(s.Rate), s.Rep, s.Reps, s.Path))
			return
		}
		r := s.Result
		prog.finish(fmt.Sprintf("p50 %.1f p99 %.1f max %.1f µs, %d of %d measured", r.P50, r.P99, r.Max, r.Measured, r.Sent))
	}
	rep, err := measure.Latency(ctx, o)
	prog.done()
	if rep != nil && len(rep.Results) > 0 {
		writeLatencyTable(stdout, rep)
		if werr := writeOutputs(rep, *jsonOut, *svgOut, *pngOut); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		return failure(ctx, stderr, "latency", err)
	}
	return exitOK
}

// parseRates reads a list of rates such as 1k,10k,2.5M,500.
func parseRates(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		mult := 1.0
		switch {
		case strings.HasSuffix(f, "k"):
			mult, f = 1e3, strings.TrimSuffix(f, "k")
		case strings.HasSuffix(f, "M"):
			mult, f = 1e6, strings.TrimSuffix(f, "M")
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a rate (500, 10k, 1M)", f)
		}
		r := v * mult
		if r < 1 || r > 20e6 {
			return nil, fmt.Errorf("rate %s: want 1 to 20M datagrams per second", measure.FormatRate(r))
		}
		if slices.Contains(out, r) {
			return nil, fmt.Errorf("%s is named twice", measure.FormatRate(r))
		}
		out = append(out, r)
	}
	return out, nil
}

// writeLatencyTable prints the results, a block per rate.
func writeLatencyTable(w io.Writer, r *measure.LatencyReport) {
	fam := "IPv4"
	if r.IPv6 {
		fam = "IPv6"
	}
	fmt.Fprintf(w, "\npktbench latency: %s sender, %s, %d-byte frames, %d x %s per path and rate, alternating; %d CPUs (%s), Linux %s\n",
		r.Generator, fam, r.Size, r.Reps, time.Duration(r.Duration*float64(time.Second)), r.Machine.CPUs, r.Machine.AllowedCPUs, r.Machine.Kernel)
	for _, rate := range r.Rates {
		var gs []*measure.LatencyResult
		for _, p := range r.Paths {
			for _, g := range r.Results {
				if g.Rate == rate && g.Path == p && len(g.Runs) > 0 {
					gs = append(gs, g)
				}
			}
		}
		if len(gs) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s datagrams/s\n", measure.FormatRate(rate))
		fmt.Fprintf(w, "  %-12s %9s %9s %9s %9s %9s %10s %9s %9s %7s\n", "path", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs", "sent/s", "sent", "measured", "lost")
		for _, g := range gs {
			fmt.Fprintf(w, "  %-12s %9.1f %9.1f %9.1f %9.1f %9.1f %10.0f %9d %9d %7d\n", g.Path, g.P50, g.P90, g.P99, g.P999, g.Max, g.SentPPS, g.Sent, g.Measured, g.Lost)
		}
	}
	fmt.Fprintf(w, "\nLatency: from the sender's stamp (CLOCK_MONOTONIC, just before AF_XDP TX or sendmmsg) to the\n"+
		"receiver's hand-over (its receive call returning; server: the relayed datagram's arrival at a\n"+
		"collector on the server's loopback); percentiles exact to %.1f%% of the value. sent/s: the rate the\n"+
		"sender kept (below the asked rate when it could not); lost: sent and never measured (--json says\n"+
		"where: the kernel's drop counters by reason).\n", 100*r.Resolution)
	if !r.Complete {
		fmt.Fprintf(w, "INCOMPLETE: the sweep stopped early (%s)\n", r.Error)
	}
}
