//go:build linux

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/bench/measure"
	"github.com/xdpingest/xdpingest/datapath/afxdp"
	"github.com/xdpingest/xdpingest/tuning"
	"github.com/xdpingest/xdpingest/xdp"
)

// cmdRx is `pktbench rx`.
func cmdRx(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rx", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		path     = fs.String("path", "", "receive `path` (required): "+strings.Join(measure.KnownPaths(), ", ")+" (pktbench help says what each is)")
		iface    = fs.String("iface", "", "the `interface` to receive on (required)")
		netns    = fs.String("netns", "", "run in this network `namespace` (from `ip netns list`)")
		port     = fs.Uint("port", 9000, "UDP destination `port` to take")
		queues   = fs.String("queues", "all", "RX `queues` to serve: all, or a list such as 0-3 (the kernel paths run one worker per queue)")
		cpuList  = fs.String("cpus", "", "pin receiving thread i to the i-th `CPU` of this list (default: unpinned)")
		duration = fs.Duration("duration", 0, "stop after this long (default: at Ctrl-C)")
		interval = fs.Duration("interval", time.Second, "time between report lines")
		frameSz  = fs.Int("frame-size", afxdp.DefaultFrameSize, "afxdp, server: AF_XDP UMEM frame size, 2048 or 4096 (frames above 1792 bytes need 4096; afxdp-c takes 2048 only)")
		xdpMode  = fs.String("xdp-mode", "native", "XDP attach `mode`: native, generic or auto")
		noXDP    = fs.Bool("no-xdp", false, "kernel, stdnet: don't attach the XDP program (in pass mode); on a veth, turn GRO on instead")
		server   = fs.String("xdpingest", "", "server path: the xdpingest `binary` (default: the one next to pktbench)")
		pcapDir  = fs.String("pcap-dir", "", "server-pcap path: write the files under this `dir` (default /dev/shm)")
	)
	rxf := addRxFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: pktbench rx --path PATH --iface IFACE [flags]

Counts what arrives on one receive path and prints a line per interval:
rate in Mpps and Gbit/s (whole frames, FCS excluded), drops by reason and
the load of every CPU; a summary at the end (Ctrl-C, or --duration). On
the paths that see payloads it reads pktbench gen's sequence numbers and
reports what is missing below the highest number seen of each stream.

`)
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if *path == "" || *iface == "" {
		return usageError(stderr, "rx", "--path and --iface are required")
	}
	if *port == 0 || *port > 65535 {
		return usageError(stderr, "rx", "--port %d: want 1-65535", *port)
	}
	if *interval < 10*time.Millisecond {
		return usageError(stderr, "rx", "--interval %v: at least 10ms", *interval)
	}
	mode, err := xdp.ParseMode(*xdpMode)
	if err != nil {
		return usageError(stderr, "rx", "%v", err)
	}
	side, err := lookupNetns(*netns)
	if err != nil {
		return usageError(stderr, "rx", "%v", err)
	}
	if *frameSz != 2048 && *frameSz != 4096 {
		return usageError(stderr, "rx", "--frame-size %d: want 2048 or 4096", *frameSz)
	}
	o := measure.PathOptions{Side: side, Iface: *iface, Port: uint16(*port), FrameSize: *frameSz, XDPMode: mode, NoXDP: *noXDP, Meter: true}
	if *queues != "all" {
		q, err := tuning.ParseCPUList(*queues)
		if err != nil {
			return usageError(stderr, "rx", "--queues: %v", err)
		}
		o.Queues = q.List()
	}
	if *cpuList != "" {
		c, err := tuning.ParseCPUList(*cpuList)
		if err != nil {
			return usageError(stderr, "rx", "--cpus: %v", err)
		}
		o.CPUs = c.List()
	}
	if !slices.Contains(measure.KnownPaths(), *path) {
		return usageError(stderr, "rx", "unknown path %q: want one of %s", *path, strings.Join(measure.KnownPaths(), ", "))
	}
	o.PcapDir = *pcapDir
	if err := rxf.apply(&o); err != nil {
		return usageError(stderr, "rx", "%v", err)
	}
	if err := findBinaries(&o, []string{*path}, *server); err != nil {
		return usageError(stderr, "rx", "%v", err)
	}
	noteSlice(o.SchedSlice, stderr)

	rx, err := measure.StartPath(*path, o)
	if err != nil {
		return failure(ctx, stderr, "rx", err)
	}
	fmt.Fprintf(stdout, "rx %s on %s%s, UDP port %d: %s\n", *path, *iface, inNetns(*netns), *port, rx.Describe())
	fmt.Fprintf(stdout, "%8s %10s %9s  %s\n", "time", "Mpps", "Gbit/s", "drops/s, CPU per core")

	start := time.Now()
	first := rx.Snapshot()
	prev := first
	cpu0, _ := bench.ReadCPUStat()
	prevCPU := cpu0
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	var end <-chan time.Time
	if *duration > 0 {
		t := time.NewTimer(*duration)
		defer t.Stop()
		end = t.C
	}
	prevT := start
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end:
			break loop
		case now := <-tick.C:
			cur := rx.Snapshot()
			cpu, _ := bench.ReadCPUStat()
			d := cur.Sub(prev)
			secs := now.Sub(prevT).Seconds()
			fmt.Fprintf(stdout, "%7.1fs %10.3f %9.3f  %s | %s\n", now.Sub(start).Seconds(),
				float64(d.Packets)/secs/1e6, float64(d.Bytes)*8/secs/1e9, formatDrops(d.Drops, secs), bench.FormatLoads(cpu.Since(prevCPU)))
			prev, prevCPU, prevT = cur, cpu, now
		}
	}
	elapsed := time.Since(start)
	cpuEnd, _ := bench.ReadCPUStat()
	final, meter, err := rx.Stop()
	tot := final.Sub(first)
	fmt.Fprintf(stdout, "summary: %d packets in %.1fs: %.3f Mpps, %.3f Gbit/s\n", tot.Packets, elapsed.Seconds(),
		float64(tot.Packets)/elapsed.Seconds()/1e6, float64(tot.Bytes)*8/elapsed.Seconds()/1e9)
	fmt.Fprintf(stdout, "  drops: %s\n", formatDrops(tot.Drops, 0))
	if tot.Packets > 0 && *path != measure.PathDrop {
		fmt.Fprintf(stdout, "  receiving threads' CPU: %.3fs, %.3f µs per packet\n", tot.RxCPU.Seconds(), tot.RxCPU.Seconds()*1e6/float64(tot.Packets))
	}
	fmt.Fprintf(stdout, "  CPU over the run: %s\n", bench.FormatLoads(cpuEnd.Since(cpu0)))
	if meter != nil {
		printSeq(stdout, meter)
	}
	if err != nil {
		return failure(ctx, stderr, "rx", err)
	}
	return exitOK
}

// printSeq says what the sequence numbers show: per stream, the numbers
// seen and those missing below the highest.
func printSeq(w io.Writer, m *bench.SeqMeter) {
	streams := m.Streams()
	if len(streams) == 0 {
		fmt.Fprintf(w, "  sequence numbers: none seen\n")
		return
	}
	var missing uint64
	for _, s := range streams {
		missing += s.Highest + 1 - s.Unique
	}
	fmt.Fprintf(w, "  sequence numbers: %d distinct in %d stream(s), %d missing below the highest of each, %d duplicates, %d unreadable\n",
		m.Unique(), len(streams), missing, m.Dups, m.OutOfRange+m.Short)
	if len(streams) <= 8 {
		for _, s := range streams {
			fmt.Fprintf(w, "    stream %d: %d distinct, highest %d, %d missing below it\n", s.Stream, s.Unique, s.Highest, s.Highest+1-s.Unique)
		}
	}
}

// formatDrops renders drop counters sorted by name, as rates when secs > 0.
func formatDrops(d map[string]uint64, secs float64) string {
	var keys []string
	for k, v := range d {
		if v > 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		if secs > 0 {
			return "drops 0/s"
		}
		return "none"
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		if secs > 0 {
			parts[i] = fmt.Sprintf("%s %s/s", k, si(float64(d[k])/secs))
		} else {
			parts[i] = fmt.Sprintf("%s %d", k, d[k])
		}
	}
	return strings.Join(parts, " ")
}

// si formats a count with k/M suffixes.
func si(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
