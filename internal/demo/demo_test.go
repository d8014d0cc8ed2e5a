package demo

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xdpingest/xdpingest/internal/testutil"
)

// The demo runs through: the server starts and stops, the live traffic
// arrives, both accounting identities hold, tcpdump reads the pcap file,
// and the bed is removed.
func TestRun(t *testing.T) {
	testutil.RequireBPF(t)
	testutil.RequireProgram(t, "tcpdump")
	dir := testutil.BuildT(t, "../../cmd/xdpingest")
	bin := filepath.Join(dir, "xdpingest")
	// A file: the server's log and the steps write to it from two
	// goroutines.
	out, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	runErr := Run(context.Background(), Config{Xdpingest: bin, Out: out, Err: out})
	b, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if runErr != nil {
		t.Fatalf("%v\n%s", runErr, s)
	}
	for _, want := range []string{
		"== starting: xdpingest run --iface", "  | ", "xdpingest received", "received 1000 of 1000",
		"redirected = received + dropped", "received = written + dropped + in flight",
		"pcap file(s)", "UDP, length", "test bed removed",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Count(s, "\tok\n")+strings.Count(s, "  ok\n") < 2 || strings.Contains(s, "MISMATCH") {
		t.Errorf("an accounting identity does not hold:\n%s", s)
	}
	if t.Failed() {
		t.Logf("output:\n%s", s)
	}
}

// A binary that isn't there is refused before anything is built.
func TestRunNoBinary(t *testing.T) {
	err := Run(context.Background(), Config{Xdpingest: filepath.Join(t.TempDir(), "xdpingest"), Out: os.Stdout, Err: os.Stderr})
	if err == nil || !(strings.Contains(err.Error(), "make build") || strings.Contains(err.Error(), "run it as root")) {
		t.Fatalf("err %v", err)
	}
}
