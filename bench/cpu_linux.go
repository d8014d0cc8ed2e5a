//go:build linux

package bench

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Clock ids of another thread's or process's CPU time, as glibc's
// pthread_getcpuclockid and clock_getcpuclockid make them
// (include/linux/posix-timers.h: MAKE_THREAD_CPUCLOCK, MAKE_PROCESS_CPUCLOCK
// with CPUCLOCK_SCHED): nanosecond resolution, unlike the ticks of
// /proc/<pid>/stat.
const (
	cpuClockSched  = 2
	cpuClockThread = 4
)

// ThreadCPU returns the CPU time (user and system) a thread of this process
// has used, by its thread id (unix.Gettid on that thread). It works from any
// thread of the process.
func ThreadCPU(tid int) (time.Duration, error) {
	return clockCPU(int32(^uint32(tid)<<3 | cpuClockThread | cpuClockSched))
}

// ProcessCPU returns the CPU time (user and system) all threads of a
// process have used.
func ProcessCPU(pid int) (time.Duration, error) {
	return clockCPU(int32(^uint32(pid)<<3 | cpuClockSched))
}

func clockCPU(id int32) (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(id, &ts); err != nil {
		return 0, fmt.Errorf("can't read a CPU clock: %w", err)
	}
	return time.Duration(ts.Nano()), nil
}
