package measure

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/xdpingest/xdpingest/bench"
)

// Report is everything Compare measured, as pktbench --json writes it.
type Report struct {
	Tool    string    `json:"tool"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	Command []string  `json:"command"`
	Machine Machine   `json:"machine"`

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

	Results []*Group `json:"results"`
}

// Machine is where a report was measured.
type Machine struct {
	Kernel      string `json:"kernel"`
	CPUs        int    `json:"cpus"`
	AllowedCPUs string `json:"allowed_cpus"`
	LoadAvg     string `json:"loadavg_at_start"`
}

// Group is one path at one queue count and frame size: its runs and what
// they add up to.
type Group struct {
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

	Runs []*RunResult `json:"runs"`
}

// RunResult is one run of one path.
type RunResult struct {
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

	lossFrom string // the group's LossFrom
}

// Group returns the group of path at queues and size, added if new.
func (r *Report) Group(queues, size int, path string) *Group {
	for _, g := range r.Results {
		if g.Queues == queues && g.Size == size && g.Path == path {
			return g
		}
	}
	g := &Group{Queues: queues, Size: size, Path: path}
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

// Summarize fills in every group's figures from its runs.
func (r *Report) Summarize() {
	for _, g := range r.Results {
		var mpps, gbps, rxcpu, busy []float64
		var sent, lost uint64
		g.MinMpps, g.MaxMpps = 0, 0
		for i, run := range g.Runs {
			mpps = append(mpps, run.Mpps)
			gbps = append(gbps, run.Gbps)
			busy = append(busy, run.BusyUsPerPkt)
			if run.Received > 0 && g.Path != PathDrop {
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
		g.VsDrop = r.pairedRatio(g, PathDrop)
		g.VsKernel = r.pairedRatio(g, PathKernel)
	}
}

// pairedRatio is the median over repetitions of g's rate over the rate of
// the reference path in the same repetition.
func (r *Report) pairedRatio(g *Group, ref string) *float64 {
	var rg *Group
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

// WriteJSON writes the report to a file, indented.
func (r *Report) WriteJSON(name string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(name, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("can't write the JSON report: %w", err)
	}
	return nil
}

// ReadMachine describes this machine: kernel, CPUs, load.
func ReadMachine() Machine {
	var m Machine
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
