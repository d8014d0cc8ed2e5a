package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/datapath/afxdp"
	"github.com/xdpingest/xdpingest/tuning"
)

func parse(t *testing.T, args ...string) (*Resolved, error) {
	t.Helper()
	fs := NewFlagSet("run", io.Discard)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	cfg, err := fs.Config()
	if err != nil {
		return nil, err
	}
	return cfg.Validate()
}

func TestFlagsValid(t *testing.T) {
	r, err := parse(t, "--iface", "eth9", "--ports", "9000,9100-9102,9000", "--allow", "198.18.0.0/15", "--allow", "2001:db8::/32",
		"--deny", "198.18.7.7", "--sink", "discard", "--sink", "pcap:/tmp/x?max_mb=1", "--queues", "0,2-3", "--on-full", "block")
	if err != nil {
		t.Fatal(err)
	}
	if got := FormatPorts(r.Ports); got != "9000,9100-9102" {
		t.Errorf("ports %s", got)
	}
	if len(r.Allow) != 2 || r.Deny[0].String() != "198.18.7.7/32" {
		t.Errorf("prefixes %v %v", r.Allow, r.Deny)
	}
	if len(r.Sinks) != 2 || len(r.Queues) != 3 || !r.BlockOnFull {
		t.Errorf("%+v", r)
	}
	r, err = parse(t, "--iface", "x0", "--ports", "1")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Sinks) != 1 || r.Raw.Sinks[0] != "pcap:./capture" {
		t.Errorf("default sink: %v", r.Raw.Sinks)
	}
	if r.SchedSlice != tuning.DefaultWorkerSlice || r.Nap != afxdp.DefaultNap || r.WorkerNice != tuning.DefaultWorkerNice {
		t.Errorf("default slice %v, nap %v, nice %d", r.SchedSlice, r.Nap, r.WorkerNice)
	}
	if r, err = parse(t, "--iface", "x0", "--ports", "1", "--sched-slice", "0", "--nap", "0"); err != nil || r.SchedSlice != 0 || r.Nap != 0 {
		t.Errorf("--sched-slice 0 --nap 0: %v, %v, %v", r.SchedSlice, r.Nap, err)
	}
	if r.LowLatency || r.Raw.Latency != "default" {
		t.Errorf("default latency: low %v, %q", r.LowLatency, r.Raw.Latency)
	}
	if r, err = parse(t, "--iface", "x0", "--ports", "1", "--latency", "low"); err != nil || !r.LowLatency {
		t.Errorf("--latency low: %+v, %v", r, err)
	}
}

func TestFlagsRefused(t *testing.T) {
	cases := map[string][]string{
		"no ports":           {"--iface", "x0"},
		"no interface":       {"--ports", "9000"},
		"port 0":             {"--iface", "x0", "--ports", "0"},
		"port 65536":         {"--iface", "x0", "--ports", "65536"},
		"port range reverse": {"--iface", "x0", "--ports", "9100-9000"},
		"port junk":          {"--iface", "x0", "--ports", "9000,abc"},
		"bad cidr":           {"--iface", "x0", "--ports", "9000", "--allow", "198.18.0.0/33"},
		"bad deny":           {"--iface", "x0", "--ports", "9000", "--deny", "nonsense"},
		"unknown sink":       {"--iface", "x0", "--ports", "9000", "--sink", "amqp://x:1/t"},
		"unknown path":       {"--iface", "x0", "--ports", "9000", "--path", "dpdk"},
		"bad queues":         {"--iface", "x0", "--ports", "9000", "--queues", "one"},
		"bad on-full":        {"--iface", "x0", "--ports", "9000", "--on-full", "maybe"},
		"bad metrics addr":   {"--iface", "x0", "--ports", "9000", "--metrics-addr", "localhost"},
		"frames not pow2":    {"--iface", "x0", "--ports", "9000", "--frames", "1000"},
		"frame size":         {"--iface", "x0", "--ports", "9000", "--frame-size", "3000"},
		"unknown flag":       {"--iface", "x0", "--ports", "9000", "--colour"},
		"stray argument":     {"--iface", "x0", "--ports", "9000", "extra"},
		"bad xdp mode":       {"--iface", "x0", "--ports", "9000", "--xdp-mode", "offload"},
		"nap too long":       {"--iface", "x0", "--ports", "9000", "--nap", "5ms"},
		"negative nap":       {"--iface", "x0", "--ports", "9000", "--nap", "-1us"},
		"unknown latency":    {"--iface", "x0", "--ports", "9000", "--latency", "lowest"},
		"empty latency":      {"--iface", "x0", "--ports", "9000", "--latency", ""},
		"slice too short":    {"--iface", "x0", "--ports", "9000", "--sched-slice", "50us"},
		"slice too long":     {"--iface", "x0", "--ports", "9000", "--sched-slice", "1s"},
		"nice too low":       {"--iface", "x0", "--ports", "9000", "--worker-nice", "-21"},
		"nice too high":      {"--iface", "x0", "--ports", "9000", "--worker-nice", "20"},
	}
	for name, args := range cases {
		if _, err := parse(t, args...); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: message spans lines: %q", name, err)
		}
	}
}

func TestConfigFileAndOverride(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.yaml")
	os.WriteFile(p, []byte("iface: x0\nports: \"9000-9001\"\nsinks: [discard]\nallow: [198.18.0.0/15]\ndrain_timeout: 2s\nlatency: low\n"), 0o644)
	r, err := parse(t, "--config", p, "--ports", "7000")
	if err != nil {
		t.Fatal(err)
	}
	if r.Iface != "x0" || FormatPorts(r.Ports) != "7000" || r.Raw.Sinks[0] != "discard" || len(r.Allow) != 1 || r.DrainTimeout != 2*time.Second || !r.LowLatency {
		t.Fatalf("%+v", r.Raw)
	}
	if r, err := parse(t, "--config", p, "--latency", "default"); err != nil || r.LowLatency {
		t.Fatalf("--latency default over latency: low in the file: %+v, %v", r, err)
	}
	os.WriteFile(p, []byte("iface: x0\nports: \"9000\"\ncolour: blue\n"), 0o644)
	if _, err := parse(t, "--config", p); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := parse(t, "--config", filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
}
