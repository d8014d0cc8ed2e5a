// Package portset owns lists of UDP ports as the tools spell them
// ("9000,9100-9199"): parsing, formatting back, and a set of numbers
// 0..65535 (ports, or queue numbers) that answers membership in one load.
package portset

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// Set is a set of numbers 0..65535 in 8 KiB: the most a port or queue list
// can name, whatever ranges it spells.
type Set [65536 / 64]uint64

// Of returns the set of ports.
func Of(ports []uint16) *Set {
	s := new(Set)
	for _, p := range ports {
		s.Add(int(p))
	}
	return s
}

// Add adds n (0 <= n <= 65535).
func (s *Set) Add(n int) { s[n/64] |= 1 << (n % 64) }

// Has reports whether p is in the set.
func (s *Set) Has(p uint16) bool { return s[p/64]>>(p%64)&1 == 1 }

// AddRange adds lo..hi (0 <= lo <= hi <= 65535) a word at a time: a range
// costs at most 1024 steps, however wide, so a long list of wide ranges
// costs little more than its length.
func (s *Set) AddRange(lo, hi int) {
	for lo <= hi {
		w, bit := lo/64, lo%64
		n := min(hi-lo+1, 64-bit) // bits to set in word w
		s[w] |= (^uint64(0) >> (64 - n)) << bit
		lo += n
	}
}

// Count is the number of members.
func (s *Set) Count() int {
	n := 0
	for _, w := range s {
		n += bits.OnesCount64(w)
	}
	return n
}

// All yields the members in increasing order.
func (s *Set) All() func(yield func(int) bool) {
	return func(yield func(int) bool) {
		for i, w := range s {
			for w != 0 {
				j := bits.TrailingZeros64(w)
				if !yield(i*64 + j) {
					return
				}
				w &^= 1 << j
			}
		}
	}
}

// Parse parses "9000,9100-9199" into a sorted list without repeats. Ports
// are 1..65535.
func Parse(s string) ([]uint16, error) {
	var set Set
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("invalid ports %q: empty item", s)
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := parsePort(lo)
		if err != nil {
			return nil, fmt.Errorf("invalid ports %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = parsePort(hi); err != nil {
				return nil, fmt.Errorf("invalid ports %q: %w", s, err)
			}
			if b < a {
				return nil, fmt.Errorf("invalid ports %q: range %s runs backwards", s, part)
			}
		}
		set.AddRange(int(a), int(b))
	}
	out := make([]uint16, 0, set.Count())
	for p := range set.All() {
		out = append(out, uint16(p))
	}
	return out, nil
}

func parsePort(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	n, ok := Atoi(s)
	if !ok {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %s out of range 1..65535", s)
	}
	return uint16(n), nil
}

// Atoi parses decimal digits only (no sign, no space), saturating at a
// value above any port or queue so that a long number is out of range
// rather than a syntax error.
func Atoi(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = min(n*10+int(c-'0'), 1<<20)
	}
	return n, true
}

// Format writes sorted ports back in the compact range form.
func Format(ports []uint16) string {
	var b strings.Builder
	for i := 0; i < len(ports); {
		j := i
		for j+1 < len(ports) && ports[j+1] == ports[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(ports[i])))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(int(ports[j])))
		}
		i = j + 1
	}
	return b.String()
}
