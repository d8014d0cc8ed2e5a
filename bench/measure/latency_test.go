package measure

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/internal/testutil"
)

// A short latency sweep at a low rate: every datagram the sender stamped is
// measured exactly once on every path, with a latency above zero and below
// a second, percentiles in order, and the buckets adding up to the count.
// Both senders; afxdp-c and the server where their binaries can be built.
func TestLatencyCounts(t *testing.T) {
	testutil.RequireBPF(t)
	xskdrop := xskdropBinary(t)
	server := filepath.Join(testutil.BuildT(t, "../../cmd/xdpingest"), "xdpingest")
	for _, c := range []struct {
		gen   string
		paths []string
	}{
		{GenAFXDP, []string{LatAFXDP, LatAFXDPPoll, LatAFXDPSpin, LatKernel, LatStdnet, LatCref, LatCrefSpin, LatServer, LatServerLow}},
		{GenSendmmsg, []string{LatAFXDP, LatKernel}},
	} {
		t.Run(c.gen, func(t *testing.T) {
			var steps int
			o := LatencyOptions{Paths: c.paths, Rates: []float64{1000, 2000}, Size: 64, Gen: c.gen,
				Duration: 200 * time.Millisecond, Reps: 1,
				Rx:       PathOptions{Xskdrop: xskdrop, Xdpingest: server},
				Progress: func(LatencyStep) { steps++ }}
			rep, err := Latency(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Complete || len(rep.Results) != 2*len(c.paths) || steps != 2*2*len(c.paths) {
				t.Fatalf("complete %v, %d results, %d progress steps", rep.Complete, len(rep.Results), steps)
			}
			for _, g := range rep.Results {
				want := uint64(g.Rate * o.Duration.Seconds())
				if g.Sent != want || g.Measured != want || g.Lost != 0 || g.Dups != 0 || g.Unstamped != 0 || g.Negative != 0 {
					t.Errorf("%s at %v/s: sent %d (want %d), measured %d, lost %d, dups %d, unstamped %d, negative %d",
						g.Path, g.Rate, g.Sent, want, g.Measured, g.Lost, g.Dups, g.Unstamped, g.Negative)
				}
				if g.Min <= 0 || g.Max >= 1e6 || !slices.IsSorted([]float64{g.Min, g.P50, g.P90, g.P99, g.P999, g.Max}) {
					t.Errorf("%s at %v/s: min %v p50 %v p90 %v p99 %v p99.9 %v max %v µs", g.Path, g.Rate, g.Min, g.P50, g.P90, g.P99, g.P999, g.Max)
				}
				var n float64
				for _, b := range g.Buckets {
					n += b[1]
				}
				if uint64(n) != g.Measured || g.Describe == "" || len(g.Runs) != 1 {
					t.Errorf("%s at %v/s: buckets hold %v of %d, describe %q, %d runs", g.Path, g.Rate, n, g.Measured, g.Describe, len(g.Runs))
				}
				t.Logf("%-12s %6.0f/s: p50 %7.1f p99 %7.1f max %7.1f µs (%s)", g.Path, g.Rate, g.P50, g.P99, g.Max, g.Describe)
			}
		})
	}
}

// Options that can't work are refused before a bed is built.
func TestLatencyOptionsRefused(t *testing.T) {
	ok := LatencyOptions{Paths: []string{LatKernel}, Rates: []float64{1000}, Size: 64, Duration: time.Second, Reps: 1}
	for name, mod := range map[string]func(*LatencyOptions){
		"no paths":      func(o *LatencyOptions) { o.Paths = nil },
		"unknown path":  func(o *LatencyOptions) { o.Paths = []string{"xdp-drop"} },
		"live gen":      func(o *LatencyOptions) { o.Gen = GenLive },
		"small frame":   func(o *LatencyOptions) { o.Size = 14 + 20 + 8 + 15 },
		"zero rate":     func(o *LatencyOptions) { o.Rates = []float64{0} },
		"no reps":       func(o *LatencyOptions) { o.Reps = 0 },
		"server no bin": func(o *LatencyOptions) { o.Paths = []string{LatServer} },
		"cref no bin":   func(o *LatencyOptions) { o.Paths = []string{LatCref} },
	} {
		o := ok
		mod(&o)
		if err := o.check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := ok.check(); err != nil {
		t.Errorf("good options refused: %v", err)
	}
}
