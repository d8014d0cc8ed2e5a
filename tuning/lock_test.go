package tuning_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/tuning"
)

// pauseFirstSet makes the first set operation on r's fake ethtool wait until
// resume is closed; paused is closed when it starts waiting. Later set
// operations, from any goroutine, go through.
func (r *rig) pauseFirstSet() (paused, resume chan struct{}) {
	paused, resume = make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	r.et.BeforeSet = func(string, string) {
		if first.CompareAndSwap(false, true) {
			close(paused)
			<-resume
		}
	}
	return paused, resume
}

func waitClosed(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// Two applies at once on one state file: the second is refused while the
// first is between reading the originals and recording what it changed,
// and a revert afterwards restores every original value. Without the lock,
// the second apply ran, and the first one's final state file dropped what
// the second changed, which revert then left tuned.
func TestConcurrentApplyRefused(t *testing.T) {
	r := newRig(t, 4)
	before := r.snapshot(t)
	ctx := context.Background()
	paused, resume := r.pauseFirstSet()

	type result struct {
		a   *tuning.Applied
		err error
	}
	first := make(chan result, 1)
	go func() {
		a, err := tuning.Apply(ctx, "eth1", tuning.BuiltinProfile("latency"), r.opts)
		first <- result{a, err}
	}()
	waitClosed(t, paused, "the first apply to start changing settings")

	a2, err := tuning.Apply(ctx, "eth1", tuning.BuiltinProfile("throughput"), r.opts)
	close(resume)
	if a2 != nil {
		a2.Release()
	}
	if !errors.Is(err, tuning.ErrLocked) {
		t.Errorf("second apply while the first runs: %v, want an error matching ErrLocked", err)
	} else {
		for _, want := range []string{r.opts.StatePath, fmt.Sprintf("pid %d", os.Getpid())} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("refusal %q does not name %q", err, want)
			}
		}
	}
	res := <-first
	if res.err != nil || res.a.Outcome() != tuning.Complete {
		t.Fatalf("first apply: %v", res.err)
	}
	res.a.Release()

	rv, err := tuning.Revert(ctx, "eth1", r.opts)
	if err != nil || rv.Outcome() != tuning.Complete {
		t.Fatalf("revert: %v", err)
	}
	if got := r.snapshot(t); !reflect.DeepEqual(got, before) {
		t.Errorf("after both applies and a revert:\n got %+v\nwant %+v", got, before)
	}
	if _, err := os.Stat(r.opts.StatePath + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file left behind: %v", err)
	}
}

// A revert while an apply runs is refused too, and changes nothing.
func TestRevertDuringApplyRefused(t *testing.T) {
	r := newRig(t, 4)
	ctx := context.Background()
	paused, resume := r.pauseFirstSet()
	done := make(chan error, 1)
	go func() {
		a, err := tuning.Apply(ctx, "eth1", tuning.BuiltinProfile("latency"), r.opts)
		if a != nil {
			a.Release()
		}
		done <- err
	}()
	waitClosed(t, paused, "the apply to start changing settings")
	calls := len(r.et.Calls)
	_, err := tuning.Revert(ctx, "eth1", r.opts)
	mid := len(r.et.Calls)
	close(resume)
	if !errors.Is(err, tuning.ErrLocked) || mid != calls {
		t.Errorf("revert during an apply: %v, %d set calls; want ErrLocked and none", err, mid-calls)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := r.tree.SysctlValue("net.core.busy_poll"); got != "50" {
		t.Errorf("busy_poll %s after the apply, want 50", got)
	}
}

// An Applied holds the lock until it is reverted or released, as `xdpingest
// run --tune` does while it runs: nothing else may apply or revert through
// the same state file meanwhile, since its exit revert would restore the
// values under the other's feet and rewrite the state file without its
// entries. After Revert the state file is free again.
func TestAppliedHoldsLockUntilRevert(t *testing.T) {
	r := newRig(t, 4)
	before := r.snapshot(t)
	ctx := context.Background()
	a, err := tuning.Apply(ctx, "eth1", tuning.BuiltinProfile("latency"), r.opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tuning.Apply(ctx, "eth1", tuning.BuiltinProfile("throughput"), r.opts); !errors.Is(err, tuning.ErrLocked) {
		t.Errorf("apply beside a held Applied: %v, want ErrLocked", err)
	}
	if _, err := tuning.Revert(ctx, "eth1", r.opts); !errors.Is(err, tuning.ErrLocked) {
		t.Errorf("revert beside a held Applied: %v, want ErrLocked", err)
	}
	if _, err := a.Revert(ctx); err != nil {
		t.Fatal(err)
	}
	if got := r.snapshot(t); !reflect.DeepEqual(got, before) {
		t.Errorf("after Applied.Revert:\n got %+v\nwant %+v", got, before)
	}
	// Free again: apply, release (what nictune does), and another apply
	// merges into the state file as before.
	a, err = tuning.Apply(ctx, "eth1", tuning.BuiltinProfile("latency"), r.opts)
	if err != nil {
		t.Fatal(err)
	}
	a.Release()
	a2, err := tuning.Apply(ctx, "eth1", tuning.BuiltinProfile("throughput"), r.opts)
	if err != nil {
		t.Fatalf("apply after a released one: %v", err)
	}
	a2.Release()
	// Applied.Revert after Release takes the lock again, and is refused
	// while someone else holds it.
	holder, err := tuning.Apply(ctx, "eth1", tuning.BuiltinProfile("throughput"), r.opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a2.Revert(ctx); !errors.Is(err, tuning.ErrLocked) {
		t.Errorf("Applied.Revert after Release beside a holder: %v, want ErrLocked", err)
	}
	holder.Release()
	if _, err := tuning.Revert(ctx, "eth1", r.opts); err != nil {
		t.Fatal(err)
	}
	if got := r.snapshot(t); !reflect.DeepEqual(got, before) {
		t.Errorf("after apply, apply, revert:\n got %+v\nwant %+v", got, before)
	}
}

// Bad input is still bad input, and leaves no lock file; NoState takes no
// lock.
func TestLockBadInputAndNoState(t *testing.T) {
	r := newRig(t, 4)
	ctx := context.Background()
	_, err := tuning.Apply(ctx, "eth1", &tuning.Profile{Name: "bad", Rings: &tuning.RingsSpec{Rx: &tuning.Count{N: -1}}}, r.opts)
	if !errors.Is(err, tuning.ErrBadInput) {
		t.Errorf("bad profile: %v", err)
	}
	_, err = tuning.Apply(ctx, "nope0", tuning.BuiltinProfile("latency"), r.opts)
	if !errors.Is(err, tuning.ErrBadInput) {
		t.Errorf("unknown interface: %v", err)
	}
	if _, err := os.Stat(r.opts.StatePath + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file left behind: %v", err)
	}
	held, err := tuning.Apply(ctx, "eth1", tuning.BuiltinProfile("latency"), r.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	opts := r.opts
	opts.NoState = true
	a, err := tuning.Apply(ctx, "eth1", tuning.BuiltinProfile("throughput"), opts)
	if err != nil {
		t.Fatalf("NoState apply beside a held state file: %v", err)
	}
	if _, err := a.Revert(ctx); err != nil {
		t.Fatal(err)
	}
}
