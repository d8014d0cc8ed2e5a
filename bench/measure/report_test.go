package measure

import (
	"bytes"
	"encoding/xml"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// synthetic returns a report as Compare would make it, without running it.
func synthetic() *Report {
	r := &Report{Generator: GenLive, Duration: 5, Reps: 3, Sizes: []int{64, 512, 1472}, Queues: []int{1, 2}, Paths: DefaultPaths(), Complete: true}
	rates := map[string]float64{PathDrop: 13, PathAFXDP: 4.8, PathKernel: 0.9, PathStdnet: 0.8, PathServer: 3}
	for _, q := range r.Queues {
		for i, size := range r.Sizes {
			for rep := 1; rep <= r.Reps; rep++ {
				for _, p := range r.Paths {
					g := r.Group(q, size, p)
					mpps := rates[p] * float64(q) * (1 - 0.1*float64(i)) * (1 + 0.01*float64(rep))
					g.Runs = append(g.Runs, &RunResult{Rep: rep, Sent: 1000, Received: 990, Lost: 10, Mpps: mpps, Gbps: mpps * float64(size) * 8 / 1e3, RxCPU: 0.5})
				}
			}
		}
	}
	r.Summarize()
	return r
}

// The chart decodes as PNG and parses as SVG (XML). PKTBENCH_CHART_DIR keeps
// the files there, to look at.
func TestChartDecodes(t *testing.T) {
	dir := os.Getenv("PKTBENCH_CHART_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	checkCharts(t, synthetic(), dir, "chart")
}

// checkCharts has r write NAME.png and NAME.svg into dir and checks both.
func checkCharts(t *testing.T, r interface{ WriteChart(string, bool) error }, dir, name string) {
	t.Helper()
	pngFile, svgFile := filepath.Join(dir, name+".png"), filepath.Join(dir, name+".svg")
	if err := r.WriteChart(pngFile, false); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteChart(svgFile, true); err != nil {
		t.Fatal(err)
	}
	checkPNG(t, pngFile)
	checkSVG(t, svgFile)
}

func checkPNG(t *testing.T, name string) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if bb := img.Bounds(); bb.Dx() < 100 || bb.Dy() < 100 {
		t.Fatalf("%s: a %v image", name, bb)
	}
}

func checkSVG(t *testing.T, name string) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := xml.NewDecoder(f)
	root, rects := "", 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: not well-formed XML: %v", name, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			if se.Name.Local == "path" || se.Name.Local == "rect" {
				rects++
			}
		}
	}
	if root != "svg" || rects == 0 {
		t.Fatalf("%s: root element %q, %d shapes", name, root, rects)
	}
}

func TestSummarize(t *testing.T) {
	r := synthetic()
	g := r.Group(1, 64, PathAFXDP)
	if g.MedianMpps != 4.8*1.02 || g.MinMpps != 4.8*1.01 || g.MaxMpps != 4.8*1.03 {
		t.Fatalf("median %v min %v max %v", g.MedianMpps, g.MinMpps, g.MaxMpps)
	}
	if g.VsDrop == nil || *g.VsDrop < 4.8/13-1e-9 || *g.VsDrop > 4.8/13+1e-9 {
		t.Fatalf("vs drop %v", g.VsDrop)
	}
	if g.RxCPUUsPerPkt == nil || *g.RxCPUUsPerPkt != 0.5*1e6/990 || g.LossRate != 0.01 {
		t.Fatalf("rx cpu %v loss %v", g.RxCPUUsPerPkt, g.LossRate)
	}
	if d := r.Group(1, 64, PathDrop); d.RxCPUUsPerPkt != nil {
		t.Fatal("xdp-drop has a receiving thread's CPU")
	}
}
