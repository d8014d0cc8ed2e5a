package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/tuning"
	"github.com/xdpingest/xdpingest/tuning/tuningtest"
)

type result struct {
	code           int
	stdout, stderr string
}

func nictune(t *testing.T, e env, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	e.stdout, e.stderr = &out, &errb
	code := run(context.Background(), args, e)
	return result{code, out.String(), errb.String()}
}

// fakeHost is an mlx5-like eth1 with 4 queues on a 4-CPU fake tree, and a
// fake ethtool backend.
type fakeHost struct {
	tree  *tuningtest.Tree
	et    *tuningtest.Ethtool
	env   env
	state string
}

func newFakeHost(t *testing.T) *fakeHost {
	tr := tuningtest.NewTree(t, 4)
	tr.NetDev(tuningtest.Dev{Name: "eth1", Driver: "mlx5_core", PCI: "0000:08:00.0", NUMA: "0", RxQueues: 4, TxQueues: 4})
	for i := range 4 {
		tr.IRQ(61+i, fmt.Sprintf("mlx5_comp%d@pci:0000:08:00.0", i), "0-3", "0")
	}
	tr.NetDev(tuningtest.Dev{Name: "veth9", RxQueues: 1, TxQueues: 1})
	et := tuningtest.NewEthtool(map[string]*tuningtest.Device{"eth1": tuningtest.NIC("mlx5_core"), "veth9": tuningtest.Veth(1)})
	h := &fakeHost{tree: tr, et: et, state: filepath.Join(t.TempDir(), "state.json")}
	h.env = env{roots: tr.Roots(), openEthtool: func() (tuning.Ethtool, error) { return et, nil }}
	return h
}

func (h *fakeHost) values() string {
	d := h.et.Device("eth1")
	return fmt.Sprintf("%v %+v %+v %+v busy_poll=%s rmem_max=%s defer=%s irq61=%s irq64=%s",
		d.Features["rx-gro"].Active, *d.Channels, *d.Ring, *d.Coalesce,
		h.tree.SysctlValue("net.core.busy_poll"), h.tree.SysctlValue("net.core.rmem_max"),
		h.tree.Read("sys/class/net/eth1/napi_defer_hard_irqs"), h.tree.IRQAffinity(61), h.tree.IRQAffinity(64))
}

func TestShow(t *testing.T) {
	h := newFakeHost(t)
	r := nictune(t, h.env, "show", "eth1")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"driver mlx5_core", "combined 4 (max 8)", "rx 1024 (max 4096)", "adaptive-rx on", "rx-gro on", "net.core.busy_poll 0", "napi_defer_hard_irqs 0", "queues: 4 rx, 4 tx (mlx5)", "IRQ 62", "mlx5_comp1@pci:0000:08:00.0", "workers (allowed CPUs", "isolation: isolcpus none", "irqbalance: not running"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("show lacks %q:\n%s", want, r.stdout)
		}
	}
	r = nictune(t, h.env, "show", "--json", "eth1")
	var rep tuning.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != exitOK {
		t.Fatalf("exit %d, json %v:\n%s", r.code, err, r.stdout)
	}
	if len(rep.Queues.Queues) != 4 || rep.Queues.Queues[2].IRQs[0].Num != 63 || rep.Driver != "mlx5_core" {
		t.Errorf("json report %+v", rep)
	}
}

func TestPlanApplyRevert(t *testing.T) {
	h := newFakeHost(t)
	before := h.values()
	r := nictune(t, h.env, "plan", "--profile", "latency", "eth1")
	if r.code != exitOK || !strings.Contains(r.stdout, "sysctl.net.core.busy_poll  0        ->  50") || !strings.Contains(r.stdout, "kernel command line wanted") {
		t.Fatalf("plan exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if h.values() != before || len(h.et.Calls) != 0 {
		t.Fatal("plan changed something")
	}

	r = nictune(t, h.env, "apply", "eth1", "--profile", "latency", "--state", h.state)
	if r.code != exitOK {
		t.Fatalf("apply exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "complete: ") || !strings.Contains(r.stdout, "undo with: nictune revert eth1 --state "+h.state) {
		t.Errorf("apply output:\n%s", r.stdout)
	}
	tuned := h.values()
	if h.tree.SysctlValue("net.core.busy_poll") != "50" || h.tree.IRQAffinity(64) != "3" {
		t.Errorf("not applied: %s", tuned)
	}

	r = nictune(t, h.env, "apply", "eth1", "--profile", "latency", "--state", h.state)
	if r.code != exitOK || strings.Contains(r.stdout, " applied") || h.values() != tuned {
		t.Errorf("second apply exit %d:\n%s", r.code, r.stdout)
	}

	r = nictune(t, h.env, "revert", "eth1", "--state", h.state)
	if r.code != exitOK || !strings.Contains(r.stdout, "restored") {
		t.Fatalf("revert exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := h.values(); got != before {
		t.Errorf("revert:\n got %s\nwant %s", got, before)
	}
	r = nictune(t, h.env, "revert", "eth1", "--state", h.state)
	if r.code != exitFailed || !strings.Contains(r.stderr, "nothing to revert on eth1") {
		t.Errorf("revert without state: exit %d: %s", r.code, r.stderr)
	}
}

func TestApplyJSON(t *testing.T) {
	h := newFakeHost(t)
	r := nictune(t, h.env, "apply", "--json", "--profile", "throughput", "--state", h.state, "--cpus", "2-3", "eth1")
	if r.code != exitOK {
		t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	var out struct {
		Outcome string `json:"outcome"`
		State   string `json:"state"`
		Plan    struct {
			CPUs  string        `json:"cpus"`
			Items []tuning.Item `json:"items"`
		} `json:"plan"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	if out.Outcome != "complete" || out.State != h.state || out.Plan.CPUs != "2-3" || len(out.Plan.Items) == 0 {
		t.Errorf("json %+v", out)
	}
	// --cpus 2-3: queues 0..3 go to 2,3,2,3.
	if h.tree.IRQAffinity(61) != "2" || h.tree.IRQAffinity(62) != "3" || h.tree.IRQAffinity(63) != "2" {
		t.Errorf("IRQs on %s %s %s", h.tree.IRQAffinity(61), h.tree.IRQAffinity(62), h.tree.IRQAffinity(63))
	}
	r = nictune(t, h.env, "revert", "--json", "--state", h.state, "eth1")
	if r.code != exitOK || !strings.Contains(r.stdout, `"outcome": "complete"`) {
		t.Errorf("revert exit %d:\n%s", r.code, r.stdout)
	}
}

// One setting refused: exit 3, each failure reported, revert restores the
// rest.
func TestPartialFailureExits3(t *testing.T) {
	h := newFakeHost(t)
	h.et.Device("eth1").Refuse = map[string]error{"SetRing": unix.EINVAL}
	before := h.values()
	r := nictune(t, h.env, "apply", "--profile", "throughput", "--state", h.state, "eth1")
	if r.code != exitPartial {
		t.Fatalf("exit %d, want 3:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "rings.rx") || !strings.Contains(r.stdout, "refused") || !strings.Contains(r.stdout, "invalid argument") || !strings.Contains(r.stdout, "partial: ") {
		t.Errorf("apply output:\n%s", r.stdout)
	}
	if h.tree.SysctlValue("net.core.rmem_max") != "67108864" {
		t.Error("the rest was not applied")
	}
	r = nictune(t, h.env, "revert", "--state", h.state, "eth1")
	if r.code != exitOK {
		t.Fatalf("revert exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := h.values(); got != before {
		t.Errorf("revert:\n got %s\nwant %s", got, before)
	}

	// --atomic: the same refusal rolls everything back, exit 1.
	r = nictune(t, h.env, "apply", "--atomic", "--profile", "throughput", "--state", h.state, "eth1")
	if r.code != exitFailed || !strings.Contains(r.stdout, "rolled-back") || !strings.Contains(r.stderr, "rolled back every change") {
		t.Errorf("atomic exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := h.values(); got != before {
		t.Errorf("atomic rollback:\n got %s\nwant %s", got, before)
	}
}

func TestNothingCouldBeDoneExits1(t *testing.T) {
	h := newFakeHost(t)
	p := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(p, []byte("coalesce: {rx-usecs: 0}\nrings: {rx: max}\n"), 0o644)
	r := nictune(t, h.env, "apply", "--profile", p, "--state", h.state, "veth9")
	if r.code != exitFailed || !strings.Contains(r.stdout, "unsupported") || !strings.Contains(r.stdout, "can't read coalescing ("+errors.ErrUnsupported.Error()+")") {
		t.Errorf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(h.state); err == nil {
		t.Error("state file written though nothing changed")
	}
}

func TestBadInputExits2(t *testing.T) {
	h := newFakeHost(t)
	dir := t.TempDir()
	unknownKey := filepath.Join(dir, "k.yaml")
	os.WriteFile(unknownKey, []byte("coalesce: {rx-usec: 10}\n"), 0o644)
	outOfRange := filepath.Join(dir, "r.yaml")
	os.WriteFile(outOfRange, []byte("rings: {rx: 100000}\n"), 0o644)
	overMax := filepath.Join(dir, "m.yaml")
	os.WriteFile(overMax, []byte("rings: {rx: 8192}\n"), 0o644)
	for name, args := range map[string][]string{
		"no command":           {},
		"unknown command":      {"tune", "eth1"},
		"unknown flag":         {"show", "--bogus", "eth1"},
		"no interface":         {"show"},
		"two interfaces":       {"show", "eth1", "eth2"},
		"unknown interface":    {"apply", "--profile", "latency", "nope0"},
		"bad interface name":   {"show", "../../etc"},
		"no profile":           {"apply", "eth1"},
		"unknown profile":      {"apply", "--profile", "fastest", "eth1"},
		"unknown key":          {"apply", "--profile", unknownKey, "eth1"},
		"value out of range":   {"apply", "--profile", outOfRange, "eth1"},
		"over driver max":      {"apply", "--profile", overMax, "eth1"},
		"bad cpu list":         {"apply", "--profile", "balanced", "--cpus", "3-1", "eth1"},
		"offline cpus":         {"apply", "--profile", "balanced", "--cpus", "0-63", "eth1"},
		"unknown profile show": {"profiles", "fastest"},
	} {
		r := nictune(t, h.env, args...)
		if r.code != exitBadArgs {
			t.Errorf("%s: exit %d, want 2:\n%s%s", name, r.code, r.stdout, r.stderr)
		}
	}
	if len(h.et.Calls) != 0 {
		t.Errorf("bad input changed something: %v", h.et.Calls)
	}
	if _, err := os.Stat(h.state); err == nil {
		t.Error("bad input wrote a state file")
	}
}

func TestProfilesCommand(t *testing.T) {
	r := nictune(t, env{}, "profiles")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, p := range tuning.BuiltinProfiles() {
		if !strings.Contains(r.stdout, "name: "+p) {
			t.Errorf("profiles lacks %s", p)
		}
	}
	// What `profiles` prints is a valid user profile.
	r = nictune(t, env{}, "profiles", "afxdp")
	if _, err := tuning.ParseProfile(strings.NewReader(r.stdout), "afxdp"); err != nil {
		t.Errorf("printed profile does not parse: %v\n%s", err, r.stdout)
	}
}

func TestIRQBalanceWarning(t *testing.T) {
	h := newFakeHost(t)
	h.tree.Process(777, "irqbalance")
	r := nictune(t, h.env, "plan", "--profile", "afxdp", "eth1")
	if r.code != exitOK || !strings.Contains(r.stdout, "warning: irqbalance is running (pid 777)") {
		t.Errorf("exit %d:\n%s", r.code, r.stdout)
	}
}
