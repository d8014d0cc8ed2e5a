package testutil

import (
	"os"
	"testing"
)

// OpenFDs counts the process's open file descriptors, for tests that
// check that Close gives back what Open took.
func OpenFDs(tb testing.TB) int {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	return len(ents)
}
