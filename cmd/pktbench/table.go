//go:build linux

package main

import (
	"fmt"
	"io"
	"time"

	"github.com/xdpingest/xdpingest/bench/measure"
)

// writeTable prints the results, one block per queue count and size, in
// the order of the sweep.
func writeTable(w io.Writer, r *measure.Report) {
	fam := "IPv4"
	if r.IPv6 {
		fam = "IPv6"
	}
	fmt.Fprintf(w, "\npktbench compare: %s generator, %s, %d flow(s), %d x %s per path, alternating; %d CPUs (%s), Linux %s\n",
		r.Generator, fam, r.Flows, r.Reps, time.Duration(r.Duration*float64(time.Second)), r.Machine.CPUs, r.Machine.AllowedCPUs, r.Machine.Kernel)
	for _, q := range r.Queues {
		for _, size := range r.Sizes {
			var gs []*measure.Group
			for _, p := range r.Paths {
				for _, g := range r.Results {
					if g.Queues == q && g.Size == size && g.Path == p && len(g.Runs) > 0 {
						gs = append(gs, g)
					}
				}
			}
			if len(gs) == 0 {
				continue
			}
			fmt.Fprintf(w, "\n%d queue(s), %d-byte frames\n", q, size)
			fmt.Fprintf(w, "  %-11s %8s %8s %8s %8s %7s %9s %10s %9s %8s\n", "path", "Mpps", "min", "max", "Gbit/s", "x drop", "x kernel", "rx µs/pkt", "loss", "runs")
			for _, g := range gs {
				fmt.Fprintf(w, "  %-11s %8.3f %8.3f %8.3f %8.3f %7s %9s %10s %8.3f%% %8d\n", g.Path, g.MedianMpps, g.MinMpps, g.MaxMpps, g.MedianGbps,
					optRatio(g.VsDrop), optRatio(g.VsKernel), optF(g.RxCPUUsPerPkt, "%.3f"), 100*g.LossRate, len(g.Runs))
			}
		}
	}
	fmt.Fprintf(w, "\nMpps: median of the runs (packets received / generator time); x drop, x kernel: median of the\n"+
		"per-repetition ratios; rx µs/pkt: CPU time of the receiving threads per packet (xdp-drop has none:\n"+
		"its work runs in the sender's softirq); loss: sent but never received, from sequence numbers\n"+
		"(afxdp, kernel, stdnet) or counters (xdp-drop, server).\n")
	if !r.Complete {
		fmt.Fprintf(w, "INCOMPLETE: the sweep stopped early (%s)\n", r.Error)
	}
}

func optRatio(v *float64) string { return optF(v, "%.2f") }

func optF(v *float64, format string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(format, *v)
}
