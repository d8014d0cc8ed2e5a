package measure

import (
	"fmt"
	"io"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/xdpingest/xdpingest/bench"
)

// The latency chart: one plot per rate, stacked vertically; in each, a
// line per path through its whole histogram, latency (log scale) against
// the percentile, spread by its nines (x = -log10(1 - q): 90% at 1, 99% at
// 2, 99.9% at 3), ending at the maximum, drawn at 1 - 1/count.

// curveStep is the least distance along x (in nines) between two points
// of a curve.
const curveStep = 0.005

// latencyCurve returns the path's percentile curve: a point at the top of
// every bucket that holds values, at the share of values up to it.
func latencyCurve(g *LatencyResult) plotter.XYs {
	h := &g.hist
	n := float64(h.Count())
	if n == 0 {
		return nil
	}
	var pts plotter.XYs
	var seen float64
	h.Buckets(func(i int, c uint64) {
		seen += float64(c)
		_, hi := bench.HistBucketRange(i)
		y := math.Max(us(min(hi, h.Max())), 0.001) // the log scale needs > 0
		x := math.Log10(n)                         // the maximum
		if seen < n {
			x = -math.Log10(1 - seen/n)
		}
		// Points closer than the line is wide add nothing but bytes (an
		// SVG of every bucket of 40 curves is a megabyte): a run of them
		// shorter than curveStep keeps its first and its last.
		if k := len(pts); k >= 2 && x-pts[k-2].X < curveStep {
			pts[k-1] = plotter.XY{X: x, Y: y}
			return
		}
		pts = append(pts, plotter.XY{X: x, Y: y})
	})
	return pts
}

func (r *LatencyReport) plots() ([][]*plot.Plot, error) {
	var rows [][]*plot.Plot
	for _, rate := range r.Rates {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("pktbench latency: %s/s, %d-byte frames, %s sender, %d x %gs", FormatRate(rate), r.Size, r.Generator, r.Reps, r.Duration)
		p.Y.Label.Text = "one-way latency (µs)"
		p.X.Label.Text = "percentile"
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.X.Min = 0
		p.X.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 0, Label: "0"}, {Value: math.Log10(2), Label: "50"},
			{Value: 1, Label: "90"}, {Value: 2, Label: "99"}, {Value: 3, Label: "99.9"}, {Value: 4, Label: "99.99"}, {Value: 5, Label: "99.999"}})
		lines := 0
		for i, path := range r.Paths {
			for _, g := range r.Results {
				if g.Rate != rate || g.Path != path {
					continue
				}
				pts := latencyCurve(g)
				if len(pts) == 0 {
					continue
				}
				l, err := plotter.NewLine(pts)
				if err != nil {
					return nil, fmt.Errorf("can't draw the line of %s: %w", path, err)
				}
				l.Color = plotutil.Color(i)
				l.Dashes = plotutil.Dashes(i / len(plotutil.DefaultColors))
				l.Width = vg.Points(1.5)
				p.Add(l)
				p.Legend.Add(path, l)
				lines++
			}
		}
		if lines == 0 {
			continue
		}
		p.Legend.Top, p.Legend.Left = true, true
		p.Add(plotter.NewGrid())
		rows = append(rows, []*plot.Plot{p})
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("nothing to draw: no results")
	}
	return rows, nil
}

// FormatRate writes a rate as pktbench latency's --rates takes it: 1000
// as 1k, 1e6 as 1M.
func FormatRate(r float64) string {
	switch {
	case r >= 1e6 && math.Mod(r, 1e5) == 0:
		return fmt.Sprintf("%gM", r/1e6)
	case r >= 1e3 && math.Mod(r, 100) == 0:
		return fmt.Sprintf("%gk", r/1e3)
	}
	return fmt.Sprintf("%g", r)
}

func (r *LatencyReport) drawChart(newCanvas func(w, h vg.Length) (vg.CanvasSizer, func(io.Writer) error), out io.Writer) error {
	rows, err := r.plots()
	if err != nil {
		return err
	}
	return drawRows(rows, newCanvas, out)
}

// WriteChart writes the chart to a file, as SVG or PNG.
func (r *LatencyReport) WriteChart(name string, svg bool) error {
	return writeChart(name, svg, r.drawChart)
}
