package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/bench/measure"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// A short sweep prints a progress line per run, a table with a block per
// queue count and size, writes a JSON report and charts, and removes its
// bed. (bench/measure's tests check what every path measures.)
func TestCompareShort(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	jsonF, svgF, pngF := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.svg"), filepath.Join(dir, "r.png")
	code, out, errs := runCmd(context.Background(), "compare", "--duration", "300ms", "--reps", "1", "--sizes", "64,512", "--queues", "1",
		"--paths", "xdp-drop,kernel", "--json", jsonF, "--svg", svgF, "--png", pngF)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	t.Logf("\n%s", out)
	requireNoBeds(t, os.Getpid())
	if !strings.Contains(errs, "[4/4] 1 queue(s), 512 bytes, rep 1/1, kernel:") {
		t.Errorf("no progress line for the last run:\n%s", errs)
	}
	for _, want := range []string{"1 queue(s), 64-byte frames", "1 queue(s), 512-byte frames", "xdp-drop", "x kernel"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	b, err := os.ReadFile(jsonF)
	if err != nil {
		t.Fatal(err)
	}
	var r measure.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if !r.Complete || r.Reps != 1 || !slices.Equal(r.Sizes, []int{64, 512}) || len(r.Results) != 4 || len(r.Command) == 0 {
		t.Fatalf("report: %+v", r)
	}
	// bench/measure's tests decode the charts; here they must be there.
	for name, magic := range map[string]string{pngF: "\x89PNG", svgF: "<?xml"} {
		if b, err := os.ReadFile(name); err != nil || !strings.HasPrefix(string(b), magic) {
			t.Errorf("%s: %v, starts %.8q", name, err, b)
		}
	}
}

// An error after the bed was built (a server binary that exits at once)
// ends the sweep with exit 1 and a clear message, removes the bed, and
// still writes what was measured, marked incomplete.
func TestCompareErrorRemovesBed(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	jsonF := filepath.Join(dir, "r.json")
	code, out, errs := runCmd(context.Background(), "compare", "--duration", "100ms", "--reps", "1", "--sizes", "64", "--queues", "1",
		"--paths", "xdp-drop,server", "--xdpingest", "/bin/false", "--json", jsonF)
	if code != exitFailure || !strings.Contains(errs, "xdpingest exited before it was ready") {
		t.Fatalf("exit %d, stderr:\n%s", code, errs)
	}
	requireNoBeds(t, os.Getpid())
	if !strings.Contains(out, "INCOMPLETE") {
		t.Errorf("the table doesn't say it is incomplete:\n%s", out)
	}
	var r measure.Report
	b, err := os.ReadFile(jsonF)
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err != nil || r.Complete || r.Error == "" || len(r.Results) == 0 {
		t.Fatalf("partial report: %v %+v", err, r)
	}
}

// Cancelling the context (what SIGINT does in main) in the middle of a run
// stops the sweep promptly with exit 130 and removes the bed.
func TestCompareCancelledRemovesBed(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		code      int
		out, errs string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errs := runCmd(ctx, "compare", "--duration", "1m", "--reps", "1", "--sizes", "64", "--queues", "2", "--paths", "afxdp,kernel")
		done <- result{code, out, errs}
	}()
	if !testutil.WaitFor(10*time.Second, func() bool { return len(bedsOf(t, os.Getpid())) == 2 }) {
		t.Fatal("no bed after 10 s")
	}
	time.Sleep(500 * time.Millisecond) // generators and receivers running
	cancel()
	select {
	case r := <-done:
		if r.code != exitInterrupted {
			t.Fatalf("exit %d, want %d\n%s%s", r.code, exitInterrupted, r.out, r.errs)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("compare still running 15 s after the cancel")
	}
	requireNoBeds(t, os.Getpid())
}

// Ctrl-C on the command: SIGINT removes the bed and exits 130. SIGKILL
// leaves no chance to clean up; the next run's Sweep removes what it left
// (and the server it ran died with it).
func TestCompareSignals(t *testing.T) {
	requireRoot(t)
	bin := binaries(t)
	start := func() *exec.Cmd {
		cmd := exec.Command(filepath.Join(bin, "pktbench"), "compare", "--duration", "1m", "--reps", "1", "--sizes", "64", "--queues", "1", "--paths", "server")
		cmd.Stderr, cmd.Stdout = &testutil.SyncBuffer{}, &testutil.SyncBuffer{}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		if !testutil.WaitFor(15*time.Second, func() bool { return len(bedsOf(t, cmd.Process.Pid)) == 2 && serverRunning(t) }) {
			t.Fatalf("no bed and server after 15 s: %s", cmd.Stderr)
		}
		return cmd
	}

	cmd := start()
	cmd.Process.Signal(syscall.SIGINT)
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()
	select {
	case <-waitDone:
	case <-time.After(20 * time.Second):
		t.Fatalf("pktbench still running 20 s after SIGINT: %s", cmd.Stderr)
	}
	if code := cmd.ProcessState.ExitCode(); code != exitInterrupted {
		t.Errorf("exit %d after SIGINT, want %d: %s", code, exitInterrupted, cmd.Stderr)
	}
	requireNoBeds(t, cmd.Process.Pid)
	if !testutil.WaitFor(5*time.Second, func() bool { return !serverRunning(t) }) {
		t.Error("xdpingest still runs after pktbench exited")
	}

	cmd = start()
	pid := cmd.Process.Pid
	cmd.Process.Kill()
	cmd.Wait()
	if !testutil.WaitFor(5*time.Second, func() bool { return !serverRunning(t) }) {
		t.Error("xdpingest still runs after pktbench was killed")
	}
	if len(bedsOf(t, pid)) == 0 {
		t.Fatal("SIGKILL left no bed: nothing to sweep")
	}
	removed, err := testbed.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	requireNoBeds(t, pid)
	t.Logf("swept %v", removed)
}

// serverRunning says whether an xdpingest built by this test runs.
func serverRunning(t *testing.T) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.HasPrefix(string(b), filepath.Join(binDir, "xdpingest")+"\x00") {
			return true
		}
	}
	return false
}

// pktbench rx and pktbench gen work as a pair: rx prints a line per
// interval and, at Ctrl-C (a cancelled context), a summary in which every
// sequence number gen sent arrived.
func TestRxGenPair(t *testing.T) {
	requireRoot(t)
	for _, path := range []string{measure.PathAFXDP, measure.PathKernel, measure.PathStdnet, measure.PathDrop} {
		t.Run(path, func(t *testing.T) {
			b := testutil.NewBed(t, testbed.Config{Queues: 2})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out, errs testutil.SyncBuffer
			done := make(chan int, 1)
			go func() {
				done <- run(ctx, []string{"rx", "--path", path, "--netns", b.Rx.Netns, "--iface", b.Rx.Link, "--port", "9100", "--interval", "200ms"}, &out, &errs)
			}()
			if !testutil.WaitFor(10*time.Second, func() bool { return strings.Contains(out.String(), "time") }) {
				t.Fatalf("rx did not start: %s%s", out.String(), errs.String())
			}
			// The afxdp generator's token bucket bursts at most 20 ms of
			// traffic; the live one sends what is due per BPF_PROG_RUN
			// call, which on a loaded machine is a burst of tens of ms.
			const n = 10000
			code, gout, gerrs := runCmd(context.Background(), "gen", "--gen", "afxdp", "--netns", b.Gen.Netns, "--iface", b.Gen.Link,
				"--dst", netip.AddrPortFrom(b.Rx.IPv4, 9100).String(), "--count", fmt.Sprint(n), "--rate", "20000", "--cpus", "0,1")
			if code != 0 {
				t.Fatalf("gen: exit %d\n%s%s", code, gout, gerrs)
			}
			time.Sleep(500 * time.Millisecond)
			cancel()
			if code := <-done; code != 0 {
				t.Fatalf("rx: exit %d\n%s%s", code, out.String(), errs.String())
			}
			o := out.String()
			lines := 0
			sc := bufio.NewScanner(strings.NewReader(o))
			for sc.Scan() {
				if strings.HasSuffix(strings.Fields(sc.Text() + " x")[0], "s") && strings.Contains(sc.Text(), "cpu") {
					lines++
				}
			}
			var got, distinct, streams, missing, dups uint64
			if i := strings.Index(o, "summary: "); i >= 0 {
				fmt.Sscanf(o[i:], "summary: %d packets", &got)
			}
			if i := strings.Index(o, "sequence numbers: "); i >= 0 {
				fmt.Sscanf(o[i:], "sequence numbers: %d distinct in %d stream(s), %d missing below the highest of each, %d duplicates", &distinct, &streams, &missing, &dups)
			}
			t.Logf("%d interval lines, %d of %d packets", lines, got, n)
			// Behaviour, with room for a receiver starved by other
			// processes for longer than its buffers last: everything
			// received is counted once, and almost everything arrives.
			if lines < 2 || got < n*98/100 || got > n {
				t.Fatalf("want interval lines and a summary of about %d packets:\n%s", n, o)
			}
			if path != measure.PathDrop && (distinct != got || streams != 2 || dups != 0) {
				t.Fatalf("sequence numbers: %d distinct in %d streams, %d duplicates, for %d packets:\n%s", distinct, streams, dups, got, o)
			}
		})
	}
}

func TestCompareFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"compare", "--sizes", "64,x"}, `"x" is not a number`},
		{[]string{"compare", "--sizes", "20"}, "frame size 20"},
		{[]string{"compare", "--queues", "0"}, "queue count 0"},
		{[]string{"compare", "--paths", "xdp-drop,bogus"}, `unknown path "bogus"`},
		{[]string{"compare", "--paths", "kernel,kernel"}, "named twice"},
		{[]string{"compare", "--reps", "0"}, "--reps 0"},
		{[]string{"compare", "--gen", "pktgen"}, "unknown generator"},
		{[]string{"compare", "--xdpingest", "/nonexistent/xdpingest"}, "can't use --xdpingest /nonexistent/xdpingest"},
		{[]string{"compare", "--spin", "-1"}, "--spin -1: want 0 or more"},
		{[]string{"compare", "--nap", "2ms"}, "--nap 2ms: want 0 (never nap) to 1ms"},
		{[]string{"compare", "--nap", "-1ns"}, "--nap -1ns: want 0 (never nap) to 1ms"},
		{[]string{"compare", "--sched-slice", "10us"}, "--sched-slice: scheduler slice 10µs: want 0 (the kernel's default) or 100µs to 100ms"},
		{[]string{"compare", "--frames", "1000"}, "--frames 1000: want a power of two"},
		{[]string{"compare", "--worker-nice", "-30"}, "--worker-nice: nice -30: want -20 to 19"},
		// pktbench's old names for xdpingest's knobs say the new one.
		{[]string{"compare", "--slice", "1ms"}, "pktbench compare: --slice is now --sched-slice, as xdpingest names it\n"},
		{[]string{"compare", "-nice=-5"}, "pktbench compare: --nice is now --worker-nice, as xdpingest names it\n"},
		{[]string{"rx", "--iface", "x", "--path", "afxdp", "--max-frame", "9000"}, "--max-frame is now --frame-size, as xdpingest names it: the AF_XDP UMEM frame size, 2048 or 4096"},
		{[]string{"compare", "--max-frame", "9000"}, "flag provided but not defined: -max-frame"},
		{[]string{"rx", "--iface", "x", "--path", "afxdp", "--frame-size", "3000"}, "--frame-size 3000: want 2048 or 4096"},
		{[]string{"compare", "--ring-size", "8192"}, "--ring-size 8192: want a power of two from 64 up to the frames (4096)"},
		{[]string{"rx", "--path", "afxdp", "--iface", "x", "--frames", "32"}, "--frames 32"},
		{[]string{"rx", "--path", "afxdp", "--iface", "x", "--nap", "5ms"}, "--nap 5ms: want 0 (never nap) to 1ms"},
		{[]string{"rx", "--iface", "x"}, "--path and --iface are required"},
		{[]string{"rx", "--iface", "x", "--path", "dpdk"}, `unknown path "dpdk"`},
		{[]string{"rx", "--iface", "x", "--path", "afxdp", "--xdp-mode", "turbo"}, "unknown XDP mode"},
	} {
		code, _, errs := runCmd(context.Background(), c.args...)
		if code != exitUsage || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errs, c.want)
		}
	}
}

// Without --xdpingest, the server path looks next to pktbench and says
// what to do when the binary isn't there.
func TestFindXdpingest(t *testing.T) {
	// The test binary's directory has no xdpingest.
	_, err := findXdpingest("")
	if err == nil || !strings.Contains(err.Error(), "make build") || !strings.Contains(err.Error(), "--xdpingest") {
		t.Fatalf("%v", err)
	}
	if _, err := findXdpingest(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not an executable") {
		t.Fatalf("a directory: %v", err)
	}
}

// Without the xskdrop binary next to pktbench, the afxdp-c paths are
// refused before anything is built, with how to get it.
func TestCReferenceMissing(t *testing.T) {
	for _, args := range [][]string{
		{"compare", "--paths", "afxdp,afxdp-c-walk"},
		{"rx", "--path", "afxdp-c", "--iface", "lo"},
	} {
		code, _, errs := runCmd(context.Background(), args...)
		if code != exitUsage || !strings.Contains(errs, "make build") || strings.Count(errs, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line that names make build", args, code, errs)
		}
	}
}
