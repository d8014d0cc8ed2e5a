package main

import (
	"bytes"
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/hostile"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
	"github.com/xdpingest/xdpingest/sink"
	"github.com/xdpingest/xdpingest/sink/pcapfile"
)

// pcapReceived reads every finished pcap file in dir as datagrams.
func pcapReceived(t *testing.T, dir string) []hostile.Received {
	t.Helper()
	files, err := sink.PcapFiles(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []hostile.Received
	for _, f := range files {
		if err := pcapfile.ReadFile(f, func(rec pcapfile.Record) error {
			var d datapath.Datagram
			if err := datapath.ParseFrame(rec.Data, &d); err != nil {
				t.Errorf("%s: a record does not parse: %v", f, err)
				return nil
			}
			got = append(got, hostile.Received{Src: d.Src, DstPort: d.Dst.Port(), Payload: bytes.Clone(d.Payload)})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

// Issue 10: every datagram to an ingest port from an allowed source reaches
// the sink exactly once, byte for byte, whatever its size, fragments,
// extension headers or tags; nothing from a denied source, another
// interface or loopback does; the accounting holds. On both receive paths,
// at MTU 1500 and 9000.
func TestHostileTraffic(t *testing.T) {
	testutil.RequireBPF(t)
	for _, path := range []string{"afxdp", "kernel"} {
		for _, mtu := range []int{1500, 9000} {
			t.Run(fmt.Sprintf("%s/mtu%d", path, mtu), func(t *testing.T) { hostileTraffic(t, path, mtu) })
		}
	}
}

func hostileTraffic(t *testing.T, path string, mtu int) {
	b := testutil.NewBed(t, testbed.Config{MTU: mtu, Queues: 2})
	env, err := hostile.Prepare(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	pol := hostile.DefaultPolicy()
	m, err := env.Mix(hostile.Config{Ports: []uint16{9000, 9001}, Policy: pol, Seed: uint64(mtu)})
	if err != nil {
		t.Fatal(err)
	}
	hp := hostile.AFXDP
	if path == "kernel" {
		hp = hostile.Kernel
	}
	want := m.Select(hostile.DeliveredOn(hp))
	dir := t.TempDir()
	srv := startServer(t, b, append([]string{"--path", path, "--ports", "9000,9001", "--sink", "pcap:" + dir}, pol.Args()...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Pace by case: a burst of raw frames can overflow the veth's ring.
	if err := m.Send(ctx, hostile.SendOptions{AfterCase: func(*hostile.Case) error {
		time.Sleep(time.Millisecond)
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	// Everything expected written, then a quiet second for stragglers
	// that must not come.
	deadline := time.Now().Add(20 * time.Second)
	for sum(srv.scrape(), "xdpingest_sink_written_total") < float64(len(want)) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	mt := srv.scrape()
	rx := sum(mt, "xdpingest_rx_packets_total")
	written := sum(mt, "xdpingest_sink_written_total")
	dropped := sum(mt, "xdpingest_sink_dropped_total")
	inflight := sum(mt, "xdpingest_sink_in_flight")
	if rx != written+dropped+inflight || dropped != 0 {
		t.Errorf("received %v != written %v + dropped %v + in flight %v, or dropped", rx, written, dropped, inflight)
	}
	if path == "afxdp" {
		_, denied, notAllowed := m.Matched()
		if got := sum(mt, "xdpingest_xdp_packets_total", `outcome="deny"`); got != float64(denied) {
			t.Errorf("the program denied %v, the mix has %d whole datagrams from denied sources", got, denied)
		}
		if got := sum(mt, "xdpingest_xdp_packets_total", `outcome="not_allowed"`); got != float64(notAllowed) {
			t.Errorf("the program refused %v as not allowed, the mix has %d", got, notAllowed)
		}
	}
	if sum(mt, "xdpingest_socket_filter_datagrams_total", `outcome="denied"`) == 0 {
		t.Error("the socket filter refused nothing, though fragmented floods from denied sources reach the kernel sockets")
	}
	if code := srv.stop(syscall.SIGTERM, 5*time.Second); code != 0 {
		t.Fatalf("exit status %d after SIGTERM", code)
	}
	got := pcapReceived(t, dir)
	if err := m.Check(got, hostile.DeliveredOn(hp)); err != nil {
		t.Error(err)
	}
	if n := tcpdumpCount(t, dir); n != len(got) {
		t.Errorf("tcpdump reads %d packets, our reader %d", n, len(got))
	}
	t.Logf("%d datagrams in %d cases, %d to deliver on %s, %d written", len(m.Datagrams()), len(m.Cases), len(want), path, len(got))
}
