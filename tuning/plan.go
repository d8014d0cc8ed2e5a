package tuning

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/safchain/ethtool"
	"golang.org/x/sys/unix"
)

// Options configure Plan, Apply, Revert and Show.
type Options struct {
	// Roots of /proc and /sys (zero value: the real ones).
	Roots Roots
	// Ethtool backend. Nil opens one on the calling thread's network
	// namespace and closes it when done; a caller that passes one keeps
	// ownership.
	Ethtool Ethtool
	// CPUs to spread queue IRQs over and to count for "cores"; overrides
	// the profile's irq-affinity.cpus. Empty: every online CPU.
	CPUs CPUSet
	// StatePath is the state file; "" means DefaultStatePath(iface).
	StatePath string
	// NoState keeps the previous values in memory only (Applied.Revert
	// still works; `nictune revert` after a crash does not).
	NoState bool
	// Atomic makes Apply roll everything back when any setting fails,
	// instead of keeping what took effect.
	Atomic bool
	// Force lets Revert restore a state file saved before the last reboot.
	Force bool
}

// Action is what a plan intends for one setting.
type Action string

const (
	ActionChange      Action = "change"
	ActionKeep        Action = "keep" // already at the wanted value
	ActionUnsupported Action = "unsupported"
)

// Result is what happened to one setting when applied or reverted.
type Result string

const (
	ResultApplied        Result = "applied"
	ResultUnchanged      Result = "unchanged" // already at the wanted value
	ResultUnsupported    Result = "unsupported"
	ResultRefused        Result = "refused"       // the write failed
	ResultNotInEffect    Result = "not-in-effect" // written, but reads back otherwise
	ResultRolledBack     Result = "rolled-back"
	ResultRollbackFailed Result = "rollback-failed"
	ResultSkipped        Result = "skipped" // not attempted after a fatal error
	ResultRestored       Result = "restored"
)

// Item is one setting of a plan, and after Apply or Revert what became of it.
type Item struct {
	Key     string `json:"key"`
	Group   string `json:"group"`
	Current string `json:"current"`
	Want    string `json:"want"`
	Action  Action `json:"action"`
	// Note says why a setting is unsupported, or what else to know.
	Note   string `json:"note,omitempty"`
	Result Result `json:"result,omitempty"`
	// After is the value read back after writing.
	After string `json:"after,omitempty"`
	Err   string `json:"error,omitempty"`
}

// inEffect says whether the item ended at its wanted value.
func (it Item) inEffect() bool {
	switch it.Result {
	case ResultApplied, ResultUnchanged, ResultRestored:
		return true
	}
	return false
}

// CmdlinePart is one kernel parameter a profile wants.
type CmdlinePart struct {
	Param    string `json:"param"`
	Want     CPUSet `json:"want"`
	Current  CPUSet `json:"current"`
	InEffect bool   `json:"in_effect"`
}

// CmdlinePlan is the kernel command line a profile wants. Boot parameters
// can't be changed at run time: it is reported, never applied.
type CmdlinePlan struct {
	Want  string        `json:"want"`
	Parts []CmdlinePart `json:"parts"`
}

// InEffect says whether every part is in effect.
func (c *CmdlinePlan) InEffect() bool {
	for _, p := range c.Parts {
		if !p.InEffect {
			return false
		}
	}
	return true
}

// Plan compares a profile with a device.
type Plan struct {
	Iface   string `json:"iface"`
	Profile string `json:"profile"`
	Driver  string `json:"driver,omitempty"`
	// CPUs that queue IRQs are spread over and that "cores" counts.
	CPUs     CPUSet       `json:"cpus"`
	Items    []Item       `json:"items"`
	Cmdline  *CmdlinePlan `json:"cmdline,omitempty"`
	Warnings []string     `json:"warnings,omitempty"`
	Queues   QueueMap     `json:"queues"`

	profile *Profile
	online  CPUSet
}

// Changes returns the items the plan would change.
func (p *Plan) Changes() []Item {
	var out []Item
	for _, it := range p.Items {
		if it.Action == ActionChange {
			out = append(out, it)
		}
	}
	return out
}

// Unsupported returns the items the device or kernel lacks.
func (p *Plan) Unsupported() []Item {
	var out []Item
	for _, it := range p.Items {
		if it.Action == ActionUnsupported {
			out = append(out, it)
		}
	}
	return out
}

// session holds the device a command works on.
type session struct {
	dev     *device
	opts    Options
	ownedEt bool
	// sysfsMissing: ethtool reaches the interface but sysfs under Roots
	// does not show it (a device in another network namespace).
	sysfsMissing bool
}

func newSession(iface string, opts Options) (*session, error) {
	if err := checkIfaceName(iface); err != nil {
		return nil, err
	}
	s := &session{opts: opts, dev: &device{iface: iface, roots: opts.Roots, et: opts.Ethtool}}
	if s.dev.et == nil {
		et, err := OpenEthtool()
		if err != nil {
			return nil, err
		}
		s.dev.et, s.ownedEt = et, true
	}
	return s, nil
}

func (s *session) close() {
	if s.ownedEt {
		s.dev.et.Close()
	}
}

// checkIface makes sure the interface exists, through ethtool (which sees
// the handle's namespace) and sysfs (which sees the mounting namespace).
func (s *session) checkIface() (ethtool.DrvInfo, error) {
	iface := s.dev.iface
	info, err := s.dev.et.DriverInfo(iface)
	_, serr := os.Stat(s.dev.roots.sys("class/net", iface))
	switch {
	case errors.Is(err, unix.ENODEV):
		return info, badInput("unknown interface %s: no such device in this network namespace", iface)
	case err != nil && !errors.Is(err, unix.EOPNOTSUPP):
		return info, fmt.Errorf("can't read the driver of %s: %w", iface, err)
	}
	if serr != nil {
		s.sysfsMissing = true
	}
	return info, nil
}

// PlanProfile compares profile p with iface and returns what Apply would
// change, keep and skip. It changes nothing. Errors matching ErrBadInput
// mean the request itself is wrong (unknown interface, a value out of range
// for this device).
func PlanProfile(ctx context.Context, iface string, p *Profile, opts Options) (*Plan, error) {
	s, err := newSession(iface, opts)
	if err != nil {
		return nil, err
	}
	defer s.close()
	return s.plan(ctx, p)
}

func (s *session) plan(ctx context.Context, p *Profile) (*Plan, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	d := s.dev
	info, err := s.checkIface()
	if err != nil {
		return nil, err
	}
	pl := &Plan{Iface: d.iface, Profile: p.Name, Driver: info.Driver, profile: p}
	if err := s.discover(pl); err != nil {
		return nil, err
	}
	if err := s.resolveCPUs(pl); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	if f := p.Features; f != nil {
		s.planFeatures(pl, f)
	}
	if c := p.Channels; c != nil {
		if err := s.planChannels(pl, c); err != nil {
			return nil, err
		}
	}
	if r := p.Rings; r != nil {
		if err := s.planRings(pl, r); err != nil {
			return nil, err
		}
	}
	if c := p.Coalesce; c != nil {
		s.planCoalesce(pl, c)
	}
	if n := p.NAPI; n != nil {
		for _, def := range napiNames {
			if v := def.field(n); v != nil {
				s.planValue(pl, d.napiKnob(def.name), strconv.FormatInt(*v, 10))
			}
		}
	}
	if sy := p.Sysctl; sy != nil {
		for _, def := range sysctlNames {
			if v := def.field(sy); v != nil {
				s.planValue(pl, d.sysctlKnob(def.name), strconv.FormatInt(*v, 10))
			}
		}
	}
	if a := p.IRQAffinity; a != nil && a.Spread {
		pl.Items = append(pl.Items, s.planIRQs(pl)...)
		for _, it := range pl.Items {
			if it.Key == "channels" && it.Action == ActionChange {
				pl.Warnings = append(pl.Warnings, "the channel change replaces the queue IRQs: apply spreads the IRQs it finds after the change, not the ones listed here")
				break
			}
		}
		moves := slices.ContainsFunc(pl.Items, func(it Item) bool { return it.Group == GroupIRQ && it.Action == ActionChange })
		if pid := IRQBalancePID(d.roots); pid > 0 && moves {
			pl.Warnings = append(pl.Warnings, fmt.Sprintf("irqbalance is running (pid %d) and will move the IRQs again: stop it (systemctl stop irqbalance) or ban these IRQs in its configuration", pid))
		}
	}
	if iso := p.Isolation; iso != nil {
		c, err := s.planCmdline(pl, iso)
		if err != nil {
			return nil, err
		}
		pl.Cmdline = c
	}
	return pl, nil
}

func (s *session) discover(pl *Plan) error {
	d := s.dev
	if s.sysfsMissing {
		pl.Queues = QueueMap{Iface: d.iface, NUMANode: -1}
		t, err := ReadTopology(d.roots)
		if err != nil {
			return err
		}
		pl.Queues.Topology = t
		pl.Warnings = append(pl.Warnings, fmt.Sprintf("%s is not in %s: sysfs shows the devices of the namespace that mounted it; run under `ip netns exec` to reach per-device settings and IRQs", d.iface, d.roots.sys("class/net")))
		return nil
	}
	qm, err := DiscoverQueues(d.roots, d.iface)
	if err != nil {
		return err
	}
	pl.Queues = qm
	return nil
}

func (s *session) resolveCPUs(pl *Plan) error {
	online := pl.Queues.Topology.Online
	pl.online = online
	cpus := s.opts.CPUs
	if cpus.IsEmpty() && pl.profile.IRQAffinity != nil && pl.profile.IRQAffinity.CPUs != "" {
		cpus = MustParseCPUList(pl.profile.IRQAffinity.CPUs) // validated
	}
	if cpus.IsEmpty() {
		cpus = online
	}
	if off := cpus.Difference(online); !off.IsEmpty() {
		return badInput("CPUs %s are not online (online: %s)", off, online)
	}
	pl.CPUs = cpus
	return nil
}

// planValue reads a knob and adds the item that takes it to want.
func (s *session) planValue(pl *Plan, k knob, want string) {
	pl.Items = append(pl.Items, s.item(k, want))
}

// item reads a knob and returns the item that takes it to want.
func (s *session) item(k knob, want string) Item {
	it := Item{Key: k.key, Group: k.group, Want: want}
	cur, err := k.read()
	switch {
	case err != nil:
		it.Action, it.Note = ActionUnsupported, err.Error()
		if s.sysfsMissing && k.group == GroupNAPI {
			it.Note = fmt.Sprintf("%s is not in this sysfs (another network namespace?)", s.dev.iface)
		}
	case cur == want:
		it.Current, it.Action = cur, ActionKeep
	default:
		it.Current, it.Action = cur, ActionChange
	}
	return it
}

func unsupportedItem(key, group, want string, err error) Item {
	return Item{Key: key, Group: group, Want: want, Action: ActionUnsupported, Note: err.Error()}
}

func (s *session) planFeatures(pl *Plan, f *FeaturesSpec) {
	d := s.dev
	states, err := d.et.FeaturesWithState(d.iface)
	for _, def := range featureNames {
		v := def.field(f)
		if v == nil {
			continue
		}
		key, want := "feature."+def.ethtool, onOff(bool(*v))
		if err != nil {
			pl.Items = append(pl.Items, unsupportedItem(key, GroupFeatures, want, ethtoolErr("read features", d.iface, err)))
			continue
		}
		st, ok := states[def.ethtool]
		if !ok {
			pl.Items = append(pl.Items, unsupportedItem(key, GroupFeatures, want, fmt.Errorf("%s has no feature %s", d.iface, def.ethtool)))
			continue
		}
		it := Item{Key: key, Group: GroupFeatures, Current: onOff(st.Active), Want: want, Action: ActionChange}
		switch {
		case it.Current == want:
			it.Action = ActionKeep
		case !st.Available:
			it.Action, it.Note = ActionUnsupported, "fixed by the driver"
		}
		pl.Items = append(pl.Items, it)
	}
}

// resolveCount turns a Count into a number for a setting whose driver
// maximum is max. Explicit numbers above the maximum are bad input; the
// words are capped.
func resolveCount(key string, c *Count, max uint32, cores int) (uint32, error) {
	var n uint32
	switch c.Word {
	case CountMax:
		n = max
	case CountCores:
		n = min(uint32(cores), max)
	default:
		if uint32(c.N) > max {
			return 0, badInput("%s: %d is more than the driver's maximum %d", key, c.N, max)
		}
		n = uint32(c.N)
	}
	return n, nil
}

func (s *session) planChannels(pl *Plan, spec *ChannelsSpec) error {
	d := s.dev
	cur, err := d.et.GetChannels(d.iface)
	if err != nil {
		pl.Items = append(pl.Items, unsupportedItem("channels", GroupChannels, "", ethtoolErr("read channels", d.iface, err)))
		return nil
	}
	want := cur
	var unsupported []string
	set := func(key string, c *Count, max uint32, dst *uint32) error {
		if c == nil {
			return nil
		}
		if max == 0 {
			unsupported = append(unsupported, fmt.Sprintf("%s: the driver has no such channels", key))
			return nil
		}
		n, err := resolveCount(key, c, max, pl.CPUs.Len())
		*dst = n
		return err
	}
	if q := spec.Queues; q != nil {
		switch {
		case cur.MaxCombined > 0:
			if err := set("channels.queues", q, cur.MaxCombined, &want.CombinedCount); err != nil {
				return err
			}
		case cur.MaxRx > 0 && cur.MaxTx > 0:
			if err := set("channels.queues", q, cur.MaxRx, &want.RxCount); err != nil {
				return err
			}
			if err := set("channels.queues", q, cur.MaxTx, &want.TxCount); err != nil {
				return err
			}
		default:
			unsupported = append(unsupported, "channels.queues: the driver reports no channel maximum")
		}
	}
	for _, f := range []struct {
		key string
		c   *Count
		max uint32
		dst *uint32
	}{{"channels.combined", spec.Combined, cur.MaxCombined, &want.CombinedCount}, {"channels.rx", spec.Rx, cur.MaxRx, &want.RxCount}, {"channels.tx", spec.Tx, cur.MaxTx, &want.TxCount}} {
		if err := set(f.key, f.c, f.max, f.dst); err != nil {
			return err
		}
	}
	if want.CombinedCount == 0 && (want.RxCount == 0 || want.TxCount == 0) {
		return badInput("channels: %s leaves no RX or no TX channel", formatChannels(want))
	}
	it := Item{Key: "channels", Group: GroupChannels, Current: formatChannels(cur), Want: formatChannels(want), Action: ActionChange}
	if it.Current == it.Want {
		it.Action = ActionKeep
	}
	if len(unsupported) > 0 {
		it.Note = strings.Join(unsupported, "; ")
		if it.Action == ActionKeep {
			it.Action = ActionUnsupported
		}
	}
	pl.Items = append(pl.Items, it)
	return nil
}

func (s *session) planRings(pl *Plan, spec *RingsSpec) error {
	d := s.dev
	cur, err := d.et.GetRing(d.iface)
	for _, f := range []struct {
		name string
		c    *Count
	}{{"rx", spec.Rx}, {"tx", spec.Tx}} {
		if f.c == nil {
			continue
		}
		key := "rings." + f.name
		if err != nil {
			pl.Items = append(pl.Items, unsupportedItem(key, GroupRings, f.c.String(), ethtoolErr("read ring sizes", d.iface, err)))
			continue
		}
		now, max := ringField(&cur, f.name)
		if *max == 0 {
			pl.Items = append(pl.Items, unsupportedItem(key, GroupRings, f.c.String(), fmt.Errorf("the driver reports no %s ring maximum", f.name)))
			continue
		}
		n, rerr := resolveCount(key, f.c, *max, 0)
		if rerr != nil {
			return rerr
		}
		it := Item{Key: key, Group: GroupRings, Current: strconv.FormatUint(uint64(*now), 10), Want: strconv.FormatUint(uint64(n), 10), Action: ActionChange}
		if it.Current == it.Want {
			it.Action = ActionKeep
		}
		pl.Items = append(pl.Items, it)
	}
	return nil
}

func (s *session) planCoalesce(pl *Plan, spec *CoalesceSpec) {
	d := s.dev
	var want ethtool.Coalesce
	named := map[string]bool{}
	for _, f := range []struct {
		name string
		sw   *Switch
		n    *uint32
	}{{"adaptive-rx", spec.AdaptiveRx, nil}, {"adaptive-tx", spec.AdaptiveTx, nil}, {"rx-usecs", nil, spec.RxUsecs}, {"rx-frames", nil, spec.RxFrames}, {"tx-usecs", nil, spec.TxUsecs}, {"tx-frames", nil, spec.TxFrames}} {
		def := coalesceField(f.name)
		switch {
		case f.sw != nil:
			if *f.sw {
				*def.get(&want) = 1
			}
		case f.n != nil:
			*def.get(&want) = *f.n
		default:
			continue
		}
		named[f.name] = true
	}
	cur, err := d.et.GetCoalesce(d.iface)
	for _, def := range coalesceFields {
		if !named[def.name] {
			continue
		}
		key, w := "coalesce."+def.name, def.format(&want)
		if err != nil {
			pl.Items = append(pl.Items, unsupportedItem(key, GroupCoalesce, w, ethtoolErr("read coalescing", d.iface, err)))
			continue
		}
		it := Item{Key: key, Group: GroupCoalesce, Current: def.format(&cur), Want: w, Action: ActionChange}
		if it.Current == it.Want {
			it.Action = ActionKeep
		}
		pl.Items = append(pl.Items, it)
	}
}

// planIRQs spreads each queue's IRQs to one CPU, one queue per core in
// core order, wrapping when there are more queues than CPUs. A queue's RX
// and TX vectors go to the same CPU.
func (s *session) planIRQs(pl *Plan) []Item {
	qm := pl.Queues
	if !qm.HasQueueIRQs() {
		why := "no per-queue IRQs (a virtual device, or IRQ names this version can't match)"
		if s.sysfsMissing {
			why = "its queues are not visible in this sysfs"
		}
		return []Item{{Key: "irq", Group: GroupIRQ, Want: "spread over " + pl.CPUs.String(), Action: ActionUnsupported, Note: fmt.Sprintf("%s has %s", qm.Iface, why)}}
	}
	order := qm.Topology.coreOrder(pl.CPUs)
	var items []Item
	k := 0
	for _, q := range qm.Queues {
		if len(q.IRQs) == 0 {
			continue
		}
		cpu := order[k%len(order)]
		k++
		for _, irq := range q.IRQs {
			it := s.item(s.dev.irqKnob(irq.Num), strconv.Itoa(cpu))
			it.Note = fmt.Sprintf("queue %d %s (%s)", q.Index, irq.Kind, irq.Name)
			items = append(items, it)
		}
	}
	return items
}

func (s *session) planCmdline(pl *Plan, spec *IsolationSpec) (*CmdlinePlan, error) {
	cpus := s.opts.CPUs
	if spec.CPUs != "" {
		cpus = MustParseCPUList(spec.CPUs) // validated
	}
	if cpus.IsEmpty() {
		cpus = pl.online
		if l := cpus.List(); len(l) > 1 {
			cpus = cpus.Without(l[0]) // housekeeping CPU
		}
	}
	iso, err := ReadIsolation(s.dev.roots)
	if err != nil {
		return nil, err
	}
	c := &CmdlinePlan{}
	var words []string
	add := func(param, value string, cur CPUSet) {
		words = append(words, param+"="+value)
		c.Parts = append(c.Parts, CmdlinePart{Param: param, Want: cpus, Current: cur, InEffect: cpus.SubsetOf(cur)})
	}
	if spec.IsolCPUs {
		// managed_irq keeps kernel-managed queue IRQs off the isolated
		// CPUs too; domain takes them out of load balancing.
		add("isolcpus", "managed_irq,domain,"+cpus.String(), iso.Isolated)
	}
	if spec.NohzFull {
		add("nohz_full", cpus.String(), iso.NohzFull)
	}
	if spec.RCUNoCBs {
		add("rcu_nocbs", cpus.String(), iso.RCUNoCBs)
	}
	c.Want = strings.Join(words, " ")
	return c, nil
}

// IRQBalancePID returns the pid of a running irqbalance under r, or 0.
func IRQBalancePID(r Roots) int {
	ents, err := os.ReadDir(r.proc())
	if err != nil {
		return 0
	}
	pids := []int{}
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	for _, pid := range pids {
		if comm, err := readTrim(r.proc(strconv.Itoa(pid), "comm")); err == nil && comm == "irqbalance" {
			return pid
		}
	}
	return 0
}
