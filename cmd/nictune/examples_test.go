package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
	"github.com/xdpingest/xdpingest/tuning"
)

// Issue 13, point 2: examples/nictune.yaml loads, and `nictune plan
// --profile examples/nictune.yaml IFACE` plans every setting it names on
// a real veth, run as a user would, in the veth's namespace (where ip
// netns exec gives it that namespace's /sys), and changes nothing.
func TestExampleProfile(t *testing.T) {
	file, err := filepath.Abs("../../examples/nictune.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := tuning.LoadProfile(file)
	if err != nil {
		t.Fatalf("examples/nictune.yaml: %v", err)
	}
	if p.Description == "" {
		t.Errorf("examples/nictune.yaml has no description")
	}

	testutil.RequireRoot(t)
	b := testutil.NewBed(t, testbed.Config{Queues: 2})
	bin := filepath.Join(testutil.BuildT(t, "."), "nictune")
	napi := func() string {
		out, err := b.Rx.Command("cat", "/sys/class/net/"+b.Rx.Link+"/napi_defer_hard_irqs").Output()
		if err != nil {
			t.Fatalf("read napi_defer_hard_irqs of %s: %v", b.Rx.Link, err)
		}
		return strings.TrimSpace(string(out))
	}
	before := napi()
	out, err := b.Rx.Command(bin, "plan", "--profile", file, b.Rx.Link).CombinedOutput()
	plan := string(out)
	if err != nil {
		t.Fatalf("nictune plan --profile examples/nictune.yaml %s: %v\n%s", b.Rx.Link, err, plan)
	}
	t.Logf("plan:\n%s", plan)
	if !strings.HasPrefix(plan, "profile "+p.Name+" on "+b.Rx.Link+" (driver veth)") {
		t.Errorf("plan does not start with the profile and the veth")
	}
	// A line for every setting the profile names.
	for _, setting := range []string{"channels", "rings.rx", "feature.rx-gro", "feature.rx-lro", "feature.rx-udp-gro-forwarding",
		"sysctl.net.core.netdev_budget ", "sysctl.net.core.netdev_budget_usecs", "napi.napi_defer_hard_irqs", "napi.gro_flush_timeout", "irq "} {
		if !strings.Contains(plan, "\n"+setting) {
			t.Errorf("the plan has no line for %s", strings.TrimSpace(setting))
		}
	}
	if after := napi(); after != before {
		t.Errorf("plan changed napi_defer_hard_irqs from %s to %s", before, after)
	}
	if _, err := os.Stat(filepath.Join(tuning.DefaultStateDir, "nictune-"+b.Rx.Link+".json")); err == nil {
		t.Errorf("plan wrote a state file")
	}
}
