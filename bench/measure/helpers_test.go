package measure

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/internal/testutil"
)

// xdpingestBinary builds xdpingest into a temporary directory, for the
// server paths.
func xdpingestBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "xdpingest")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/xdpingest").CombinedOutput(); err != nil {
		t.Fatalf("can't build xdpingest: %v\n%s", err, out)
	}
	return bin
}

// xskdropBinary compiles bench/cref/xskdrop.c into a temporary directory,
// or skips without a C compiler.
func xskdropBinary(t *testing.T) string {
	t.Helper()
	cc := ""
	for _, c := range []string{"cc", "clang-16", "gcc"} {
		if p, err := exec.LookPath(c); err == nil {
			cc = p
			break
		}
	}
	if cc == "" {
		testutil.Skip(t, "no C compiler (cc, clang-16 or gcc) to build bench/cref/xskdrop.c")
	}
	bin := filepath.Join(t.TempDir(), "xskdrop")
	if out, err := exec.Command(cc, "-O2", "-Wall", "-Werror", "-pthread", "-o", bin, "../cref/xskdrop.c").CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cc, err, out)
	}
	return bin
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
