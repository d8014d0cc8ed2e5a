package main

import (
	"bytes"
	"context"
	"slices"
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

// pktbench help lists every path rx and compare take, in KnownPaths'
// order, the defaults first, as it says.
func TestUsageListsEveryPath(t *testing.T) {
	code, out, _ := runCmd(context.Background(), "help")
	_, list, ok := strings.Cut(out, "\npaths (")
	if code != exitOK || !ok {
		t.Fatalf("exit %d, no paths in:\n%s", code, out)
	}
	var listed []string
	for _, l := range strings.Split(list, "\n")[1:] {
		if f := strings.Fields(l); len(f) > 0 {
			listed = append(listed, f[0])
		}
	}
	if !slices.Equal(listed, measure.KnownPaths()) {
		t.Errorf("help lists %v, want %v", listed, measure.KnownPaths())
	}
	if n := len(measure.DefaultPaths()); n != 5 || !strings.Contains(list, "runs the first five by default") {
		t.Errorf("help says compare runs the first five by default; it runs %d", n)
	}
}
