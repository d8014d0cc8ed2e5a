package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
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
	n := &notifySocket{path: filepath.Join(t.TempDir(), "notify"), onReady: onReady, done: make(chan struct{})}
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
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = b.Rx.Do(func() error { c, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
			return c, err
		}}}
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
