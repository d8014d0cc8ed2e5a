package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
	"github.com/xdpingest/xdpingest/tuning"
	"github.com/xdpingest/xdpingest/tuning/tuningtest"
)

// veth state as the ethtool program sees it: current channels and the
// features a profile may touch.
func vethState(t *testing.T, side *testbed.Side) string {
	t.Helper()
	_, cur, _ := strings.Cut(testutil.Ethtool(t, side, "-l", side.Link), "Current hardware settings:")
	ch := strings.Join(strings.Fields(cur), " ")
	k := testutil.Ethtool(t, side, "-k", side.Link)
	var fs []string
	for _, f := range []string{"generic-receive-offload", "large-receive-offload", "rx-udp-gro-forwarding"} {
		m := regexp.MustCompile(`(?m)^` + f + `: (\S+)`).FindStringSubmatch(k)
		if m == nil {
			t.Fatalf("no %s in ethtool -k", f)
		}
		fs = append(fs, f+"="+m[1])
	}
	return ch + " " + strings.Join(fs, " ")
}

// TestTestbedApplyRevert runs nictune against a real veth in the test bed's
// namespace: channels and features through real ethtool ioctls (the handle
// is opened inside the namespace), the /proc and /sys side on a fake tree
// (host sysfs does not show the namespace's devices).
func TestTestbedApplyRevert(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireProgram(t, "ethtool")
	b := testutil.NewBed(t, testbed.Config{Queues: 4})
	link := b.Rx.Link
	tr := tuningtest.NewTree(t, 2)
	tr.NetDev(tuningtest.Dev{Name: link, RxQueues: 4, TxQueues: 4})
	e := env{roots: tr.Roots(), openEthtool: func() (et tuning.Ethtool, err error) {
		err = b.Rx.Do(func() error { et, err = tuning.OpenEthtool(); return err })
		return et, err
	}}
	state := filepath.Join(t.TempDir(), "state.json")
	orig := vethState(t, b.Rx)

	// afxdp: one queue per core (2 CPUs in the tree), GRO off; veth has
	// no per-queue IRQs, so the IRQ spread is reported unsupported: exit 3.
	r := nictune(t, e, "apply", "--profile", "afxdp", "--state", state, link)
	if r.code != exitPartial {
		t.Fatalf("apply exit %d, want 3:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "no per-queue IRQs") {
		t.Errorf("apply output:\n%s", r.stdout)
	}
	got := vethState(t, b.Rx)
	if !strings.Contains(got, "RX: 2 TX: 2") || !strings.Contains(got, "generic-receive-offload=off") {
		t.Errorf("after apply: %s", got)
	}
	// Idempotent: the same again changes nothing and says the same.
	r2 := nictune(t, e, "apply", "--profile", "afxdp", "--state", state, link)
	if r2.code != exitPartial || vethState(t, b.Rx) != got || strings.Contains(r2.stdout, " applied") {
		t.Errorf("second apply exit %d:\n%s", r2.code, r2.stdout)
	}

	// A user profile flipping GRO back on, with a refused setting (LRO is
	// fixed off on veth): exit 3, the rest applied.
	p := filepath.Join(t.TempDir(), "gro.yaml")
	os.WriteFile(p, []byte("features: {gro: on, lro: on, rx-udp-gro-forwarding: on}\nchannels: {rx: 3, tx: 1}\n"), 0o644)
	r = nictune(t, e, "apply", "--profile", p, "--state", state, link)
	if r.code != exitPartial || !strings.Contains(r.stdout, "fixed by the driver") {
		t.Fatalf("apply exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	got = vethState(t, b.Rx)
	if !strings.Contains(got, "RX: 3 TX: 1") || !strings.Contains(got, "generic-receive-offload=on") || !strings.Contains(got, "rx-udp-gro-forwarding=on") {
		t.Errorf("after the second profile: %s", got)
	}

	// One revert restores the values from before the first apply.
	r = nictune(t, e, "revert", "--state", state, link)
	if r.code != exitOK {
		t.Fatalf("revert exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := vethState(t, b.Rx); got != orig {
		t.Errorf("after revert:\n got %s\nwant %s", got, orig)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state file left: %v", err)
	}
}

// TestTestbedNetnsFlag uses --netns with the real /proc and /sys: ethtool
// reaches the veth; sysfs does not show it, which show says.
func TestTestbedNetnsFlag(t *testing.T) {
	testutil.RequireRoot(t)
	b := testutil.NewBed(t, testbed.Config{Queues: 2})
	r := nictune(t, env{}, "show", "--json", "--netns", b.Rx.Netns, b.Rx.Link)
	if r.code != exitOK {
		t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	var rep tuning.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Driver != "veth" || len(rep.Channels) < 3 || rep.Channels[1].Value != "2" {
		t.Errorf("report %+v", rep)
	}
	if len(rep.Warnings) == 0 || !strings.Contains(rep.Warnings[0], "ip netns exec") {
		t.Errorf("no warning about sysfs: %v", rep.Warnings)
	}
	// Without --netns the device is unknown here: bad input.
	if r := nictune(t, env{}, "show", b.Rx.Link); r.code != exitBadArgs {
		t.Errorf("show without --netns: exit %d: %s", r.code, r.stderr)
	}
}

// TestShowEth0 reads the real eth0 (read only: show writes nothing).
func TestShowEth0(t *testing.T) {
	if _, err := os.Stat("/sys/class/net/eth0"); err != nil {
		testutil.Skip(t, "this host has no eth0")
	}
	r := nictune(t, env{}, "show", "--json", "eth0")
	if r.code != exitOK {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	var rep tuning.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Coalesce) == 0 || len(rep.Sysctls) != 7 || len(rep.Queues.Queues) == 0 {
		t.Errorf("report %+v", rep)
	}
}
