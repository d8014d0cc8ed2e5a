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
