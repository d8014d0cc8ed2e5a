package tuning

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// maxCPU bounds the CPU numbers a [CPUSet] accepts. The kernel's NR_CPUS tops
// out at 8192; the margin keeps a typo ("0-99999999") from allocating a huge
// set.
const maxCPU = 1 << 16

// CPUSet is a set of CPU numbers. The zero value is the empty set. It prints
// and parses in the kernel's cpulist format ("0-3,8,10-11"), the format of
// --cpus, smp_affinity_list and /sys/devices/system/cpu/online.
type CPUSet struct {
	words []uint64
}

// NewCPUSet returns the set of the given CPUs.
func NewCPUSet(cpus ...int) CPUSet {
	var s CPUSet
	for _, c := range cpus {
		s.Add(c)
	}
	return s
}

// ParseCPUList parses a kernel cpulist: comma-separated CPUs and ranges, with
// the optional stride form "0-15:2/4" (use the first 2 of every 4). Blank
// input is the empty set.
func ParseCPUList(list string) (CPUSet, error) {
	var s CPUSet
	list = strings.TrimSpace(list)
	if list == "" || list == "(null)" {
		// nohz_full reads "(null)" when it is off.
		return s, nil
	}
	for part := range strings.SplitSeq(list, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return CPUSet{}, fmt.Errorf("can't parse CPU list %q: empty element", list)
		}
		rng, stride, hasStride := strings.Cut(part, ":")
		loS, hiS, isRange := strings.Cut(rng, "-")
		lo, err := parseCPU(loS)
		if err != nil {
			return CPUSet{}, fmt.Errorf("can't parse CPU list %q: %w", list, err)
		}
		hi := lo
		if isRange {
			if hi, err = parseCPU(hiS); err != nil {
				return CPUSet{}, fmt.Errorf("can't parse CPU list %q: %w", list, err)
			}
			if hi < lo {
				return CPUSet{}, fmt.Errorf("can't parse CPU list %q: range %s runs backwards", list, rng)
			}
		}
		used, group := 1, 1
		if hasStride {
			if !isRange {
				return CPUSet{}, fmt.Errorf("can't parse CPU list %q: stride %q needs a range", list, part)
			}
			u, g, ok := strings.Cut(stride, "/")
			used, err = strconv.Atoi(u)
			if err == nil && ok {
				group, err = strconv.Atoi(g)
			}
			if !ok || err != nil || used <= 0 || group <= 0 || used > group {
				return CPUSet{}, fmt.Errorf("can't parse CPU list %q: bad stride %q (want used/group)", list, stride)
			}
		}
		for c := lo; c <= hi; c++ {
			if (c-lo)%group < used {
				s.Add(c)
			}
		}
	}
	return s, nil
}

func parseCPU(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a CPU number", s)
	}
	if n < 0 || n >= maxCPU {
		return 0, fmt.Errorf("CPU %d out of range 0-%d", n, maxCPU-1)
	}
	return n, nil
}

// MustParseCPUList is ParseCPUList for constants in tests and tables; it
// panics on a malformed list.
func MustParseCPUList(list string) CPUSet {
	s, err := ParseCPUList(list)
	if err != nil {
		panic(err)
	}
	return s
}

// Clone returns a copy that shares no storage with s.
func (s CPUSet) Clone() CPUSet {
	return CPUSet{words: append([]uint64(nil), s.words...)}
}

// Without returns a copy of s without cpu.
func (s CPUSet) Without(cpu int) CPUSet {
	c := s.Clone()
	c.Remove(cpu)
	return c
}

// Add puts cpu in the set. Negative or absurd CPU numbers are ignored.
// Add and Remove change s in place: a copy made by assignment shares its
// storage, like a slice; Clone first when the original must stay.
func (s *CPUSet) Add(cpu int) {
	if cpu < 0 || cpu >= maxCPU {
		return
	}
	w := cpu / 64
	for len(s.words) <= w {
		s.words = append(s.words, 0)
	}
	s.words[w] |= 1 << (cpu % 64)
}

// Remove takes cpu out of the set.
func (s *CPUSet) Remove(cpu int) {
	if cpu < 0 || cpu/64 >= len(s.words) {
		return
	}
	s.words[cpu/64] &^= 1 << (cpu % 64)
}

// Has says whether cpu is in the set.
func (s CPUSet) Has(cpu int) bool {
	if cpu < 0 || cpu/64 >= len(s.words) {
		return false
	}
	return s.words[cpu/64]&(1<<(cpu%64)) != 0
}

// Len is the number of CPUs in the set.
func (s CPUSet) Len() int {
	n := 0
	for _, w := range s.words {
		n += bits.OnesCount64(w)
	}
	return n
}

// IsEmpty says whether the set has no CPU.
func (s CPUSet) IsEmpty() bool { return s.Len() == 0 }

// List returns the CPUs in ascending order.
func (s CPUSet) List() []int {
	var l []int
	for i, w := range s.words {
		for w != 0 {
			b := bits.TrailingZeros64(w)
			l = append(l, i*64+b)
			w &^= 1 << b
		}
	}
	return l
}

// Intersect returns the CPUs in both s and o.
func (s CPUSet) Intersect(o CPUSet) CPUSet {
	var r CPUSet
	n := min(len(s.words), len(o.words))
	if n > 0 {
		r.words = make([]uint64, n)
		for i := range n {
			r.words[i] = s.words[i] & o.words[i]
		}
	}
	return r
}

// Union returns the CPUs in s or o.
func (s CPUSet) Union(o CPUSet) CPUSet {
	var r CPUSet
	n := max(len(s.words), len(o.words))
	if n > 0 {
		r.words = make([]uint64, n)
		copy(r.words, s.words)
		for i, w := range o.words {
			r.words[i] |= w
		}
	}
	return r
}

// Difference returns the CPUs of s that are not in o.
func (s CPUSet) Difference(o CPUSet) CPUSet {
	var r CPUSet
	if len(s.words) > 0 {
		r.words = make([]uint64, len(s.words))
		copy(r.words, s.words)
		for i := 0; i < len(o.words) && i < len(r.words); i++ {
			r.words[i] &^= o.words[i]
		}
	}
	return r
}

// Equal says whether both sets hold the same CPUs.
func (s CPUSet) Equal(o CPUSet) bool {
	n := max(len(s.words), len(o.words))
	for i := range n {
		var a, b uint64
		if i < len(s.words) {
			a = s.words[i]
		}
		if i < len(o.words) {
			b = o.words[i]
		}
		if a != b {
			return false
		}
	}
	return true
}

// SubsetOf says whether every CPU of s is in o.
func (s CPUSet) SubsetOf(o CPUSet) bool { return s.Difference(o).IsEmpty() }

// String formats the set as a kernel cpulist ("0-3,8"); the empty set is "".
func (s CPUSet) String() string {
	var b strings.Builder
	l := s.List()
	for i := 0; i < len(l); {
		j := i
		for j+1 < len(l) && l[j+1] == l[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(l[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(l[j]))
		}
		i = j + 1
	}
	return b.String()
}

// MarshalText makes a CPUSet a cpulist string in JSON and YAML.
func (s CPUSet) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a cpulist.
func (s *CPUSet) UnmarshalText(b []byte) error {
	p, err := ParseCPUList(string(b))
	if err != nil {
		return err
	}
	*s = p
	return nil
}
