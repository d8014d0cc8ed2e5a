package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// CPU accounting for meters: per-core load from /proc/stat, which is where
// the receive work of a veth shows up (as softirq time on the sending core),
// and the CPU time of single threads and processes, which is what a receive
// loop costs.

// ClockTick is the unit of /proc/stat: USER_HZ, 100 on every Linux
// architecture the project builds for (sysconf(_SC_CLK_TCK) is fixed by the
// kernel ABI, not by CONFIG_HZ).
const ClockTick = 10 * time.Millisecond

// CPUTimes are one line of /proc/stat in ticks.
type CPUTimes struct {
	User, Nice, System, Idle, IOWait, IRQ, SoftIRQ, Steal uint64
}

// Total is every tick counted.
func (t CPUTimes) Total() uint64 {
	return t.User + t.Nice + t.System + t.Idle + t.IOWait + t.IRQ + t.SoftIRQ + t.Steal
}

// Busy is every tick not idle (idle and iowait) nor stolen by the host.
func (t CPUTimes) Busy() uint64 { return t.User + t.Nice + t.System + t.IRQ + t.SoftIRQ }

func (t CPUTimes) sub(o CPUTimes) CPUTimes {
	d := func(a, b uint64) uint64 {
		if a < b { // a CPU went offline and came back
			return 0
		}
		return a - b
	}
	return CPUTimes{d(t.User, o.User), d(t.Nice, o.Nice), d(t.System, o.System), d(t.Idle, o.Idle),
		d(t.IOWait, o.IOWait), d(t.IRQ, o.IRQ), d(t.SoftIRQ, o.SoftIRQ), d(t.Steal, o.Steal)}
}

// CPUStat is a reading of /proc/stat: the sum over CPUs and each CPU.
type CPUStat struct {
	All CPUTimes
	CPU map[int]CPUTimes
}

// ReadCPUStat reads /proc/stat.
func ReadCPUStat() (CPUStat, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return CPUStat{}, fmt.Errorf("can't read CPU times: %w", err)
	}
	defer f.Close()
	return ParseCPUStat(f)
}

// ParseCPUStat parses the cpu lines of /proc/stat.
func ParseCPUStat(r io.Reader) (CPUStat, error) {
	st := CPUStat{CPU: map[int]CPUTimes{}}
	sc := bufio.NewScanner(r)
	found := false
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || !strings.HasPrefix(fields[0], "cpu") {
			continue
		}
		var v [8]uint64
		for i := 0; i < 8 && i+1 < len(fields); i++ {
			n, err := strconv.ParseUint(fields[i+1], 10, 64)
			if err != nil {
				return st, fmt.Errorf("can't parse /proc/stat line %q: %w", sc.Text(), err)
			}
			v[i] = n
		}
		t := CPUTimes{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]}
		if fields[0] == "cpu" {
			st.All, found = t, true
			continue
		}
		id, err := strconv.Atoi(fields[0][3:])
		if err != nil {
			continue
		}
		st.CPU[id] = t
	}
	if err := sc.Err(); err != nil {
		return st, fmt.Errorf("can't read /proc/stat: %w", err)
	}
	if !found {
		return st, fmt.Errorf("no cpu line in /proc/stat")
	}
	return st, nil
}

// CPULoad is one CPU's load between two readings, each field a share of
// the interval (0..1).
type CPULoad struct {
	CPU     int     `json:"cpu"`
	Busy    float64 `json:"busy"`
	User    float64 `json:"user"`
	System  float64 `json:"system"`
	SoftIRQ float64 `json:"softirq"`
	Steal   float64 `json:"steal"`
}

// Since returns each CPU's load since prev, by CPU number.
func (s CPUStat) Since(prev CPUStat) []CPULoad {
	var out []CPULoad
	for id, t := range s.CPU {
		p, ok := prev.CPU[id]
		if !ok {
			continue
		}
		d := t.sub(p)
		tot := float64(d.Total())
		if tot == 0 {
			out = append(out, CPULoad{CPU: id})
			continue
		}
		out = append(out, CPULoad{CPU: id,
			Busy:    float64(d.Busy()) / tot,
			User:    float64(d.User+d.Nice) / tot,
			System:  float64(d.System+d.IRQ) / tot,
			SoftIRQ: float64(d.SoftIRQ) / tot,
			Steal:   float64(d.Steal) / tot,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CPU < out[j].CPU })
	return out
}

// BusySince is the CPU time all CPUs spent busy since prev.
func (s CPUStat) BusySince(prev CPUStat) time.Duration {
	return time.Duration(s.All.sub(prev.All).Busy()) * ClockTick
}

// FormatLoads renders loads as "cpu0 97% (si 80%) cpu1 4%": the softirq
// share is shown where it is at least 1%, since on a veth it is the
// receive path's work done on the sender's core.
func FormatLoads(loads []CPULoad) string {
	var b strings.Builder
	for i, l := range loads {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "cpu%d %3.0f%%", l.CPU, 100*l.Busy)
		if l.SoftIRQ >= 0.01 {
			fmt.Fprintf(&b, " (si %.0f%%)", 100*l.SoftIRQ)
		}
		if l.Steal >= 0.01 {
			fmt.Fprintf(&b, " (st %.0f%%)", 100*l.Steal)
		}
	}
	return b.String()
}
