package measure

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/xdpingest/xdpingest/bench"
)

// syntheticLatency is a report of two paths at two rates, two runs each,
// with known values: path a's run k at rate r records 1..1000 µs, b's
// 10x that.
func syntheticLatency() *LatencyReport {
	r := &LatencyReport{Tool: "pktbench latency", Generator: GenAFXDP, Size: 64, Duration: 1, Reps: 2,
		Rates: []float64{1000, 1e6}, Paths: []string{"a", "b"}}
	for _, rate := range r.Rates {
		for rep := 1; rep <= 2; rep++ {
			for i, path := range r.Paths {
				h := &bench.Histogram{}
				for v := int64(1); v <= 1000; v++ {
					h.Record(v * 1000 * int64(1+9*i))
				}
				r.Result(path, rate).add(&LatencyRun{Rep: rep, Sent: 1000, Measured: 1000, SentPPS: rate, hist: h})
			}
		}
	}
	return r
}

// Runs merge into one histogram: counts add up, and the percentiles are
// those of all values, to the histogram's resolution.
func TestLatencyResultMerges(t *testing.T) {
	r := syntheticLatency()
	if len(r.Results) != 4 {
		t.Fatalf("%d results", len(r.Results))
	}
	g := r.Result("a", 1000)
	if g.Sent != 2000 || g.Measured != 2000 || len(g.Runs) != 2 || g.SentPPS != 1000 {
		t.Fatalf("merged: sent %d measured %d, %d runs, %v pps", g.Sent, g.Measured, len(g.Runs), g.SentPPS)
	}
	for _, c := range []struct{ got, want float64 }{{g.P50, 500}, {g.P90, 900}, {g.P99, 990}, {g.P999, 999}, {g.Max, 1000}, {g.Min, 1}} {
		if c.got < c.want || c.got > c.want*129/128 {
			t.Errorf("got %v µs, want %v", c.got, c.want)
		}
	}
	if math.Abs(g.Mean-500.5) > 0.01 {
		t.Errorf("mean %v µs", g.Mean)
	}
	var n float64
	for _, b := range g.Buckets {
		n += b[1]
	}
	if n != 2000 {
		t.Errorf("buckets hold %v", n)
	}
	if b := r.Result("b", 1e6); b.P50 < 5000 || b.P50 > 5000*129/128 {
		t.Errorf("b's median %v µs", b.P50)
	}
}

// The JSON holds the percentiles and the buckets; the chart decodes as PNG
// and as SVG (PKTBENCH_CHART_DIR keeps them to look at).
func TestLatencyReportOutputs(t *testing.T) {
	dir := os.Getenv("PKTBENCH_CHART_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	r := syntheticLatency()
	js := filepath.Join(dir, "latency.json")
	if err := r.WriteJSON(js); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Results []struct {
			Path    string       `json:"path"`
			P999    float64      `json:"p99_9_us"`
			Buckets [][2]float64 `json:"buckets"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != 4 || back.Results[0].P999 < 999 || len(back.Results[0].Buckets) == 0 {
		t.Fatalf("JSON: %s", b[:min(len(b), 400)])
	}
	checkCharts(t, r, dir, "latency")
	if err := (&LatencyReport{Rates: []float64{1}, Paths: []string{"a"}}).WriteChart(filepath.Join(dir, "empty.png"), false); err == nil {
		t.Error("a chart of no results must fail")
	}
}

// The curve keeps its ends (the minimum at the start, the maximum at
// 1 - 1/count), rises, and has fewer points than a dense histogram has
// buckets.
func TestLatencyCurve(t *testing.T) {
	g := &LatencyResult{}
	for v := int64(1); v <= 100_000; v++ {
		g.hist.Record(v * 37)
	}
	pts := latencyCurve(g)
	buckets := 0
	g.hist.Buckets(func(int, uint64) { buckets++ })
	if len(pts) < 100 || len(pts) >= buckets/2 {
		t.Fatalf("%d points for %d buckets", len(pts), buckets)
	}
	first, last := pts[0], pts[len(pts)-1]
	if first.Y != us(37) || last.Y != us(3_700_000) || math.Abs(last.X-5) > 1e-9 {
		t.Errorf("curve from %v to %v", first, last)
	}
	for i := 1; i < len(pts); i++ {
		if pts[i].X <= pts[i-1].X || pts[i].Y < pts[i-1].Y {
			t.Fatalf("points %d and %d: %v %v", i-1, i, pts[i-1], pts[i])
		}
	}
}

func TestFormatRate(t *testing.T) {
	for r, want := range map[float64]string{1000: "1k", 1e6: "1M", 2.5e6: "2.5M", 10_000: "10k", 999: "999", 1500: "1.5k"} {
		if got := FormatRate(r); got != want {
			t.Errorf("FormatRate(%v) = %q, want %q", r, got, want)
		}
	}
}
