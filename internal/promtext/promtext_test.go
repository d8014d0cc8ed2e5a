package promtext

import (
	"strings"
	"testing"
)

func TestParseSum(t *testing.T) {
	page := `# HELP x_total help
# TYPE x_total counter
x_total{outcome="redirect",verdict="redirect"} 10
x_total{outcome="pass",verdict="pass"} 3
y 2.5e+06

bad line
`
	s, err := Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Sum("x_total"); got != 13 {
		t.Errorf("Sum(x_total) = %v", got)
	}
	if got := s.Sum("x_total", `outcome="redirect"`); got != 10 {
		t.Errorf("Sum(redirect) = %v", got)
	}
	if got := s.Sum("y"); got != 2.5e6 {
		t.Errorf("Sum(y) = %v", got)
	}
	if got := s.Sum("x"); got != 0 {
		t.Errorf("a prefix matched: %v", got)
	}
}

func TestSeries(t *testing.T) {
	page := `xdpingest_sink_dropped_total{reason="queue_full",sink="kafka://a:9092,b:9092/t?ports=1,2"} 3
xdpingest_sink_dropped_total{reason="closed",sink="odd \"name\" \\ here\n"} 4
xdpingest_sink_dropped_totals{sink="x"} 5
xdpingest_build_info{goversion="go1.26",version="v1"} 1
up 1
`
	s, err := Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, x := range s.Series("xdpingest_sink_dropped_total") {
		got[x.Labels["reason"]+" "+x.Labels["sink"]] = x.Value
	}
	want := map[string]float64{
		"queue_full kafka://a:9092,b:9092/t?ports=1,2": 3,
		"closed odd \"name\" \\ here\n":                4,
	}
	if len(got) != len(want) {
		t.Errorf("Series = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Series: %q = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if up := s.Series("up"); len(up) != 1 || len(up[0].Labels) != 0 || up[0].Value != 1 {
		t.Errorf("Series(up) = %v", up)
	}
	for _, bad := range []string{`x{a="1"`, `x{a=1}`, `x{a="1"}y`} {
		if _, _, err := SplitKey(bad); err == nil {
			t.Errorf("SplitKey(%q) accepted it", bad)
		}
	}
}
