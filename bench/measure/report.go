package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/xdpingest/xdpingest/bench"
)

// report is everything compare measured; --json writes it as is.
type report struct {
	Tool    string    `json:"tool"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	Command []string  `json:"command"`
	Machine machine   `json:"machine"`

	Generator string   `json:"generator"`
	IPv6      bool     `json:"ipv6"`
	Flows     int      `json:"flows"`
	Duration  float64  `json:"duration_seconds"` // per run
	Reps      int      `json:"reps"`
	Sizes     []int    `json:"sizes"` // frame bytes, FCS excluded
	Queues    []int    `json:"queues"`
	Paths     []string `json:"paths"`
	// Complete is false when the sweep stopped early (an error, Ctrl-C):
	// Results then hold what was measured.
	Complete bool   `json:"complete"`
	Error    string `json:"error,omitempty"`

	Results []*group `json:"results"`
}

type machine struct {
	Kernel      string `json:"kernel"`
	CPUs        int    `json:"cpus"`
	AllowedCPUs string `json:"allowed_cpus"`
	LoadAvg     string `json:"loadavg_at_start"`
}

// group is one path at one queue count and frame size: its runs and what
// they add up to.
type group struct {
	Queues   int    `json:"queues"`
	Size     int    `json:"size"`
	Path     string `json:"path"`
	Describe string `json:"describe"`

	MedianMpps float64 `json:"median_mpps"`
	MinMpps    float64 `json:"min_mpps"`
	MaxMpps    float64 `json:"max_mpps"`
	MedianGbps float64 `json:"median_gbps"`
	// VsDrop and VsKernel are the medians of the per-repetition ratios to
	// the xdp-drop and kernel runs of the same repetition (paired, so that
	// drift between repetitions cancels); absent when that path wasn't run.
	VsDrop   *float64 `json:"vs_xdp_drop,omitempty"`
	VsKernel *float64 `json:"vs_kernel,omitempty"`
	// RxCPUUsPerPkt is the median CPU time of the receiving threads (the
	// server's process) per packet received; absent for xdp-drop, whose
	// work happens in the sender's softirq.
	RxCPUUsPerPkt *float64 `json:"rx_cpu_us_per_packet,omitempty"`
	// BusyUsPerPkt is the median busy time of all CPUs (/proc/stat) per
	// packet: generator included, and anything else the machine runs.
	BusyUsPerPkt float64 `json:"busy_cpu_us_per_packet"`
	// LossRate is lost / sent over all runs; LossFrom says how loss was
	// counted: "sequence" (numbers the meter never saw) or "counters"
	// (sent minus counted).
	LossRate float64 `json:"loss_rate"`
	LossFrom string  `json:"loss_from"`

	Runs []*runResult `json:"runs"`
}

// runResult is one run of one path.
type runResult struct {
	Rep      int     `json:"rep"`
	Sent     uint64  `json:"sent"`
	Received uint64  `json:"received"`
	Elapsed  float64 `json:"elapsed_seconds"` // the generators'
	Mpps     float64 `json:"mpps"`
	Gbps     float64 `json:"gbps"`
	Lost     uint64  `json:"lost"`
	Dups     uint64  `json:"duplicates,omitempty"`
	// Unexpected counts sequence numbers received that no generator
	// reported sending (beyond its count): a generator that undercounted.
	Unexpected uint64 `json:"unexpected,omitempty"`
	// RxCPU is the receiving threads' CPU time in seconds.
	RxCPU        float64           `json:"rx_cpu_seconds"`
	BusyUsPerPkt float64           `json:"busy_cpu_us_per_packet"`
	Drops        map[string]uint64 `json:"drops,omitempty"`
	CPU          []bench.CPULoad   `json:"cpu"`
	// Buffers: the kernel path's recvmmsg buffers, below Received when
	// UDP GRO merged datagrams (--gro).
	Buffers uint64 `json:"buffers,omitempty"`
}

func (r *report) group(queues, size int, path string) *group {
	for _, g := range r.Results {
		if g.Queues == queues && g.Size == size && g.Path == path {
			return g
		}
	}
	g := &group{Queues: queues, Size: size, Path: path}
	r.Results = append(r.Results, g)
	return g
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// summarize fills in every group's figures from its runs.
func (r *report) summarize() {
	for _, g := range r.Results {
		var mpps, gbps, rxcpu, busy []float64
		var sent, lost uint64
		g.MinMpps, g.MaxMpps = 0, 0
		for i, run := range g.Runs {
			mpps = append(mpps, run.Mpps)
			gbps = append(gbps, run.Gbps)
			busy = append(busy, run.BusyUsPerPkt)
			if run.Received > 0 && g.Path != pathDrop {
				rxcpu = append(rxcpu, run.RxCPU*1e6/float64(run.Received))
			}
			if i == 0 || run.Mpps < g.MinMpps {
				g.MinMpps = run.Mpps
			}
			g.MaxMpps = max(g.MaxMpps, run.Mpps)
			sent += run.Sent
			lost += run.Lost
		}
		g.MedianMpps, g.MedianGbps, g.BusyUsPerPkt = median(mpps), median(gbps), median(busy)
		if len(rxcpu) > 0 {
			v := median(rxcpu)
			g.RxCPUUsPerPkt = &v
		}
		if sent > 0 {
			g.LossRate = float64(lost) / float64(sent)
		}
		g.VsDrop = r.pairedRatio(g, pathDrop)
		g.VsKernel = r.pairedRatio(g, pathKernel)
	}
}

// pairedRatio is the median over repetitions of g's rate over the rate of
// the reference path in the same repetition.
func (r *report) pairedRatio(g *group, ref string) *float64 {
	var rg *group
	for _, x := range r.Results {
		if x.Queues == g.Queues && x.Size == g.Size && x.Path == ref {
			rg = x
		}
	}
	if rg == nil {
		return nil
	}
	var ratios []float64
	for _, run := range g.Runs {
		for _, ref := range rg.Runs {
			if ref.Rep == run.Rep && ref.Mpps > 0 {
				ratios = append(ratios, run.Mpps/ref.Mpps)
			}
		}
	}
	if len(ratios) == 0 {
		return nil
	}
	v := median(ratios)
	return &v
}

// writeTable prints the results, one block per queue count and size, in
// the order of the sweep.
func (r *report) writeTable(w io.Writer) {
	fam := "IPv4"
	if r.IPv6 {
		fam = "IPv6"
	}
	fmt.Fprintf(w, "\npktbench compare: %s generator, %s, %d flow(s), %d x %s per path, alternating; %d CPUs (%s), Linux %s\n",
		r.Generator, fam, r.Flows, r.Reps, time.Duration(r.Duration*float64(time.Second)), r.Machine.CPUs, r.Machine.AllowedCPUs, r.Machine.Kernel)
	for _, q := range r.Queues {
		for _, size := range r.Sizes {
			var gs []*group
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

// writeJSON writes the report to a file.
func (r *report) writeJSON(name string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(name, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("can't write the JSON report: %w", err)
	}
	return nil
}

func readMachine() machine {
	var m machine
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if st, err := bench.ReadCPUStat(); err == nil {
		m.CPUs = len(st.CPU)
	}
	return m
}
