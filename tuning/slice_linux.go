package tuning

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// The kernel's bounds for a custom slice of a fair-class task
// (sched_setattr's sched_runtime, Linux 6.12+): it clamps anything outside
// to them; CheckSlice refuses it instead, so that what is asked is what runs.
const (
	MinSlice = 100 * time.Microsecond
	MaxSlice = 100 * time.Millisecond
)

// CheckSlice refuses a slice the kernel would: 0 (keep the kernel's) or
// MinSlice to MaxSlice.
func CheckSlice(d time.Duration) error {
	if d == 0 || (d >= MinSlice && d <= MaxSlice) {
		return nil
	}
	return fmt.Errorf("scheduler slice %v: want 0 (the kernel's default) or %v to %v", d, MinSlice, MaxSlice)
}

// Scheduling policies sched_setattr knows by number (sched.h).
const (
	schedOther = 0
	schedBatch = 3

	schedFlagResetOnFork = 0x01
)

// SetThreadSlice asks the scheduler to give the calling OS thread time
// slices of d (EEVDF's custom slice: sched_setattr with sched_runtime on a
// SCHED_OTHER thread), keeping its policy and nice value. The caller holds
// the thread with runtime.LockOSThread, as for PinThread.
//
// Why a receiver wants it: a task with a shorter slice than the one running
// gets an earlier deadline, and the scheduler lets it preempt on wakeup
// (PREEMPT_SHORT) instead of waiting until the running task has used its
// own slice (RUN_TO_PARITY; by default 0.75 ms times 1+log2(CPUs)). A
// receiver that naps between batches shares its core with whatever else
// runs there (ksoftirqd under load); if each wakeup waits out another
// task's slice, the ring overflows meanwhile.
//
// It reports whether the kernel took it: kernels before 6.12 accept the
// call and ignore sched_runtime for fair tasks (read back as 0), and a
// thread under a real-time or idle policy is left alone. d == 0 does
// nothing.
func SetThreadSlice(d time.Duration) (bool, error) {
	if d == 0 {
		return false, nil
	}
	if err := CheckSlice(d); err != nil {
		return false, err
	}
	return setSlice(0, d)
}

// setSlice sets thread tid's slice (0: the calling thread).
func setSlice(tid int, d time.Duration) (bool, error) {
	attr, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return false, fmt.Errorf("can't read the scheduling attributes of thread %d (sched_getattr): %w", tid, err)
	}
	if attr.Policy != schedOther && attr.Policy != schedBatch {
		return false, nil
	}
	attr.Runtime = uint64(d)
	attr.Deadline, attr.Period = 0, 0
	attr.Flags &= schedFlagResetOnFork // keep it; nothing else applies here
	if err := unix.SchedSetAttr(tid, attr, 0); err != nil {
		if errors.Is(err, unix.EPERM) {
			return false, fmt.Errorf("can't set a %v scheduler slice: %w: grant CAP_SYS_NICE", d, err)
		}
		return false, fmt.Errorf("can't set a %v scheduler slice (sched_setattr): %w", d, err)
	}
	got, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return false, fmt.Errorf("can't read the scheduling attributes of thread %d (sched_getattr): %w", tid, err)
	}
	return time.Duration(got.Runtime) == d, nil
}

// ThreadSlice returns the calling thread's slice as the kernel reports it:
// its custom slice, else (Linux 6.12+) the kernel's default; 0 on kernels
// without custom slices.
func ThreadSlice() (time.Duration, error) {
	attr, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		return 0, fmt.Errorf("can't read the thread's scheduling attributes (sched_getattr): %w", err)
	}
	if attr.Policy != schedOther && attr.Policy != schedBatch {
		return 0, nil
	}
	return time.Duration(attr.Runtime), nil
}

// DefaultWorkerSlice is the slice xdpingest's workers run with unless told
// otherwise (and pktbench's receivers, so that it measures what runs): the
// shortest the kernel allows (docs/BENCHMARKS.md has what it saves).
const DefaultWorkerSlice = MinSlice
