package testutil

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// CPUs returns up to n of the CPUs the process may run on, lowest first
// (all of them when n <= 0).
func CPUs(n int) []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	var cpus []int
	for c := 0; c < 1024 && (n <= 0 || len(cpus) < n); c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus
}

// OnCPU runs fn on the calling goroutine's thread pinned to cpu, then
// gives the thread its CPUs back. On a veth the receiving side processes a
// packet on the CPU that sent it, so tests that steer by CPU, or need
// packets in the order sent, send this way.
func OnCPU(cpu int, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return fmt.Errorf("can't read the thread's CPUs: %w", err)
	}
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return fmt.Errorf("can't pin the thread to CPU %d: %w", cpu, err)
	}
	defer unix.SchedSetaffinity(0, &old)
	return fn()
}
