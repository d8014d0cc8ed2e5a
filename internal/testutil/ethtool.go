package testutil

import (
	"testing"

	"github.com/xdpingest/xdpingest/internal/testbed"
)

// Ethtool runs the ethtool program in the side's namespace and returns its
// output: an independent check of what our ioctls did. It skips without
// the program and fails when it fails.
func Ethtool(tb testing.TB, side *testbed.Side, args ...string) string {
	tb.Helper()
	RequireProgram(tb, "ethtool")
	out, err := side.Command("ethtool", args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("ethtool %v in %s: %v: %s", args, side.Netns, err, out)
	}
	return string(out)
}
