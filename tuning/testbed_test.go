package tuning_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
	"github.com/xdpingest/xdpingest/tuning"
	"github.com/xdpingest/xdpingest/tuning/tuningtest"
)

// currentChannels extracts "RX: n TX: n" under "Current hardware settings".
func currentChannels(t *testing.T, out string) string {
	t.Helper()
	_, cur, ok := strings.Cut(out, "Current hardware settings:")
	if !ok {
		t.Fatalf("no current settings in %q", out)
	}
	rx := regexp.MustCompile(`RX:\s+(\S+)`).FindStringSubmatch(cur)
	tx := regexp.MustCompile(`TX:\s+(\S+)`).FindStringSubmatch(cur)
	return "rx=" + rx[1] + " tx=" + tx[1]
}

func feature(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `: (on|off)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s in %q", name, out)
	}
	return m[1]
}

// TestTestbedChannelsFeatures applies channels and features to a real veth
// in the test bed's namespace, checks them with the ethtool program, and
// reverts to exactly the original. sysfs in this mount shows the host's
// devices, not the namespace's, so the /proc and /sys side is a fake tree.
func TestTestbedChannelsFeatures(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireProgram(t, "ethtool")
	b := testutil.NewBed(t, testbed.Config{Queues: 4})
	link := b.Rx.Link

	var et tuning.Ethtool
	if err := b.Rx.Do(func() (err error) { et, err = tuning.OpenEthtool(); return err }); err != nil {
		t.Fatal(err)
	}
	defer et.Close()

	tr := tuningtest.NewTree(t, 2)
	tr.NetDev(tuningtest.Dev{Name: link, RxQueues: 4, TxQueues: 4})

	origCh := currentChannels(t, testutil.Ethtool(t, b.Rx, "-l", link))
	origK := testutil.Ethtool(t, b.Rx, "-k", link)
	origGRO, origFwd := feature(t, origK, "generic-receive-offload"), feature(t, origK, "rx-udp-gro-forwarding")
	if origCh != "rx=4 tx=4" {
		t.Fatalf("bed starts with %s, want 4 queues", origCh)
	}
	flip := map[string]string{"on": "off", "off": "on"}
	yaml := "name: bed\nchannels: {rx: 2, tx: 3}\nfeatures: {gro: " + flip[origGRO] + ", rx-udp-gro-forwarding: " + flip[origFwd] + ", lro: on}\n"
	p, err := tuning.ParseProfile(strings.NewReader(yaml), "bed")
	if err != nil {
		t.Fatal(err)
	}
	opts := tuning.Options{Roots: tr.Roots(), Ethtool: et, StatePath: filepath.Join(t.TempDir(), "state.json")}
	a, err := tuning.Apply(context.Background(), link, p, opts)
	if err != nil {
		t.Fatal(err)
	}
	a.Release() // as nictune does: the next apply and the revert go through the state file
	res := results(a.Plan.Items)
	if res["channels"] != tuning.ResultApplied || res["feature.rx-gro"] != tuning.ResultApplied || res["feature.rx-udp-gro-forwarding"] != tuning.ResultApplied {
		t.Errorf("results %v", res)
	}
	// veth's LRO is fixed off: reported, skipped, and the outcome says so.
	if res["feature.rx-lro"] != tuning.ResultUnsupported || a.Outcome() != tuning.Partial {
		t.Errorf("LRO %v, outcome %v", res["feature.rx-lro"], a.Outcome())
	}
	if got := currentChannels(t, testutil.Ethtool(t, b.Rx, "-l", link)); got != "rx=2 tx=3" {
		t.Errorf("after apply: channels %s", got)
	}
	k := testutil.Ethtool(t, b.Rx, "-k", link)
	if feature(t, k, "generic-receive-offload") != flip[origGRO] || feature(t, k, "rx-udp-gro-forwarding") != flip[origFwd] {
		t.Errorf("after apply: features\n%s", k)
	}

	// Applying again changes nothing.
	a2, err := tuning.Apply(context.Background(), link, p, opts)
	if err != nil {
		t.Fatal(err)
	}
	a2.Release()
	if len(a2.Plan.Changes()) != 0 {
		t.Errorf("second apply changes %+v", a2.Plan.Changes())
	}

	rv, err := tuning.Revert(context.Background(), link, opts)
	if err != nil || rv.Outcome() != tuning.Complete {
		t.Fatalf("revert: %v %+v", err, rv)
	}
	if got := currentChannels(t, testutil.Ethtool(t, b.Rx, "-l", link)); got != origCh {
		t.Errorf("after revert: channels %s, want %s", got, origCh)
	}
	k = testutil.Ethtool(t, b.Rx, "-k", link)
	if feature(t, k, "generic-receive-offload") != origGRO || feature(t, k, "rx-udp-gro-forwarding") != origFwd {
		t.Errorf("after revert: features\n%s", k)
	}
}

// TestOpenEthtoolIn opens a handle by namespace path and reaches the bed's
// veth with it, from a thread in the host namespace.
func TestOpenEthtoolIn(t *testing.T) {
	testutil.RequireRoot(t)
	b := testutil.NewBed(t, testbed.Config{Queues: 2})
	et, err := tuning.OpenEthtoolIn("/var/run/netns/" + b.Rx.Netns)
	if err != nil {
		t.Fatal(err)
	}
	defer et.Close()
	info, err := et.DriverInfo(b.Rx.Link)
	if err != nil || info.Driver != "veth" {
		t.Fatalf("driver %q: %v", info.Driver, err)
	}
	c, err := et.GetChannels(b.Rx.Link)
	if err != nil || c.RxCount != 2 {
		t.Errorf("channels %+v: %v", c, err)
	}
	host, err := tuning.OpenEthtool()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	if _, err := host.DriverInfo(b.Rx.Link); err == nil {
		t.Error("the host namespace sees the bed's veth")
	}
}

// TestReadEth0Coalesce reads the real eth0's coalescing: read only, never a
// write to eth0.
func TestReadEth0Coalesce(t *testing.T) {
	et, err := tuning.OpenEthtool()
	if err != nil {
		t.Fatal(err)
	}
	defer et.Close()
	if _, err := et.DriverInfo("eth0"); err != nil {
		testutil.Skip(t, "this host has no eth0: "+err.Error())
	}
	rep, err := tuning.Show(context.Background(), "eth0", tuning.Options{Ethtool: et})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Coalesce) == 0 {
		t.Fatal("no coalescing in the report")
	}
	t.Logf("eth0 (%s) coalescing: %+v", rep.Driver, rep.Coalesce)
	if rep.Coalesce[0].Note != "" {
		// A driver without coalescing reports it; that is a valid read.
		t.Logf("eth0 has no coalescing: %s", rep.Coalesce[0].Note)
		return
	}
	if out, err := exec.Command("ethtool", "-c", "eth0").Output(); err == nil {
		m := regexp.MustCompile(`(?m)^rx-usecs: (\d+)`).FindSubmatch(out)
		for _, s := range rep.Coalesce {
			if s.Name == "rx-usecs" && m != nil && s.Value != string(m[1]) {
				t.Errorf("rx-usecs %s, ethtool -c says %s", s.Value, m[1])
			}
		}
	}
	if len(rep.Queues.Queues) == 0 {
		t.Error("no queues found for eth0")
	}
	t.Logf("eth0 queues: %+v, workers: %s", rep.Queues.Queues, tuning.FormatWorkers(rep.Workers))
}
