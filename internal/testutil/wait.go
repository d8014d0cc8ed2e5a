package testutil

import (
	"testing"
	"time"
)

// WaitFor polls cond every few milliseconds until it holds (true) or
// timeout passes (false).
func WaitFor(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// MustWaitFor is WaitFor that fails tb, naming what it waited for, when
// the timeout passes.
func MustWaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	if !WaitFor(timeout, cond) {
		tb.Fatalf("gave up waiting (%v) for %s", timeout, what)
	}
}
