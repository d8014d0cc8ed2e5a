package main

import (
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// Issue 12, point 4: one server sends each port's datagrams to its own
// sink (?ports=), and a sink without ports gets them all; each sink's
// accounting counts the rest as for other ports.
func TestSinkRoutes(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{})
	flows, logs, all := t.TempDir(), t.TempDir(), t.TempDir()
	srv := startServer(t, b, "--ports", "9000-9002", "--sink", "pcap:"+flows+"?ports=9000",
		"--sink", "pcap:"+logs+"?ports=9001,9002", "--sink", "pcap:"+all)
	want := map[uint16]map[uint64][]byte{}
	for _, port := range []uint16{9000, 9001, 9002} {
		c := udpConn(t, b, netip.AddrPortFrom(b.Rx.IPv4, port))
		want[port] = map[uint64][]byte{}
		for i := range uint64(200) {
			seq := uint64(port)<<32 | i
			p := marked(seq, 100)
			want[port][seq] = p
			if _, err := c.Write(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for sum(srv.scrape(), "xdpingest_sink_written_total") < 1200 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	m := srv.scrape()
	rx := sum(m, "xdpingest_rx_packets_total")
	for _, c := range []struct {
		label string
		other float64
	}{{"pcap:" + flows + "?ports=9000", 400}, {"pcap:" + logs + "?ports=9001-9002", 200}, {"pcap:" + all, 0}} {
		l := `sink="` + c.label + `"`
		written := sum(m, "xdpingest_sink_written_total", l)
		other := sum(m, "xdpingest_sink_other_ports_total", l)
		dropped := sum(m, "xdpingest_sink_dropped_total", l)
		flight := sum(m, "xdpingest_sink_in_flight", l)
		if other != c.other || rx != written+other+dropped+flight {
			t.Errorf("%s: received %v != written %v + other ports %v (want %v) + dropped %v + in flight %v", c.label, rx, written, other, c.other, dropped, flight)
		}
	}
	if code := srv.stop(syscall.SIGTERM, 5*time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	check := func(dir string, ports ...uint16) {
		t.Helper()
		got := pcapPayloads(t, dir)
		n := 0
		for _, port := range ports {
			for seq, p := range want[port] {
				if len(got[seq]) != 1 || string(got[seq][0]) != string(p) {
					t.Errorf("%s: datagram %x to %d: %d copies", dir, seq, port, len(got[seq]))
				}
				n++
			}
		}
		if len(got) != n {
			t.Errorf("%s: %d datagrams, want the %d to ports %v", dir, len(got), n, ports)
		}
	}
	check(flows, 9000)
	check(logs, 9001, 9002)
	check(all, 9000, 9001, 9002)
}
