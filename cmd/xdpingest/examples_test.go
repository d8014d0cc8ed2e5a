package main

import (
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// exampleConfigs are the server configurations in examples/, each for one
// use; examples/nictune.yaml is a tuning profile (cmd/nictune tests it).
var exampleConfigs = []string{"flow-collector.yaml", "syslog-relay.yaml", "capture.yaml", "fleet-nats.yaml", "fleet-kafka.yaml"}

// Issue 13, point 2: every configuration in examples/ passes `xdpingest
// check` with its interface replaced by the bed's veth, and runs there:
// ready, then a clean exit at SIGTERM. Its sinks are replaced by discard
// for the run (the collectors, brokers and directories they name are the
// user's); check has validated them.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	for _, want := range append(slices.Clone(exampleConfigs), "nictune.yaml") {
		if !slices.Contains(names, want) {
			t.Errorf("examples/%s is missing", want)
		}
	}
	for _, n := range names {
		if n != "nictune.yaml" && !slices.Contains(exampleConfigs, n) {
			t.Errorf("examples/%s is tested by nothing: add it to exampleConfigs", n)
		}
	}

	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{Queues: 2})
	for _, n := range exampleConfigs {
		t.Run(strings.TrimSuffix(n, ".yaml"), func(t *testing.T) {
			file, err := filepath.Abs(filepath.Join("../../examples", n))
			if err != nil {
				t.Fatal(err)
			}
			out, err := b.Rx.Command(binary, "check", "--config", file, "--iface", b.Rx.Link).CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "configuration is valid: iface "+b.Rx.Link) {
				t.Fatalf("xdpingest check --config %s: %v\n%s", n, err, out)
			}
			t.Logf("check: %s", strings.TrimSpace(string(out)))

			srv := startServer(t, b, "--config", file, "--sink", "discard")
			if code := srv.stop(syscall.SIGTERM, 10*time.Second); code != 0 {
				t.Errorf("exit status %d after SIGTERM:\n%s", code, srv.log.String())
			}
		})
	}
}
