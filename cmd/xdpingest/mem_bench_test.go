package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// BenchmarkServerMemory runs the server with default settings under the
// live-frames generator at full rate for XDPINGEST_MEM_SECONDS (default 60)
// and reports its resident memory at the start of the traffic, its peak and
// at the end, in MiB per queue. Issue 4 wants it flat and under 64 MiB per
// queue.
//
//	go test ./cmd/xdpingest -run '^$' -bench ServerMemory -benchtime 1x
func BenchmarkServerMemory(b *testing.B) {
	secs := 60
	if s, err := strconv.Atoi(os.Getenv("XDPINGEST_MEM_SECONDS")); err == nil && s > 0 {
		secs = s
	}
	for _, sinkName := range []string{"discard", "pcap"} {
		b.Run(sinkName, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				serverMemory(b, sinkName, time.Duration(secs)*time.Second)
			}
		})
	}
}

func serverMemory(b *testing.B, sinkName string, d time.Duration) {
	testutil.RequireBPF(b)
	const queues = 2
	bed := testutil.NewBed(b, testbed.Config{Queues: queues})
	sinkURL := "discard"
	if sinkName == "pcap" {
		// Size rotation keeps the disk in check: files are removed as the
		// run goes, the sink's memory is what is measured.
		dir := b.TempDir()
		sinkURL = "pcap:" + dir + "?max_mb=64"
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(500 * time.Millisecond):
				}
				ents, _ := os.ReadDir(dir)
				for _, e := range ents {
					if strings.HasSuffix(e.Name(), ".pcap") {
						os.Remove(dir + "/" + e.Name())
					}
				}
			}
		}()
	}
	srv := startServer(b, bed, "--ports", "9000", "--sink", sinkURL)
	pid := srv.cmd.Process.Pid
	rss := func() float64 {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return 0
		}
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
				return kb / 1024
			}
		}
		return 0
	}
	live, err := bench.LoadLive()
	if err != nil {
		b.Fatal(err)
	}
	defer live.Close()
	tpl, err := bench.BuildTemplate(bench.FrameSpec{SrcMAC: bed.Gen.MAC, DstMAC: bed.Rx.MAC,
		Src: netip.AddrPortFrom(bed.Gen.IPv4, 10000), Dst: netip.AddrPortFrom(bed.Rx.IPv4, 9000), Size: 64})
	if err != nil {
		b.Fatal(err)
	}
	cfg := tpl.Config()
	cfg.Ifindex, cfg.Duration, cfg.Flows, cfg.SportBase = bed.Gen.Index, d, 16, 10000
	done := make(chan error, 1)
	go func() {
		done <- bed.Gen.Do(func() error { _, err := live.Run(context.Background(), cfg); return err })
	}()
	time.Sleep(2 * time.Second)
	start, peak := rss(), 0.0
	var last float64
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case err := <-done:
			if err != nil {
				b.Fatal(err)
			}
			waiting = false
		case <-tick.C:
			last = rss()
			peak = max(peak, last)
		}
	}
	m := srv.scrape()
	b.ReportMetric(start/queues, "MiB/queue-start")
	b.ReportMetric(peak/queues, "MiB/queue-peak")
	b.ReportMetric(last/queues, "MiB/queue-end")
	b.ReportMetric(sum(m, "xdpingest_rx_packets_total")/d.Seconds()/1e6, "Mpps")
	srv.stop(syscall.SIGTERM, 10*time.Second)
}
