package measure

import (
	"fmt"
	"io"
	"os"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// The chart: one grouped bar chart per queue count, stacked vertically;
// in each, a group of bars per frame size, a bar per path (median Mpps).

const (
	chartWidth     = 8 * vg.Inch
	chartRowHeight = 4 * vg.Inch
)

func (r *Report) plots() ([][]*plot.Plot, error) {
	var rows [][]*plot.Plot
	for _, q := range r.Queues {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("pktbench compare: %d queue(s), %s generator, median of %d x %gs", q, r.Generator, r.Reps, r.Duration)
		p.Y.Label.Text = "Mpps received"
		p.X.Label.Text = "frame size (bytes, FCS excluded)"
		p.Y.Min = 0
		var paths []string
		for _, path := range r.Paths {
			for _, g := range r.Results {
				if g.Queues == q && g.Path == path && len(g.Runs) > 0 {
					paths = append(paths, path)
					break
				}
			}
		}
		if len(paths) == 0 {
			continue
		}
		// Bars share 80% of each size's slot of the plot's width.
		slot := float64(chartWidth-vg.Inch) / float64(len(r.Sizes))
		w := vg.Length(min(40, 0.8*slot/float64(len(paths))))
		top := 0.0
		for i, path := range paths {
			vals := make(plotter.Values, len(r.Sizes))
			for j, size := range r.Sizes {
				for _, g := range r.Results {
					if g.Queues == q && g.Size == size && g.Path == path {
						vals[j] = g.MedianMpps
						top = max(top, g.MaxMpps)
					}
				}
			}
			bars, err := plotter.NewBarChart(vals, w)
			if err != nil {
				return nil, fmt.Errorf("can't draw the bars of %s: %w", path, err)
			}
			bars.LineStyle.Width = vg.Length(0)
			bars.Color = plotutil.Color(i)
			bars.Offset = vg.Length(float64(i)-float64(len(paths)-1)/2) * w
			p.Add(bars)
			p.Legend.Add(path, bars)
		}
		names := make([]string, len(r.Sizes))
		for j, s := range r.Sizes {
			names[j] = strconv.Itoa(s)
		}
		p.NominalX(names...)
		p.X.Min, p.X.Max = -0.5, float64(len(r.Sizes))-0.5
		// Headroom for the legend, which sits at the top.
		p.Y.Max = max(1, top) * (1.1 + 0.06*float64(len(paths)))
		p.Legend.Top = true
		p.Add(plotter.NewGrid())
		rows = append(rows, []*plot.Plot{p})
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("nothing to draw: no results")
	}
	return rows, nil
}

// drawChart draws the plots onto a canvas of the right height.
func (r *Report) drawChart(newCanvas func(w, h vg.Length) (vg.CanvasSizer, func(io.Writer) error), out io.Writer) error {
	rows, err := r.plots()
	if err != nil {
		return err
	}
	return drawRows(rows, newCanvas, out)
}

// drawRows draws one plot per row, stacked, onto a canvas of the right
// height, and writes it to out.
func drawRows(rows [][]*plot.Plot, newCanvas func(w, h vg.Length) (vg.CanvasSizer, func(io.Writer) error), out io.Writer) error {
	c, write := newCanvas(chartWidth, chartRowHeight*vg.Length(len(rows)))
	dc := draw.New(c)
	t := draw.Tiles{Rows: len(rows), Cols: 1, PadY: vg.Points(12), PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(10)}
	canvases := plot.Align(rows, t, dc)
	for i := range rows {
		rows[i][0].Draw(canvases[i][0])
	}
	return write(out)
}

func svgCanvas(w, h vg.Length) (vg.CanvasSizer, func(io.Writer) error) {
	c := vgsvg.New(w, h)
	return c, func(out io.Writer) error { _, err := c.WriteTo(out); return err }
}

func pngCanvas(w, h vg.Length) (vg.CanvasSizer, func(io.Writer) error) {
	c := vgimg.New(w, h)
	return c, func(out io.Writer) error { _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(out); return err }
}

// WriteChart writes the chart to a file, as SVG or PNG.
func (r *Report) WriteChart(name string, svg bool) error {
	return writeChart(name, svg, r.drawChart)
}

// writeChart draws a chart with draw into the file name, as SVG or PNG.
func writeChart(name string, svg bool, draw func(newCanvas func(w, h vg.Length) (vg.CanvasSizer, func(io.Writer) error), out io.Writer) error) error {
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("can't write the chart: %w", err)
	}
	nc := pngCanvas
	if svg {
		nc = svgCanvas
	}
	if err := draw(nc, f); err != nil {
		f.Close()
		return fmt.Errorf("can't draw the chart into %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("can't write the chart: %w", err)
	}
	return nil
}
