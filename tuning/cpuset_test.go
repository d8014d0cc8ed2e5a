package tuning

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestParseCPUList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		str  string
	}{
		{"", nil, ""},
		{"\n", nil, ""},
		{"(null)", nil, ""},
		{"0", []int{0}, "0"},
		{"0-3", []int{0, 1, 2, 3}, "0-3"},
		{"0-3,8,10-11\n", []int{0, 1, 2, 3, 8, 10, 11}, "0-3,8,10-11"},
		{"3,1,2", []int{1, 2, 3}, "1-3"},
		{"0-7:2/4", []int{0, 1, 4, 5}, "0-1,4-5"},
		{"63-65", []int{63, 64, 65}, "63-65"},
		{"5,5", []int{5}, "5"},
	} {
		s, err := ParseCPUList(tc.in)
		if err != nil {
			t.Errorf("ParseCPUList(%q): %v", tc.in, err)
			continue
		}
		if !slices.Equal(s.List(), tc.want) {
			t.Errorf("ParseCPUList(%q) = %v, want %v", tc.in, s.List(), tc.want)
		}
		if s.String() != tc.str {
			t.Errorf("ParseCPUList(%q).String() = %q, want %q", tc.in, s.String(), tc.str)
		}
		back, err := ParseCPUList(s.String())
		if err != nil || !back.Equal(s) {
			t.Errorf("round trip of %q: %v %v", tc.in, back, err)
		}
	}
	for _, bad := range []string{"a", "1-", "-1", "3-1", "0,,1", "99999999", "1:2/4", "0-7:5/4", "0-7:0/4"} {
		if _, err := ParseCPUList(bad); err == nil {
			t.Errorf("ParseCPUList(%q) accepted a malformed list", bad)
		}
	}
}

func TestCPUSetOps(t *testing.T) {
	a, b := MustParseCPUList("0-5"), MustParseCPUList("4-9,70")
	if got := a.Intersect(b).String(); got != "4-5" {
		t.Errorf("intersect = %s", got)
	}
	if got := a.Union(b).String(); got != "0-9,70" {
		t.Errorf("union = %s", got)
	}
	if got := b.Difference(a).String(); got != "6-9,70" {
		t.Errorf("difference = %s", got)
	}
	if !MustParseCPUList("1-2").SubsetOf(a) || b.SubsetOf(a) {
		t.Error("SubsetOf wrong")
	}
	if !(CPUSet{}).Equal(MustParseCPUList("70").Difference(MustParseCPUList("70"))) {
		t.Error("empty sets of different capacity are not Equal")
	}
	j, err := json.Marshal(struct{ C CPUSet }{a})
	if err != nil || string(j) != `{"C":"0-5"}` {
		t.Errorf("json = %s %v", j, err)
	}
	var back struct{ C CPUSet }
	if err := json.Unmarshal(j, &back); err != nil || !back.C.Equal(a) {
		t.Errorf("json back = %v %v", back.C, err)
	}
}
