package testutil

import (
	"errors"
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/internal/testbed"
)

// StrictEnv, when set to 1 (as .ci/run does), turns every skip of this package
// into a failure: CI runs as root on a kernel with every feature we use, so a
// skip there hides a regression.
const StrictEnv = "XDPINGEST_STRICT"

// Skip skips tb with a message that names what is missing, or fails it when
// XDPINGEST_STRICT=1.
func Skip(tb testing.TB, what string) {
	tb.Helper()
	if os.Getenv(StrictEnv) == "1" {
		tb.Fatalf("%s (and %s=1 forbids skipping)", what, StrictEnv)
	}
	tb.Skip(what)
}

// RequireRoot skips tb unless the process is root.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Skip(tb, "needs root: CAP_SYS_ADMIN (namespaces), CAP_NET_ADMIN (links, XDP) and CAP_BPF")
	}
}

// RequireBPF skips tb unless the bpf() syscall is usable (root with CAP_BPF
// and a kernel with BPF).
func RequireBPF(tb testing.TB) {
	tb.Helper()
	RequireRoot(tb)
	// BPF_PROG_LOAD with an empty attribute fails with EINVAL when bpf()
	// exists and we may call it, EPERM without the capability, ENOSYS
	// without BPF in the kernel.
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, 0, 0)
	switch errno {
	case unix.EPERM:
		Skip(tb, "bpf(): operation not permitted: needs CAP_BPF (and CAP_NET_ADMIN)")
	case unix.ENOSYS:
		Skip(tb, "bpf(): the kernel has no BPF syscall (CONFIG_BPF_SYSCALL)")
	}
}

// NewBed makes a test bed for a test and removes it in the test's cleanup,
// also when the test fails. It skips (naming what is missing) without root.
func NewBed(tb testing.TB, cfg testbed.Config) *testbed.Bed {
	tb.Helper()
	RequireRoot(tb)
	b, err := testbed.New(cfg)
	if errors.Is(err, testbed.ErrNoPrivilege) {
		Skip(tb, err.Error())
	}
	if err != nil {
		tb.Fatalf("can't build the test bed: %v", err)
	}
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Errorf("can't remove the test bed: %v", err)
		}
	})
	return b
}

// RequireProgram returns the path of the program name (tcpdump, ethtool,
// ...), or skips tb naming it.
func RequireProgram(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Skip(tb, name+" is not installed (make deps-test installs it)")
	}
	return p
}
