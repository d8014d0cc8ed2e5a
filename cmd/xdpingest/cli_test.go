package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the command in process, as main does.
func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// check refuses, with status 2 and one line on stderr, what run would
// refuse before touching the interface; no message shows a password.
func TestCheckRefuses(t *testing.T) {
	dir := t.TempDir()
	badProfile := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badProfile, []byte("name: x\nrings: {rx: lots}\n"), 0o644)
	twoDocs := filepath.Join(dir, "two.yaml")
	os.WriteFile(twoDocs, []byte("iface: x0\nports: 9000\n---\nports: 9001\n"), 0o644)
	base := []string{"check", "--iface", "x0", "--ports", "9000"}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown tuning profile", []string{"--tune", "nonexistent"}, `unknown profile "nonexistent"`},
		{"bad tuning profile file", []string{"--tune", badProfile}, "bad.yaml"},
		{"missing tuning profile file", []string{"--tune", filepath.Join(dir, "none.yaml")}, "none.yaml"},
		{"bad flag value", []string{"--workers", "many"}, `invalid value "many" for flag -workers`},
		{"bad duration", []string{"--drain-timeout", "soon"}, "-drain-timeout"},
		{"unknown flag", []string{"--colour", "blue"}, "-colour"},
		{"same sink twice", []string{"--sink", "discard", "--sink", "discard:"}, "give each destination once"},
		{"same pcap directory", []string{"--sink", "pcap:./c", "--sink", "pcap:./c?max_mb=10"}, "give each destination once"},
		{"password in a bad URL", []string{"--sink", "nats://user:Zq9pass@host/bad..subject"}, "empty token"},
		{"password in a duplicate", []string{"--sink", "nats://user:Zq9pass@h/s", "--sink", "nats://user:Zq9pass@h/s?batch=2"}, "user:xxxxx@h/s"},
		{"seed list with a bad port", []string{"--sink", "nats://a:4222,b:4222:9/s"}, "brackets"},
		{"zone in --allow", []string{"--allow", "fe80::1%eth0"}, "zone"},
		{"second YAML document", []string{"--config", twoDocs}, "line 3: a second YAML document"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(append(append([]string{}, base...), c.args...)...)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stdout %q, stderr %q", code, stdout, stderr)
			}
			if !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("stderr %q: want one line containing %q", stderr, c.want)
			}
			if strings.Contains(stderr, "Zq9pass") || strings.Contains(stdout, "Zq9pass") {
				t.Errorf("the password shows: %q", stderr)
			}
		})
	}
}

func TestCheckAccepts(t *testing.T) {
	code, stdout, stderr := runCLI("check", "--iface", "x0", "--ports", "9000", "--tune", "balanced",
		"--sink", "nats://user:Zq9pass@a:4222,[2001:db8::1]:4223/ingest", "--sink", "pcap:./c", "--allow", "2001:db8::/32")
	if code != 0 || !strings.Contains(stdout, "configuration is valid") || !strings.Contains(stdout, "2 sink(s)") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// -h prints the usage and exits 0.
	code, _, stderr = runCLI("check", "-h")
	if code != 0 || !strings.Contains(stderr, "-ports") {
		t.Fatalf("-h: exit %d, %q", code, stderr)
	}
}
