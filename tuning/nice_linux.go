package tuning

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// DefaultWorkerNice is the nice value xdpingest's workers run at unless told
// otherwise (and pktbench's receivers, C reference included, so that it
// measures what runs).
//
// A receiver that naps shares its core with whatever else runs there
// (ksoftirqd under load, other services). At nice 0 the scheduler sometimes
// declines to preempt that task when the receiver's nap ends, and the
// receiver waits for the next tick, 1-4 ms at HZ=250, while its ring
// overflows; at nice -10 its weight is nine times the other task's and it
// stays eligible to run (docs/BENCHMARKS.md has the loss either way).
// Receivers sleep whenever their ring is empty, so the weight costs the
// others on the core only what the receiver actually uses.
const DefaultWorkerNice = -10

// CheckNice refuses a nice value outside -20..19.
func CheckNice(n int) error {
	if n < -20 || n > 19 {
		return fmt.Errorf("nice %d: want -20 to 19", n)
	}
	return nil
}

// SetThreadNice sets the calling OS thread's nice value (on Linux each
// thread has its own). The caller holds the thread with
// runtime.LockOSThread, as for PinThread. Lowering it below the current
// value needs CAP_SYS_NICE (or an RLIMIT_NICE that allows it).
func SetThreadNice(n int) error {
	if err := CheckNice(n); err != nil {
		return err
	}
	err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), n)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("can't set the thread's nice value to %d: %w: grant CAP_SYS_NICE (or raise RLIMIT_NICE)", n, err)
	default:
		return fmt.Errorf("can't set the thread's nice value to %d: %w", n, err)
	}
}

// ThreadNice returns the calling OS thread's nice value.
func ThreadNice() (int, error) {
	attr, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		return 0, fmt.Errorf("can't read the thread's scheduling attributes (sched_getattr): %w", err)
	}
	return int(attr.Nice), nil
}
