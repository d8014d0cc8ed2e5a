package top

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/xdpingest/xdpingest/internal/promtext"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// page is the text of a /metrics page with the keys of vals (as the page
// writes them: `name{label="value"}`), the build info and a start time.
func page(started float64, vals map[string]float64) string {
	var b strings.Builder
	b.WriteString("# HELP xdpingest_build_info Build information; always 1.\n# TYPE xdpingest_build_info gauge\n")
	b.WriteString(`xdpingest_build_info{goversion="go1.26",version="v1.2.3"} 1` + "\n")
	fmt.Fprintf(&b, "process_start_time_seconds %g\n", started)
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range vals {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %g\n", k, vals[k])
	}
	return b.String()
}

// snap parses a page as read at t.
func snap(t *testing.T, text string, at time.Time) *Snapshot {
	t.Helper()
	s, err := promtext.Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	sn, err := FromSamples(s, at)
	if err != nil {
		t.Fatal(err)
	}
	return sn
}

// server is the counters of a server with two AF_XDP queues, the kernel
// socket beside them, the XDP program and two sinks, after n seconds of
// a steady load: queue 0 takes 1.5 M datagrams/s of 100 bytes, queue 1
// 2,000/s of 1000 bytes, its ring overflowing 300/s; the pcap sink drops
// 50/s for a full queue and 2/s for a full disk.
func server(n float64) map[string]float64 {
	return map[string]float64{
		`process_cpu_seconds_total`: 0.5 * n,
		`xdpingest_queue_info{afxdp_mode="copy",path="afxdp",queue="0",xdp_mode="native"}`:                    1,
		`xdpingest_queue_info{afxdp_mode="copy",path="afxdp",queue="1",xdp_mode="native"}`:                    1,
		`xdpingest_queue_info{afxdp_mode="-",path="kernel",queue="0",xdp_mode="native"}`:                      1,
		`xdpingest_rx_packets_total{path="afxdp",queue="0"}`:                                                  1.5e6 * n,
		`xdpingest_rx_bytes_total{path="afxdp",queue="0"}`:                                                    1.5e8 * n,
		`xdpingest_rx_malformed_total{path="afxdp",queue="0"}`:                                                0,
		`xdpingest_rx_packets_total{path="afxdp",queue="1"}`:                                                  2000 * n,
		`xdpingest_rx_bytes_total{path="afxdp",queue="1"}`:                                                    2e6 * n,
		`xdpingest_rx_malformed_total{path="afxdp",queue="1"}`:                                                0,
		`xdpingest_rx_packets_total{path="kernel",queue="0"}`:                                                 10 * n,
		`xdpingest_rx_bytes_total{path="kernel",queue="0"}`:                                                   9000 * n,
		`xdpingest_rx_malformed_total{path="kernel",queue="0"}`:                                               0,
		`xdpingest_afxdp_rx_ring_full_total{queue="0"}`:                                                       0,
		`xdpingest_afxdp_rx_ring_full_total{queue="1"}`:                                                       300 * n,
		`xdpingest_afxdp_rx_dropped_total{queue="0"}`:                                                         0,
		`xdpingest_afxdp_rx_dropped_total{queue="1"}`:                                                         0,
		`xdpingest_kernel_socket_overflows_total{queue="0"}`:                                                  0,
		`xdpingest_xdp_packets_total{outcome="redirect",verdict="redirect"}`:                                  (1.5e6 + 2300) * n,
		`xdpingest_xdp_bytes_total{outcome="redirect",verdict="redirect"}`:                                    (1.5e6+2300)*n*142 + 0,
		`xdpingest_xdp_packets_total{outcome="deny",verdict="drop"}`:                                          40 * n,
		`xdpingest_xdp_bytes_total{outcome="deny",verdict="drop"}`:                                            40 * n * 142,
		`xdpingest_xdp_packets_total{outcome="oversize",verdict="pass"}`:                                      10 * n,
		`xdpingest_xdp_bytes_total{outcome="oversize",verdict="pass"}`:                                        10 * n * 9042,
		`xdpingest_xdp_packets_total{outcome="tcp",verdict="pass"}`:                                           7 * n,
		`xdpingest_xdp_packets_total{outcome="arp",verdict="pass"}`:                                           1 * n,
		`xdpingest_xdp_packets_total{outcome="fragment",verdict="pass"}`:                                      0,
		`xdpingest_socket_filter_datagrams_total{outcome="accepted"}`:                                         10 * n,
		`xdpingest_socket_filter_datagrams_total{outcome="denied"}`:                                           0,
		`xdpingest_sink_written_total{sink="discard"}`:                                                        1502010 * n,
		`xdpingest_sink_written_bytes_total{sink="discard"}`:                                                  152009000 * n,
		`xdpingest_sink_in_flight{sink="discard"}`:                                                            3,
		`xdpingest_sink_connected{sink="discard"}`:                                                            1,
		`xdpingest_sink_dropped_total{reason="queue_full",sink="discard"}`:                                    0,
		`xdpingest_sink_written_total{sink="pcap:/var/lib/xdpingest/capture?max_mb=512"}`:                     (1502010 - 52) * n,
		`xdpingest_sink_written_bytes_total{sink="pcap:/var/lib/xdpingest/capture?max_mb=512"}`:               1.5e8 * n,
		`xdpingest_sink_in_flight{sink="pcap:/var/lib/xdpingest/capture?max_mb=512"}`:                         4096,
		`xdpingest_sink_connected{sink="pcap:/var/lib/xdpingest/capture?max_mb=512"}`:                         0,
		`xdpingest_sink_dropped_total{reason="queue_full",sink="pcap:/var/lib/xdpingest/capture?max_mb=512"}`: 50 * n,
		`xdpingest_sink_dropped_total{reason="no_space",sink="pcap:/var/lib/xdpingest/capture?max_mb=512"}`:   2 * n,
		`xdpingest_sink_dropped_total{reason="shutdown",sink="pcap:/var/lib/xdpingest/capture?max_mb=512"}`:   0,
	}
}

var (
	t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	// start is when the server started, 100 s before t0.
	start = float64(t0.Unix() - 100)
)

// fieldsOf returns the whitespace-separated fields of the first line that
// starts with prefix.
func fieldsOf(t *testing.T, lines []string, prefix string) []string {
	t.Helper()
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return strings.Fields(strings.TrimPrefix(l, prefix))
		}
	}
	t.Fatalf("no line starting with %q in\n%s", prefix, strings.Join(lines, "\n"))
	return nil
}

func checkWidth(t *testing.T, lines []string, width int) {
	t.Helper()
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > width {
			t.Errorf("%d columns, more than %d: %q", n, width, l)
		}
		if strings.ContainsRune(l, '\x1b') {
			t.Errorf("an escape sequence in a line of the view: %q", l)
		}
	}
}

// The rates of two scrapes 2 s apart, per queue, XDP outcome and sink,
// each drop under its reason, in 80 columns.
func TestRender(t *testing.T) {
	prev := snap(t, page(start, server(100)), t0)
	cur := snap(t, page(start, server(102)), t0.Add(2*time.Second))
	lines := Render(prev, cur, "http://127.0.0.1:9109/metrics", Layout{Width: 80})
	t.Logf("\n%s", strings.Join(lines, "\n"))
	checkWidth(t, lines, 80)

	// pkt/s, bit/s (payload), ring_full, rx_dropped, overflows, malformed.
	for prefix, want := range map[string][]string{
		"afxdp 0 ":  {"1.50M", "1.20G", "0", "0", "-", "0"},
		"afxdp 1 ":  {"2.00k", "16.0M", "300", "0", "-", "0"},
		"kernel 0 ": {"10", "72.0k", "-", "-", "0", "0"},
		"all ":      {"1.50M", "1.22G", "300", "0", "0", "0"},
	} {
		if got := fieldsOf(t, lines, prefix); !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", prefix, got, want)
		}
	}
	if got := fieldsOf(t, lines, "discard "); !slices.Equal(got, []string{"1.50M", "1.22G", "3", "up", "0"}) {
		t.Errorf("discard: %q", got)
	}
	// The pcap sink: its name shortened to what tells it apart, down, its
	// drops by reason, largest first.
	pcap := fieldsOf(t, lines, "pcap:")
	if want := []string{"1.50M", "1.20G", "4.10k", "DOWN", "queue_full", "50,", "no_space", "2.0"}; !slices.Equal(pcap[1:], want) {
		t.Errorf("pcap: %q, want %q after the name", pcap, want)
	}
	if !strings.HasSuffix(pcap[0], "capture") {
		t.Errorf("pcap sink's name %q lost its directory", pcap[0])
	}
	xdp := strings.Join(lines, "\n")
	for _, want := range []string{"XDP      1.50M frames/s seen", "redirect 1.50M", "oversize 10", "deny 40", "not_ours 8.0", "up 1m42s", "cpu 50%", "xdpingest v1.2.3", "path afxdp+kernel  xdp native  afxdp copy"} {
		if !strings.Contains(xdp, want) {
			t.Errorf("no %q in the view", want)
		}
	}
	if tail := lines[len(lines)-1]; tail != "since start, dropped: ring_full 30.6k, sinks no_space 204, queue_full 5.10k" {
		t.Errorf("last line %q", tail)
	}
}

// Before the second scrape, and after the server restarted (its counters
// with it), there are no rates yet: "-", never a rate over two servers.
func TestRenderNoRates(t *testing.T) {
	cur := snap(t, page(start, server(102)), t0.Add(2*time.Second))
	restarted := snap(t, page(start+200, server(1)), t0.Add(4*time.Second))
	for name, lines := range map[string][]string{
		"first":     Render(nil, cur, "x", Layout{Width: 80}),
		"restarted": Render(cur, restarted, "x", Layout{Width: 80}),
	} {
		if got := fieldsOf(t, lines, "afxdp 0 "); !slices.Equal(got[:2], []string{"-", "-"}) {
			t.Errorf("%s: afxdp 0 shows %q", name, got)
		}
		if got := fieldsOf(t, lines, "discard "); !slices.Equal(got, []string{"-", "-", "3", "up", "-"}) {
			t.Errorf("%s: discard shows %q", name, got)
		}
		if !strings.Contains(strings.Join(lines, "\n"), "cpu -") {
			t.Errorf("%s: a CPU share without two scrapes", name)
		}
	}
}

// A counter that went back while the server kept running (a receiver
// replaced by a reload) counts from zero: what it holds now, never a
// negative rate.
func TestRenderCounterReset(t *testing.T) {
	a, b := server(100), server(102)
	b[`xdpingest_rx_packets_total{path="afxdp",queue="1"}`] = 4000
	prev := snap(t, page(start, a), t0)
	cur := snap(t, page(start, b), t0.Add(2*time.Second))
	lines := Render(prev, cur, "x", Layout{Width: 80})
	if got := fieldsOf(t, lines, "afxdp 1 "); got[0] != "2.00k" {
		t.Errorf("afxdp 1 after its counter restarted: %q, want 2.00k pkt/s", got)
	}
}

// A server with many queues and sinks, long sink names and every drop at
// once fits 80x24 and 80 columns of plain output, saying what it left out.
func TestRenderFits(t *testing.T) {
	vals := func(n float64) map[string]float64 {
		m := server(n)
		for q := 2; q < 32; q++ {
			m[fmt.Sprintf(`xdpingest_queue_info{afxdp_mode="zero-copy",path="afxdp",queue="%d",xdp_mode="native"}`, q)] = 1
			m[fmt.Sprintf(`xdpingest_rx_packets_total{path="afxdp",queue="%d"}`, q)] = 123456789 * n
			m[fmt.Sprintf(`xdpingest_afxdp_rx_ring_full_total{queue="%d"}`, q)] = 987654321 * n
			m[fmt.Sprintf(`xdpingest_afxdp_rx_dropped_total{queue="%d"}`, q)] = 987654321 * n
			m[fmt.Sprintf(`xdpingest_rx_malformed_total{path="afxdp",queue="%d"}`, q)] = 987654321 * n
		}
		for s := range 12 {
			name := fmt.Sprintf(`nats://broker-%d.example.net:4222,broker-%d.example.net:4222/flows.very.long.subject.name.%d?ports=9000-9100&creds=x`, s, s, s)
			m[`xdpingest_sink_written_total{sink="`+name+`"}`] = 1e9 * n
			for _, r := range []string{"queue_full", "no_ack", "publish_failed", "too_large", "shutdown", "closed"} {
				m[`xdpingest_sink_dropped_total{reason="`+r+`",sink="`+name+`"}`] = 1e6 * n * float64(s+1)
			}
		}
		for _, o := range append(slices.Clone(shownOutcomes), notOurs...) {
			m[`xdpingest_xdp_packets_total{outcome="`+o+`",verdict="pass"}`] = 1e6 * n
		}
		for _, o := range filterRefusals {
			m[`xdpingest_socket_filter_datagrams_total{outcome="`+o+`"}`] = 1e3 * n
		}
		return m
	}
	prev := snap(t, page(start, vals(1e4)), t0)
	cur := snap(t, page(start, vals(1e4+1)), t0.Add(time.Second))
	src := "http://[2001:db8::1]:9109/metrics/of/a/server/with/a/long/path/that/does/not/fit/at/all"
	screen := Render(prev, cur, src, Layout{Width: 80, Height: 24})
	t.Logf("\n%s", strings.Join(screen, "\n"))
	if len(screen) > 24 {
		t.Errorf("%d lines on a 24-line terminal", len(screen))
	}
	checkWidth(t, screen, 80)
	view := strings.Join(screen, "\n")
	for _, want := range []string{"more queues", "more sinks", "+", "since start"} {
		if !strings.Contains(view, want) {
			t.Errorf("80x24: no %q", want)
		}
	}
	plain := Render(prev, cur, src, Layout{Width: 80})
	checkWidth(t, plain, 80)
	if n := len(plain); n < 32+12 {
		t.Errorf("plain output left rows out: %d lines", n)
	}
	// A narrower terminal cuts lines rather than wrapping them.
	checkWidth(t, Render(prev, cur, src, Layout{Width: 40, Height: 10}), 40)
}

// Without the XDP program (the kernel path on an interface without it)
// the view says so; without sinks or receivers too.
func TestRenderNoProgram(t *testing.T) {
	s := snap(t, page(start, nil), t0)
	view := strings.Join(Render(s, s, "x", Layout{Width: 80}), "\n")
	for _, want := range []string{"XDP      no program", "no receivers", "no sinks", "since start: nothing dropped"} {
		if !strings.Contains(view, want) {
			t.Errorf("no %q in\n%s", want, view)
		}
	}
}

func TestFromSamplesNotOurs(t *testing.T) {
	s, _ := promtext.Parse(strings.NewReader("node_load1 0.5\n"))
	if _, err := FromSamples(s, t0); !errors.Is(err, ErrNotXDPIngest) {
		t.Errorf("another exporter's page: %v, want ErrNotXDPIngest", err)
	}
}

// parseSI reads a number as si writes it.
func parseSI(t *testing.T, s string) float64 {
	t.Helper()
	mult := 1.0
	if i := strings.IndexAny(s, "kMGTP"); i > 0 {
		mult = map[byte]float64{'k': 1e3, 'M': 1e6, 'G': 1e9, 'T': 1e12, 'P': 1e15}[s[i]]
		s = s[:i]
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("%q is not a number as the view writes them", s)
	}
	return v * mult
}

// near says whether a shown number is b, to the 3 digits it shows.
func near(a, b float64) bool { return math.Abs(a-b) <= 0.01*max(math.Abs(a), math.Abs(b)) }

func TestFormats(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 0.26: "0.3", 7.5: "7.5", 999: "999", 999.6: "1.00k", 1234: "1.23k", 45.6e6: "45.6M", 789e9: "789G", 1e18: "huge", -1: "-"} {
		if got := si(v); got != want {
			t.Errorf("si(%g) = %q, want %q", v, got, want)
		}
	}
	for s, want := range map[string]string{
		"discard": "discard",
		"pcap:/var/lib/xdpingest/capture?max_mb=512&max_age=5m": "pcap:/var/lib/xdpingest/capture",
		"nats://a:4222,b:4222/flows.v1?ports=9000&creds=/etc/x": "nats://a:4222,b:4222/flows.v1?ports=9000",
		"kafka://broker-1.example.net:9092/very.long.topic":     "kafka://..ample.net:9092/very.long.topic",
	} {
		if got := abbrev(s, 40); got != want && !(len(want) > 40 && got == want[:40]) {
			t.Errorf("abbrev(%q, 40) = %q, want %q", s, got, want)
		}
	}
	if got := abbrev("kafka://broker-1.example.net:9092/very.long.topic", 26); utf8.RuneCountInString(got) != 26 || !strings.HasPrefix(got, "kafka://..") || !strings.HasSuffix(got, "/very.long.topic") {
		t.Errorf("Abbrev to 26: %q", got)
	}
	// Two sinks that differ in their subject and share ?ports=: the
	// subject stays when both don't fit.
	a, b := "nats://broker-1:4222/flows.a?ports=9000-9100", "nats://broker-1:4222/flows.b?ports=9000-9100"
	for w, want := range map[int][2]string{
		30: {"nats:/..lows.a?ports=9000-9100", "nats:/..lows.b?ports=9000-9100"},
		19: {"nats://..22/flows.a", "nats://..22/flows.b"},
	} {
		if got := [2]string{abbrev(a, w), abbrev(b, w)}; got != want {
			t.Errorf("abbrev to %d: %q, want %q", w, got, want)
		}
	}
	for _, w := range []int{0, 1, 2, 3, 10} {
		if got := abbrev("udp://198.18.0.9:2055?source=original", w); utf8.RuneCountInString(got) > w {
			t.Errorf("abbrev(_, %d) = %q", w, got)
		}
	}
	if got := wrap("  ", []string{"aaaa", "bbbb", "cccc", "dddd", "eeee", "ffff"}, 16, 2, "  "); !slices.Equal(got, []string{"  aaaa  bbbb", "  cccc  +3 more"}) {
		t.Errorf("wrap: %q", got)
	}
}

// metricsServer serves page() of a server whose counters advance by one
// second of load per scrape; restart makes it a new server, down makes it
// answer 503.
type metricsServer struct {
	mu      sync.Mutex
	n       float64
	started float64
	down    atomic.Bool
}

func (m *metricsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/metrics" {
		http.NotFound(w, r)
		return
	}
	if m.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	m.mu.Lock()
	m.n++
	text := page(start+m.started, server(m.n))
	m.mu.Unlock()
	w.Write([]byte(text))
}

func (m *metricsServer) restart() {
	m.mu.Lock()
	m.n, m.started = 0, m.started+100
	m.mu.Unlock()
}

// waitOutput waits until cond holds for what Run wrote.
func waitOutput(t *testing.T, out *testutil.SyncBuffer, what string, cond func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond(out.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 10 s; the output:\n%s", what, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return out.String()
}

func startRun(t *testing.T, o Options) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return within 10 s of its context's end")
			return nil
		}
	}
	t.Cleanup(func() { stop() })
	return stop
}

// Plain output: blocks of at most 80 columns without escape sequences,
// only those with rates; a server that answers 503 or goes away is said
// so, and the view comes back with the server, its rates from zero.
func TestRunPlain(t *testing.T) {
	m := &metricsServer{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	hs := &http.Server{Handler: m}
	go hs.Serve(l)
	out := &testutil.SyncBuffer{}
	stop := startRun(t, Options{URL: "http://" + addr + "/metrics", Interval: 20 * time.Millisecond, Out: out})
	// Each view opens with a line that starts "xdpingest ".
	blocks := func(s string) []string {
		var out []string
		for _, b := range strings.Split("\n"+s, "\nxdpingest ")[1:] {
			out = append(out, "xdpingest "+strings.TrimSuffix(b, "\n\n"))
		}
		return out
	}
	waitOutput(t, out, "two views", func(s string) bool { return strings.Count(s, "since start") >= 2 })

	m.down.Store(true)
	waitOutput(t, out, "view of a server that answers 503", func(s string) bool { return strings.Contains(s, "the server answered 503") })
	m.down.Store(false)
	hs.Close()
	waitOutput(t, out, "view of a server gone", func(s string) bool { return strings.Contains(s, "connect: connection") })

	// The same address, a new server: its counters start again.
	m.restart()
	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("can't listen on %s again: %v", addr, err)
	}
	hs2 := &http.Server{Handler: m}
	go hs2.Serve(l2)
	defer hs2.Close()
	mark := len(out.String())
	waitOutput(t, out, "view after the restart", func(s string) bool { return strings.Count(s[mark:], "since start") >= 2 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	text := out.String()
	if strings.ContainsRune(text, '\x1b') {
		t.Errorf("escape sequences in plain output")
	}
	var views, errorViews int
	for _, b := range blocks(text) {
		lines := strings.Split(b, "\n")
		checkWidth(t, lines, 80)
		switch {
		case strings.HasPrefix(lines[0], "xdpingest top  "):
			errorViews++
			if !strings.Contains(b, "trying again every 20ms") || !strings.Contains(b, "last answer at") {
				t.Errorf("error view:\n%s", b)
			}
		case strings.HasPrefix(lines[0], "xdpingest v1.2.3  "+addr+"  up "):
			views++
			// Each scrape is one second of load, over however long the
			// interval was: queue 1's datagrams are of 1000 bytes, and its
			// ring drops 300 for every 2000 delivered. Across the restart
			// there is no rate.
			got := fieldsOf(t, lines, "afxdp 1 ")
			if got[0] == "-" {
				break
			}
			pps, bps, full := parseSI(t, got[0]), parseSI(t, got[1]), parseSI(t, got[2])
			if !near(bps, 8000*pps) || !near(full, 0.15*pps) {
				t.Errorf("afxdp 1: %q: want bit/s = 8000 x pkt/s, ring_full = 0.15 x pkt/s", got)
			}
		default:
			t.Errorf("a block that is no view:\n%s", b)
		}
	}
	if views < 4 || errorViews < 2 {
		t.Errorf("%d views, %d error views", views, errorViews)
	}
	t.Logf("%d views, %d while the server was down", views, errorViews)
}

// On a terminal the view is drawn in place on the second screen, the
// cursor hidden, each line erased to its end, in the terminal's size; at
// the end the first screen and the cursor come back.
func TestRunTerminal(t *testing.T) {
	m := &metricsServer{}
	hs := httptest.NewServer(m)
	defer hs.Close()
	out := &testutil.SyncBuffer{}
	redraw := make(chan os.Signal, 1)
	var width atomic.Int32
	width.Store(80)
	stop := startRun(t, Options{URL: hs.URL + "/metrics", Interval: time.Hour, Out: out, Redraw: redraw,
		Size: func() (int, int, bool) { return int(width.Load()), 24, true }})
	waitOutput(t, out, "the first view", func(s string) bool { return strings.Contains(s, eraseBelow) })
	// A resize draws again at once, in the new width.
	width.Store(50)
	redraw <- syscall.SIGWINCH
	waitOutput(t, out, "a second view", func(s string) bool { return strings.Count(s, eraseBelow) == 2 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if !strings.HasPrefix(s, altScreen+hideCursor+cursorHome+"xdpingest v1.2.3") {
		t.Errorf("the output starts %q", s[:min(len(s), 40)])
	}
	if !strings.HasSuffix(s, showCursor+mainScreen) {
		t.Errorf("the output ends %q, without giving the terminal back", s[max(len(s)-40, 0):])
	}
	draws := strings.Split(strings.TrimSuffix(s, eraseBelow+showCursor+mainScreen), eraseBelow)
	for i, w := range []int{80, 50} {
		lines := strings.Split(strings.TrimPrefix(strings.TrimPrefix(draws[i], altScreen+hideCursor), cursorHome), "\r\n")
		if len(lines) > 24 {
			t.Errorf("draw %d: %d lines", i, len(lines))
		}
		for j := range lines {
			lines[j] = strings.TrimSuffix(lines[j], eraseLine)
		}
		checkWidth(t, lines, w)
	}
}

// --once: one plain view with the rates between two scrapes; no server,
// an error.
func TestRunOnce(t *testing.T) {
	m := &metricsServer{}
	hs := httptest.NewServer(m)
	out := &bytes.Buffer{}
	if err := Run(context.Background(), Options{URL: hs.URL + "/metrics", Interval: 10 * time.Millisecond, Once: true, Out: out}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	checkWidth(t, lines, 80)
	if got := fieldsOf(t, lines, "afxdp 0 "); got[0] == "-" {
		t.Errorf("--once without rates:\n%s", out.String())
	}
	if n := strings.Count(out.String(), "since start"); n != 1 {
		t.Errorf("--once wrote %d views", n)
	}
	hs.Close()
	err := Run(context.Background(), Options{URL: hs.URL + "/metrics", Once: true, Out: out})
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("--once without a server: %v", err)
	}
}

func TestWatchKeys(t *testing.T) {
	for in, want := range map[string]bool{"q": true, "abcQ": true, "\x03": true, "x y\n": false} {
		quit := false
		WatchKeys(strings.NewReader(in), func() { quit = true })
		if quit != want {
			t.Errorf("%q: quit %v", in, quit)
		}
	}
}
