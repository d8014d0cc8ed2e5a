package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/promtext"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
	"github.com/xdpingest/xdpingest/sink"
	"github.com/xdpingest/xdpingest/sink/pcapfile"
)

// The fault tests of issue 10: the server runs on the bed while its disk
// fills, its broker restarts or stalls, its collector refuses, or SIGHUP
// keeps coming; at the end every datagram it received is written or
// counted dropped with a reason (docs/OPERATIONS.md, "The accounting
// identities"), and it exits as documented.

// sinkAccount is one sink's counters in a scrape.
type sinkAccount struct {
	written, inFlight float64
	otherPorts        float64            // routed to other sinks (?ports=)
	dropped           map[string]float64 // by reason
}

func (a sinkAccount) droppedTotal() float64 {
	var n float64
	for _, v := range a.dropped {
		n += v
	}
	return n
}

// label returns the value of label in a "name{labels}" key.
func label(key, name string) string {
	_, l, _ := strings.Cut(key, "{")
	i := strings.Index(l, name+`="`)
	if i < 0 {
		return ""
	}
	v := l[i+len(name)+2:]
	end := strings.IndexByte(v, '"')
	if end < 0 {
		return ""
	}
	return v[:end]
}

// sinkAccounts returns every sink's counters by sink name.
func sinkAccounts(m promtext.Samples) map[string]sinkAccount {
	out := map[string]sinkAccount{}
	get := func(name string) sinkAccount {
		a, ok := out[name]
		if !ok {
			a.dropped = map[string]float64{}
		}
		return a
	}
	for k, v := range m {
		metric, _, _ := strings.Cut(k, "{")
		s := label(k, "sink")
		switch metric {
		case "xdpingest_sink_written_total":
			a := get(s)
			a.written = v
			out[s] = a
		case "xdpingest_sink_in_flight":
			a := get(s)
			a.inFlight = v
			out[s] = a
		case "xdpingest_sink_dropped_total":
			a := get(s)
			a.dropped[label(k, "reason")] += v
			out[s] = a
		case "xdpingest_sink_other_ports_total":
			a := get(s)
			a.otherPorts = v
			out[s] = a
		}
	}
	return out
}

// sinkIdentityErr checks identity 3 for every sink of a scrape: received =
// written + dropped (every reason) + in flight; quiet (traffic stopped and
// settled) also wants nothing in flight.
func sinkIdentityErr(m promtext.Samples, quiet bool) error {
	rx := m.Sum("xdpingest_rx_packets_total")
	accts := sinkAccounts(m)
	if len(accts) == 0 {
		return errors.New("no sink counters in the scrape")
	}
	var errs []error
	for name, a := range accts {
		if rx != a.written+a.droppedTotal()+a.otherPorts+a.inFlight {
			errs = append(errs, fmt.Errorf("sink %s: received %v != written %v + dropped %v %v + other ports %v + in flight %v",
				name, rx, a.written, a.droppedTotal(), a.dropped, a.otherPorts, a.inFlight))
		}
		if quiet && a.inFlight != 0 {
			errs = append(errs, fmt.Errorf("sink %s: %v in flight with no traffic", name, a.inFlight))
		}
	}
	return errors.Join(errs...)
}

// afxdpIdentityErr checks identity 2 on the AF_XDP path: what the program
// redirected was received, refused as malformed, or counted lost by the
// socket (exact once traffic stopped and the rings are empty).
func afxdpIdentityErr(m promtext.Samples) error {
	redirect := m.Sum("xdpingest_xdp_packets_total", `outcome="redirect"`)
	rx := m.Sum("xdpingest_rx_packets_total", `path="afxdp"`)
	malformed := m.Sum("xdpingest_rx_malformed_total", `path="afxdp"`)
	lost := m.Sum("xdpingest_afxdp_rx_dropped_total") + m.Sum("xdpingest_afxdp_rx_ring_full_total")
	if redirect != rx+malformed+lost {
		return fmt.Errorf("the program redirected %v; received %v + malformed %v + socket losses %v = %v",
			redirect, rx, malformed, lost, rx+malformed+lost)
	}
	return nil
}

// waitQuiet polls until traffic has settled: the received count is the
// same in two scrapes 300 ms apart and the sink identity holds with
// nothing in flight. It returns the last scrape.
func waitQuiet(t *testing.T, srv *srvProc, within time.Duration) promtext.Samples {
	t.Helper()
	deadline := time.Now().Add(within)
	prev := -1.0
	for {
		m := srv.scrape()
		rx := m.Sum("xdpingest_rx_packets_total")
		if rx == prev && sinkIdentityErr(m, true) == nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled after %v: %v\n%s", within, sinkIdentityErr(m, true), dump(m))
		}
		prev = rx
		time.Sleep(300 * time.Millisecond)
	}
}

// finalLine is the accounting of the "xdpingest stopped" line.
type finalLine struct {
	received uint64
	// sinks maps a sink's name to its fields: written, dropped (the sink's
	// own reasons), queue_full, shutdown, in_flight.
	sinks map[string]map[string]uint64
}

func parseFinalLine(line string) (finalLine, error) {
	var f finalLine
	if line == "" {
		return f, errors.New(`no "xdpingest stopped" line`)
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(line), &fields); err != nil {
		return f, fmt.Errorf("the final line is not JSON: %w: %s", err, line)
	}
	rec, ok := fields["received"].(float64)
	if !ok {
		return f, fmt.Errorf("no received in the final line %s", line)
	}
	f.received = uint64(rec)
	f.sinks = map[string]map[string]uint64{}
	for k, v := range fields {
		name, ok := strings.CutPrefix(k, "sink.")
		if !ok {
			continue
		}
		s, _ := v.(string)
		kv := map[string]uint64{}
		for _, field := range strings.Fields(s) {
			key, val, _ := strings.Cut(field, "=")
			n, err := strconv.ParseUint(val, 10, 64)
			if err != nil {
				return f, fmt.Errorf("sink %s: field %q in the final line: %w", name, field, err)
			}
			kv[key] = n
		}
		for _, want := range []string{"written", "dropped", "queue_full", "shutdown", "in_flight"} {
			if _, ok := kv[want]; !ok {
				return f, fmt.Errorf("sink %s: no %s in the final line %s", name, want, line)
			}
		}
		f.sinks[name] = kv
	}
	if len(f.sinks) == 0 {
		return f, fmt.Errorf("no sink in the final line %s", line)
	}
	return f, nil
}

// identityErr checks received = written + dropped + queue_full + shutdown +
// in flight for every sink of the final line; settled also wants nothing in
// flight.
func (f finalLine) identityErr(settled bool) error {
	var errs []error
	for name, s := range f.sinks {
		sum := s["written"] + s["dropped"] + s["queue_full"] + s["shutdown"] + s["in_flight"]
		if f.received != sum {
			errs = append(errs, fmt.Errorf("final line, sink %s: received %d != written %d + dropped %d + queue_full %d + shutdown %d + in flight %d = %d",
				name, f.received, s["written"], s["dropped"], s["queue_full"], s["shutdown"], s["in_flight"], sum))
		}
		if settled && s["in_flight"] != 0 {
			errs = append(errs, fmt.Errorf("final line, sink %s: %d still in flight at exit", name, s["in_flight"]))
		}
	}
	return errors.Join(errs...)
}

// finalAccounting parses the server's final line and checks its identity.
func finalAccounting(t *testing.T, srv *srvProc, settled bool) finalLine {
	t.Helper()
	f, err := parseFinalLine(srv.finalLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.identityErr(settled); err != nil {
		t.Error(err)
	}
	return f
}

// The checks must see a datagram that is neither written nor dropped, or
// one counted twice: perturb each term of consistent counters by one.
func TestAccountingChecksCatchPerturbation(t *testing.T) {
	const s = `{sink="pcap:/d"}`
	good := promtext.Samples{
		`xdpingest_rx_packets_total{path="afxdp",queue="0"}`:                 60,
		`xdpingest_rx_packets_total{path="afxdp",queue="1"}`:                 40,
		`xdpingest_rx_malformed_total{path="afxdp",queue="0"}`:               1,
		`xdpingest_xdp_packets_total{outcome="redirect",verdict="redirect"}`: 104,
		`xdpingest_afxdp_rx_ring_full_total{queue="0"}`:                      2,
		`xdpingest_afxdp_rx_dropped_total{queue="1"}`:                        1,
		`xdpingest_sink_written_total` + s:                                   90,
		`xdpingest_sink_dropped_total{sink="pcap:/d",reason="no_space"}`:     6,
		`xdpingest_sink_dropped_total{sink="pcap:/d",reason="queue_full"}`:   4,
		`xdpingest_sink_in_flight` + s:                                       0,
	}
	if err := sinkIdentityErr(good, true); err != nil {
		t.Fatalf("consistent counters refused: %v", err)
	}
	if err := afxdpIdentityErr(good); err != nil {
		t.Fatalf("consistent counters refused: %v", err)
	}
	for k := range good {
		for _, d := range []float64{-1, 1} {
			m := promtext.Samples{}
			for k2, v := range good {
				m[k2] = v
			}
			m[k] += d
			sinkErr, xdpErr := sinkIdentityErr(m, true), afxdpIdentityErr(m)
			if sinkErr == nil && xdpErr == nil {
				t.Errorf("%s changed by %v: both identities still hold", k, d)
			}
		}
	}

	fields := []struct {
		name string
		v    int
	}{{"written", 80}, {"dropped", 5}, {"queue_full", 3}, {"shutdown", 10}, {"in_flight", 2}}
	line := func(received, perturb int) string {
		var kv []string
		for i, f := range fields {
			v := f.v
			if i == perturb {
				v++
			}
			kv = append(kv, fmt.Sprintf("%s=%d", f.name, v))
		}
		return fmt.Sprintf(`{"time":"x","level":"INFO","msg":"xdpingest stopped","received":%d,"malformed":0,"sink.nats://127.0.0.1:1/s":%q}`,
			received, strings.Join(kv, " "))
	}
	f, err := parseFinalLine(line(100, -1))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.identityErr(false); err != nil {
		t.Fatalf("consistent final line refused: %v", err)
	}
	if err := f.identityErr(true); err == nil {
		t.Errorf("2 in flight at exit accepted as settled")
	}
	for i, fl := range fields {
		f, err := parseFinalLine(line(100, i))
		if err != nil {
			t.Fatal(err)
		}
		if f.identityErr(false) == nil {
			t.Errorf("final line with %s one more: the identity still holds", fl.name)
		}
	}
	if f, _ := parseFinalLine(line(101, -1)); f.identityErr(false) == nil {
		t.Errorf("final line with one more received: the identity still holds")
	}
}

// smallTmpfs mounts a tmpfs of size on a fresh temporary directory.
func smallTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		if errors.Is(err, unix.EPERM) {
			testutil.Skip(t, "can't mount a small tmpfs to fill: needs CAP_SYS_ADMIN: "+err.Error())
		}
		t.Fatalf("can't mount a tmpfs on %s: %v", dir, err)
	}
	// Registered after TempDir's, so it runs before the directory is removed.
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("can't unmount the tmpfs on %s: %v", dir, err)
		}
	})
	return dir
}

// checkPcapFile reads file whole with sink/pcapfile and with tcpdump, marks
// every record's datagram in tr and returns the number of records. A record
// cut short, a record that does not parse, or tcpdump's "cut short" or
// "truncated" is an error.
func checkPcapFile(t *testing.T, tcpdump, file string, tr *seqSet) int {
	t.Helper()
	n := 0
	if err := pcapfile.ReadFile(file, func(rec pcapfile.Record) error {
		var d datapath.Datagram
		if err := datapath.ParseFrame(rec.Data, &d); err != nil {
			return fmt.Errorf("record %d does not parse: %w", n, err)
		}
		n++
		tr.Mark(bench.DecodeSized(d.Payload))
		return nil
	}); err != nil {
		t.Errorf("%s: %v", file, err)
	}
	cmd := exec.Command(tcpdump, "-nn", "-r", file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	msg := strings.ToLower(stderr.String())
	if err != nil || strings.Contains(msg, "cut short") || strings.Contains(msg, "truncated") {
		t.Errorf("tcpdump -r %s: %v: %s", file, err, stderr.String())
	} else if lines := bytes.Count(out, []byte("\n")); lines != n {
		t.Errorf("tcpdump -r %s: %d packets, our reader %d", file, lines, n)
	}
	return n
}

// Issue 10, faults: the pcap directory on an 8 MiB tmpfs fills mid-run.
// Every .pcap holds whole records, the loss is counted while the disk is
// full, and once files are removed writing resumes by itself.
func TestFaultPcapDiskFull(t *testing.T) {
	testutil.RequireBPF(t)
	tcpdump := testutil.RequireProgram(t, "tcpdump")
	// MTU 1600: IPv6 carries the 1472-byte payloads unfragmented too.
	b := testutil.NewBed(t, testbed.Config{MTU: 1600})
	dir := smallTmpfs(t, "8m")
	srv := startServer(t, b, "--ports", "9000", "--sink", "pcap:"+dir+"?max_mb=1")
	snd := newSender(t, b, 9000)
	// Settled: written or dropped. While the disk is full nothing is
	// written, so pacing on what was written alone would stall.
	settled := func() uint64 {
		m := srv.scrape()
		return uint64(m.Sum("xdpingest_sink_written_total") + m.Sum("xdpingest_sink_dropped_total"))
	}
	sendRange := func(from, to uint64) {
		t.Helper()
		base := settled()
		if err := paced(from, to, 1024, snd.send, func() uint64 { return settled() - base }); err != nil {
			t.Fatal(err)
		}
	}
	diskDrops := func(m promtext.Samples) float64 {
		return m.Sum("xdpingest_sink_dropped_total", `reason="no_space"`) + m.Sum("xdpingest_sink_dropped_total", `reason="write_failed"`)
	}

	// Fill: the sized datagrams average ~800 bytes a record, so 8 MiB is
	// full after ~10,000. Go on well past the first loss, bounded.
	const limit = 120_000
	var seq uint64
	for seq < limit {
		sendRange(seq, seq+2000)
		seq += 2000
		if diskDrops(srv.scrape()) >= 5000 {
			break
		}
	}
	full := waitQuiet(t, srv, 15*time.Second)
	t.Logf("disk full after %d sent: %s", seq, dump(full))
	if diskDrops(full) == 0 {
		t.Fatalf("sent %d datagrams (~%d MiB of records) to an 8 MiB disk and no loss is counted no_space or write_failed:\n%s", seq, seq*800>>20, dump(full))
	}
	if c := full.Sum("xdpingest_sink_connected"); c != 0 {
		t.Errorf("sink_connected %v on a full disk, want 0", c)
	}
	if err := sinkIdentityErr(full, true); err != nil {
		t.Error(err)
	}
	if err := afxdpIdentityErr(full); err != nil {
		t.Error(err)
	}

	// The finished files are whole; remove them to make room.
	tr := newSeqSet(bench.MaxSized)
	first, err := sink.PcapFiles(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) == 0 {
		t.Fatalf("no finished file on the full disk")
	}
	records := 0
	for _, f := range first {
		records += checkPcapFile(t, tcpdump, f, tr)
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d finished files with %d records on the full disk, removed", len(first), records)

	// Room again. The sink retries a second after its last failure; what
	// is sent after that must all be written.
	time.Sleep(1500 * time.Millisecond)
	const after = 3000 // ~2.4 MiB
	resumeFrom := seq
	sendRange(seq, seq+after)
	seq += after
	resumed := waitQuiet(t, srv, 15*time.Second)
	if err := sinkIdentityErr(resumed, true); err != nil {
		t.Error(err)
	}
	if err := afxdpIdentityErr(resumed); err != nil {
		t.Error(err)
	}
	if d := diskDrops(resumed) - diskDrops(full); d != 0 {
		t.Errorf("with room again %v more datagrams dropped for the disk:\n%s", d, dump(resumed))
	}
	if c := resumed.Sum("xdpingest_sink_connected"); c != 1 {
		t.Errorf("sink_connected %v once files are written again, want 1", c)
	}
	if w := resumed.Sum("xdpingest_sink_written_total") - full.Sum("xdpingest_sink_written_total"); w != after {
		t.Errorf("with room again %v of %d datagrams written:\n%s", w, after, dump(resumed))
	}

	if code := srv.stop(syscall.SIGTERM, 5*time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
	final := finalAccounting(t, srv, true)
	if final.received != uint64(resumed.Sum("xdpingest_rx_packets_total")) {
		t.Errorf("the final line says %d received, the last scrape %v", final.received, resumed.Sum("xdpingest_rx_packets_total"))
	}
	if partial, _ := sink.PcapFiles(dir, true); len(partial) != 0 {
		if rest, _ := sink.PcapFiles(dir, false); len(rest) != len(partial) {
			t.Errorf("unfinished .part files after shutdown: %v", partial)
		}
	}
	rest, err := sink.PcapFiles(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rest {
		records += checkPcapFile(t, tcpdump, f, tr)
	}
	unique, dups, bad := tr.Counts()
	var written uint64
	for _, s := range final.sinks {
		written = s["written"]
	}
	t.Logf("sent %d, received %d, in the files %d (%d distinct), counted written %d", seq, final.received, records, unique, written)
	if dups != 0 || bad != 0 {
		t.Errorf("%d datagrams in the files twice, %d records not ours", dups, bad)
	}
	if uint64(records) != written {
		t.Errorf("%d records in the files, %d counted written", records, written)
	}
	if n, first := tr.Missing(resumeFrom, resumeFrom+after); n != 0 {
		t.Errorf("%d of the %d datagrams sent after space came back are not in the files (first %v)", n, after, first)
	}
}

// Issue 10, faults: the UDP relay's collector is not listening (ICMP port
// unreachable). The server keeps running, counts the loss, /healthz names
// the failing sink, and once a collector listens datagrams arrive again.
func TestFaultUDPRelayUnreachable(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{MTU: 1600})
	target := netip.AddrPortFrom(b.Gen.IPv4, 7788) // no socket yet: Gen answers port unreachable
	sinkName := "udp://" + target.String()
	srv := startServer(t, b, "--ports", "9000", "--sink", sinkName)
	snd := newSender(t, b, 9000)

	// A steady trickle while nothing listens.
	var seq atomic.Uint64
	stop := make(chan struct{})
	trickling := make(chan struct{})
	go func() {
		defer close(trickling)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			i := seq.Add(1) - 1
			snd.send(i)
		}
	}()
	stopTrickle := sync.OnceFunc(func() { close(stop); <-trickling })
	defer stopTrickle()

	health := func() (int, string) {
		resp, err := srv.client.Get("http://" + srv.metrics + "/healthz")
		if err != nil {
			t.Fatalf("/healthz: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	// The sink window is 10 s: poll up to 15.
	deadline := time.Now().Add(15 * time.Second)
	var code int
	var body string
	for {
		select {
		case <-srv.done:
			t.Fatalf("the server exited (%d) while its collector refused", srv.exit)
		default:
		}
		code, body = health()
		if code == http.StatusServiceUnavailable && strings.Contains(body, sinkName) || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	refused := srv.scrape()
	t.Logf("after %d datagrams to a refusing collector: /healthz %d %q\n%s", seq.Load(), code, strings.TrimSpace(body), dump(refused))
	sendFailed := refused.Sum("xdpingest_sink_dropped_total", `reason="send_failed"`)
	errs := refused.Sum("xdpingest_sink_errors_total")
	if sendFailed == 0 || errs == 0 {
		t.Errorf("the collector refused for 15 s: send_failed %v, sink errors %v; want both counted", sendFailed, errs)
	}
	if errs != sendFailed {
		t.Errorf("sink_errors_total %v, send_failed %v: each failed send is one error and one dropped datagram", errs, sendFailed)
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, sinkName) {
		t.Errorf("/healthz %d %q after 15 s of a refusing collector; want 503 naming %s", code, strings.TrimSpace(body), sinkName)
	}

	// A collector appears: datagrams arrive again.
	var coll *net.UDPConn
	if err := b.Gen.Do(func() (err error) {
		coll, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(target))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer coll.Close()
	coll.SetReadBuffer(8 << 20)
	const n = 20000
	tr := newSeqSet(bench.MaxSized)
	var arrived atomicCount
	collDone := make(chan struct{})
	go func() {
		defer close(collDone)
		buf := make([]byte, 2048)
		for {
			coll.SetReadDeadline(time.Now().Add(5 * time.Second))
			k, _, err := coll.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			tr.Mark(bench.DecodeSized(buf[:k]))
			arrived.add(1)
		}
	}()
	deadline = time.Now().Add(5 * time.Second)
	for arrived.load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("5 s after the collector started listening nothing arrived:\n%s", dump(srv.scrape()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopTrickle()
	before := waitQuiet(t, srv, 10*time.Second)
	from := seq.Load()
	base := arrived.load()
	if err := paced(from, from+n, 512, snd.send, func() uint64 { return arrived.load() - base }); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for arrived.load()-base < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	listening := waitQuiet(t, srv, 10*time.Second)
	failedAfter := listening.Sum("xdpingest_sink_dropped_total", `reason="send_failed"`) - before.Sum("xdpingest_sink_dropped_total", `reason="send_failed"`)
	missing, _ := tr.Missing(from, from+n)
	t.Logf("with a collector: %d of %d arrived, %v counted send_failed", n-missing, n, failedAfter)
	if missing != uint64(failedAfter) {
		t.Errorf("with a collector listening %d of %d datagrams did not arrive and %v were counted send_failed", missing, n, failedAfter)
	}
	if missing > n/100 {
		t.Errorf("with a collector listening %d of %d datagrams did not arrive", missing, n)
	}
	if err := sinkIdentityErr(listening, true); err != nil {
		t.Error(err)
	}
	if err := afxdpIdentityErr(listening); err != nil {
		t.Error(err)
	}
	// And health comes back once the window holds only good sends.
	deadline = time.Now().Add(15 * time.Second)
	for next := from + n; ; next++ {
		code, body = health()
		if code == http.StatusOK || time.Now().After(deadline) {
			break
		}
		snd.send(next) // keep the sink offered something
		time.Sleep(250 * time.Millisecond)
	}
	if code != http.StatusOK {
		t.Errorf("/healthz %d %q 15 s after the collector came back", code, strings.TrimSpace(body))
	}
	waitQuiet(t, srv, 10*time.Second)
	if code := srv.stop(syscall.SIGTERM, 5*time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
	finalAccounting(t, srv, true)
	coll.Close()
	<-collDone
	if _, dups, bad := tr.Counts(); dups != 0 || bad != 0 {
		t.Errorf("the collector got %d duplicates and %d datagrams not ours", dups, bad)
	}
}

// seqSet records which sequence numbers arrived and how often; it grows
// as numbers come, so a run need not know its length in advance.
type seqSet struct {
	mu        sync.Mutex
	seen      []uint8 // arrivals per number, saturating at 255
	unique    uint64
	dups, bad uint64
	limit     uint64
}

func newSeqSet(limit uint64) *seqSet { return &seqSet{limit: limit} }

// Mark records one arrival; ok=false (or a number past the limit) counts
// as not ours.
func (s *seqSet) Mark(seq uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok || seq >= s.limit {
		s.bad++
		return
	}
	if seq >= uint64(len(s.seen)) {
		s.seen = slices.Grow(s.seen, int(seq)+1-len(s.seen))[:seq+1]
	}
	switch s.seen[seq] {
	case 0:
		s.unique++
	case 255:
		s.dups++
		return
	default:
		s.dups++
	}
	s.seen[seq]++
}

// Seen reports whether seq arrived.
func (s *seqSet) Seen(seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return seq < uint64(len(s.seen)) && s.seen[seq] > 0
}

// Missing counts the numbers of [from, to) that did not arrive and
// returns the first few.
func (s *seqSet) Missing(from, to uint64) (uint64, []uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n uint64
	var first []uint64
	for i := from; i < to; i++ {
		if i >= uint64(len(s.seen)) || s.seen[i] == 0 {
			n++
			if len(first) < 8 {
				first = append(first, i)
			}
		}
	}
	return n, first
}

// Counts returns the distinct numbers seen, the duplicates and the
// arrivals not ours.
func (s *seqSet) Counts() (unique, dups, bad uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unique, s.dups, s.bad
}
