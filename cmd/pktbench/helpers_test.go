package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

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
		out, err := exec.Command("go", "build", "-o", binDir+"/", ".", "../xdpingest").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("can't build pktbench and xdpingest: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// syncBuffer is an io.Writer the test reads while a command writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runCmd runs pktbench in-process and returns its exit code and output.
func runCmd(ctx context.Context, args ...string) (int, string, string) {
	var out, errb syncBuffer
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

// waitFor polls cond until it holds or the timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	for end := time.Now().Add(timeout); ; {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// requireRoot skips (or fails under XDPINGEST_STRICT=1) without root and
// BPF.
func requireRoot(t *testing.T) {
	t.Helper()
	testutil.RequireBPF(t)
}
