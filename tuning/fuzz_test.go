package tuning_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/xdpingest/xdpingest/tuning"
	"github.com/xdpingest/xdpingest/tuning/tuningtest"
)

// FuzzParseProfile feeds arbitrary YAML to the user-profile parser
// (LoadProfile of a file is os.ReadFile and this). Whatever it accepts
// validates, prints as YAML and JSON, and parses back to the same profile.
func FuzzParseProfile(f *testing.F) {
	for _, name := range tuning.BuiltinProfiles() {
		y, err := tuning.MarshalProfile(tuning.BuiltinProfile(name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(y)
	}
	for _, s := range []string{
		"channels: {queues: cores}\nrings: {rx: max, tx: 512}\n",
		"channels: {combined: 4, rx: 2, tx: max}\n",
		"coalesce: {adaptive-rx: on, rx-usecs: 0x10, rx-frames: 1}\nfeatures: {gro: yes, lro: off, rx-udp-gro-forwarding: true}\n",
		"sysctl: {net.core.busy_poll: 50, net.core.rmem_max: 67108864}\nnapi: {napi_defer_hard_irqs: 2, gro_flush_timeout: 200000}\n",
		"irq-affinity: {spread: true, cpus: 0-15:2/4}\nisolation: {isolcpus: true, nohz_full: true, cpus: '1-3'}\n",
		"name: a\n---\nname: b\n",
		"base: &b {rx: 1}\nrings: *b\n",
		"features: {gro: ~}\nrings: {rx: \"5\"}\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := tuning.ParseProfile(bytes.NewReader(data), "fuzz")
		if err != nil {
			if !errors.Is(err, tuning.ErrBadInput) {
				t.Fatalf("refusal %v does not match ErrBadInput", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("accepted a profile that does not validate: %v", err)
		}
		if _, err := json.Marshal(p); err != nil {
			t.Fatalf("accepted profile does not print as JSON: %v", err)
		}
		y, err := tuning.MarshalProfile(p)
		if err != nil {
			t.Fatalf("accepted profile does not print as YAML: %v", err)
		}
		p2, err := tuning.ParseProfile(bytes.NewReader(y), "other")
		if err != nil {
			t.Fatalf("printed profile does not parse: %v\n%s", err, y)
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("printed and parsed back, the profile changed:\n%s\n%#v\n%#v", y, p, p2)
		}
	})
}

// FuzzParseCPUList: whatever cpulist parses prints in the kernel's format
// and parses back to the same set.
func FuzzParseCPUList(f *testing.F) {
	for _, s := range []string{"0", "0-3,8", "0-15:2/4", " 1 , 3-5 ", "(null)", "", "3-1", "0-65535", "1,,2", "0-7:0/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := tuning.ParseCPUList(s)
		if err != nil {
			return
		}
		back, err := tuning.ParseCPUList(set.String())
		if err != nil {
			t.Fatalf("%q parsed, printed as %q, which does not parse: %v", s, set.String(), err)
		}
		if !back.Equal(set) {
			t.Fatalf("%q -> %q -> %q", s, set.String(), back.String())
		}
	})
}

// FuzzState feeds arbitrary state files to LoadState and to Revert on a
// fake host. What LoadState accepts writes and reads back the same; Revert
// never panics, reports one item per entry, and removes the file when it
// keeps nothing.
func FuzzState(f *testing.F) {
	r := newRig(f, 4)
	ctx := context.Background()
	// Seeds: the state files real applies write.
	for _, name := range tuning.BuiltinProfiles() {
		a, err := tuning.Apply(ctx, "eth1", tuning.BuiltinProfile(name), r.opts)
		if err != nil {
			f.Fatal(err)
		}
		a.Release()
		if b, err := os.ReadFile(r.opts.StatePath); err == nil {
			f.Add(b)
		}
		if _, err := tuning.Revert(ctx, "eth1", r.opts); err != nil && !errors.Is(err, tuning.ErrNoState) {
			f.Fatal(err)
		}
	}
	f.Add([]byte(`{"version":1,"iface":"eth1","entries":[{"key":"irq.61","previous":"0-65535"},{"key":"channels","previous":"combined=0 rx=1"},{"key":"sysctl.net.core.busy_poll","previous":"-1"}]}`))
	f.Add([]byte(`{"version":1,"iface":"eth1","entries":[{"key":"irq.-1","previous":"0"},{"key":"sysctl.kernel.panic","previous":"1"},{"key":"napi.../../x","previous":"1"}]}`))
	f.Add([]byte(`{"version":2}`))
	opts := r.opts
	opts.Force = true // restore whatever the boot id says
	// Every input starts from the same host, so that its coverage does not
	// depend on what earlier inputs restored (the fuzzer can't minimize an
	// input whose coverage it can't reproduce).
	reset := func(t *testing.T) {
		// Not through r.tree, which belongs to f: writes as the tree does.
		write := func(rel, v string) {
			if err := os.WriteFile(r.tree.Path(rel), []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for k, v := range tuningtest.DefaultSysctls {
			write("proc/sys/"+strings.ReplaceAll(k, ".", "/"), v)
		}
		write("sys/class/net/eth1/napi_defer_hard_irqs", "0")
		write("sys/class/net/eth1/gro_flush_timeout", "0")
		for irq := 60; irq <= 64; irq++ {
			write(fmt.Sprintf("proc/irq/%d/smp_affinity_list", irq), "0-3")
		}
		*r.nic = *tuningtest.NIC("mlx5_core")
		r.et.Calls = nil
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		reset(t)
		path := opts.StatePath
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		st, err := tuning.LoadState(path)
		if err != nil {
			return
		}
		b, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			t.Fatalf("accepted state does not print: %v", err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		st2, err := tuning.LoadState(path)
		if err != nil {
			t.Fatalf("printed state does not load: %v\n%s", err, b)
		}
		if !st2.Saved.Equal(st.Saved) {
			t.Fatalf("saved time %v read back as %v", st.Saved, st2.Saved)
		}
		st2.Saved = st.Saved
		if !reflect.DeepEqual(st, st2) {
			t.Fatalf("state changed on the way back:\n%+v\n%+v", st, st2)
		}

		rv, err := tuning.Revert(ctx, "eth1", opts)
		if st.Iface != "eth1" {
			if !errors.Is(err, tuning.ErrBadInput) {
				t.Fatalf("revert of a state file for %q on eth1: %v, want ErrBadInput", st.Iface, err)
			}
			return
		}
		if len(rv.Items) != len(st.Entries) {
			t.Fatalf("revert of %d entries reports %d items (%v)", len(st.Entries), len(rv.Items), err)
		}
		_, serr := os.Stat(path)
		if err == nil && rv.Kept == 0 && !errors.Is(serr, os.ErrNotExist) {
			t.Fatalf("revert kept nothing but left the state file: %v", serr)
		}
	})
}
