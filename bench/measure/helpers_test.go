package measure

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/xdpingest/xdpingest/internal/testutil"
)

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
