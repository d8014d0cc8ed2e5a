package tuning

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// cpuSetSize is how many CPUs unix.CPUSet (the glibc cpu_set_t) can hold.
const cpuSetSize = 1024

// AllowedCPUs returns the CPUs the calling thread may run on
// (sched_getaffinity): what taskset, cgroup cpusets and container runtimes
// left to the process.
func AllowedCPUs() (CPUSet, error) {
	var us unix.CPUSet
	if err := unix.SchedGetaffinity(0, &us); err != nil {
		return CPUSet{}, fmt.Errorf("can't read the allowed CPUs (sched_getaffinity): %w", err)
	}
	var s CPUSet
	for c := range cpuSetSize {
		if us.IsSet(c) {
			s.Add(c)
		}
	}
	return s, nil
}

// PinThread binds the calling OS thread to cpu (sched_setaffinity on the
// thread, not the process). The caller must hold the thread with
// runtime.LockOSThread first, or the pin lands on whatever thread the
// goroutine happens to run on and is lost when the goroutine moves. Before
// unlocking, restore the thread's affinity with UnpinThread, or keep it
// locked until the goroutine exits (the runtime then discards the thread):
// a pinned thread returned to the pool would pin whatever runs on it next.
func PinThread(cpu int) error {
	if cpu < 0 || cpu >= cpuSetSize {
		return fmt.Errorf("can't pin thread to cpu %d: out of range 0-%d", cpu, cpuSetSize-1)
	}
	var us unix.CPUSet
	us.Set(cpu)
	err := unix.SchedSetaffinity(0, &us)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("can't pin thread to cpu %d: %w: grant CAP_SYS_NICE", cpu, err)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("can't pin thread to cpu %d: %w: the CPU is offline or outside the process's allowed set (taskset, cgroup cpuset)", cpu, err)
	default:
		return fmt.Errorf("can't pin thread to cpu %d: %w", cpu, err)
	}
}

// UnpinThread lets the calling OS thread run on every CPU in allowed again
// (for a locked thread handed back to the runtime).
func UnpinThread(allowed CPUSet) error {
	var us unix.CPUSet
	for _, c := range allowed.List() {
		if c < cpuSetSize {
			us.Set(c)
		}
	}
	if err := unix.SchedSetaffinity(0, &us); err != nil {
		return fmt.Errorf("can't restore thread affinity to %s: %w", allowed, err)
	}
	return nil
}
