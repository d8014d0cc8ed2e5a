package tuning

import (
	"context"
	"fmt"
	"slices"
	"strconv"
)

// Setting is one value in a report. A Setting with only a Note stands for a
// whole section the device lacks.
type Setting struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
	// Max is the driver's maximum, for channels and rings.
	Max string `json:"max,omitempty"`
	// Note: "fixed" for a feature the driver won't change, or why a value
	// could not be read.
	Note string `json:"note,omitempty"`
}

// Report is the state of a device and of the host settings around it, as
// `nictune show` prints it.
type Report struct {
	Iface    string    `json:"iface"`
	Driver   string    `json:"driver,omitempty"`
	Version  string    `json:"driver_version,omitempty"`
	Firmware string    `json:"firmware,omitempty"`
	BusInfo  string    `json:"bus_info,omitempty"`
	Channels []Setting `json:"channels"`
	Rings    []Setting `json:"rings"`
	Coalesce []Setting `json:"coalesce"`
	Features []Setting `json:"features"`
	Sysctls  []Setting `json:"sysctls"`
	NAPI     []Setting `json:"napi"`
	Queues   QueueMap  `json:"queues"`
	// Allowed CPUs of this process, and where xdpingest would put one
	// worker per queue within them.
	Allowed CPUSet      `json:"allowed_cpus"`
	Workers []WorkerCPU `json:"workers,omitempty"`
	// Isolation in effect, and how queue IRQs and workers sit against it.
	Isolation      Isolation `json:"isolation"`
	IsolationNotes []string  `json:"isolation_notes,omitempty"`
	// IRQBalance is the pid of a running irqbalance, 0 if none.
	IRQBalance int      `json:"irqbalance_pid,omitempty"`
	Warnings   []string `json:"warnings,omitempty"`
}

// Show reads everything nictune manages about iface, changing nothing. The
// worker placement uses the process's allowed CPUs, narrowed to opts.CPUs
// when given.
func Show(ctx context.Context, iface string, opts Options) (*Report, error) {
	s, err := newSession(iface, opts)
	if err != nil {
		return nil, err
	}
	defer s.close()
	info, err := s.checkIface()
	if err != nil {
		return nil, err
	}
	d := s.dev
	rep := &Report{Iface: iface, Driver: info.Driver, Version: info.Version, Firmware: info.FwVersion, BusInfo: info.BusInfo}
	pl := &Plan{Iface: iface}
	if err := s.discover(pl); err != nil {
		return nil, err
	}
	rep.Warnings = pl.Warnings
	rep.Queues = pl.Queues

	if c, err := d.et.GetChannels(iface); err != nil {
		rep.Channels = []Setting{{Note: ethtoolErr("read channels", iface, err).Error()}}
	} else {
		for _, f := range []struct {
			name     string
			cur, max uint32
		}{{"combined", c.CombinedCount, c.MaxCombined}, {"rx", c.RxCount, c.MaxRx}, {"tx", c.TxCount, c.MaxTx}, {"other", c.OtherCount, c.MaxOther}} {
			rep.Channels = append(rep.Channels, Setting{Name: f.name, Value: u32(f.cur), Max: u32(f.max)})
		}
	}
	if r, err := d.et.GetRing(iface); err != nil {
		rep.Rings = []Setting{{Note: ethtoolErr("read ring sizes", iface, err).Error()}}
	} else {
		rep.Rings = []Setting{{Name: "rx", Value: u32(r.RxPending), Max: u32(r.RxMaxPending)}, {Name: "tx", Value: u32(r.TxPending), Max: u32(r.TxMaxPending)}}
	}
	if c, err := d.et.GetCoalesce(iface); err != nil {
		rep.Coalesce = []Setting{{Note: ethtoolErr("read coalescing", iface, err).Error()}}
	} else {
		for _, f := range coalesceFields {
			rep.Coalesce = append(rep.Coalesce, Setting{Name: f.name, Value: f.format(&c)})
		}
	}
	if fs, err := d.et.FeaturesWithState(iface); err != nil {
		rep.Features = []Setting{{Note: ethtoolErr("read features", iface, err).Error()}}
	} else {
		for _, f := range featureNames {
			st, ok := fs[f.ethtool]
			switch {
			case !ok:
				rep.Features = append(rep.Features, Setting{Name: f.ethtool, Note: "not a feature of this device"})
			case !st.Available:
				rep.Features = append(rep.Features, Setting{Name: f.ethtool, Value: onOff(st.Active), Note: "fixed"})
			default:
				rep.Features = append(rep.Features, Setting{Name: f.ethtool, Value: onOff(st.Active)})
			}
		}
	}
	for _, n := range sysctlNames {
		rep.Sysctls = append(rep.Sysctls, readSetting(n.name, d.sysctlKnob(n.name)))
	}
	for _, n := range napiNames {
		rep.NAPI = append(rep.NAPI, readSetting(n.name, d.napiKnob(n.name)))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	if rep.Allowed, err = AllowedCPUs(); err != nil {
		return nil, err
	}
	if !opts.CPUs.IsEmpty() {
		rep.Allowed = rep.Allowed.Intersect(opts.CPUs)
	}
	// The allowed set of this process says nothing about a fake tree's
	// CPUs: keep to CPUs the tree has online.
	if on := rep.Queues.Topology.Online; !on.IsEmpty() {
		if a := rep.Allowed.Intersect(on); !a.IsEmpty() {
			rep.Allowed = a
		} else {
			rep.Allowed = on
		}
	}
	if len(rep.Queues.Queues) > 0 {
		ws, err := PlanWorkers(rep.Queues, nil, rep.Allowed)
		if err != nil {
			rep.Warnings = append(rep.Warnings, err.Error())
		}
		rep.Workers = ws
	}

	if rep.Isolation, err = ReadIsolation(d.roots); err != nil {
		return nil, err
	}
	rep.IsolationNotes = isolationNotes(rep)
	rep.IRQBalance = IRQBalancePID(d.roots)
	if rep.IRQBalance > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("irqbalance is running (pid %d): it moves IRQs, and undoes an affinity nictune sets", rep.IRQBalance))
	}
	return rep, nil
}

func u32(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

func readSetting(name string, k knob) Setting {
	v, err := k.read()
	if err != nil {
		return Setting{Name: name, Note: err.Error()}
	}
	return Setting{Name: name, Value: v}
}

// isolationNotes says where queue IRQs and workers land relative to the
// isolated CPUs. The wanted layout: workers on isolated, nohz_full CPUs;
// the IRQ of each queue on its worker's CPU (or a housekeeping CPU of the
// same core).
func isolationNotes(rep *Report) []string {
	iso := rep.Isolation
	if iso.Isolated.IsEmpty() && iso.NohzFull.IsEmpty() && iso.RCUNoCBs.IsEmpty() {
		return []string{"no CPU is isolated (isolcpus, nohz_full and rcu_nocbs are not set): workers share their cores with everything else"}
	}
	var notes []string
	quiet := iso.Isolated.Union(iso.NohzFull)
	for _, q := range rep.Queues.Queues {
		for _, irq := range q.IRQs {
			on := irq.CPUs()
			if on.SubsetOf(quiet) {
				notes = append(notes, fmt.Sprintf("queue %d: IRQ %d lands on isolated CPU %s", q.Index, irq.Num, on))
			} else if !on.Intersect(quiet).IsEmpty() {
				notes = append(notes, fmt.Sprintf("queue %d: IRQ %d may land on isolated CPUs %s and others", q.Index, irq.Num, on.Intersect(quiet)))
			}
		}
	}
	var inside, outside []int
	for _, w := range rep.Workers {
		if iso.Isolated.Has(w.CPU) || iso.NohzFull.Has(w.CPU) {
			inside = append(inside, w.Queue)
		} else {
			outside = append(outside, w.Queue)
		}
	}
	if len(inside) > 0 {
		notes = append(notes, fmt.Sprintf("workers of queues %s would run on isolated CPUs", joinInts(inside)))
	}
	if len(outside) > 0 {
		notes = append(notes, fmt.Sprintf("workers of queues %s would run on CPUs that are not isolated", joinInts(outside)))
	}
	for _, w := range rep.Workers {
		if iso.NohzFull.Has(w.CPU) && !iso.RCUNoCBs.Has(w.CPU) {
			notes = append(notes, fmt.Sprintf("cpu %d is nohz_full without rcu_nocbs: RCU callbacks still run there", w.CPU))
		}
	}
	return slices.Compact(notes)
}
