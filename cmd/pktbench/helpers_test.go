package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/xdpingest/xdpingest/internal/testutil"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds pktbench and xdpingest once, side by side as `make build`
// puts them, and returns their directory.
func binaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "pktbench-test")
		if binErr != nil {
			return
		}
		binErr = testutil.Build(binDir, nil, ".", "../xdpingest")
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// runCmd runs pktbench in-process and returns its exit code and output.
func runCmd(ctx context.Context, args ...string) (int, string, string) {
	var out, errb testutil.SyncBuffer
	code := run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

// bedsOf lists the test-bed namespaces a process owns.
func bedsOf(t *testing.T, pid int) []string {
	t.Helper()
	ents, err := os.ReadDir("/var/run/netns")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	prefix := fmt.Sprintf("xitb-%d-", pid)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// requireNoBeds fails when namespaces of pid are left.
func requireNoBeds(t *testing.T, pid int) {
	t.Helper()
	if left := bedsOf(t, pid); len(left) > 0 {
		t.Fatalf("namespaces left behind: %v", left)
	}
}

// requireRoot skips (or fails under XDPINGEST_STRICT=1) without root and
// BPF.
func requireRoot(t *testing.T) {
	t.Helper()
	testutil.RequireBPF(t)
}
