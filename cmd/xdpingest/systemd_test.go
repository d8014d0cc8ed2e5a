package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// notifyMsg is one datagram the server sent to the notify socket.
type notifyMsg struct {
	at    time.Time
	lines []string
}

func (m notifyMsg) has(line string) bool {
	for _, l := range m.lines {
		if l == line {
			return true
		}
	}
	return false
}

func (m notifyMsg) field(key string) string {
	for _, l := range m.lines {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v
		}
	}
	return ""
}

// notifySocket is what systemd listens on for a Type=notify service: a
// unixgram socket, here a path (reachable from the server's network
// namespace, where an abstract name would not be).
type notifySocket struct {
	path string
	conn *net.UnixConn
	// onReady runs in the reading goroutine as READY=1 arrives, before
	// the next message is read.
	onReady func()

	mu   sync.Mutex
	msgs []notifyMsg
	done chan struct{}
}

func listenNotify(t *testing.T, onReady func()) *notifySocket {
	t.Helper()
	return listenNotifyAt(t, filepath.Join(t.TempDir(), "notify"), onReady)
}

// listenNotifyAt is listenNotify on the socket path.
func listenNotifyAt(t *testing.T, path string, onReady func()) *notifySocket {
	t.Helper()
	n := &notifySocket{path: path, onReady: onReady, done: make(chan struct{})}
	var err error
	n.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(n.done)
		buf := make([]byte, 8192)
		for {
			k, err := n.conn.Read(buf)
			if err != nil {
				return
			}
			m := notifyMsg{at: time.Now(), lines: strings.Split(strings.TrimSuffix(string(buf[:k]), "\n"), "\n")}
			if m.has("READY=1") && n.onReady != nil {
				n.onReady()
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, m)
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() { n.conn.Close(); <-n.done })
	return n
}

// since returns the messages that arrived at or after t.
func (n *notifySocket) since(t time.Time) []notifyMsg {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []notifyMsg
	for _, m := range n.msgs {
		if !m.at.Before(t) {
			out = append(out, m)
		}
	}
	return out
}

// wait waits for a message with line, arrived at or after from.
func (n *notifySocket) wait(t *testing.T, line string, from time.Time, within time.Duration) notifyMsg {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, m := range n.since(from) {
			if m.has(line) {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s from the server within %v; it sent:\n%s", line, within, n.dump(from))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (n *notifySocket) dump(from time.Time) string {
	var b strings.Builder
	for _, m := range n.since(from) {
		fmt.Fprintf(&b, "  %s %q\n", m.at.Format("15:04:05.000"), m.lines)
	}
	return b.String()
}

func count(msgs []notifyMsg, line string) int {
	k := 0
	for _, m := range msgs {
		if m.has(line) {
			k++
		}
	}
	return k
}

// Issue 13, point 1: the server as a systemd Type=notify service, through
// a NOTIFY_SOCKET the test listens on, with WatchdogSec=2s. READY=1 comes
// once, when /readyz already says ready; WATCHDOG=1 keeps coming while the
// workers make progress and stops once one is stuck (the NATS sink stalls
// under --on-full block), while STATUS= goes on saying why; SIGTERM
// brings STOPPING=1 with the drain's time.
func TestSystemdNotify(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{MTU: 1600})
	client := rxClient(b)
	get := func(path string) (int, string) {
		resp, err := client.Get("http://127.0.0.1:9109" + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(body))
	}
	var readyz int
	notify := listenNotify(t, func() { readyz, _ = get("/readyz") })
	const watchdog = 2 * time.Second
	// The server inherits these through ip netns exec.
	t.Setenv("NOTIFY_SOCKET", notify.path)
	t.Setenv("WATCHDOG_USEC", fmt.Sprint(watchdog.Microseconds()))

	ns := startJetStream(t, 0, t.TempDir())
	proxy := newTCPProxy(t, b, fmt.Sprintf("127.0.0.1:%d", jetStreamPort(ns)))
	url := fmt.Sprintf("nats://%s/ingest.sd?stream=SD&max_inflight=64&max_wait=60s", proxy.Addr())
	start := time.Now()
	srv := startServer(t, b, "--ports", "9000", "--on-full", "block", "--drain-timeout", "2s", "--queue-mb", "1", "--sink", url)

	// Ready: once, with /readyz saying so when it came.
	ready := notify.wait(t, "READY=1", start, 10*time.Second)
	if readyz != http.StatusOK {
		t.Errorf("/readyz said %d when READY=1 arrived", readyz)
	}
	if st := ready.field("STATUS"); !strings.Contains(st, "receiving on "+b.Rx.Link) {
		t.Errorf("STATUS with READY=1: %q", st)
	}
	if !strings.Contains(srv.log.String(), "told systemd the server is ready") {
		t.Errorf("no log line for READY=1")
	}

	// Healthy, with traffic: fed at half the interval.
	snd := newSender(t, b, 9000)
	const warm = 2000
	if err := paced(0, warm, 256, snd.send, func() uint64 { return uint64(sum(srv.scrape(), "xdpingest_sink_written_total")) }); err != nil {
		t.Fatal(err)
	}
	healthy := time.Now()
	time.Sleep(2*watchdog + watchdog/4)
	if n := count(notify.since(healthy), "WATCHDOG=1"); n < 3 {
		t.Fatalf("%d WATCHDOG=1 in %v while healthy; want one every %v:\n%s", n, 2*watchdog+watchdog/4, watchdog/2, notify.dump(healthy))
	}
	if n := count(notify.since(start), "READY=1"); n != 1 {
		t.Errorf("READY=1 sent %d times", n)
	}

	// Stuck: the sink stalls, the worker waits on its full queue.
	proxy.stall()
	stop := make(chan struct{})
	sending := make(chan struct{})
	go func() {
		defer close(sending)
		end := time.Now().Add(60 * time.Second)
		for i := uint64(warm); i < bench.MaxSized && time.Now().Before(end); i++ {
			select {
			case <-stop:
				return
			default:
			}
			snd.send(i)
			if i%64 == 0 {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	defer func() { close(stop); <-sending }()
	var stuckAt time.Time
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := get("/healthz")
		if code == http.StatusServiceUnavailable && strings.Contains(body, "stuck") {
			stuckAt = time.Now()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz %d %q 20 s into the stall; want a stuck worker", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The loop reads the same health as /healthz: by its next tick it
	// stops feeding. Give that tick and the datagram in flight a margin.
	quiet := stuckAt.Add(watchdog/2 + watchdog/4)
	time.Sleep(time.Until(quiet.Add(2 * watchdog)))
	after := notify.since(quiet)
	if n := count(after, "WATCHDOG=1"); n != 0 {
		t.Errorf("%d WATCHDOG=1 after a worker was stuck (/healthz said so at %s):\n%s", n, stuckAt.Format("15:04:05.000"), notify.dump(stuckAt.Add(-watchdog)))
	}
	var stuckStatus int
	for _, m := range after {
		if st := m.field("STATUS"); strings.HasPrefix(st, "unhealthy") && strings.Contains(st, "stuck") {
			stuckStatus++
		}
	}
	if stuckStatus < 2 {
		t.Errorf("%d STATUS= lines naming the stuck worker in %v; want one every %v:\n%s", stuckStatus, 2*watchdog, watchdog/2, notify.dump(stuckAt))
	}
	if !strings.Contains(srv.log.String(), "systemd watchdog no longer fed") {
		t.Errorf("no log line saying the watchdog stopped")
	}

	// SIGTERM: STOPPING=1, with the drain's time (2 s) and 2 s more.
	term := time.Now()
	srv.cmd.Process.Signal(syscall.SIGTERM)
	stopping := notify.wait(t, "STOPPING=1", term, 5*time.Second)
	if got := stopping.field("EXTEND_TIMEOUT_USEC"); got != "4000000" {
		t.Errorf("EXTEND_TIMEOUT_USEC=%q with STOPPING=1; want 4000000 (--drain-timeout 2s + 2s)", got)
	}
	select {
	case <-srv.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("still running 15 s after SIGTERM:\n%s", srv.log.String())
	}
	if n := count(notify.since(stopping.at.Add(time.Nanosecond)), "WATCHDOG=1"); n != 0 {
		t.Errorf("%d WATCHDOG=1 after STOPPING=1", n)
	}
}

// unitSettings reads deploy/xdpingest.service: each key's values, in
// order (a key given twice keeps both, as systemd does for lists).
func unitSettings(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/xdpingest.service")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "[") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("deploy/xdpingest.service: %q is not KEY=VALUE", l)
		}
		out[k] = append(out[k], v)
	}
	return out
}

// syscallSet expands a SystemCallFilter= list with systemd-analyze
// syscall-filter, groups within groups included.
func syscallSet(t *testing.T, entries []string) map[string]bool {
	t.Helper()
	set := map[string]bool{}
	var add func(string)
	add = func(e string) {
		if !strings.HasPrefix(e, "@") {
			set[e] = true
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "systemd-analyze", "syscall-filter", e).Output()
		if err != nil {
			t.Fatalf("systemd-analyze syscall-filter %s: %v", e, err)
		}
		for _, l := range strings.Split(string(out), "\n")[1:] { // the first line is the group's name
			l = strings.TrimSpace(l)
			if l != "" && !strings.HasPrefix(l, "#") && l != e {
				add(l)
			}
		}
	}
	for _, e := range entries {
		if strings.HasPrefix(e, "~") || strings.Contains(e, ":") {
			t.Fatalf("SystemCallFilter=%s: this test reads only allow lists without errno", e)
		}
		add(e)
	}
	return set
}

// Issue 13, point 1: the server runs as deploy/xdpingest.service runs it,
// on the bed, and inside the unit's limits. systemd can't run here (it is
// not PID 1, and booting one would take over the machine's /tmp, /dev and
// sysctls), so its settings are applied or checked one by one, read from
// the unit file: user nobody with exactly the unit's capabilities
// (ambient, bounding) and no_new_privs (setpriv), its environment, a
// NOTIFY_SOCKET with the unit's watchdog; then, from an strace of the
// whole run (traffic to a pcap and a source=original UDP sink, a SIGHUP
// reload, SIGTERM), every system call is in SystemCallFilter=, every
// socket family in RestrictAddressFamilies=, no memory is made writable
// and executable (MemoryDenyWriteExecute=), nothing is opened for writing
// but the sink's directory (ProtectSystem=strict, ProtectKernelTunables=),
// no device (PrivateDevices=), no real-time policy (RestrictRealtime=), no
// namespace (RestrictNamespaces=). The server must run AF_XDP in native
// mode, with no warning but the one about not being root. LimitMEMLOCK=
// is not applied (raising a hard limit needs CAP_SYS_RESOURCE, which the
// test may lack): the server keeps the test's, no higher than infinity.
func TestSystemdUnitSandbox(t *testing.T) {
	testutil.RequireBPF(t)
	strace := testutil.RequireProgram(t, "strace")
	setpriv := testutil.RequireProgram(t, "setpriv")
	testutil.RequireProgram(t, "systemd-analyze")
	unit := unitSettings(t)
	setting := func(key string) string { return strings.Join(unit[key], " ") }
	var caps []string
	for _, c := range strings.Fields(setting("AmbientCapabilities")) {
		caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	if setting("AmbientCapabilities") != setting("CapabilityBoundingSet") || len(caps) == 0 {
		t.Fatalf("AmbientCapabilities %q and CapabilityBoundingSet %q differ", setting("AmbientCapabilities"), setting("CapabilityBoundingSet"))
	}
	capList := "-all," + strings.Join(caps, ",")
	allowed := syscallSet(t, strings.Fields(setting("SystemCallFilter")))
	families := map[string]bool{}
	for _, f := range strings.Fields(setting("RestrictAddressFamilies")) {
		families[f] = true
	}
	if setting("NoNewPrivileges") != "yes" || setting("Type") != "notify" {
		t.Fatalf("NoNewPrivileges=%q, Type=%q: this test runs the server as NoNewPrivileges=yes and Type=notify", setting("NoNewPrivileges"), setting("Type"))
	}
	watchdog, err := time.ParseDuration(setting("WatchdogSec"))
	if err != nil {
		t.Fatalf("WatchdogSec=%q: %v", setting("WatchdogSec"), err)
	}

	// A directory user nobody can read (the binary, the config, the
	// notify socket) and write (the captures).
	dir, err := os.MkdirTemp("", "xdpingest-sandbox")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	capDir := filepath.Join(dir, "cap")
	bin := filepath.Join(dir, "xdpingest")
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(capDir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(capDir, 0o777); err != nil { // whatever the umask
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", binary, bin).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	notify := listenNotifyAt(t, filepath.Join(dir, "notify"), nil)
	if err := os.Chmod(notify.path, 0o777); err != nil {
		t.Fatal(err)
	}
	env := []string{"GOTRACEBACK=crash"}
	for _, e := range unit["Environment"] {
		if e != "GOTRACEBACK=crash" {
			t.Fatalf("Environment=%s: the test passes only GOTRACEBACK=crash", e)
		}
	}
	env = append(env, "NOTIFY_SOCKET="+notify.path, fmt.Sprintf("WATCHDOG_USEC=%d", watchdog.Microseconds()))

	b := testutil.NewBed(t, testbed.Config{MTU: 1600})
	cfg := filepath.Join(dir, "xdpingest.yaml")
	writeCfg := func(ports string) {
		// The sender's datagrams come from both families: the relay needs
		// a collector address in each to keep their sources.
		c := fmt.Sprintf("iface: %s\nports: %q\nsinks: [\"pcap:%s\", \"udp://%s,%s?source=original\"]\nmetrics_addr: 127.0.0.1:9109\nlog_format: json\n",
			b.Rx.Link, ports, capDir, netip.AddrPortFrom(b.Gen.IPv4, 9999), netip.AddrPortFrom(b.Gen.IPv6, 9999))
		if err := os.WriteFile(cfg, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("9000")
	trace := filepath.Join(t.TempDir(), "trace")
	log := &testutil.SyncBuffer{}
	args := []string{"-f", "-qq", "-o", trace, "--",
		setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=" + capList, "--ambient-caps=" + capList,
		"--bounding-set=" + capList, "--no-new-privs", "--", "env", "-i"}
	args = append(append(args, env...), bin, "run", "--config", cfg)
	cmd := b.Rx.Command(strace, args...)
	cmd.Stdout, cmd.Stderr = log, log
	// Killing strace alone would detach the server, which would go on
	// running with the output pipes open, and Wait would wait for them
	// forever: the cleanup kills the whole group (strace, the server),
	// and WaitDelay bounds the wait for the pipes anyway.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	srv := &srvProc{t: t, bed: b, cmd: cmd, log: log, metrics: "127.0.0.1:9109", done: done, client: rxClient(b)}
	go func() {
		cmd.Wait()
		srv.exit = cmd.ProcessState.ExitCode()
		close(done)
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Errorf("strace and the server (process group %d) still running 10 s after SIGKILL", cmd.Process.Pid)
			}
		}
		if t.Failed() {
			t.Logf("xdpingest output:\n%s", log.String())
		}
	})
	waitReady(t, srv)
	notify.wait(t, "READY=1", start, 10*time.Second)
	// The server itself, for signals: cmd.Process is strace (ip netns
	// exec execs it), and its child became setpriv, env, then the server.
	pid := childRunning(cmd.Process.Pid, bin)
	if pid == 0 {
		t.Fatalf("no process %s under strace (pid %d)", bin, cmd.Process.Pid)
	}

	snd := newSender(t, b, 9000)
	const n = 1000
	if err := paced(0, n, 256, snd.send, func() uint64 { return uint64(sum(srv.scrape(), "xdpingest_sink_written_total")) / 2 }); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for sum(srv.scrape(), "xdpingest_sink_written_total") < 2*n {
		if time.Now().After(deadline) {
			var drops []string
			for k, v := range srv.scrape() {
				if strings.HasPrefix(k, "xdpingest_sink_dropped_total") && v > 0 {
					drops = append(drops, fmt.Sprintf("%s %v", k, v))
				}
			}
			slices.Sort(drops)
			t.Fatalf("after 10 s the two sinks wrote %v of %d; drops: %v", sum(srv.scrape(), "xdpingest_sink_written_total"), 2*n, drops)
		}
		time.Sleep(20 * time.Millisecond)
	}
	writeCfg("9000,9001")
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP to %d: %v", pid, err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(log.String(), "SIGHUP: reloaded") {
		if time.Now().After(deadline) {
			t.Fatal("no \"SIGHUP: reloaded\" in the log 10 s after SIGHUP")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopping := time.Now()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM to %d: %v", pid, err)
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("still running 15 s after SIGTERM")
	}
	if code := srv.exit; code != 0 {
		t.Errorf("exit status %d", code)
	}
	notify.wait(t, "STOPPING=1", stopping, time.Second)

	// What it did with the capabilities it had.
	started := false
	for _, l := range strings.Split(log.String(), "\n") {
		switch {
		case strings.Contains(l, `"msg":"xdpingest started"`):
			started = true
			if !strings.Contains(l, `"path":"afxdp+kernel"`) || !strings.Contains(l, `"xdp_mode":"native"`) {
				t.Errorf("with the unit's capabilities the server started without AF_XDP or native XDP: %s", l)
			}
		case strings.Contains(l, `"level":"WARN"`) && !strings.Contains(l, "not running as root"), strings.Contains(l, `"level":"ERROR"`):
			t.Errorf("with the unit's capabilities: %s", l)
		}
	}
	if !started {
		t.Error("no \"xdpingest started\" line in the log")
	}
	// The captures, written by the service's user.
	caps2, _ := filepath.Glob(filepath.Join(capDir, "*.pcap*"))
	if len(caps2) == 0 {
		t.Errorf("no capture in %s", capDir)
	}
	for _, f := range caps2 {
		if fi, err := os.Stat(f); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 65534 || fi.Size() == 0 {
			t.Errorf("capture %s: want a non-empty file of user 65534: %v %v", f, fi, err)
		}
	}

	// What it asked of the kernel, from its exec on.
	raw, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(raw), "execve(\""+bin+"\"")
	if !ok {
		t.Fatalf("the trace has no execve of %s", bin)
	}
	call := regexp.MustCompile(`(?m)^\d+ +([a-z_0-9]+)\((.*)$`)
	used, badFamily := map[string]bool{}, map[string]bool{}
	for _, m := range call.FindAllStringSubmatch(after, -1) {
		name, args := m[1], m[2]
		used[name] = true
		switch name {
		case "socket":
			fam, _, _ := strings.Cut(args, ",")
			if !families[fam] && !badFamily[fam] {
				badFamily[fam] = true
				t.Errorf("socket(%s) is not in RestrictAddressFamilies=%s", fam, setting("RestrictAddressFamilies"))
			}
		case "mmap", "mprotect", "pkey_mprotect":
			if strings.Contains(args, "PROT_EXEC") && (name != "mmap" || strings.Contains(args, "PROT_WRITE")) {
				t.Errorf("MemoryDenyWriteExecute=yes forbids %s(%s", name, args)
			}
		case "openat":
			if strings.Contains(args, "\"/dev/") {
				t.Errorf("PrivateDevices=yes: opens a device: openat(%s", args)
			}
			write := strings.Contains(args, "O_WRONLY") || strings.Contains(args, "O_RDWR") || strings.Contains(args, "O_CREAT")
			if write && !strings.Contains(args, "\""+capDir) && !strings.Contains(args, "= -1 ") {
				t.Errorf("ProtectSystem=strict: opens for writing outside the sink's directory: openat(%s", args)
			}
		case "sched_setattr", "sched_setscheduler":
			if !strings.Contains(args, "SCHED_OTHER") {
				t.Errorf("RestrictRealtime=yes: %s(%s", name, args)
			}
		case "setns", "unshare":
			t.Errorf("RestrictNamespaces=yes: %s(%s", name, args)
		}
	}
	var outside []string
	for name := range used {
		if !allowed[name] {
			outside = append(outside, name)
		}
	}
	slices.Sort(outside)
	if len(outside) > 0 {
		t.Errorf("system calls outside SystemCallFilter=%s: %s", setting("SystemCallFilter"), strings.Join(outside, " "))
	}
	if !used["bpf"] || !used["sched_setattr"] || !used["sendmmsg"] {
		t.Errorf("the trace misses calls the run must make (bpf, sched_setattr, sendmmsg): %v", slices.Sorted(maps.Keys(used)))
	}
	t.Logf("%d distinct system calls; the run took %v", len(used), time.Since(start).Round(time.Millisecond))
}

// childRunning returns the pid of a child of parent that runs program
// (its argv[0]), or 0.
func childRunning(parent int, program string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := strings.LastIndex(string(stat), ") ")
		if f := strings.Fields(string(stat[i+1:])); i < 0 || len(f) < 2 || f[1] != strconv.Itoa(parent) {
			continue
		}
		argv, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if arg0, _, _ := strings.Cut(string(argv), "\x00"); arg0 == program {
			return pid
		}
	}
	return 0
}

// rxClient is an HTTP client that dials from the bed's receiving namespace.
func rxClient(b *testbed.Bed) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = b.Rx.Do(func() error { c, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
			return c, err
		}}}
}
