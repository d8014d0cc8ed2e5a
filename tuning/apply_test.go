package tuning_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/safchain/ethtool"
	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/tuning"
	"github.com/xdpingest/xdpingest/tuning/tuningtest"
)

// rig is a fake host: a tree with an mlx5-like eth1 (4 queues, one IRQ
// each, all on CPUs 0-7) and a fake ethtool for it.
type rig struct {
	tree *tuningtest.Tree
	et   *tuningtest.Ethtool
	nic  *tuningtest.Device
	opts tuning.Options
}

func newRig(t testing.TB, ncpu int) *rig {
	t.Helper()
	tr := tuningtest.NewTree(t, ncpu)
	tr.NetDev(tuningtest.Dev{Name: "eth1", Driver: "mlx5_core", PCI: "0000:08:00.0", NUMA: "0", RxQueues: 4, TxQueues: 4})
	all := fmt.Sprintf("0-%d", ncpu-1)
	tr.IRQ(60, "mlx5_async0@pci:0000:08:00.0", all, "0")
	for i := range 4 {
		tr.IRQ(61+i, fmt.Sprintf("mlx5_comp%d@pci:0000:08:00.0", i), all, "0")
	}
	nic := tuningtest.NIC("mlx5_core")
	et := tuningtest.NewEthtool(map[string]*tuningtest.Device{"eth1": nic})
	return &rig{tree: tr, et: et, nic: nic, opts: tuning.Options{
		Roots: tr.Roots(), Ethtool: et, StatePath: filepath.Join(t.TempDir(), "state.json"),
	}}
}

// snapshot is every value a profile can touch.
type snapshot struct {
	Files    map[string]string
	Channels ethtool.Channels
	Ring     ethtool.Ring
	Coalesce ethtool.Coalesce
	Features map[string]ethtool.FeatureState
}

func (r *rig) snapshot(t *testing.T) snapshot {
	t.Helper()
	s := snapshot{Files: map[string]string{}}
	for k := range tuningtest.DefaultSysctls {
		s.Files[k] = r.tree.SysctlValue(k)
	}
	for _, f := range []string{"napi_defer_hard_irqs", "gro_flush_timeout"} {
		s.Files[f] = r.tree.Read("sys/class/net/eth1/" + f)
	}
	ents, _ := os.ReadDir(r.tree.Path("proc/irq"))
	for _, e := range ents {
		s.Files["irq."+e.Name()] = r.tree.Read("proc/irq/" + e.Name() + "/smp_affinity_list")
	}
	d := r.et.Device("eth1")
	s.Channels, s.Ring, s.Coalesce = *d.Channels, *d.Ring, *d.Coalesce
	s.Features = maps.Clone(d.Features)
	return s
}

func results(items []tuning.Item) map[string]tuning.Result {
	m := map[string]tuning.Result{}
	for _, it := range items {
		m[it.Key] = it.Result
	}
	return m
}

func TestApplyRevertLatency(t *testing.T) {
	r := newRig(t, 4)
	before := r.snapshot(t)
	ctx := context.Background()

	a, err := tuning.Apply(ctx, "eth1", tuning.BuiltinProfile("latency"), r.opts)
	if err != nil {
		t.Fatal(err)
	}
	// As nictune apply does: leave the record in the state file and let
	// the next apply or revert take the lock.
	a.Release()
	if a.Outcome() != tuning.Complete {
		t.Fatalf("outcome %v: %+v", a.Outcome(), a.Plan.Items)
	}
	if got := r.tree.SysctlValue("net.core.busy_poll"); got != "50" {
		t.Errorf("busy_poll = %s", got)
	}
	if got := r.tree.Read("sys/class/net/eth1/gro_flush_timeout"); got != "200000" {
		t.Errorf("gro_flush_timeout = %s", got)
	}
	for i := range 4 {
		if got := r.tree.IRQAffinity(61 + i); got != fmt.Sprint(i) {
			t.Errorf("IRQ %d affinity %s, want %d", 61+i, got, i)
		}
	}
	if got := r.tree.IRQAffinity(60); got != "0-3" {
		t.Errorf("the async IRQ moved to %s", got)
	}
	c := r.et.Device("eth1").Coalesce
	if c.UseAdaptiveRxCoalesce != 0 || c.RxCoalesceUsecs != 0 || c.RxMaxCoalescedFrames != 1 {
		t.Errorf("coalesce %+v", c)
	}
	if a.Plan.Cmdline == nil || a.Plan.Cmdline.InEffect() || !strings.Contains(a.Plan.Cmdline.Want, "nohz_full=1-3") {
		t.Errorf("cmdline %+v", a.Plan.Cmdline)
	}
	st, err := tuning.LoadState(r.opts.StatePath)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Entries) != len(a.Changed()) || st.Iface != "eth1" || st.Profile != "latency" {
		t.Errorf("state %+v, changed %d", st, len(a.Changed()))
	}
	tuned := r.snapshot(t)

	// Idempotent: a second apply writes nothing and keeps the original
	// values in the state file.
	calls := len(r.et.Calls)
	a2, err := tuning.Apply(ctx, "eth1", tuning.BuiltinProfile("latency"), r.opts)
	if err != nil {
		t.Fatal(err)
	}
	a2.Release()
	if a2.Outcome() != tuning.Complete || len(a2.Plan.Changes()) != 0 || len(r.et.Calls) != calls {
		t.Errorf("second apply: outcome %v, %d changes, %d set calls", a2.Outcome(), len(a2.Plan.Changes()), len(r.et.Calls)-calls)
	}
	if got := r.snapshot(t); !reflect.DeepEqual(got, tuned) {
		t.Errorf("second apply changed something:\n%+v\n%+v", got, tuned)
	}
	st2, err := tuning.LoadState(r.opts.StatePath)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st2.Entries, st.Entries) {
		t.Errorf("second apply changed the saved values:\n%+v\n%+v", st2.Entries, st.Entries)
	}

	rv, err := tuning.Revert(ctx, "eth1", r.opts)
	if err != nil {
		t.Fatal(err)
	}
	if rv.Outcome() != tuning.Complete {
		t.Errorf("revert outcome %v: %+v", rv.Outcome(), rv.Items)
	}
	if got := r.snapshot(t); !reflect.DeepEqual(got, before) {
		t.Errorf("revert did not restore exactly:\n got %+v\nwant %+v", got, before)
	}
	if _, err := os.Stat(r.opts.StatePath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file left after a complete revert: %v", err)
	}
	if _, err := tuning.Revert(ctx, "eth1", r.opts); !errors.Is(err, tuning.ErrNoState) {
		t.Errorf("second revert: %v, want ErrNoState", err)
	}
}

func TestAppliedRevertInMemory(t *testing.T) {
	r := newRig(t, 4)
	r.opts.NoState = true
	before := r.snapshot(t)
	ctx := context.Background()
	a, err := tuning.Apply(ctx, "eth1", tuning.BuiltinProfile("throughput"), r.opts)
	if err != nil {
		t.Fatal(err)
	}
	if a.Outcome() != tuning.Complete {
		t.Fatalf("outcome %v: %+v", a.Outcome(), a.Plan.Items)
	}
	if d := r.et.Device("eth1"); d.Ring.RxPending != 4096 || d.Ring.TxPending != 4096 {
		t.Errorf("rings %+v, want the maximum", d.Ring)
	}
	if r.tree.SysctlValue("net.core.rmem_max") != "67108864" {
		t.Errorf("rmem_max %s", r.tree.SysctlValue("net.core.rmem_max"))
	}
	rv, err := a.Revert(ctx)
	if err != nil || rv.Outcome() != tuning.Complete {
		t.Fatalf("revert: %v %v %+v", err, rv.Outcome(), rv.Items)
	}
	if got := r.snapshot(t); !reflect.DeepEqual(got, before) {
		t.Errorf("revert did not restore exactly:\n got %+v\nwant %+v", got, before)
	}
}

// A channel change replaces the IRQs: apply must spread the new ones, and
// revert restore the channel count.
func TestApplyChannelsRespread(t *testing.T) {
	r := newRig(t, 8)
	r.nic.AfterSet = func(op string, d *tuningtest.Device) {
		if op != "SetChannels" {
			return
		}
		n := int(d.Channels.CombinedCount)
		r.tree.SetQueues("eth1", n)
		for i := range 8 {
			if i < n {
				r.tree.IRQ(61+i, fmt.Sprintf("mlx5_comp%d@pci:0000:08:00.0", i), "0-7", "0")
			} else if _, err := os.Stat(r.tree.Path(fmt.Sprintf("proc/irq/%d", 61+i))); err == nil {
				r.tree.RemoveIRQ(61 + i)
			}
		}
	}
	before := r.snapshot(t)
	pl, err := tuning.PlanProfile(context.Background(), "eth1", tuning.BuiltinProfile("afxdp"), r.opts)
	if err != nil {
		t.Fatal(err)
	}
	if res := planned(pl); res["channels"] != "combined=4 -> combined=8" || len(pl.Warnings) == 0 {
		t.Errorf("plan %v warnings %v", res, pl.Warnings)
	}
	a, err := tuning.Apply(context.Background(), "eth1", tuning.BuiltinProfile("afxdp"), r.opts)
	if err != nil {
		t.Fatal(err)
	}
	a.Release()
	if a.Outcome() != tuning.Complete {
		t.Fatalf("outcome %v: %+v", a.Outcome(), a.Plan.Items)
	}
	for i := range 8 {
		if got := r.tree.IRQAffinity(61 + i); got != fmt.Sprint(i) {
			t.Errorf("IRQ %d affinity %s, want %d", 61+i, got, i)
		}
	}
	if f := r.et.Device("eth1").Features; f["rx-gro"].Active {
		t.Error("GRO still on")
	}
	rv, err := tuning.Revert(context.Background(), "eth1", r.opts)
	if err != nil {
		t.Fatal(err)
	}
	if rv.Outcome() != tuning.Complete {
		t.Errorf("revert %v: %+v", rv.Outcome(), rv.Items)
	}
	// The four vectors that existed before are back where they were; the
	// ones the channel change added are gone with the channels.
	if got := r.snapshot(t); !reflect.DeepEqual(got, before) {
		t.Errorf("revert did not restore exactly:\n got %+v\nwant %+v", got, before)
	}
}

func planned(pl *tuning.Plan) map[string]string {
	m := map[string]string{}
	for _, it := range pl.Items {
		switch it.Action {
		case tuning.ActionChange:
			m[it.Key] = it.Current + " -> " + it.Want
		default:
			m[it.Key] = string(it.Action)
		}
	}
	return m
}

// One setting refused: the rest applies, the outcome is partial, and
// revert restores what was applied.
func TestApplyPartialFailure(t *testing.T) {
	r := newRig(t, 4)
	r.nic.Refuse = map[string]error{"Change:rx-lro": unix.EINVAL}
	r.nic.Features["rx-lro"] = ethtool.FeatureState{Available: true, Requested: true, Active: true}
	// The driver has no rx-frames/tx-frames moderation (like i40e).
	r.nic.CoalesceSupported = []string{"RxCoalesceUsecs", "TxCoalesceUsecs", "UseAdaptiveRxCoalesce", "UseAdaptiveTxCoalesce"}
	r.nic.Coalesce.RxMaxCoalescedFrames, r.nic.Coalesce.TxMaxCoalescedFrames = 0, 0
	before := r.snapshot(t)

	a, err := tuning.Apply(context.Background(), "eth1", tuning.BuiltinProfile("latency"), r.opts)
	if err != nil {
		t.Fatal(err)
	}
	a.Release()
	if a.Outcome() != tuning.Partial {
		t.Fatalf("outcome %v, want partial", a.Outcome())
	}
	res := results(a.Plan.Items)
	if res["feature.rx-lro"] != tuning.ResultRefused || res["coalesce.rx-frames"] != tuning.ResultUnsupported || res["sysctl.net.core.busy_poll"] != tuning.ResultApplied {
		t.Errorf("results %v", res)
	}
	for _, it := range a.Plan.Items {
		if it.Key == "feature.rx-lro" && !strings.Contains(it.Err, "invalid argument") {
			t.Errorf("refusal not reported: %+v", it)
		}
	}
	st, err := tuning.LoadState(r.opts.StatePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range st.Entries {
		if e.Key == "feature.rx-lro" || e.Key == "coalesce.rx-frames" {
			t.Errorf("state holds %s, which did not change", e.Key)
		}
	}
	rv, err := tuning.Revert(context.Background(), "eth1", r.opts)
	if err != nil || rv.Outcome() != tuning.Complete {
		t.Fatalf("revert: %v %+v", err, rv)
	}
	if got := r.snapshot(t); !reflect.DeepEqual(got, before) {
		t.Errorf("revert did not restore exactly:\n got %+v\nwant %+v", got, before)
	}
}

func TestApplyAtomicRollsBack(t *testing.T) {
	r := newRig(t, 4)
	r.opts.Atomic = true
	r.nic.Refuse = map[string]error{"SetRing": unix.EINVAL}
	before := r.snapshot(t)
	a, err := tuning.Apply(context.Background(), "eth1", tuning.BuiltinProfile("throughput"), r.opts)
	if err == nil {
		t.Fatal("atomic apply with a refused setting succeeded")
	}
	if a == nil || !a.RolledBack || a.Outcome() != tuning.Failed {
		t.Fatalf("applied %+v", a)
	}
	if res := results(a.Plan.Items); res["sysctl.net.core.rmem_max"] != tuning.ResultRolledBack || res["rings.rx"] != tuning.ResultRefused {
		t.Errorf("results %v", res)
	}
	if got := r.snapshot(t); !reflect.DeepEqual(got, before) {
		t.Errorf("rollback did not restore exactly:\n got %+v\nwant %+v", got, before)
	}
	if _, err := os.Stat(r.opts.StatePath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file left after a rollback: %v", err)
	}
}

// The device vanishing half-way rolls back what was changed.
func TestApplyFatalHalfWay(t *testing.T) {
	r := newRig(t, 4)
	r.nic.Refuse = map[string]error{"SetCoalesce": unix.ENODEV}
	before := r.snapshot(t)
	a, err := tuning.Apply(context.Background(), "eth1", tuning.BuiltinProfile("throughput"), r.opts)
	if err == nil || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("err = %v", err)
	}
	res := results(a.Plan.Items)
	if res["feature.rx-gro"] != tuning.ResultUnchanged || res["rings.rx"] != tuning.ResultRolledBack || res["sysctl.net.core.rmem_max"] != tuning.ResultSkipped {
		t.Errorf("results %v", res)
	}
	if got := r.snapshot(t); !reflect.DeepEqual(got, before) {
		t.Errorf("rollback did not restore exactly:\n got %+v\nwant %+v", got, before)
	}
}

func TestApplyBadInputChangesNothing(t *testing.T) {
	r := newRig(t, 4)
	before := r.snapshot(t)
	ctx := context.Background()
	for name, tc := range map[string]struct {
		iface string
		yaml  string
		cpus  string
	}{
		"unknown interface": {iface: "nope0", yaml: "sysctl: {net.core.busy_poll: 50}"},
		"ring over max":     {iface: "eth1", yaml: "sysctl: {net.core.busy_poll: 50}\nrings: {rx: 8192}"},
		"channels over max": {iface: "eth1", yaml: "channels: {combined: 9}"},
		"usecs over range":  {iface: "eth1", yaml: "coalesce: {rx-usecs: 1000000}"},
		"unknown key":       {iface: "eth1", yaml: "coalesce: {rx-usec: 10}"},
		"word misplaced":    {iface: "eth1", yaml: "rings: {rx: cores}"},
		"offline cpus":      {iface: "eth1", yaml: "irq-affinity: {spread: true}", cpus: "2-9"},
	} {
		p, err := tuning.ParseProfile(strings.NewReader(tc.yaml), name)
		if err != nil {
			if !errors.Is(err, tuning.ErrBadInput) {
				t.Errorf("%s: parse error %v is not ErrBadInput", name, err)
			}
			continue
		}
		opts := r.opts
		if tc.cpus != "" {
			opts.CPUs = tuning.MustParseCPUList(tc.cpus)
		}
		_, err = tuning.Apply(ctx, tc.iface, p, opts)
		if !errors.Is(err, tuning.ErrBadInput) {
			t.Errorf("%s: err = %v, want ErrBadInput", name, err)
		}
	}
	if len(r.et.Calls) != 0 {
		t.Errorf("set calls after bad input: %v", r.et.Calls)
	}
	if got := r.snapshot(t); !reflect.DeepEqual(got, before) {
		t.Error("bad input changed something")
	}
	if _, err := os.Stat(r.opts.StatePath); !errors.Is(err, os.ErrNotExist) {
		t.Error("bad input left a state file")
	}
}

func TestPlanVethAndUnsupported(t *testing.T) {
	tr := tuningtest.NewTree(t, 2)
	tr.NetDev(tuningtest.Dev{Name: "xr0", RxQueues: 1, TxQueues: 1})
	tr.Remove("proc/sys/net/core/busy_poll") // a kernel without CONFIG_NET_RX_BUSY_POLL
	et := tuningtest.NewEthtool(map[string]*tuningtest.Device{"xr0": tuningtest.Veth(4)})
	et.Device("xr0").Channels.RxCount, et.Device("xr0").Channels.TxCount = 1, 1
	opts := tuning.Options{Roots: tr.Roots(), Ethtool: et}
	pl, err := tuning.PlanProfile(context.Background(), "xr0", tuning.BuiltinProfile("afxdp"), opts)
	if err != nil {
		t.Fatal(err)
	}
	got := planned(pl)
	want := map[string]string{
		"feature.rx-gro":                "keep",
		"feature.rx-lro":                "keep",
		"feature.rx-udp-gro-forwarding": "keep",
		"channels":                      "rx=1 tx=1 -> rx=2 tx=2", // "cores" on 2 CPUs
		"napi.napi_defer_hard_irqs":     "0 -> 2",
		"napi.gro_flush_timeout":        "0 -> 200000",
		"irq":                           "unsupported",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plan\n got %v\nwant %v", got, want)
	}
	pl, err = tuning.PlanProfile(context.Background(), "xr0", tuning.BuiltinProfile("latency"), opts)
	if err != nil {
		t.Fatal(err)
	}
	un := map[string]bool{}
	for _, it := range pl.Unsupported() {
		un[it.Key] = true
		if it.Note == "" {
			t.Errorf("%s unsupported without a reason", it.Key)
		}
	}
	for _, k := range []string{"coalesce.rx-usecs", "sysctl.net.core.busy_poll", "irq"} {
		if !un[k] {
			t.Errorf("%s not reported unsupported: %v", k, planned(pl))
		}
	}
	p, _ := tuning.ParseProfile(strings.NewReader("features: {lro: on}\nchannels: {combined: 2}"), "x")
	pl, err = tuning.PlanProfile(context.Background(), "xr0", p, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := planned(pl); got["feature.rx-lro"] != "unsupported" || got["channels"] != "unsupported" {
		t.Errorf("fixed LRO / combined on veth: %v", got)
	}
}

func TestPlanWarnsIRQBalance(t *testing.T) {
	r := newRig(t, 4)
	r.tree.Process(4242, "irqbalance")
	pl, err := tuning.PlanProfile(context.Background(), "eth1", tuning.BuiltinProfile("balanced"), r.opts)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(pl.Warnings, func(w string) bool { return strings.Contains(w, "irqbalance is running (pid 4242)") }) {
		t.Errorf("warnings %v", pl.Warnings)
	}
}

func TestPlanCmdlineInEffect(t *testing.T) {
	r := newRig(t, 4)
	r.tree.Write("proc/cmdline", "ro quiet isolcpus=managed_irq,domain,1-3 nohz_full=1-3 rcu_nocbs=1-3 -- init-arg rcu_nocbs=0")
	r.tree.Write("sys/devices/system/cpu/isolated", "1-3")
	r.tree.Write("sys/devices/system/cpu/nohz_full", "1-3")
	pl, err := tuning.PlanProfile(context.Background(), "eth1", tuning.BuiltinProfile("latency"), r.opts)
	if err != nil {
		t.Fatal(err)
	}
	if c := pl.Cmdline; c == nil || !c.InEffect() || c.Want != "isolcpus=managed_irq,domain,1-3 nohz_full=1-3 rcu_nocbs=1-3" {
		t.Errorf("cmdline %+v", c)
	}
	// Leaving the housekeeping CPU out of the isolation set must not take
	// it out of the IRQ spread.
	if pl.CPUs.String() != "0-3" || planned(pl)["irq.61"] != "0-3 -> 0" {
		t.Errorf("IRQ CPUs %s, plan %v", pl.CPUs, planned(pl))
	}
	r.opts.CPUs = tuning.MustParseCPUList("2-3")
	pl, err = tuning.PlanProfile(context.Background(), "eth1", tuning.BuiltinProfile("latency"), r.opts)
	if err != nil {
		t.Fatal(err)
	}
	if c := pl.Cmdline; !c.InEffect() || !strings.Contains(c.Want, "nohz_full=2-3") {
		t.Errorf("cmdline with --cpus 2-3: %+v", c)
	}
	iso, err := tuning.ReadIsolation(r.tree.Roots())
	if err != nil {
		t.Fatal(err)
	}
	if iso.RCUNoCBs.String() != "1-3" || !slices.Equal(iso.IsolFlags, []string{"managed_irq", "domain"}) {
		t.Errorf("isolation %+v (init's arguments after -- must not count)", iso)
	}
}

func TestRevertOtherBoot(t *testing.T) {
	r := newRig(t, 4)
	a, err := tuning.Apply(context.Background(), "eth1", tuning.BuiltinProfile("balanced"), r.opts)
	if err != nil {
		t.Fatal(err)
	}
	a.Release()
	r.tree.Write("proc/sys/kernel/random/boot_id", "00000000-0000-0000-0000-000000000000")
	if _, err := tuning.Revert(context.Background(), "eth1", r.opts); err == nil || !strings.Contains(err.Error(), "reboot") {
		t.Errorf("revert across a reboot: %v", err)
	}
	r.opts.Force = true
	if rv, err := tuning.Revert(context.Background(), "eth1", r.opts); err != nil || rv.Outcome() != tuning.Complete {
		t.Errorf("forced revert: %v", err)
	}
}

func TestShowFake(t *testing.T) {
	r := newRig(t, 4)
	r.tree.Write("sys/devices/system/cpu/isolated", "2-3")
	r.tree.IRQ(63, "mlx5_comp2@pci:0000:08:00.0", "2", "2")
	rep, err := tuning.Show(context.Background(), "eth1", r.opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Driver != "mlx5_core" || len(rep.Queues.Queues) != 4 || len(rep.Workers) != 4 {
		t.Errorf("report %+v", rep)
	}
	if rep.Coalesce[0].Name != "adaptive-rx" || rep.Coalesce[0].Value != "on" {
		t.Errorf("coalesce %+v", rep.Coalesce)
	}
	if rep.Channels[0].Name != "combined" || rep.Channels[0].Value != "4" || rep.Channels[0].Max != "8" {
		t.Errorf("channels %+v", rep.Channels)
	}
	if !slices.ContainsFunc(rep.IsolationNotes, func(n string) bool { return strings.Contains(n, "IRQ 63 lands on isolated CPU 2") }) {
		t.Errorf("isolation notes %v", rep.IsolationNotes)
	}
}

// A signal (ctx cancelled) half-way rolls back what was changed.
func TestApplyInterruptedRollsBack(t *testing.T) {
	r := newRig(t, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.nic.AfterSet = func(op string, d *tuningtest.Device) {
		if op == "SetRing" {
			cancel()
		}
	}
	before := r.snapshot(t)
	a, err := tuning.Apply(ctx, "eth1", tuning.BuiltinProfile("throughput"), r.opts)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "rolled back all") {
		t.Fatalf("err = %v", err)
	}
	if res := results(a.Plan.Items); res["rings.rx"] != tuning.ResultRolledBack || res["rings.tx"] != tuning.ResultSkipped {
		t.Errorf("results %v", res)
	}
	if got := r.snapshot(t); !reflect.DeepEqual(got, before) {
		t.Errorf("rollback did not restore exactly:\n got %+v\nwant %+v", got, before)
	}
	if _, err := os.Stat(r.opts.StatePath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file left after a complete rollback: %v", err)
	}
}
