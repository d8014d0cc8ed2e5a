package config

import (
	"bytes"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// A config file: decoding and validating never panic, every error is one
// line, and a valid config written back as YAML reads back the same.
func FuzzConfigYAML(f *testing.F) {
	for _, s := range []string{
		"iface: x0\nports: \"9000,9100-9199\"\nsinks: [discard]\nallow: [198.18.0.0/15]\ndrain_timeout: 2s\n",
		"iface: x0\nports: [9000, 9100-9102]\nqueues: 0,2-3\nnap: 0s\nsched_slice: 1ms\n",
		"iface: x0\nports: 9000\nsinks: [\"nats://u:p@a,b:4333/s?batch=8\", \"pcap:./c?max_mb=1\"]\ndeny: [2001:db8::/32, 198.18.7.7]\n",
		"iface: x0\nports: 9000\n---\nports: 9001\n",
		"iface: x0\nports: {a: 1}\n",
		"iface: x0\nports: 9000\non_full: block\nlog_format: json\ncpus: 0-1\nworkers: 4\n",
		"# only a comment\n",
		"a: &a [*a]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := Defaults()
		if err := decode(bytes.NewReader(data), &cfg); err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("decode error spans lines: %q", err)
			}
			return
		}
		r, err := cfg.Validate()
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("validate error spans lines: %q", err)
			}
			return
		}
		if len(r.Ports) == 0 || len(r.Sinks) != len(r.Raw.Sinks) {
			t.Fatalf("valid but %d ports, %d specs for %d sinks", len(r.Ports), len(r.Sinks), len(r.Raw.Sinks))
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("can't write back %+v: %v", cfg, err)
		}
		again := Defaults()
		if err := decode(bytes.NewReader(out), &again); err != nil {
			t.Fatalf("written back:\n%s\ndoesn't read: %v", out, err)
		}
		r2, err := again.Validate()
		if err != nil {
			t.Fatalf("written back:\n%s\nrefused: %v", out, err)
		}
		if a, b := normal(r.Raw), normal(r2.Raw); !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip:\n%+v\n%+v", a, b)
		}
		if !slices.Equal(r.Ports, r2.Ports) || !slices.Equal(r.Allow, r2.Allow) || !slices.Equal(r.Deny, r2.Deny) || !slices.Equal(r.Queues, r2.Queues) {
			t.Fatalf("round trip changes the resolved lists")
		}
	})
}

// normal makes empty lists nil: YAML writes nil as [].
func normal(c Config) Config {
	for _, l := range []*[]string{&c.Allow, &c.Deny, &c.Sinks} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	return c
}

// Port lists: sorted, without repeats, within 1..65535; written back in
// the range form they read the same.
func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"9000", "9000,9100-9199", "1-65535", "5,3,4-6, 7 ", "0", "65536", "9-1", "1-", "-1", "+1", "00009000", "1,,2", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ports, err := ParsePorts(s)
		if err != nil {
			if ports != nil || strings.Contains(err.Error(), "\n") {
				t.Fatalf("%q: %v, %v", s, ports, err)
			}
			return
		}
		if len(ports) == 0 || ports[0] == 0 {
			t.Fatalf("%q: %v", s, ports)
		}
		for i := 1; i < len(ports); i++ {
			if ports[i] <= ports[i-1] {
				t.Fatalf("%q: not sorted and unique at %d: %v", s, i, ports[i-1:i+1])
			}
		}
		f := FormatPorts(ports)
		again, err := ParsePorts(f)
		if err != nil || !slices.Equal(ports, again) {
			t.Fatalf("%q -> %q -> %v, %v", s, f, again, err)
		}
	})
}

// Queue lists: all (nil) or sorted, unique queues 0..65535, whatever
// ranges the list spells: "0-4000000000" costs nothing.
func FuzzParseQueues(f *testing.F) {
	for _, s := range []string{"all", "", "0", "0,1", "0-3,8", "0-4000000000", "0-65535", "3-1", "one", "1-", " 2 , 1 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		qs, err := ParseQueues(s)
		if err != nil {
			return
		}
		if (qs == nil) != (s == "" || s == "all") {
			t.Fatalf("%q: %v", s, qs)
		}
		if len(qs) > 65536 {
			t.Fatalf("%q: %d queues", s, len(qs))
		}
		for i, q := range qs {
			if q < 0 || q > 65535 || (i > 0 && q <= qs[i-1]) {
				t.Fatalf("%q: queue %d at %d", s, q, i)
			}
		}
	})
}

// Prefixes: valid, masked, zone-free, IPv4 for IPv4-mapped; parsing the
// result gives it back; a plain CIDR means what netip says.
func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"198.18.0.0/15", "198.18.3.4", "2001:db8::/32", "fe80::1%eth0", "fe80::1%eth0/64", "::ffff:198.18.0.0/111", "0.0.0.0/0", "1.2.3.4/33", "::/0", " 2001:db8::1 ", "1.2.3.4/08"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrefix(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("%q: error spans lines: %q", s, err)
			}
			return
		}
		if !p.IsValid() || p != p.Masked() || p.Addr().Zone() != "" || p.Addr().Is4In6() {
			t.Fatalf("%q -> %v", s, p)
		}
		if again, err := ParsePrefix(p.String()); err != nil || again != p {
			t.Fatalf("%q -> %v -> %v, %v", s, p, again, err)
		}
		if want, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil && !want.Addr().Is4In6() && want.Masked() != p {
			t.Fatalf("%q -> %v, netip says %v", s, p, want.Masked())
		}
	})
}
