package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xdpingest/xdpingest/bench/measure"
)

// A short latency run prints a progress line per run and a block per rate
// with every path's percentiles, writes the JSON and the charts, and
// removes its bed. (bench/measure's tests check the counts on every path.)
func TestLatencyShort(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	jsonF, svgF, pngF := filepath.Join(dir, "l.json"), filepath.Join(dir, "l.svg"), filepath.Join(dir, "l.png")
	code, out, errs := runCmd(context.Background(), "latency", "--duration", "200ms", "--rates", "1k,2k", "--paths", "afxdp,kernel",
		"--json", jsonF, "--svg", svgF, "--png", pngF)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	t.Logf("\n%s", out)
	requireNoBeds(t, os.Getpid())
	if !strings.Contains(errs, "[4/4] 2k/s, rep 1/1, kernel: p50 ") {
		t.Errorf("no progress line for the last run:\n%s", errs)
	}
	for _, want := range []string{"\n1k datagrams/s\n", "\n2k datagrams/s\n", "p99.9 µs", "  afxdp ", "  kernel "} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	b, err := os.ReadFile(jsonF)
	if err != nil {
		t.Fatal(err)
	}
	var r measure.LatencyReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if !r.Complete || !slices.Equal(r.Rates, []float64{1000, 2000}) || len(r.Results) != 4 || len(r.Command) == 0 {
		t.Fatalf("report: %+v", r)
	}
	for _, g := range r.Results {
		if g.Sent == 0 || g.Measured != g.Sent || g.P99 <= 0 || len(g.Buckets) == 0 {
			t.Errorf("%s at %v/s: sent %d measured %d p99 %v, %d buckets", g.Path, g.Rate, g.Sent, g.Measured, g.P99, len(g.Buckets))
		}
	}
	for name, magic := range map[string]string{pngF: "\x89PNG", svgF: "<?xml"} {
		if b, err := os.ReadFile(name); err != nil || !strings.HasPrefix(string(b), magic) {
			t.Errorf("%s: %v, starts %.8q", name, err, b)
		}
	}
}

func TestLatencyFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"latency", "--rates", "1k,x"}, `"x" is not a rate`},
		{[]string{"latency", "--rates", "0"}, "rate 0: want 1 to 20M"},
		{[]string{"latency", "--rates", "1k,1000"}, "1k is named twice"},
		{[]string{"latency", "--paths", "afxdp,xdp-drop"}, `unknown path "xdp-drop"`},
		{[]string{"latency", "--paths", "kernel,kernel"}, "named twice"},
		{[]string{"latency", "--gen", "live"}, "the live generator can't stamp the time"},
		{[]string{"latency", "--size", "57"}, "--size 57: want 58"},
		{[]string{"latency", "--ipv6", "--size", "77"}, "--size 77: want 78"},
		{[]string{"latency", "--reps", "0"}, "--reps 0"},
		{[]string{"latency", "--nap", "2ms"}, "--nap 2ms: want 0 (never nap) to 1ms"},
		{[]string{"latency", "--xdp-mode", "turbo"}, "unknown XDP mode"},
		{[]string{"latency", "--paths", "server", "--xdpingest", "/nonexistent/xdpingest"}, "can't use --xdpingest /nonexistent/xdpingest"},
		{[]string{"latency", "--paths", "afxdp-c-poll"}, "make build"},
	} {
		code, _, errs := runCmd(context.Background(), c.args...)
		if code != exitUsage || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errs, c.want)
		}
	}
}

func TestParseRates(t *testing.T) {
	got, err := parseRates("1k, 10k,100k,1M,2.5M,500")
	if err != nil || !slices.Equal(got, []float64{1e3, 1e4, 1e5, 1e6, 2.5e6, 500}) {
		t.Fatalf("%v, %v", got, err)
	}
}

// pktbench latency -h lists every latency path, in LatencyPaths' order.
func TestLatencyHelpListsEveryPath(t *testing.T) {
	code, _, errs := runCmd(context.Background(), "latency", "-h")
	_, list, ok := strings.Cut(errs, "\npaths (")
	if code != exitOK || !ok {
		t.Fatalf("exit %d, no paths in:\n%s", code, errs)
	}
	list, _, _ = strings.Cut(list, "\n\n")
	var listed []string
	for _, l := range strings.Split(list, "\n")[1:] {
		if strings.HasPrefix(l, "  ") && !strings.HasPrefix(l, "   ") {
			listed = append(listed, strings.Fields(l)[0])
		}
	}
	if !slices.Equal(listed, measure.LatencyPaths()) {
		t.Errorf("latency -h lists %v, want %v", listed, measure.LatencyPaths())
	}
}
