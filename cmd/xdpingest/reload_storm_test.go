package main

import (
	bin "encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
	"github.com/xdpingest/xdpingest/sink"
	"github.com/xdpingest/xdpingest/sink/pcapfile"
)

// stormPayload is the size of the storm's datagrams: a sequence number and
// a pattern derived from it.
const stormPayload = 64

func putStorm(p []byte, seq uint64) []byte {
	p = p[:stormPayload]
	bin.LittleEndian.PutUint64(p, seq)
	for i := 8; i < len(p); i++ {
		p[i] = byte(seq*7 + uint64(i))
	}
	return p
}

func decodeStorm(p []byte) (uint64, bool) {
	if len(p) != stormPayload {
		return 0, false
	}
	seq := bin.LittleEndian.Uint64(p)
	for i := 8; i < len(p); i++ {
		if p[i] != byte(seq*7+uint64(i)) {
			return 0, false
		}
	}
	return seq, true
}

// stormSender sends datagram i over IPv4 when i is even, IPv6 when odd, to
// port 9001 when i%8 >= 6 and to 9000 otherwise.
type stormSender struct {
	conns [2][2]*net.UDPConn // [IPv6][to 9001]
	buf   []byte
}

func newStormSender(t *testing.T, b *testbed.Bed) *stormSender {
	t.Helper()
	s := &stormSender{buf: make([]byte, stormPayload)}
	for v6, dst := range []netip.Addr{b.Rx.IPv4, b.Rx.IPv6} {
		for p, port := range []uint16{9000, 9001} {
			s.conns[v6][p] = udpConn(t, b, netip.AddrPortFrom(dst, port))
		}
	}
	return s
}

func (s *stormSender) send(i uint64) error {
	port := 0
	if i%8 >= 6 {
		port = 1
	}
	c := s.conns[i%2][port]
	for {
		_, err := c.Write(putStorm(s.buf, i))
		// Port unreachable from a datagram while 9001 was not taken is
		// reported on a later send, which it fails (not sending it).
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return err
		}
	}
}

// Issue 10, faults: SIGHUP every 200 ms for a minute under full traffic
// over IPv4 and IPv6 on the AF_XDP path, the configuration rewritten
// between reloads (an allow list that refuses the IPv6 sender on and off,
// port 9001 added and removed, now and then a file that must be refused).
// Every reload is logged as applied or refused, the server stays ready,
// and every datagram sent is in the files or counted: by the program
// (not_allowed, other_port), the socket, or the sink.
func TestFaultSIGHUPStorm(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{})
	dir := t.TempDir()
	conf := filepath.Join(t.TempDir(), "xdpingest.yaml")
	// State k, in fours: 9000 alone; the allow list on; port 9001 added;
	// the allow list off; 9001 removed. Each reload changes one thing, and
	// every tenth file is refused (port 0).
	write := func(k int) {
		t.Helper()
		ports := "9000"
		if k%4 >= 2 {
			ports = "9000,9001"
		}
		if k%10 == 9 {
			ports = "0"
		}
		y := fmt.Sprintf("iface: %s\nports: %q\nsinks: [%q]\n", b.Rx.Link, ports, "pcap:"+dir+"?max_mb=16")
		if k%4 == 1 || k%4 == 2 {
			// Admits the IPv4 sender, not the IPv6 one.
			y += "allow: [198.18.0.0/15, \"2001:db8::99/128\"]\n"
		}
		tmp := conf + ".new"
		if err := os.WriteFile(tmp, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, conf); err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	srv := startServer(t, b, "--config", conf, "--path", "afxdp")
	snd := newStormSender(t, b)

	// The files are read and removed as they are finished, so that a
	// minute at full rate doesn't fill the disk.
	set := newSeqSet(1 << 31)
	var records atomic.Uint64
	readFiles := func() {
		files, err := sink.PcapFiles(dir, false)
		if err != nil {
			t.Error(err)
			return
		}
		for _, f := range files {
			if err := pcapfile.ReadFile(f, func(rec pcapfile.Record) error {
				var d datapath.Datagram
				if err := datapath.ParseFrame(rec.Data, &d); err != nil {
					return fmt.Errorf("record %d does not parse: %w", records.Load(), err)
				}
				records.Add(1)
				set.Mark(decodeStorm(d.Payload))
				return nil
			}); err != nil {
				t.Errorf("%s: %v", f, err)
			}
			if err := os.Remove(f); err != nil {
				t.Error(err)
			}
		}
	}
	stopReading := make(chan struct{})
	reading := make(chan struct{})
	go func() {
		defer close(reading)
		for {
			select {
			case <-stopReading:
				return
			case <-time.After(300 * time.Millisecond):
				readFiles()
			}
		}
	}()
	defer func() {
		select {
		case <-stopReading:
		default:
			close(stopReading)
			<-reading
		}
	}()

	// Settled: written or dropped by the sink, lost at the socket (counted),
	// or refused or passed by the program. The window is larger than the
	// pcap sink's 1 MiB buffer (~8,000 records), which is written whole.
	accounted := func() uint64 {
		m := srv.scrape()
		return uint64(m.Sum("xdpingest_sink_written_total") + m.Sum("xdpingest_sink_dropped_total") +
			m.Sum("xdpingest_afxdp_rx_dropped_total") + m.Sum("xdpingest_afxdp_rx_ring_full_total") +
			m.Sum("xdpingest_rx_malformed_total") +
			m.Sum("xdpingest_xdp_packets_total", `outcome="not_allowed"`) + m.Sum("xdpingest_xdp_packets_total", `outcome="deny"`) +
			m.Sum("xdpingest_xdp_packets_total", `outcome="other_port"`))
	}
	var sent atomic.Uint64
	stopSending := make(chan struct{})
	sendErr := make(chan error, 1)
	go func() {
		const chunk = 20000
		for from := uint64(0); from < 1<<31; from += chunk {
			select {
			case <-stopSending:
				sendErr <- nil
				return
			default:
			}
			base := accounted()
			if err := paced(from, from+chunk, 16384, snd.send, func() uint64 { return accounted() - base }); err != nil {
				sendErr <- fmt.Errorf("after %d datagrams: %w", from, err)
				return
			}
			sent.Store(from + chunk)
		}
		sendErr <- nil
	}()

	// SIGHUP every 200 ms; each waits for its log line before the next,
	// since signals sent while one is handled may merge.
	sighupLines := func() []string {
		var out []string
		for _, l := range strings.Split(srv.log.String(), "\n") {
			if strings.Contains(l, `"msg":"SIGHUP`) {
				out = append(out, l)
			}
		}
		return out
	}
	var applied, refused int
	var wrong []string
	end := time.Now().Add(time.Minute)
	sendFinished := false
	k := 1
	for ; time.Now().Before(end); k++ {
		next := time.Now().Add(200 * time.Millisecond)
		write(k)
		srv.cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(5 * time.Second)
		var lines []string
		for {
			if lines = sighupLines(); len(lines) >= k {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("reload %d not logged within 5 s of SIGHUP:\n%s", k, srv.log.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
		if len(lines) > k {
			t.Fatalf("%d SIGHUP lines logged for %d reloads:\n%s", len(lines), k, strings.Join(lines, "\n"))
		}
		last := lines[k-1]
		ok := strings.Contains(last, `"msg":"SIGHUP: reloaded`)
		if ok {
			applied++
		} else {
			refused++
		}
		if ok != (k%10 != 9) && len(wrong) < 4 {
			wrong = append(wrong, fmt.Sprintf("reload %d (want applied: %v): %s", k, k%10 != 9, last))
		}
		select {
		case <-srv.done:
			t.Fatalf("the server exited (%d) during the SIGHUP storm", srv.exit)
		case err := <-sendErr:
			sendFinished = true
			t.Fatalf("the sender stopped during the storm: %v", err)
		default:
		}
		time.Sleep(time.Until(next))
	}
	k--
	if want := (k + 1) / 10; refused != want || len(wrong) > 0 { // reloads 9, 19, ... are refused
		t.Errorf("%d reloads: %d applied, %d refused; want %d refused (the files with port 0) and the rest applied; first wrong:\n%s",
			k, applied, refused, want, strings.Join(wrong, "\n"))
	}
	close(stopSending)
	if !sendFinished {
		if err := <-sendErr; err != nil {
			t.Fatal(err)
		}
	}
	// The sender stops at the end of a chunk: sent is exact.
	n := sent.Load()
	t.Logf("%d reloads applied, %d refused, %d datagrams sent in a minute", applied, refused, n)

	m := waitQuiet(t, srv, 20*time.Second)
	if err := sinkIdentityErr(m, true); err != nil {
		t.Error(err)
	}
	if err := afxdpIdentityErr(m); err != nil {
		t.Error(err)
	}
	// Every datagram sent has one outcome in the program, unless the veth
	// pair dropped it before (counted as the sending end's tx_dropped; the
	// receiving end's rx_dropped counts failed redirects, which the socket
	// counts too).
	vethDrops := linkDrops(t, b.Gen, "tx_dropped")
	outcomes := m.Sum("xdpingest_xdp_packets_total", `outcome="redirect"`) + m.Sum("xdpingest_xdp_packets_total", `outcome="not_allowed"`) +
		m.Sum("xdpingest_xdp_packets_total", `outcome="deny"`) + m.Sum("xdpingest_xdp_packets_total", `outcome="other_port"`)
	if uint64(outcomes)+vethDrops != n {
		t.Errorf("sent %d; the program counted %v redirected, refused or for another port, the veth pair dropped %d:\n%s", n, outcomes, vethDrops, dump(m))
	}
	if m.Sum("xdpingest_xdp_packets_total", `outcome="not_allowed"`) == 0 || m.Sum("xdpingest_xdp_packets_total", `outcome="other_port"`) == 0 {
		t.Errorf("the reloads changed nothing the traffic could see:\n%s", dump(m))
	}
	for _, path := range []string{"/readyz", "/healthz"} {
		resp, err := srv.client.Get("http://" + srv.metrics + path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s %d after the storm", path, resp.StatusCode)
		}
	}

	if code := srv.stop(syscall.SIGTERM, 10*time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
	final := finalAccounting(t, srv, true)
	close(stopReading)
	<-reading
	readFiles()
	if partial, _ := sink.PcapFiles(dir, true); len(partial) != 0 {
		t.Errorf("unfinished files after shutdown: %v", partial)
	}
	unique, dups, bad := set.Counts()
	var written, dropped uint64
	for _, s := range final.sinks {
		written, dropped = s["written"], s["dropped"]+s["queue_full"]+s["shutdown"]
	}
	refusedByProgram := uint64(m.Sum("xdpingest_xdp_packets_total", `outcome="not_allowed"`) + m.Sum("xdpingest_xdp_packets_total", `outcome="deny"`) +
		m.Sum("xdpingest_xdp_packets_total", `outcome="other_port"`))
	socketLoss := uint64(m.Sum("xdpingest_afxdp_rx_dropped_total") + m.Sum("xdpingest_afxdp_rx_ring_full_total") +
		m.Sum("xdpingest_rx_malformed_total"))
	// A datagram to a port being added reaches the kernel sockets (opened
	// first) while the program still passes it as other_port: it is in the
	// files and in the program's other_port both.
	viaKernel := uint64(m.Sum("xdpingest_rx_packets_total", `path="kernel"`))
	refusedByProgram -= viaKernel
	t.Logf("sent %d: in the files %d (%d distinct; %d through the kernel sockets), sink dropped %d, socket lost %d, the program refused or passed and nobody took %d, the veth pair dropped %d",
		n, records.Load(), unique, viaKernel, dropped, socketLoss, refusedByProgram, vethDrops)
	if dups != 0 || bad != 0 {
		t.Errorf("%d datagrams in the files twice, %d records not ours", dups, bad)
	}
	if unique != written || records.Load() != written {
		t.Errorf("%d records (%d distinct) in the files, %d counted written", records.Load(), unique, written)
	}
	if unique+dropped+socketLoss+refusedByProgram+vethDrops != n {
		t.Errorf("sent %d != in the files %d + sink dropped %d + socket lost %d + refused or passed by the program %d + dropped by the veth pair %d",
			n, unique, dropped, socketLoss, refusedByProgram, vethDrops)
	}
}

// linkDrops reads one of the bed link's drop counters (tx_dropped,
// rx_dropped) in its namespace.
func linkDrops(t *testing.T, s *testbed.Side, counter string) uint64 {
	t.Helper()
	out, err := s.Command("cat", "/sys/class/net/"+s.Link+"/statistics/"+counter).Output()
	if err != nil {
		t.Fatalf("can't read %s of %s: %v", counter, s.Link, err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("%s of %s: %v", counter, s.Link, err)
	}
	return v
}
