package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/frames"
	"github.com/xdpingest/xdpingest/internal/promtext"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
	"github.com/xdpingest/xdpingest/sink"
	"github.com/xdpingest/xdpingest/sink/pcapfile"
	"github.com/xdpingest/xdpingest/xdp"
)

// rawSender sends hand-made frames out of the generating veth end.
type rawSender struct{ fd int }

func newRawSender(t *testing.T, b *testbed.Bed) *rawSender {
	t.Helper()
	r := &rawSender{}
	if err := b.Gen.Do(func() (err error) {
		r.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		return unix.Bind(r.fd, &unix.SockaddrLinklayer{Ifindex: b.Gen.Index})
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(r.fd) })
	return r
}

func (r *rawSender) send(frame []byte) error {
	for {
		_, err := unix.Write(r.fd, frame)
		if err == unix.ENOBUFS || err == unix.EAGAIN {
			time.Sleep(100 * time.Microsecond)
			continue
		}
		return err
	}
}

// kernelSocket listens on another port in the receiving namespace and
// counts what arrives.
func kernelSocket(t *testing.T, b *testbed.Bed, port uint16) func() int {
	t.Helper()
	var c *net.UDPConn
	if err := b.Rx.Do(func() (err error) {
		c, err = net.ListenUDP("udp", &net.UDPAddr{Port: int(port)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	n := make(chan int, 1)
	count := 0
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			count++
			select {
			case <-n:
			default:
			}
			n <- count
		}
	}()
	return func() int {
		deadline := time.After(2 * time.Second)
		last := 0
		for {
			select {
			case v := <-n:
				last = v
			case <-deadline:
				return last
			}
		}
	}
}

// readPcaps reads every finished pcap file in dir into the tracker and
// returns the number of records.
func readPcaps(t *testing.T, dir string, tr *bench.Tracker) int {
	t.Helper()
	files, err := sink.PcapFiles(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if partial, _ := sink.PcapFiles(dir, true); len(partial) != len(files) {
		t.Errorf("unfinished .part files left after shutdown: %v", partial)
	}
	n := 0
	for _, f := range files {
		if err := pcapfile.ReadFile(f, func(rec pcapfile.Record) error {
			var d datapath.Datagram
			if err := datapath.ParseFrame(rec.Data, &d); err != nil {
				t.Errorf("%s: record %d does not parse: %v", f, n, err)
				return nil
			}
			n++
			tr.Mark(bench.DecodeSized(d.Payload))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// tcpdumpCount counts the packets tcpdump reads from the files.
func tcpdumpCount(t *testing.T, dir string) int {
	t.Helper()
	testutil.RequireProgram(t, "tcpdump")
	files, _ := sink.PcapFiles(dir, false)
	total := 0
	for _, f := range files {
		out, err := exec.Command("tcpdump", "-nn", "-r", f).Output()
		if err != nil {
			t.Fatalf("tcpdump -r %s: %v", f, err)
		}
		total += bytes.Count(out, []byte("\n"))
	}
	return total
}

func TestEndToEnd(t *testing.T) {
	testutil.RequireBPF(t)
	for _, path := range []string{"afxdp", "kernel"} {
		t.Run(path, func(t *testing.T) { endToEnd(t, path) })
	}
}

func endToEnd(t *testing.T, path string) {
	// MTU 1600: IPv6 carries the 1472-byte payloads unfragmented too.
	b := testutil.NewBed(t, testbed.Config{Queues: 2, MTU: 1600})
	dir := t.TempDir()
	srv := startServer(t, b, "--path", path, "--ports", "9000,9100-9109", "--sink", "pcap:"+dir)

	other := kernelSocket(t, b, 7000)
	otherSender := newSender(t, b, 7000)
	for i := uint64(0); i < 100; i++ {
		if err := otherSender.send(i); err != nil {
			t.Fatal(err)
		}
	}

	// The kernel path sees VLAN-tagged frames only through VLAN devices,
	// which the bed doesn't have: they go to AF_XDP only.
	const total = 200000
	vlanN := uint64(0)
	if path == "afxdp" {
		vlanN = 2000
	}
	udpN := uint64(total) - vlanN
	snd := newSender(t, b, 9000)
	// Paced end to end, on what the sink wrote: "a rate the path holds"
	// includes the disk, which other test packages may be loading.
	received := func() uint64 { return uint64(sum(srv.scrape(), "xdpingest_sink_written_total")) }
	if err := paced(0, udpN, 1024, snd.send, received); err != nil {
		t.Fatal(err)
	}
	raw := newRawSender(t, b)
	buf := make([]byte, bench.SizedSpan)
	vlans := [][]frames.VLAN{{{TPID: frames.EtherTypeVLAN, ID: 7}}, {{TPID: frames.EtherTypeQinQ, ID: 8}, {TPID: frames.EtherTypeVLAN, ID: 9}}}
	if err := paced(udpN, udpN+vlanN, 512, func(i uint64) error {
		src, dst := netip.AddrPortFrom(b.Gen.IPv4, 40000), netip.AddrPortFrom(b.Rx.IPv4, 9105)
		if i%2 == 1 {
			src, dst = netip.AddrPortFrom(b.Gen.IPv6, 40000), netip.AddrPortFrom(b.Rx.IPv6, 9105)
		}
		return raw.send(frames.Build(frames.Spec{SrcMAC: b.Gen.MAC, DstMAC: b.Rx.MAC, VLANs: vlans[i%2], Src: src, Dst: dst, Payload: bench.PutSized(buf, i)}))
	}, func() uint64 { return received() - udpN }); err != nil {
		t.Fatal(err)
	}
	// Malformed frames for our port: counted by the program, passed on, and
	// the server keeps running.
	good := frames.Build(frames.Spec{SrcMAC: b.Gen.MAC, DstMAC: b.Rx.MAC, Src: netip.AddrPortFrom(b.Gen.IPv4, 1), Dst: netip.AddrPortFrom(b.Rx.IPv4, 9000), Payload: make([]byte, 32)})
	for i := 0; i < 50; i++ {
		bad := append([]byte(nil), good...)
		bad[14+20+4], bad[14+20+5] = 0x05, 0xdc // UDP length beyond the IP datagram
		if err := raw.send(bad); err != nil {
			t.Fatal(err)
		}
	}

	// Wait for everything to be written, then check the identities on a
	// quiet system.
	var m map[string]float64
	deadline := time.Now().Add(20 * time.Second)
	for {
		m = srv.scrape()
		if sum(m, "xdpingest_sink_written_total") >= total && sum(m, "xdpingest_xdp_packets_total", `outcome="malformed"`) >= 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s: written %v of %d, malformed %v\n%s", sum(m, "xdpingest_sink_written_total"), total, sum(m, "xdpingest_xdp_packets_total", `outcome="malformed"`), dump(m))
		}
		time.Sleep(50 * time.Millisecond)
	}
	rx := sum(m, "xdpingest_rx_packets_total")
	written := sum(m, "xdpingest_sink_written_total")
	dropped := sum(m, "xdpingest_sink_dropped_total")
	inflight := sum(m, "xdpingest_sink_in_flight")
	if rx != written+dropped+inflight || rx != total || dropped != 0 {
		t.Errorf("received %v != written %v + dropped %v + in flight %v (want %d received, none dropped)", rx, written, dropped, inflight, total)
	}
	taken := sum(m, "xdpingest_xdp_packets_total", `outcome="redirect"`)
	if path == "kernel" {
		taken = sum(m, "xdpingest_xdp_packets_total", `outcome="pass_match"`)
	}
	var kernelLoss float64
	if path == "afxdp" {
		kernelLoss = sum(m, "xdpingest_afxdp_rx_dropped_total") + sum(m, "xdpingest_afxdp_rx_ring_full_total") +
			sum(m, "xdpingest_rx_malformed_total")
	} else {
		kernelLoss = sum(m, "xdpingest_kernel_socket_overflows_total")
	}
	if taken != rx+kernelLoss {
		t.Errorf("the program took %v for us; received %v + counted kernel loss %v differ", taken, rx, kernelLoss)
	}
	if n := other(); n != 100 {
		t.Errorf("the kernel socket on another port got %d of 100 datagrams", n)
	}

	if code := srv.stop(syscall.SIGTERM, 5*time.Second); code != 0 {
		t.Fatalf("exit status %d after SIGTERM", code)
	}
	tr := bench.NewTracker(total)
	if n := readPcaps(t, dir, tr); n != total {
		t.Errorf("%d records in the pcap files, want %d", n, total)
	}
	if err := tr.Check(); err != nil {
		t.Error(err)
	}
	if n := tcpdumpCount(t, dir); n != total {
		t.Errorf("tcpdump reads %d packets, want %d", n, total)
	}
	var e *xdp.Existing
	b.Rx.Do(func() (err error) { e, err = xdp.Inspect(b.Rx.Index); return err })
	if e != nil {
		t.Errorf("after exit the interface still carries %v", e)
	}
}

// SIGTERM while traffic flows: everything the server received is written.
func TestSIGTERMUnderTrafficLosesNothing(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{})
	dir := t.TempDir()
	srv := startServer(t, b, "--ports", "9000", "--sink", "pcap:"+dir)
	snd := newSender(t, b, 9000)
	stop := make(chan struct{})
	sent := make(chan uint64)
	go func() {
		i := uint64(0)
		for {
			select {
			case <-stop:
				sent <- i
				return
			default:
			}
			snd.send(i)
			i++
			if i%64 == 0 {
				time.Sleep(50 * time.Microsecond)
			}
		}
	}()
	time.Sleep(time.Second)
	code := srv.stop(syscall.SIGTERM, 5*time.Second)
	close(stop)
	n := <-sent
	if code != 0 {
		t.Fatalf("exit status %d", code)
	}
	final := srv.finalLog()
	received := jsonField(t, final, "received")
	tr := bench.NewTracker(int(n))
	records := readPcaps(t, dir, tr)
	t.Logf("sent %d while stopping, the server received %d, the files hold %d", n, received, records)
	if received == 0 || uint64(records) != received {
		t.Fatalf("the server received %d datagrams but wrote %d (final line: %s)", received, records, final)
	}
	if tr.Unique() != uint64(records) {
		t.Fatalf("%d records but %d distinct datagrams", records, tr.Unique())
	}
}

func jsonField(t *testing.T, line, field string) uint64 {
	t.Helper()
	key := `"` + field + `":`
	i := strings.Index(line, key)
	if i < 0 {
		t.Fatalf("no %s in %q", field, line)
	}
	rest := line[i+len(key):]
	end := strings.IndexAny(rest, ",}")
	v, err := strconv.ParseUint(strings.TrimSpace(rest[:end]), 10, 64)
	if err != nil {
		t.Fatalf("%s in %q: %v", field, line, err)
	}
	return v
}

func TestSIGKILLLeavesNoProgram(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{})
	srv := startServer(t, b, "--ports", "9000", "--sink", "discard")
	resp, err := srv.client.Get("http://" + srv.metrics + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	srv.stop(syscall.SIGKILL, 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var e *xdp.Existing
		b.Rx.Do(func() (err error) { e, err = xdp.Inspect(b.Rx.Index); return err })
		if e == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s after SIGKILL the interface carries %v", e)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dump formats the non-zero counters of interest, for failure messages.
func dump(m promtext.Samples) string {
	var lines []string
	for k, v := range m {
		if v != 0 && !strings.Contains(k, "_bucket") && strings.HasPrefix(k, "xdpingest_") && !strings.Contains(k, "build_info") {
			lines = append(lines, fmt.Sprintf("  %s %v", k, v))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// The UDP relay delivers every datagram to a collector in the other
// namespace.
func TestUDPRelay(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{MTU: 1600})
	var coll *net.UDPConn
	if err := b.Gen.Do(func() (err error) {
		coll, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.Gen.IPv4, 7777)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer coll.Close()
	coll.SetReadBuffer(8 << 20)
	const n = 30000
	tr := bench.NewTracker(n)
	got := make(chan struct{})
	var relayed atomicCount
	go func() {
		defer close(got)
		buf := make([]byte, 2048)
		for relayed.load() < n {
			coll.SetReadDeadline(time.Now().Add(10 * time.Second))
			k, _, err := coll.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			tr.Mark(bench.DecodeSized(buf[:k]))
			relayed.add(1)
		}
	}()
	srv := startServer(t, b, "--ports", "9000", "--sink", "udp://198.18.0.1:7777")
	snd := newSender(t, b, 9000)
	if err := paced(0, n, 512, snd.send, relayed.load); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(15 * time.Second):
	}
	if err := tr.Check(); err != nil {
		t.Fatalf("relayed: %v\n%s", err, dump(srv.scrape()))
	}
	if code := srv.stop(syscall.SIGTERM, 5*time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

type atomicCount struct{ v atomic.Uint64 }

func (a *atomicCount) add(n uint64) { a.v.Add(n) }
func (a *atomicCount) load() uint64 { return a.v.Load() }

// Bad settings exit with status 2 and one clear line, before anything is
// attached.
func TestBadConfigExits2(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{})
	dir := t.TempDir()
	unknownKey := dir + "/unknown.yaml"
	os.WriteFile(unknownKey, []byte("iface: "+b.Rx.Link+"\nports: \"9000\"\nport: 9001\n"), 0o644)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"port 0", []string{"run", "--iface", b.Rx.Link, "--ports", "0"}, "out of range"},
		{"port above 65535", []string{"run", "--iface", b.Rx.Link, "--ports", "65536"}, "out of range"},
		{"bad CIDR", []string{"run", "--iface", b.Rx.Link, "--ports", "9000", "--deny", "198.18.0.0/40"}, "invalid CIDR"},
		{"unknown sink", []string{"run", "--iface", b.Rx.Link, "--ports", "9000", "--sink", "amqp://x:5672/q"}, "unknown scheme"},
		{"missing interface", []string{"run", "--iface", "nosuch0", "--ports", "9000"}, "no interface nosuch0"},
		{"no interface flag", []string{"run", "--ports", "9000"}, "no interface"},
		{"unknown config key", []string{"run", "--config", unknownKey}, "port"},
		{"check unknown key", []string{"check", "--config", unknownKey}, `unknown key "port"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := b.Rx.Command(binary, tc.args...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit %v, want status 2; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) || strings.Count(strings.TrimSpace(string(out)), "\n") > 0 {
				t.Errorf("output %q: want one line containing %q", out, tc.want)
			}
		})
	}

	// A foreign XDP program on the interface: refused without --replace,
	// and left in place.
	foreign, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "other_tool", Type: ebpf.XDP, License: "MIT",
		Instructions: asm.Instructions{asm.LoadImm(asm.R0, 2, asm.DWord), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Close()
	var l link.Link
	if err := b.Rx.Do(func() (err error) {
		l, err = link.AttachXDP(link.XDPOptions{Program: foreign, Interface: b.Rx.Index})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	out, err := b.Rx.Command(binary, "run", "--iface", b.Rx.Link, "--ports", "9000", "--sink", "discard").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "other_tool") || !strings.Contains(string(out), "--replace") {
		t.Fatalf("over a foreign program: %v\n%s", err, out)
	}
	var e *xdp.Existing
	b.Rx.Do(func() (err error) { e, err = xdp.Inspect(b.Rx.Index); return err })
	if e == nil || e.Name != "other_tool" {
		t.Fatalf("the interface now carries %v, want other_tool untouched", e)
	}
}

// --path auto falls back to the kernel path when AF_XDP can't run, and
// says why: here native XDP is refused (loopback has no native XDP).
func TestAutoFallsBackToKernelPath(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{})
	dir := t.TempDir()
	s := &srvProc{t: t, bed: b, log: &testutil.SyncBuffer{}, metrics: "127.0.0.1:9109", done: make(chan struct{})}
	s.client = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = b.Rx.Do(func() error { c, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
			return c, err
		}}}
	s.cmd = b.Rx.Command(binary, "run", "--iface", "lo", "--ports", "9000", "--path", "auto", "--xdp-mode", "native",
		"--sink", "pcap:"+dir, "--metrics-addr", s.metrics, "--log-format", "json", "--latency", "low")
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); s.exit = s.cmd.ProcessState.ExitCode(); close(s.done) }()
	defer func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill()
			<-s.done
		}
	}()
	waitReady(t, s)
	log := s.log.String()
	if !strings.Contains(log, `"path":"kernel"`) || !strings.Contains(log, "kernel path without the XDP program") || !strings.Contains(log, "native") {
		t.Fatalf("want a start on the kernel path with the reason (native XDP refused); log:\n%s", log)
	}
	// --latency low, which only AF_XDP workers follow, is said to have no
	// effect once the server fell back.
	if !strings.Contains(log, `"latency":"low"`) || !strings.Contains(log, "--latency low applies to AF_XDP workers only") {
		t.Errorf("want the start line's latency=low and a warning that the kernel path ignores it; log:\n%s", log)
	}
	// Datagrams over loopback reach the kernel path.
	if err := b.Rx.Do(func() error {
		c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9000})
		if err != nil {
			return err
		}
		defer c.Close()
		for i := 0; i < 100; i++ {
			if _, err := c.Write([]byte("over loopback")); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for sum(s.scrape(), "xdpingest_sink_written_total") < 100 {
		if time.Now().After(deadline) {
			t.Fatalf("the kernel path wrote %v of 100", sum(s.scrape(), "xdpingest_sink_written_total"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := s.stop(syscall.SIGTERM, 5*time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

// waitReady waits for /readyz.
func waitReady(t testing.TB, s *srvProc) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-s.done:
			t.Fatalf("xdpingest exited with %d before it was ready:\n%s", s.exit, s.log.String())
		default:
		}
		if resp, err := s.client.Get("http://" + s.metrics + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 15 s:\n%s", s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SIGHUP loads new ports into the running program: no reattach, no new
// sockets, the server keeps running.
func TestSIGHUPReloadsPorts(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{})
	dir := t.TempDir()
	conf := dir + "/xdpingest.yaml"
	write := func(ports string) {
		if err := os.WriteFile(conf, []byte("iface: "+b.Rx.Link+"\nports: \""+ports+"\"\nsinks: [discard]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("9000")
	srv := startServer(t, b, "--config", conf)
	// Another program's socket on 9001 gets its traffic; it closes before
	// the reload, or the server couldn't bind its kernel sockets there.
	var otherConn *net.UDPConn
	if err := b.Rx.Do(func() (err error) {
		otherConn, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 9001})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	to9001 := newSender(t, b, 9001)
	for i := uint64(0); i < 10; i++ {
		to9001.send(i * 2) // IPv4
	}
	otherConn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 2048)
	for i := 0; i < 10; i++ {
		if _, _, err := otherConn.ReadFromUDP(buf); err != nil {
			t.Fatalf("before SIGHUP the other socket on 9001 got %d of 10: %v", i, err)
		}
	}
	otherConn.Close()
	write("9000-9001")
	srv.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(srv.log.String(), "SIGHUP: reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload logged:\n%s", srv.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := uint64(0); i < 10; i++ {
		to9001.send(i * 2)
	}
	// A fragmented datagram to the new port: the program passes it, and
	// the kernel sockets beside AF_XDP, which the reload gave port 9001,
	// take it once the kernel has reassembled it.
	big := udpConn(t, b, netip.AddrPortFrom(b.Rx.IPv4, 9001))
	if _, err := big.Write(marked(1<<40, 4000)); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for sum(srv.scrape(), "xdpingest_sink_written_total") < 11 {
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP port 9001 is not taken, fragmented or not:\n%s", dump(srv.scrape()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := sum(srv.scrape(), "xdpingest_rx_packets_total", `path="kernel"`); got != 1 {
		t.Errorf("the kernel sockets received %v datagrams, want the fragmented one", got)
	}
	// A reload that changes a setting needing a restart is refused whole,
	// naming it; the ports it also changes stay as they run.
	os.WriteFile(conf, []byte("iface: "+b.Rx.Link+"\nports: \"9000\"\nsinks: [discard]\nqueue_mb: 32\n"), 0o644)
	srv.cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(srv.log.String(), "need a restart") {
		if time.Now().After(deadline) {
			t.Fatalf("a reload changing queue_mb was not refused:\n%s", srv.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(srv.log.String(), `"settings":"queue_mb"`) {
		t.Errorf("the refusal does not name queue_mb:\n%s", srv.log.String())
	}
	before := sum(srv.scrape(), "xdpingest_sink_written_total")
	to9001.send(100)
	deadline = time.Now().Add(5 * time.Second)
	for sum(srv.scrape(), "xdpingest_sink_written_total") < before+1 {
		if time.Now().After(deadline) {
			t.Fatalf("after a refused reload port 9001 is no longer taken:\n%s", dump(srv.scrape()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A bad reload is refused and the running configuration kept.
	os.WriteFile(conf, []byte("iface: "+b.Rx.Link+"\nports: \"0\"\n"), 0o644)
	srv.cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(srv.log.String(), "the running one is unchanged") {
		if time.Now().After(deadline) {
			t.Fatalf("a bad reload was not refused:\n%s", srv.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := srv.stop(syscall.SIGTERM, 5*time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

// --tune applies a profile at start and reverts it at exit.
func TestTuneAppliesAndReverts(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{})
	dir := t.TempDir()
	gro := func() string {
		out, err := b.Rx.Command("ethtool", "-k", b.Rx.Link).Output()
		if err != nil {
			testutil.Skip(t, "ethtool is not installed (make deps-test installs it)")
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "generic-receive-offload:") {
				return strings.Fields(l)[1]
			}
		}
		return "?"
	}
	before := gro()
	want := "on"
	if before == "on" {
		want = "off"
	}
	prof := dir + "/e2e.yaml"
	os.WriteFile(prof, []byte("name: e2e\nfeatures:\n  gro: "+want+"\n"), 0o644)
	srv := startServer(t, b, "--ports", "9000", "--sink", "discard", "--tune", prof)
	if got := gro(); got != want {
		t.Fatalf("while running GRO is %s, want %s:\n%s", got, want, srv.log.String())
	}
	if code := srv.stop(syscall.SIGTERM, 5*time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	if got := gro(); got != before {
		t.Fatalf("after exit GRO is %s, want %s again:\n%s", got, before, srv.log.String())
	}
}
