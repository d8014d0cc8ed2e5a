package tuning

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Roots says where procfs and sysfs are mounted. Every reader and writer in
// this package goes through it, so that tests point it at a fake tree. Empty
// fields mean the real mounts, /proc and /sys (see [DefaultRoots]).
//
// sysfs shows the network devices of the namespace that mounted it: a process
// that entered another network namespace with setns(2) still sees the host's
// /sys/class/net. `ip netns exec` remounts /sys, which is why nictune runs
// under it for devices in another namespace.
type Roots struct {
	Proc string
	Sys  string
}

// DefaultRoots returns the real mounts, {"/proc", "/sys"}.
func DefaultRoots() Roots { return Roots{Proc: "/proc", Sys: "/sys"} }

func (r Roots) norm() Roots {
	if r.Proc == "" {
		r.Proc = "/proc"
	}
	if r.Sys == "" {
		r.Sys = "/sys"
	}
	return r
}

func (r Roots) proc(elem ...string) string {
	return filepath.Join(append([]string{r.norm().Proc}, elem...)...)
}

func (r Roots) sys(elem ...string) string {
	return filepath.Join(append([]string{r.norm().Sys}, elem...)...)
}

// readTrim reads a small kernel file and trims the trailing newline.
func readTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func readInt(path string) (int, error) {
	s, err := readTrim(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("can't parse %s: %q is not an integer", path, s)
	}
	return n, nil
}

func readCPUList(path string) (CPUSet, error) {
	s, err := readTrim(path)
	if err != nil {
		return CPUSet{}, err
	}
	set, err := ParseCPUList(s)
	if err != nil {
		return CPUSet{}, fmt.Errorf("can't parse %s: %w", path, err)
	}
	return set, nil
}

// writeKernelFile writes v to an existing kernel file. It never creates the
// file: a knob that does not exist must fail, also on a fake tree.
func writeKernelFile(path, v string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(v + "\n")
	cerr := f.Close()
	return errors.Join(werr, cerr)
}
