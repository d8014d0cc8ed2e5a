package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// validateSinks validates a config with an interface and a port, and the given
// sinks.
func validateSinks(sinks ...string) (*Resolved, error) {
	c := Defaults()
	c.Iface, c.Ports, c.Sinks = "x0", "9000", sinks
	return c.Validate()
}

// Two sinks with one name would break /metrics (one label twice); two with
// one destination would write everything twice to it. Both are refused.
func TestDuplicateSinksRefused(t *testing.T) {
	wd, _ := os.Getwd()
	for _, c := range [][]string{
		{"discard", "discard:"},
		{"pcap:./c", "pcap:./c?max_mb=10"},
		{"pcap:./c", "pcap:c/"},
		{"pcap:c", "pcap:" + filepath.Join(wd, "c")},
		{"pcap:/srv/x/../c", "pcap:/srv/c"},
		{"nats://u:pw@h/s", "nats://h:4222/s?batch=8"},
		{"nats://a,b/s", "nats://c,B/s"},
		{"nats://[2001:db8::1]/s", "nats://[2001:DB8:0::1]:4222/s"},
		{"udp://198.18.0.2:9000", "udp://[::ffff:198.18.0.2]:9000"},
		{"udp://c.example:9000", "udp://C.example:9000"},
		{"discard", "pcap:./a", "discard"},
	} {
		r, err := validateSinks(c...)
		if err == nil {
			t.Errorf("%q: accepted (%d sinks)", c, len(r.Sinks))
			continue
		}
		if !strings.Contains(err.Error(), "--sink") || !strings.Contains(err.Error(), "give each destination once") {
			t.Errorf("%q: %v", c, err)
		}
	}
	// Different places are fine, the same NATS server with other subjects
	// too.
	r, err := validateSinks("discard", "pcap:./a", "pcap:./b", "nats://h/s", "nats://h/t", "nats://g/s", "udp://198.18.0.2:9000", "udp://198.18.0.2:9001")
	if err != nil || len(r.Sinks) != 8 {
		t.Fatalf("distinct sinks: %v", err)
	}
}

// secret is the password of the sink URLs below: no message may show it.
const secret = "Zq9pw0rd"

// Every error of Validate about a sink URL carrying a password, and of the
// flags and the file that bring it: the password appears in none.
func TestConfigErrorsRedact(t *testing.T) {
	urls := []string{
		"nats://user:" + secret + "@host/bad..subject",
		"nats://user:" + secret + "@host:99999/s",
		"nats://user:" + secret + "@host/s?batch=0",
		"nats://user:" + secret + "@host/s?bogus=1",
		"nats://user:" + secret + "@a,,b/s",
		"nats://user:" + secret + "@[::1/s",
		"nats://user:" + secret + "/x@host/s",
		"nats://" + secret + "@host/s#f",
		"udp://user:" + secret + "@198.18.0.2:9000",
		"kafka://user:" + secret + "@host:9092/t",
		"pcap://user:" + secret + "@host/d",
	}
	check := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: accepted", what)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the error shows the password: %v", what, err)
		}
	}
	for _, u := range urls {
		_, err := validateSinks(u)
		check(u, err)
		_, err = parse(t, "--iface", "x0", "--ports", "9000", "--sink", u)
		check("--sink "+u, err)
	}
	// Every other refusal, with a good URL carrying a password beside it.
	ok := "nats://user:" + secret + "@host/s"
	for _, bad := range [][]string{
		{"--ports", "0"}, {"--ports", "9100-9000"}, {"--allow", "198.18.0.0/33"}, {"--deny", "fe80::1%eth0"},
		{"--path", "dpdk"}, {"--queues", "one"}, {"--xdp-mode", "offload"}, {"--on-full", "maybe"},
		{"--metrics-addr", "localhost"}, {"--log-format", "xml"}, {"--cpus", "x"}, {"--queue-mb", "0"},
		{"--batch-size", "0"}, {"--frame-size", "3000"}, {"--frames", "1000"}, {"--ring-size", "8192"},
		{"--workers", "-1"}, {"--rcvbuf-mb", "-1"}, {"--drain-timeout", "0s"}, {"--nap", "5ms"},
		{"--sched-slice", "1s"}, {"--worker-nice", "20"}, {"--workers", "x"}, {"--iface", "a b"}, {"stray"},
	} {
		_, err := parse(t, append([]string{"--iface", "x0", "--ports", "9000", "--sink", ok}, bad...)...)
		check(strings.Join(bad, " "), err)
	}
	// Duplicates of a URL with a password.
	for _, dup := range []string{ok, "nats://user:" + secret + "@host/s?batch=2", "nats://tok" + secret + "@host:4222/s"} {
		_, err := validateSinks(ok, dup)
		check(ok+" and "+dup, err)
	}
	// In a file: a URL where a list belongs, a bad URL, a duplicate.
	dir := t.TempDir()
	for i, y := range []string{
		"sinks: " + ok + "\n",
		"sinks: {" + ok + ": 1}\n",
		"sinks: [" + urls[0] + "]\n",
		"sinks: [" + ok + ", " + ok + "]\n",
		"sinks: [" + ok + "]\nports: [" + ok + "]\n",
	} {
		p := filepath.Join(dir, fmt.Sprintf("%d.yaml", i))
		os.WriteFile(p, []byte("iface: x0\nports: 9000\n"+strings.Replace(y, "ports: 9000\n", "", 1)), 0o644)
		_, err := parse(t, "--config", p)
		check(y, err)
	}
}

// A second YAML document would be ignored: it is refused, naming its line.
func TestYAMLSecondDocumentRefused(t *testing.T) {
	for _, c := range []struct{ yaml, line string }{
		{"iface: x0\nports: 9000\n---\nports: 9001\n", "line 3"},
		{"iface: x0\nports: 9000\n---\n", "line 3"},
		{"---\n---\niface: x0\nports: 9000\n", "line 2"},
		{"iface: x0\nports: 9000\n--- [\n", "line"},
	} {
		var cfg Config
		err := decode(strings.NewReader(c.yaml), &cfg)
		if err == nil || !strings.Contains(err.Error(), c.line) {
			t.Errorf("%q: %v; want an error naming %s", c.yaml, err, c.line)
		}
	}
	// One document, with or without its markers, or only comments: fine.
	for _, y := range []string{"---\niface: x0\n...\n", "# nothing set\n", "", "iface: x0 # ---\n"} {
		var cfg Config
		if err := decode(strings.NewReader(y), &cfg); err != nil {
			t.Errorf("%q: %v", y, err)
		}
	}
}

// ports: in YAML is a string, a number, or a list of numbers and ranges.
func TestYAMLPortsForms(t *testing.T) {
	for y, want := range map[string]string{
		`ports: "9000,9100-9199"`:         "9000,9100-9199",
		`ports: 9000`:                     "9000",
		`ports: 9100-9102`:                "9100-9102",
		`ports: [9000, "9100-9199"]`:      "9000,9100-9199",
		"ports:\n  - 9001\n  - 7000-7001": "7000-7001,9001",
	} {
		cfg := Defaults()
		if err := decode(strings.NewReader("iface: x0\n"+y+"\n"), &cfg); err != nil {
			t.Errorf("%q: %v", y, err)
			continue
		}
		r, err := cfg.Validate()
		if err != nil {
			t.Errorf("%q: %v", y, err)
			continue
		}
		if got := FormatPorts(r.Ports); got != want {
			t.Errorf("%q: ports %s, want %s", y, got, want)
		}
	}
	for _, y := range []string{`ports: {a: 1}`, `ports: []`, `ports: [[9000]]`, `ports: [9000, ""]`, `ports: [9000, 70000]`} {
		cfg := Defaults()
		err := decode(strings.NewReader("iface: x0\n"+y+"\n"), &cfg)
		if err == nil {
			_, err = cfg.Validate()
		}
		if err == nil {
			t.Errorf("%q: accepted", y)
		}
	}
}

// A zone would be dropped (the lists match addresses, not interfaces): it is
// refused, bare or in a prefix. A v4-mapped address means the IPv4 one.
func TestPrefixZonesRefused(t *testing.T) {
	for _, s := range []string{"fe80::1%eth0", "fe80::1%eth0/64", "fe80::%1/10"} {
		for _, flag := range []string{"--allow", "--deny"} {
			_, err := parse(t, "--iface", "x0", "--ports", "9000", flag, s)
			if err == nil || !strings.Contains(err.Error(), "zone") || !strings.Contains(err.Error(), flag) {
				t.Errorf("%s %s: %v", flag, s, err)
			}
		}
	}
	for in, want := range map[string]string{
		"::ffff:198.18.0.7":      "198.18.0.7/32",
		"::ffff:198.18.0.0/111":  "198.18.0.0/15",
		"198.18.3.4/15":          "198.18.0.0/15",
		" 2001:db8::1 ":          "2001:db8::1/128",
		"2001:db8::/32":          "2001:db8::/32",
		"0.0.0.0/0":              "0.0.0.0/0",
		"::ffff:198.18.0.0/95":   "::fffe:0:0/95",
		"2001:DB8:0:0::ab:1/127": "2001:db8::ab:0/127",
	} {
		p, err := ParsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"", "/8", "198.18.0.0/33", "198.18.0.0/-1", "198.18.0.0/+8", "2001:db8::/129", "198.18.0.0/", "x/8", "198.18.0.0/8/8"} {
		if p, err := ParsePrefix(in); err == nil {
			t.Errorf("ParsePrefix(%q) = %v, accepted", in, p)
		}
	}
}

// Each list holds at most MaxPrefixes distinct prefixes per family, what the
// program's maps hold.
func TestPrefixListLimit(t *testing.T) {
	v4 := func(n, from int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("198.%d.%d.%d/32", 18+(from+i)>>16, (from+i)>>8&255, (from+i)&255)
		}
		return out
	}
	v6 := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("2001:db8::%x:%x", i>>16, i&0xffff)
		}
		return out
	}
	c := Defaults()
	c.Iface, c.Ports = "x0", "9000"
	c.Allow = append(v4(MaxPrefixes, 0), v6(MaxPrefixes)...)
	c.Deny = append(v4(MaxPrefixes, 0), v4(10, 0)...) // repeats take no room
	if _, err := c.Validate(); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	c.Deny = v4(MaxPrefixes+1, 0)
	_, err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "--deny") || !strings.Contains(err.Error(), "65536 IPv4") {
		t.Fatalf("one over in --deny: %v", err)
	}
	c.Deny = nil
	c.Allow = v6(MaxPrefixes + 1)
	if _, err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--allow") || !strings.Contains(err.Error(), "IPv6") {
		t.Fatalf("one over in --allow: %v", err)
	}
}

// A bad flag or value is one line naming the flag, without the usage; -h
// prints the usage.
func TestFlagErrorsOneLine(t *testing.T) {
	for _, args := range [][]string{
		{"--workers", "many"}, {"--nap", "soon"}, {"--busy-poll=maybe"}, {"--colour", "blue"}, {"--ports"},
	} {
		var out bytes.Buffer
		fs := NewFlagSet("run", &out)
		err := fs.Parse(args)
		name := strings.TrimPrefix(strings.SplitN(args[0], "=", 2)[0], "--")
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "-h") {
			t.Errorf("%q: %v", args, err)
		}
		if out.Len() != 0 {
			t.Errorf("%q: printed %q", args, out.String())
		}
	}
	var out bytes.Buffer
	fs := NewFlagSet("check", &out)
	if err := fs.Parse([]string{"-h"}); err == nil || !strings.Contains(out.String(), "usage: xdpingest check") || !strings.Contains(out.String(), "-drain-timeout") {
		t.Errorf("-h: %v, printed %q", err, out.String())
	}
}

// Validate's specs are what Parse makes of each URL, in order.
func TestSinkSpecsInOrder(t *testing.T) {
	r, err := validateSinks("udp://198.18.0.2:9000", "discard")
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{r.Sinks[0].String(), r.Sinks[1].String()}; !reflect.DeepEqual(got, []string{"udp://198.18.0.2:9000", "discard"}) {
		t.Fatalf("%q", got)
	}
}
