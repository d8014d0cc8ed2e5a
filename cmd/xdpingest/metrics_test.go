package main

import (
	"io"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// Issue 13: the metrics of a running server, traffic and a reload
// included, pass promlint (Prometheus' naming and help conventions), and
// the info and reload metrics say what runs.
func TestMetricsLint(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{Queues: 2})
	srv := startServer(t, b, "--ports", "9000", "--sink", "discard", "--sink", "pcap:"+t.TempDir()+"?ports=9000")
	c := udpConn(t, b, netip.AddrPortFrom(b.Rx.IPv4, 9000))
	for i := range uint64(100) {
		c.Write(marked(i, 64))
	}
	srv.cmd.Process.Signal(syscall.SIGHUP) // no --config: refused, and counted
	deadline := time.Now().Add(5 * time.Second)
	for sum(srv.scrape(), "xdpingest_reloads_total", `result="refused"`) < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := srv.client.Get("http://" + srv.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.New(strings.NewReader(string(body))).Lint()
	if err != nil {
		t.Fatalf("promlint can't read the page: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	m := srv.scrape()
	if got := sum(m, "xdpingest_queue_info", `path="afxdp"`, `xdp_mode="native"`, `afxdp_mode="copy"`); got != 2 {
		t.Errorf("queue_info for 2 AF_XDP queues in native XDP and copy mode: %v", got)
	}
	if got := sum(m, "xdpingest_queue_info", `path="kernel"`, `afxdp_mode="-"`); got != 1 {
		t.Errorf("queue_info for the kernel sockets beside AF_XDP: %v", got)
	}
	if sum(m, "xdpingest_reloads_total", `result="refused"`) != 1 || sum(m, "xdpingest_last_reload_timestamp_seconds", `result="refused"`) < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("the refused reload is not counted with its time:\n%s", dump(m))
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "xdpingest_afxdp_rx_ring_full_total", "xdpingest_sink_other_ports_total"} {
		found := false
		for k := range m {
			found = found || k == name || strings.HasPrefix(k, name+"{")
		}
		if !found {
			t.Errorf("no %s", name)
		}
	}
	if code := srv.stop(syscall.SIGTERM, 5*time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}
