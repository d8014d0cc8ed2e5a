package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/xdpingest/xdpingest/internal/completion"
	"github.com/xdpingest/xdpingest/internal/promtext"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// Issue 13, point 6: top's flags and what it refuses, in process.
func TestTopFlags(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:9109":                "http://127.0.0.1:9109/metrics",
		"[2001:db8::1]:9109":            "http://[2001:db8::1]:9109/metrics",
		"http://198.18.0.2:9109/":       "http://198.18.0.2:9109/metrics",
		"https://198.18.0.2/x/metrics":  "https://198.18.0.2/x/metrics",
		"http://198.18.0.2:9109/m?a=b":  "http://198.18.0.2:9109/m?a=b",
		"localhost:9109":                "http://localhost:9109/metrics",
		"http://localhost:9109/metrics": "http://localhost:9109/metrics",
	} {
		got, err := metricsURL(in)
		if err != nil || got != want {
			t.Errorf("--metrics %s: %q, %v; want %q", in, got, err, want)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--metrics", "ftp://198.18.0.2/metrics"}, `invalid --metrics "ftp://198.18.0.2/metrics"`},
		{[]string{"--metrics", "http:///metrics"}, "no host"},
		{[]string{"--interval", "10ms"}, "invalid --interval 10ms: want 100ms or more"},
		{[]string{"--interval", "soon"}, "-interval"},
		{[]string{"127.0.0.1:9109"}, "the address goes in --metrics"},
		{[]string{"--colour"}, "-colour"},
	} {
		code, _, stderr := runCLI(append([]string{"top"}, c.args...)...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("top %q: exit %d, %q; want 2 and %q", c.args, code, stderr, c.want)
		}
	}
	code, _, stderr := runCLI("top", "-h")
	if code != 0 || !strings.Contains(stderr, "q or Ctrl-C quits") || !strings.Contains(stderr, "127.0.0.1:9109") {
		t.Errorf("top -h: exit %d, %q", code, stderr)
	}
	// No server there: --once says so and fails.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	code, _, stderr = runCLI("top", "--once", "--metrics", addr)
	if code != 1 || !strings.Contains(stderr, "can't read http://"+addr+"/metrics") || !strings.Contains(stderr, "connection refused") {
		t.Errorf("top --once without a server: exit %d, %q", code, stderr)
	}
	_, usage, _ := runCLI("help")
	if !strings.Contains(usage, "xdpingest top [--metrics ADDR|URL]") {
		t.Errorf("the usage does not list top:\n%s", usage)
	}
	// The completion script offers top's flags, as bash runs it.
	_, bash, _ := runCLI("completion", "bash")
	got, err := completion.BashComplete(bash, []string{"xdpingest", "top", "--"})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	fs, _ := topFlagSet(io.Discard)
	fs.VisitAll(func(f *flag.Flag) { want = append(want, "--"+f.Name) })
	slices.Sort(got)
	if !slices.Equal(got, want) || len(want) != 4 {
		t.Errorf("xdpingest top --<TAB>: %q, the flag set has %q", got, want)
	}
}

// steadyTraffic sends 1000-byte datagrams to port from the generating namespace,
// rate a second, IPv4 and IPv6 in turn, until the returned stop is called.
// It keeps to its schedule (catching up after a late wake-up), so that
// the rate over any second is close to rate.
func steadyTraffic(t *testing.T, b *testbed.Bed, port uint16, rate int) (stop func()) {
	t.Helper()
	var conns [2]*net.UDPConn
	for i, dst := range []netip.Addr{b.Rx.IPv4, b.Rx.IPv6} {
		if err := b.Gen.Do(func() (err error) {
			conns[i], err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, port)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		payload := make([]byte, 1000)
		start := time.Now()
		for n := 0; ctx.Err() == nil; time.Sleep(time.Millisecond) {
			for due := int(time.Since(start).Seconds() * float64(rate)); n < due; n++ {
				// Errors (an ICMP error while the server is away) don't
				// stop the schedule.
				conns[n%2].Write(payload)
			}
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			conns[0].Close()
			conns[1].Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

// tmuxPane is a shell in a detached tmux session of 80x24 on a server of
// its own.
type tmuxPane struct {
	t    *testing.T
	tmux string
	sock string // the server's socket
}

func newTmuxPane(t *testing.T) *tmuxPane {
	t.Helper()
	// A socket of its own in the test's directory: tmux leaves its socket
	// behind when its server is killed.
	p := &tmuxPane{t: t, tmux: testutil.RequireProgram(t, "tmux"), sock: filepath.Join(t.TempDir(), "tmux")}
	// No configuration file, a plain shell with a short prompt.
	p.run("-f", "/dev/null", "new-session", "-d", "-x", "80", "-y", "24", "-s", "top", "env PS1='$ ' sh")
	t.Cleanup(func() { exec.Command(p.tmux, "-S", p.sock, "kill-server").Run() })
	return p
}

func (p *tmuxPane) run(args ...string) string {
	p.t.Helper()
	out, err := exec.Command(p.tmux, append([]string{"-S", p.sock}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// typeLine types line and Enter into the shell.
func (p *tmuxPane) typeLine(line string) { p.run("send-keys", "-t", "top", "-l", line+"\n") }

// screen is what the pane shows, lines that wrapped joined again (-J), so
// that a line wider than the pane shows as such.
func (p *tmuxPane) screen() []string {
	return strings.Split(strings.TrimRight(p.run("capture-pane", "-p", "-J", "-t", "top"), "\n"), "\n")
}

// waitScreen waits until cond holds for the screen and returns it.
func (p *tmuxPane) waitScreen(what string, cond func([]string) bool) []string {
	p.t.Helper()
	var s []string
	if !testutil.WaitFor(20*time.Second, func() bool { s = p.screen(); return cond(s) }) {
		p.t.Fatalf("gave up waiting (20 s) for %s; the screen:\n%s", what, strings.Join(s, "\n"))
	}
	return s
}

// printed says whether a line of the screen ends in what echo printed
// (after a prompt, perhaps), not in the command typed.
func printed(screen []string, what string) bool {
	for _, l := range screen {
		if strings.HasSuffix(l, what) && !strings.Contains(l, "echo") {
			return true
		}
	}
	return false
}

// topRow returns the fields after prefix of the first screen line that
// starts with it, nil if none does.
func topRow(screen []string, prefix string) []string {
	for _, l := range screen {
		if strings.HasPrefix(l, prefix) {
			return strings.Fields(strings.TrimPrefix(l, prefix))
		}
	}
	return nil
}

// topItem returns the number after name in the XDP lines ("deny 2.00k").
func topItem(screen []string, name string) (string, bool) {
	for _, l := range screen {
		f := strings.Fields(l)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == name {
				return f[i+1], true
			}
		}
	}
	return "", false
}

// topNumber reads a number as the view writes it (1.23k, 45.6M); NaN for
// "-" or anything else.
func topNumber(s string) float64 {
	mult := 1.0
	if i := strings.IndexAny(s, "kMGT"); i > 0 && i == len(s)-1 {
		mult = map[byte]float64{'k': 1e3, 'M': 1e6, 'G': 1e9, 'T': 1e12}[s[i]]
		s = s[:i]
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return math.NaN()
	}
	return v * mult
}

// hasRates says whether the screen is a view with a rate in the "all" row.
func hasRates(screen []string) bool {
	all := topRow(screen, "all ")
	return len(all) > 0 && topNumber(all[0]) > 0
}

// hasSinkDrops says whether the screen has rates and the pcap sink's drops.
func hasSinkDrops(screen []string) bool {
	_, ok := topItem(screen, "no_space")
	return hasRates(screen) && ok
}

// Issue 13, point 6: `xdpingest top` against the running server while
// traffic flows, as an operator sees it: inside tmux (80x24) it draws the
// queues the server has and numbers that agree with the server's
// counters, says so while the server is away and keeps trying, shows the
// new server's rates after a restart, and gives the terminal back on q.
// Without a terminal it writes plain lines; --once writes one view.
func TestTop(t *testing.T) {
	testutil.RequireBPF(t)
	testutil.RequireProgram(t, "tmux")
	b := testutil.NewBed(t, testbed.Config{Queues: 2})
	// IPv6 from the generator is denied: half the traffic shows as the XDP
	// program's deny outcome. The pcap sink's disk is full within a second:
	// it drops what it gets as no_space.
	disk := smallTmpfs(t, "1m")
	args := []string{"--path", "afxdp", "--ports", "9000", "--sink", "discard", "--sink", "pcap:" + disk, "--deny", b.Gen.IPv6.String() + "/128"}
	srv := startServer(t, b, args...)
	const rate = 4000
	steadyTraffic(t, b, 9000, rate)
	topArgs := []string{"top", "--metrics", srv.metrics}

	t.Run("plain", func(t *testing.T) {
		out := &testutil.SyncBuffer{}
		cmd := b.Rx.Command(binary, append(topArgs, "--interval", "300ms")...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		testutil.MustWaitFor(t, 20*time.Second, "two views", func() bool { return strings.Count(out.String(), "since start") >= 2 })
		cmd.Process.Signal(syscall.SIGINT)
		if err := cmd.Wait(); err != nil {
			t.Errorf("top after SIGINT: %v\n%s", err, out.String())
		}
		text := out.String()
		if strings.ContainsRune(text, '\x1b') {
			t.Errorf("escape sequences in plain output:\n%q", text)
		}
		lines := strings.Split(text, "\n")
		for _, l := range lines {
			if utf8.RuneCountInString(l) > 80 {
				t.Errorf("%d columns: %q", utf8.RuneCountInString(l), l)
			}
		}
		// The first scrape has no rates: every view written has them.
		moving := false
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) > 1 && f[0] == "all" && f[1] == "-" {
				t.Errorf("a plain view without rates:\n%s", text)
			}
			moving = moving || len(f) > 1 && f[0] == "all" && topNumber(f[1]) > 0
		}
		if !moving {
			t.Errorf("no view shows the traffic:\n%s", text)
		}
	})

	t.Run("once", func(t *testing.T) {
		out, err := b.Rx.Command(binary, append(topArgs, "--once", "--interval", "500ms")...).CombinedOutput()
		if err != nil {
			t.Fatalf("top --once: %v\n%s", err, out)
		}
		lines := strings.Split(string(out), "\n")
		if n := strings.Count(string(out), "since start"); n != 1 || !hasRates(lines) || strings.ContainsRune(string(out), '\x1b') {
			t.Errorf("top --once wrote %d views:\n%s", n, out)
		}
	})

	t.Run("screen", func(t *testing.T) {
		p := newTmuxPane(t)
		dir := t.TempDir()
		p.typeLine("stty -g > " + filepath.Join(dir, "before") + "; echo BEFORE-TOP")
		p.waitScreen("the shell", func(s []string) bool { return printed(s, "BEFORE-TOP") })
		p.typeLine(strings.Join(append([]string{"ip", "netns", "exec", b.Rx.Netns, binary}, topArgs...), " "))

		checkTopScreen(t, p, srv, "the screen")

		// The server goes away: the view says so and keeps trying.
		if code := srv.stop(syscall.SIGTERM, 10*time.Second); code != 0 {
			t.Errorf("the server exited with %d", code)
		}
		p.waitScreen("the server named as gone", func(s []string) bool {
			v := strings.Join(s, "\n")
			return strings.Contains(v, "can't reach "+srv.metrics) && strings.Contains(v, "connection") && strings.Contains(v, "trying again every 1s")
		})

		// A new server, its counters from zero: the view comes back with
		// its rates, none of them counted across the two servers.
		srv2 := startServer(t, b, args...)
		p.waitScreen("the new server's view", func(s []string) bool {
			return strings.HasPrefix(s[0], "xdpingest ") && strings.Contains(s[0], " up ") && topRow(s, "afxdp 0 ") != nil
		})
		checkTopScreen(t, p, srv2, "the screen after the restart")

		// q: top exits and the terminal is as it was, the shell's screen
		// back, its settings unchanged.
		p.run("send-keys", "-t", "top", "q")
		p.waitScreen("the shell's screen back", func(s []string) bool {
			return printed(s, "BEFORE-TOP") && !strings.Contains(strings.Join(s, "\n"), "RECEIVE")
		})
		p.typeLine("stty -g > " + filepath.Join(dir, "after") + "; echo AFTER-TOP $?")
		p.waitScreen("the shell after top", func(s []string) bool { return printed(s, "AFTER-TOP 0") })
		before, _ := os.ReadFile(filepath.Join(dir, "before"))
		after, _ := os.ReadFile(filepath.Join(dir, "after"))
		if len(before) == 0 || string(before) != string(after) {
			t.Errorf("the terminal's settings before top %q, after %q", before, after)
		}

		// Ctrl-C too.
		p.typeLine("clear; " + strings.Join(append([]string{"ip", "netns", "exec", b.Rx.Netns, binary}, topArgs...), " "))
		p.waitScreen("top again", func(s []string) bool { return strings.HasPrefix(s[0], "xdpingest ") })
		p.run("send-keys", "-t", "top", "C-c")
		// Until it exits, top reads what is typed.
		p.waitScreen("the shell's screen back after Ctrl-C", func(s []string) bool {
			return !strings.Contains(strings.Join(s, "\n"), "RECEIVE") && strings.TrimSpace(s[len(s)-1]) == "$"
		})
		p.typeLine("stty -g > " + filepath.Join(dir, "after-c") + "; echo AFTER-CTRL-C $?")
		p.waitScreen("the shell after Ctrl-C", func(s []string) bool { return printed(s, "AFTER-CTRL-C 0") })
		after, _ = os.ReadFile(filepath.Join(dir, "after-c"))
		if string(before) != string(after) {
			t.Errorf("the terminal's settings before top %q, after Ctrl-C %q", before, after)
		}
	})
}

// checkTopScreen reads top's screen while the server's traffic flows and
// checks it against the server's counters and its rate measured around
// the screen's time. The rates of one second are those of the server's
// stages at different moments of a batch's way through them: a screen
// where they disagree is read again, five times at most, so that what
// fails is a view that never agrees.
func checkTopScreen(t *testing.T, p *tmuxPane, srv *srvProc, what string) {
	t.Helper()
	var problems []string
	for range 5 {
		m1, t1 := srv.scrape(), time.Now()
		p.waitScreen(what+" with rates", hasRates)
		time.Sleep(1500 * time.Millisecond)
		screen := p.waitScreen(what+" with rates and the pcap sink's drops", hasSinkDrops)
		time.Sleep(500 * time.Millisecond)
		m2, t2 := srv.scrape(), time.Now()
		rate := (sum(m2, "xdpingest_rx_packets_total") - sum(m1, "xdpingest_rx_packets_total")) / t2.Sub(t1).Seconds()
		t.Logf("%s, with the server at %.0f datagrams/s:\n%s", what, rate, strings.Join(screen, "\n"))
		if problems = topScreenProblems(screen, m2, rate); len(problems) == 0 {
			return
		}
		t.Logf("read again: %s", strings.Join(problems, "; "))
	}
	t.Errorf("%s: %s", what, strings.Join(problems, "; "))
}

// topScreenProblems checks a screen of top against the server's counters
// m, read after it, and the server's rate around it.
func topScreenProblems(screen []string, m promtext.Samples, serverRate float64) (problems []string) {
	t := problemList{&problems}
	if len(screen) > 24 {
		t.Errorf("%d lines on a 24-line pane", len(screen))
	}
	for _, l := range screen {
		if n := utf8.RuneCountInString(l); n > 80 {
			t.Errorf("a line of %d columns: %q", n, l)
		}
	}
	if !strings.HasPrefix(screen[0], "xdpingest ") || !strings.Contains(screen[0], "127.0.0.1:9109") {
		t.Errorf("header %q", screen[0])
	}
	// A row for each receiver the server has.
	for _, s := range m.Series("xdpingest_queue_info") {
		if topRow(screen, s.Labels["path"]+" "+s.Labels["queue"]+" ") == nil {
			t.Errorf("no row for the server's %s queue %s", s.Labels["path"], s.Labels["queue"])
		}
	}
	all := topRow(screen, "all ")
	pps, bps := topNumber(all[0]), topNumber(all[1])
	// The sender keeps its rate: top's, over its last second, is the
	// server's over the two seconds around it, to within what a busy
	// machine's scheduling changes.
	if !(pps > serverRate/2 && pps < serverRate*2) {
		t.Errorf("top shows %s datagrams/s, the server's counters %.0f/s", all[0], serverRate)
	}
	// Exact relations within one pair of scrapes: 1000-byte payloads, so
	// 8000 bits each; the sink writes what the queues deliver; the
	// program denies the IPv6 half.
	if math.Abs(bps-8000*pps) > 0.015*bps {
		t.Errorf("all: %s datagrams/s of 1000 bytes but %s bit/s", all[0], all[1])
	}
	if sink := topRow(screen, "discard "); sink == nil || math.Abs(topNumber(sink[0])-pps) > 0.15*pps {
		t.Errorf("the discard sink writes %q, the queues deliver %s/s", sink, all[0])
	}
	// The pcap sink on a full disk: what it writes and drops (no_space) is
	// what it is offered, and its conn column is the server's gauge.
	pcap := topRow(screen, "pcap:")
	if len(pcap) < 7 || pcap[5] != "no_space" {
		t.Errorf("the pcap sink's row: %q, want its drops by reason", pcap)
	} else {
		if d := topNumber(pcap[1]) + topNumber(pcap[6]); math.Abs(d-pps) > 0.2*pps {
			t.Errorf("the pcap sink writes %s/s and drops %s/s, the queues deliver %s/s", pcap[1], pcap[6], all[0])
		}
		up := map[bool]string{true: "up", false: "DOWN"}[sum(m, "xdpingest_sink_connected", `sink="pcap:`) == 1]
		if pcap[4] != up {
			t.Errorf("the pcap sink's conn column %q, the server's gauge says %s", pcap[4], up)
		}
	}
	deny, ok1 := topItem(screen, "deny")
	redirect, ok2 := topItem(screen, "redirect")
	if !ok1 || !ok2 || math.Abs(topNumber(deny)-topNumber(redirect)) > 0.15*topNumber(redirect) || math.Abs(topNumber(redirect)-pps) > 0.15*pps {
		t.Errorf("XDP redirect %q, deny %q; the queues deliver %s/s", redirect, deny, all[0])
	}
	// What the view says was dropped since the start, the server counted
	// (m was read after the screen: it may have counted more since).
	counters := map[string]string{
		"ring_full":  "xdpingest_afxdp_rx_ring_full_total",
		"rx_dropped": "xdpingest_afxdp_rx_dropped_total",
		"overflows":  "xdpingest_kernel_socket_overflows_total",
		"malformed":  "xdpingest_rx_malformed_total",
	}
	tail := screen[len(screen)-1]
	if list, ok := strings.CutPrefix(tail, "since start, dropped: "); ok {
		for _, item := range strings.Split(strings.ReplaceAll(list, "sinks ", ""), ", ") {
			name, _, _ := strings.Cut(item, " ")
			var n float64
			if c, ok := counters[name]; ok {
				n = sum(m, c)
			} else {
				n = sum(m, "xdpingest_sink_dropped_total", `reason="`+name+`"`)
			}
			if n == 0 && !strings.HasSuffix(name, "..") {
				t.Errorf("the view says %q since start; the server counts no %s", tail, name)
			}
		}
	} else if tail != "since start: nothing dropped" {
		t.Errorf("last line %q", tail)
	}
	return problems
}

// problemList collects what topScreenProblems finds, as t.Errorf would.
type problemList struct{ list *[]string }

func (p problemList) Errorf(format string, args ...any) {
	*p.list = append(*p.list, fmt.Sprintf(format, args...))
}
