package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/tuning"
	"github.com/xdpingest/xdpingest/tuning/tuningtest"
)

// childEnv makes the test binary run nictune itself (see TestMain), as a
// second process for the lock tests.
const childEnv = "NICTUNE_TEST_CHILD"

// TestMain runs the test binary as nictune when childEnv is set: the
// arguments are nictune's, /proc and /sys come from --proc and --sys (a
// fake tree the parent made), ethtool is a fake eth1 like newFakeHost's. Its
// first set operation writes "paused" to descriptor 3 and waits until stdin
// is closed, so that the parent can act while it is half-way through an
// apply, holding the lock.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "" {
		os.Exit(m.Run())
	}
	et := tuningtest.NewEthtool(map[string]*tuningtest.Device{"eth1": tuningtest.NIC("mlx5_core")})
	var once sync.Once
	et.BeforeSet = func(string, string) {
		once.Do(func() {
			f := os.NewFile(3, "paused")
			f.WriteString("paused\n")
			f.Close()
			io.Copy(io.Discard, os.Stdin)
		})
	}
	os.Exit(run(context.Background(), os.Args[1:], env{stdout: os.Stdout, stderr: os.Stderr,
		openEthtool: func() (tuning.Ethtool, error) { return et, nil }}))
}

type pausedApply struct {
	cmd         *exec.Cmd
	resume      io.WriteCloser
	stdout, err bytes.Buffer
	waited      bool
	code        int
}

// startPausedApply runs `nictune apply --profile profile` on h's tree in
// another process and returns once it has saved the state file and stopped
// before its first change.
func startPausedApply(t *testing.T, h *fakeHost, profile string) *pausedApply {
	t.Helper()
	roots := h.tree.Roots()
	p := &pausedApply{cmd: exec.Command(os.Args[0], "apply", "--profile", profile, "--state", h.state, "--proc", roots.Proc, "--sys", roots.Sys, "eth1")}
	p.cmd.Env = append(os.Environ(), childEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.err
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	p.cmd.ExtraFiles = []*os.File{pw}
	if p.resume, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.wait()
	})
	line := make(chan string, 1)
	go func() {
		b := make([]byte, 16)
		n, _ := pr.Read(b)
		line <- string(b[:n])
	}()
	select {
	case l := <-line:
		if l != "paused\n" {
			p.wait()
			t.Fatalf("the other nictune ended (exit %d) before its first change:\n%s%s", p.code, p.stdout.String(), p.err.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the other nictune did not reach its first change within 30s")
	}
	return p
}

func (p *pausedApply) wait() int {
	if !p.waited {
		p.waited = true
		p.resume.Close()
		err := p.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			p.code = ee.ExitCode()
		default:
			p.code = -1
		}
	}
	return p.code
}

// profiles for the two processes: they share busy_poll, and each has a
// setting of its own.
func lockProfiles(t *testing.T) (other, mine string) {
	dir := t.TempDir()
	other, mine = filepath.Join(dir, "other.yaml"), filepath.Join(dir, "mine.yaml")
	os.WriteFile(other, []byte("coalesce: {rx-usecs: 0}\nsysctl: {net.core.busy_poll: 50}\n"), 0o644)
	os.WriteFile(mine, []byte("sysctl: {net.core.busy_poll: 100, net.core.rmem_max: 67108864}\nnapi: {napi_defer_hard_irqs: 2}\n"), 0o644)
	return other, mine
}

// Defect 11: a nictune apply while another process is applying through the
// same state file is refused, naming the file and the other's pid, and
// changes nothing; the revert afterwards restores every original value.
// Without the lock, the second apply ran and the first one's final state
// file dropped its entries, so revert left rmem_max and
// napi_defer_hard_irqs tuned.
func TestConcurrentApplyTwoProcesses(t *testing.T) {
	h := newFakeHost(t)
	other, mine := lockProfiles(t)
	before := h.values()

	p := startPausedApply(t, h, other)
	r := nictune(t, h.env, "apply", "--profile", mine, "--state", h.state, "eth1")
	if r.code != exitFailed {
		t.Errorf("apply beside a running apply: exit %d, want 1:\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"is locked by pid " + fmt.Sprint(p.cmd.Process.Pid), h.state} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("refusal lacks %q: %s", want, r.stderr)
		}
	}
	if got := h.tree.SysctlValue("net.core.rmem_max"); got != tuningtest.DefaultSysctls["net.core.rmem_max"] {
		t.Errorf("the refused apply changed rmem_max to %s", got)
	}
	if code := p.wait(); code != exitOK {
		t.Fatalf("the other apply: exit %d:\n%s%s", code, p.stdout.String(), p.err.String())
	}
	if got := h.tree.SysctlValue("net.core.busy_poll"); got != "50" {
		t.Errorf("busy_poll %s after the other apply, want 50", got)
	}

	r = nictune(t, h.env, "revert", "--state", h.state, "eth1")
	if r.code != exitOK {
		t.Fatalf("revert exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := h.values(); got != before {
		t.Errorf("after both applies and a revert:\n got %s\nwant %s", got, before)
	}
	if _, err := os.Stat(h.state + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file left behind: %v", err)
	}
}

// A nictune revert while another process is applying is refused too, and
// changes nothing: it would restore values under the apply's feet.
func TestRevertBesideApplyTwoProcesses(t *testing.T) {
	h := newFakeHost(t)
	other, _ := lockProfiles(t)
	before := h.values()
	p := startPausedApply(t, h, other)
	r := nictune(t, h.env, "revert", "--state", h.state, "eth1")
	if r.code != exitFailed || !strings.Contains(r.stderr, "is locked by pid "+fmt.Sprint(p.cmd.Process.Pid)) {
		t.Errorf("revert beside a running apply: exit %d, want 1 and the holder:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := tuning.LoadState(h.state); err != nil {
		t.Errorf("the refused revert touched the state file: %v", err)
	}
	if code := p.wait(); code != exitOK {
		t.Fatalf("the other apply: exit %d:\n%s%s", code, p.stdout.String(), p.err.String())
	}
	if r := nictune(t, h.env, "revert", "--state", h.state, "eth1"); r.code != exitOK || h.values() != before {
		t.Errorf("revert after the apply: exit %d, values %s, want %s:\n%s%s", r.code, h.values(), before, r.stdout, r.stderr)
	}
}

// A process killed half-way through an apply leaves its state file (and its
// lock file) but not the lock: the next apply goes ahead at once, keeps the
// saved originals as for any apply not yet reverted, and the revert
// restores them.
func TestKilledApplyDoesNotBlock(t *testing.T) {
	h := newFakeHost(t)
	other, mine := lockProfiles(t)
	before := h.values()

	p := startPausedApply(t, h, other)
	p.cmd.Process.Kill()
	p.wait()
	if _, err := os.Stat(h.state + ".lock"); err != nil {
		t.Fatalf("the killed apply left no lock file to test with: %v", err)
	}
	if _, err := tuning.LoadState(h.state); err != nil {
		t.Fatalf("the killed apply left no state file to test with: %v", err)
	}

	done := make(chan result, 1)
	go func() { done <- nictune(t, h.env, "apply", "--profile", mine, "--state", h.state, "eth1") }()
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("apply after a killed apply did not finish within 30s")
	}
	if r.code != exitOK {
		t.Fatalf("apply after a killed apply: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = nictune(t, h.env, "revert", "--state", h.state, "eth1")
	if r.code != exitOK {
		t.Fatalf("revert exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := h.values(); got != before {
		t.Errorf("after a killed apply, an apply and a revert:\n got %s\nwant %s", got, before)
	}
	if _, err := os.Stat(h.state + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file left behind: %v", err)
	}
}
