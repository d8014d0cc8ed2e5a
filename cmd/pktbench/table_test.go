package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/xdpingest/xdpingest/bench/measure"
)

// The table has a block per queue count and size, in the sweep's order, a
// row per path that ran, and says when the sweep stopped early.
func TestWriteTable(t *testing.T) {
	r := &measure.Report{Generator: measure.GenLive, Duration: 3, Reps: 2, Sizes: []int{64, 1472}, Queues: []int{1, 2},
		Paths: []string{measure.PathDrop, measure.PathAFXDP, measure.PathKernel}, Error: "interrupted"}
	for _, q := range r.Queues {
		for _, size := range r.Sizes {
			for rep := 1; rep <= r.Reps; rep++ {
				for i, p := range r.Paths {
					if q == 2 && size == 1472 && p == measure.PathKernel {
						continue // stopped before it ran
					}
					mpps := float64(q) * 6 / float64(i+1)
					r.Group(q, size, p).Runs = append(r.Group(q, size, p).Runs, &measure.RunResult{Rep: rep, Sent: 1000, Received: 990, Lost: 10, Mpps: mpps, RxCPU: 0.5})
				}
			}
		}
	}
	r.Summarize()
	var b bytes.Buffer
	writeTable(&b, r)
	out := b.String()
	blocks := []string{"1 queue(s), 64-byte frames", "1 queue(s), 1472-byte frames", "2 queue(s), 64-byte frames", "2 queue(s), 1472-byte frames"}
	last := -1
	for _, blk := range blocks {
		i := strings.Index(out, blk)
		if i <= last {
			t.Fatalf("block %q missing or out of order:\n%s", blk, out)
		}
		last = i
	}
	// x drop of afxdp is 3/6; xdp-drop has no receiving thread.
	for _, want := range []string{"afxdp          3.000", "   0.50 ", "xdp-drop", "INCOMPLETE: the sweep stopped early (interrupted)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if tail := out[last:]; strings.Contains(tail, "\n  kernel ") {
		t.Errorf("a row for a path that never ran:\n%s", tail)
	}
}
