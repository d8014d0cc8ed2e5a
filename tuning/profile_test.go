package tuning_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/xdpingest/xdpingest/tuning"
)

func TestBuiltinProfiles(t *testing.T) {
	for _, name := range tuning.BuiltinProfiles() {
		p, err := tuning.LoadProfile(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		// A built-in rendered as YAML is a valid user profile with the
		// same content.
		y, err := tuning.MarshalProfile(p)
		if err != nil {
			t.Fatal(err)
		}
		back, err := tuning.ParseProfile(bytes.NewReader(y), name)
		if err != nil {
			t.Fatalf("%s: parsing its own YAML: %v\n%s", name, err, y)
		}
		if !reflect.DeepEqual(back, p) {
			t.Errorf("%s: YAML round trip differs:\n%s", name, y)
		}
	}
	// Each call returns a fresh copy.
	a, b := tuning.BuiltinProfile("latency"), tuning.BuiltinProfile("latency")
	*a.Sysctl.BusyPoll = 1
	if *b.Sysctl.BusyPoll == 1 {
		t.Error("built-in profiles share memory")
	}
}

func TestParseProfile(t *testing.T) {
	good := `
name: mine
description: test
channels:
  queues: cores
rings: {rx: max, tx: 2048}
coalesce:
  adaptive-rx: off
  adaptive-tx: true
  rx-usecs: 0
features:
  gro: on
  lro: off
  rx-udp-gro-forwarding: false
sysctl:
  net.core.busy_poll: 50
  net.core.rmem_max: 33554432
napi:
  napi_defer_hard_irqs: 2
  gro_flush_timeout: 200000
irq-affinity: {spread: true, cpus: "0-1"}
isolation: {isolcpus: true, cpus: "1"}
`
	p, err := tuning.ParseProfile(strings.NewReader(good), "x")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "mine" || p.Channels.Queues.Word != "cores" || p.Rings.Rx.Word != "max" || p.Rings.Tx.N != 2048 ||
		bool(*p.Coalesce.AdaptiveRx) || !bool(*p.Coalesce.AdaptiveTx) || !bool(*p.Features.GRO) ||
		*p.Sysctl.BusyPoll != 50 || *p.NAPI.GROFlushTimeout != 200000 || p.IRQAffinity.CPUs != "0-1" {
		t.Errorf("parsed %+v", p)
	}
	for name, bad := range map[string]string{
		"unknown top key":      "name: x\nbusypoll: 1",
		"unknown nested key":   "coalesce: {rx-usec: 1}",
		"unknown sysctl":       "sysctl: {net.core.somaxconn: 1}",
		"unknown feature":      "features: {tso: off}",
		"negative":             "sysctl: {net.core.busy_poll: -1}",
		"too big":              "napi: {gro_flush_timeout: 2000000000}",
		"bad switch":           "features: {gro: maybe}",
		"bad count":            "channels: {rx: lots}",
		"zero count":           "channels: {rx: 0}",
		"queues and combined":  "channels: {queues: 2, combined: 2}",
		"bad cpus":             "irq-affinity: {spread: true, cpus: 3-1}",
		"two documents":        "name: a\n---\nname: b",
		"empty":                "",
		"rmem below minimum":   "sysctl: {net.core.rmem_max: 10}",
		"coalesce frames huge": "coalesce: {rx-frames: 100000}",
	} {
		if _, err := tuning.ParseProfile(strings.NewReader(bad), name); !errors.Is(err, tuning.ErrBadInput) {
			t.Errorf("%s: err = %v, want ErrBadInput", name, err)
		}
	}
}

func TestLoadProfile(t *testing.T) {
	if _, err := tuning.LoadProfile("fastest"); !errors.Is(err, tuning.ErrBadInput) || !strings.Contains(err.Error(), "latency, throughput, afxdp, balanced") {
		t.Errorf("unknown profile: %v", err)
	}
	path := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(path, []byte("sysctl: {net.core.busy_read: 25}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := tuning.LoadProfile(path)
	if err != nil || *p.Sysctl.BusyRead != 25 || p.Name != path {
		t.Errorf("file profile: %+v %v", p, err)
	}
	if _, err := tuning.LoadProfile("./missing.yaml"); !errors.Is(err, tuning.ErrBadInput) {
		t.Errorf("missing file: %v", err)
	}
}
