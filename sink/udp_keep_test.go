//go:build linux

package sink

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// The relay's test bed: the sink runs in Rx, the collector listens in a peer
// namespace behind it ("another host"), on its IPv4 and IPv6 addresses.
type relayBed struct {
	*testbed.Bed
	peer *testbed.Peer
	// coll are the collector's addresses by family, conns its sockets.
	coll  [2]netip.AddrPort
	conns [2]*net.UDPConn
}

const collPort = 7777

func newRelayBed(t *testing.T, cfg testbed.Config) *relayBed {
	t.Helper()
	b := testutil.NewBed(t, cfg)
	p, err := b.AddPeer("coll")
	if err != nil {
		t.Fatal(err)
	}
	rb := &relayBed{Bed: b, peer: p}
	rb.coll = [2]netip.AddrPort{netip.AddrPortFrom(p.IPv4, collPort), netip.AddrPortFrom(p.IPv6, collPort)}
	for f := range rb.coll {
		rb.conns[f] = listenUDP(t, p.Side, rb.coll[f])
	}
	return rb
}

// url is the sink URL for the collector's addresses of the families in fams
// ("4", "6" or "46"), with the query q.
func (rb *relayBed) url(fams, q string) string {
	var hs []string
	for _, c := range fams {
		hs = append(hs, rb.coll[map[rune]int{'4': famIPv4, '6': famIPv6}[c]].String())
	}
	u := "udp://" + strings.Join(hs, ",")
	if q != "" {
		u += "?" + q
	}
	return u
}

// testExporters are the senders of the keep-source tests: two addresses
// per family. They need not exist anywhere: the sink writes whatever source
// the datagram names.
var testExporters = []netip.AddrPort{
	netip.AddrPortFrom(testbed.GenIPv4, 40001),
	netip.MustParseAddrPort("198.18.0.11:40002"),
	netip.AddrPortFrom(testbed.GenIPv6, 40003),
	netip.MustParseAddrPort("[2001:db8::11]:40004"),
}

// putRelayPayload writes datagram seq's payload of size bytes (at least 8)
// into buf: seq, then a filler that depends on seq.
func putRelayPayload(buf []byte, seq uint64, size int) []byte {
	p := buf[:size]
	binary.BigEndian.PutUint64(p, seq)
	for k := 8; k < size; k++ {
		p[k] = byte(seq*131 + uint64(k)*7)
	}
	return p
}

// decodeRelayPayload returns the sequence number of a payload
// putRelayPayload wrote, and false if it is not one.
func decodeRelayPayload(p []byte) (uint64, bool) {
	if len(p) < 8 {
		return 0, false
	}
	seq := binary.BigEndian.Uint64(p)
	for k := 8; k < len(p); k++ {
		if p[k] != byte(seq*131+uint64(k)*7) {
			return seq, false
		}
	}
	return seq, true
}

// relaySize is the payload size of datagram seq: mostly below the MTU,
// every 25th one from large, which take fragments.
func relaySize(seq uint64, large []int) int {
	if seq%25 == 0 {
		return large[(seq/25)%uint64(len(large))]
	}
	return 8 + int(seq*37%1465) // 8..1472
}

// relayCollector reads the collector's sockets and checks each datagram:
// its payload, the socket it came to (the collector's address of its
// exporter's family) and its source.
type relayCollector struct {
	t *testing.T
	// exporter returns the exporter of a sequence number, want the source
	// the collector should see (port 0: any port of that address).
	exporter func(seq uint64) netip.AddrPort
	want     func(seq uint64) netip.AddrPort
	size     func(seq uint64) int

	mu       sync.Mutex
	seen     map[uint64]int
	bad      []string
	received atomic.Uint64
	bytes    atomic.Uint64
	wg       sync.WaitGroup
	done     chan struct{}
	once     sync.Once
}

func (rb *relayBed) collect(t *testing.T, exporter, want func(uint64) netip.AddrPort, size func(uint64) int) *relayCollector {
	rc := &relayCollector{t: t, exporter: exporter, want: want, size: size, seen: map[uint64]int{}, done: make(chan struct{})}
	for f, conn := range rb.conns {
		rc.wg.Add(1)
		go func() {
			defer rc.wg.Done()
			buf := make([]byte, 1<<16)
			for {
				conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				k, from, err := conn.ReadFromUDPAddrPort(buf)
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					select {
					case <-rc.done:
						return
					default:
						continue
					}
				}
				if err != nil {
					return
				}
				rc.check(f, from, buf[:k])
			}
		}()
	}
	t.Cleanup(rc.stop)
	return rc
}

// stop waits for the readers to see nothing for 100 ms and return.
func (rc *relayCollector) stop() {
	rc.once.Do(func() { close(rc.done) })
	rc.wg.Wait()
}

func (rc *relayCollector) check(fam int, from netip.AddrPort, p []byte) {
	seq, ok := decodeRelayPayload(p)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.received.Add(1)
	rc.bytes.Add(uint64(len(p)))
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	want := rc.want(seq)
	switch {
	case !ok:
		rc.bad = append(rc.bad, fmt.Sprintf("a %d-byte payload from %s that is not ours (seq %d?)", len(p), from, seq))
	case len(p) != rc.size(seq):
		rc.bad = append(rc.bad, fmt.Sprintf("datagram %d: %d bytes, want %d", seq, len(p), rc.size(seq)))
	case udpFamily(rc.exporter(seq).Addr()) != fam:
		rc.bad = append(rc.bad, fmt.Sprintf("datagram %d from %s arrived at the collector's IPv%d address", seq, rc.exporter(seq), 4+2*fam))
	case from.Addr() != want.Addr() || want.Port() != 0 && from.Port() != want.Port():
		rc.bad = append(rc.bad, fmt.Sprintf("datagram %d: from %s, want %s", seq, from, want))
	default:
		rc.seen[seq]++
	}
}

// verify reports what is wrong with the datagrams the collector got
// (not ours, wrong source or size, duplicates) and returns those of [0, n)
// that did not arrive.
func (rc *relayCollector) verify(n uint64) (missing []uint64) {
	rc.t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for i, b := range rc.bad {
		if i == 10 {
			rc.t.Errorf("... and %d more", len(rc.bad)-10)
			break
		}
		rc.t.Error(b)
	}
	var dups []uint64
	for i := range n {
		switch c := rc.seen[i]; {
		case c == 0:
			missing = append(missing, i)
		case c > 1:
			dups = append(dups, i)
		}
	}
	if len(dups) > 0 || uint64(len(rc.seen)) != n-uint64(len(missing)) {
		rc.t.Errorf("of %d datagrams %d arrived more than once (first %v); %d distinct seen, %d missing",
			n, len(dups), dups[:min(len(dups), 10)], len(rc.seen), len(missing))
	}
	return missing
}

// sendRelay writes datagrams [from, to) to s, datagram i from exporter
// i%len(exps) and sized by size, with two writers in two goroutines: as a
// NIC's receive-side scaling does, each exporter's datagrams go to one
// writer (exporter e's to writer e%2), in batches of 32. Each writer waits
// while more than window datagrams are unaccounted for at the collector.
// It returns what Write returned that was not nil.
func sendRelay(t *testing.T, s Sink, from, to uint64, exps []netip.AddrPort, size func(uint64) int, received func() uint64) []error {
	t.Helper()
	const batch, window = 32, 1024
	var wg sync.WaitGroup
	var sent atomic.Uint64
	var mu sync.Mutex
	var writeErrs []error
	stuck := make(chan error, 2)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dgs := make([]datapath.Datagram, 0, batch)
			buf := make([]byte, batch*(1<<16))
			for seq := from; seq < to; seq++ {
				e := seq % uint64(len(exps))
				if int(e)%2 == w {
					dst := netip.AddrPortFrom(testbed.RxIPv4, 9000)
					if exps[e].Addr().Is6() {
						dst = netip.AddrPortFrom(testbed.RxIPv6, 9000)
					}
					p := putRelayPayload(buf[len(dgs)<<16:], seq, size(seq))
					dgs = append(dgs, datapath.Datagram{Src: exps[e], Dst: dst, Payload: p})
				}
				if len(dgs) < batch && seq+1 < to || len(dgs) == 0 {
					continue
				}
				deadline := time.Now().Add(30 * time.Second)
				for sent.Load() > received()+window {
					if time.Now().After(deadline) {
						stuck <- fmt.Errorf("collector stuck at %d of %d sent", received(), sent.Load())
						return
					}
					time.Sleep(100 * time.Microsecond)
				}
				if err := s.Writer(w).Write(dgs); err != nil {
					mu.Lock()
					writeErrs = append(writeErrs, err)
					mu.Unlock()
				}
				sent.Add(uint64(len(dgs)))
				dgs = dgs[:0]
			}
		}()
	}
	wg.Wait()
	close(stuck)
	for err := range stuck {
		t.Fatal(err)
	}
	return writeErrs
}

// exporterOf returns the exporter of datagram seq among exps.
func exporterOf(exps []netip.AddrPort) func(uint64) netip.AddrPort {
	return func(seq uint64) netip.AddrPort { return exps[seq%uint64(len(exps))] }
}

// The sink with source=original, IPv4 and IPv6, to a collector behind the
// receiving namespace: the collector's recvfrom sees each datagram once,
// from its exporter's address and port, with its payload byte for byte,
// sizes from 8 bytes to the largest UDP datagram (65507 bytes over IPv4,
// 65527 over IPv6), which go in fragments. source=relay to the same
// collector sends them from the relay's addresses, each family to the
// collector's address of that family.
func TestUDPKeepSource(t *testing.T) {
	for _, tc := range []struct {
		name string
		mtu  int
		q    string
	}{
		{"original", 1500, "source=original"},
		{"original-mtu9000", 9000, "source=original"},
		{"relay", 1500, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rb := newRelayBed(t, testbed.Config{MTU: tc.mtu})
			large := []int{1473, 1480, 1481, 2953, 2961, 8192, 8953, 9000, 16384, 32768, 65000, maxUDPPayload4, maxUDPPayload6}
			exporter := exporterOf(testExporters)
			size := func(seq uint64) int {
				sz := relaySize(seq, large)
				if exporter(seq).Addr().Is4() {
					sz = min(sz, maxUDPPayload4)
				}
				return sz
			}
			want := exporter
			if tc.q == "" {
				relay := [2]netip.Addr{rb.peer.RxEnd.IPv4, rb.peer.RxEnd.IPv6}
				want = func(seq uint64) netip.AddrPort {
					return netip.AddrPortFrom(relay[udpFamily(exporter(seq).Addr())], 0)
				}
			}
			rc := rb.collect(t, exporter, want, size)
			s := openUDPIn(t, rb.Rx, rb.url("46", tc.q), Options{Workers: 2})
			const n = 20000
			if errs := sendRelay(t, s, 0, n, testExporters, size, rc.received.Load); errs != nil {
				t.Fatal(errs)
			}
			waitFor(t, "the collector to receive everything", func() bool { return rc.received.Load() >= n })
			rc.stop() // after 100 ms of nothing more: anything extra would show as a duplicate
			if missing := rc.verify(n); len(missing) > 0 {
				t.Errorf("%d datagrams missing, first %v", len(missing), missing[:min(10, len(missing))])
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			st := s.Stats()
			checkIdentity(t, st)
			if st.Written != n || st.WrittenBytes != rc.bytes.Load() || st.Errors != 0 || st.DroppedTotal() != 0 {
				t.Fatalf("stats %+v; the collector got %d bytes", st, rc.bytes.Load())
			}
		})
	}
}

// Payloads of 0 to 7 bytes keep their exporter too.
func TestUDPKeepSourceTiny(t *testing.T) {
	rb := newRelayBed(t, testbed.Config{})
	s := openUDPIn(t, rb.Rx, rb.url("46", "source=original"), Options{})
	defer s.Close()
	buf := make([]byte, 1<<16)
	for _, exp := range testExporters {
		f := udpFamily(exp.Addr())
		for size := range 8 {
			p := []byte("abcdefg")[:size]
			d := datapath.Datagram{Src: exp, Dst: netip.AddrPortFrom(testbed.RxIPv4, 9000), Payload: p}
			if err := s.Writer(0).Write([]datapath.Datagram{d}); err != nil {
				t.Fatal(err)
			}
			rb.conns[f].SetReadDeadline(time.Now().Add(5 * time.Second))
			k, from, err := rb.conns[f].ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("%d bytes from %s: %v", size, exp, err)
			}
			if from != exp || string(buf[:k]) != string(p) {
				t.Fatalf("got %q from %s, want %q from %s", buf[:k], from, p, exp)
			}
		}
	}
	checkIdentity(t, s.Stats())
}

// setRouteMTU sets the MTU of Rx's routes to the collector's addresses.
func (rb *relayBed) setRouteMTU(t *testing.T, mtu int) {
	t.Helper()
	for _, c := range rb.coll {
		args := []string{"route", "replace", c.Addr().String(), "dev", rb.peer.RxEnd.Link, "mtu", strconv.Itoa(mtu)}
		if c.Addr().Is6() {
			args = append([]string{"-6"}, args...)
		}
		if err := rb.Rx.Run("ip", args...); err != nil {
			t.Fatal(err)
		}
	}
}

// A route MTU smaller than the interface's: the kernel fragments to it,
// also when it shrinks under a running sink (IPv6 routers don't fragment:
// the sender must cut to the path's MTU).
func TestUDPKeepSourceRouteMTU(t *testing.T) {
	rb := newRelayBed(t, testbed.Config{})
	rb.setRouteMTU(t, 1400)
	large := []int{1300, 1452, 3000, 20000, maxUDPPayload4}
	size := func(seq uint64) int { return large[(seq/2)%uint64(len(large))] }
	exps := []netip.AddrPort{testExporters[0], testExporters[2]}
	rc := rb.collect(t, exporterOf(exps), exporterOf(exps), size)
	s := openUDPIn(t, rb.Rx, rb.url("46", "source=original"), Options{Workers: 2})
	defer s.Close()
	const n = 400
	if errs := sendRelay(t, s, 0, n, exps, size, rc.received.Load); errs != nil {
		t.Fatal(errs)
	}
	waitFor(t, "the collector to receive everything", func() bool { return rc.received.Load() >= n })
	rb.setRouteMTU(t, 1280)
	if errs := sendRelay(t, s, n, 2*n, exps, size, func() uint64 { return rc.received.Load() - n }); errs != nil {
		t.Fatal(errs)
	}
	waitFor(t, "the collector to receive everything", func() bool { return rc.received.Load() >= 2*n })
	rc.stop()
	if missing := rc.verify(2 * n); len(missing) > 0 {
		t.Errorf("%d datagrams missing, first %v", len(missing), missing[:min(10, len(missing))])
	}
	st := s.Stats()
	checkIdentity(t, st)
	if st.Written != 2*n || st.Errors != 0 {
		t.Errorf("stats %+v", st)
	}
	// The collector reassembled the IPv6 datagrams from fragments cut to
	// the MTU of the moment: as many as that makes.
	var frags uint64
	for seq := uint64(0); seq < 2*n; seq++ {
		mtu := 1400
		if seq >= n {
			mtu = 1280
		}
		data, room := udpHeaderLen+size(seq), (mtu-ipv6HeaderLen-8)&^7 // 8: the fragment header
		if exps[seq%2].Addr().Is6() && data > mtu-ipv6HeaderLen {
			frags += uint64((data + room - 1) / room)
		}
	}
	out, err := rb.peer.Command("nstat", "-az", "Ip6ReasmReqds").Output()
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(out)); len(f) < 3 || f[len(f)-2] != strconv.FormatUint(frags, 10) {
		t.Errorf("the collector reassembled from %q IPv6 fragments; want %d", f, frags)
	}
}

// source=original with a collector address of one family: the datagrams of
// exporters of the other family can't keep their source there; they are
// dropped and counted (wrong_family), and Write says why.
func TestUDPKeepSourceWrongFamily(t *testing.T) {
	rb := newRelayBed(t, testbed.Config{})
	s := openUDPIn(t, rb.Rx, rb.url("4", "source=original"), Options{})
	defer s.Close()
	dgs := make([]datapath.Datagram, 20)
	buf := make([]byte, 20*64)
	for i := range dgs {
		exp := testExporters[i%len(testExporters)]
		dgs[i] = datapath.Datagram{Src: exp, Payload: putRelayPayload(buf[i*64:], uint64(i), 32)}
	}
	err := s.Writer(0).Write(dgs)
	if err == nil || !strings.Contains(err.Error(), "no address of their family") {
		t.Errorf("write: %v; want an error naming the missing family", err)
	}
	rb.conns[famIPv4].SetReadDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 2048)
	for i := 0; i < 10; i++ {
		k, from, err := rb.conns[famIPv4].ReadFromUDPAddrPort(b)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", i, err)
		}
		seq, ok := decodeRelayPayload(b[:k])
		if !ok || testExporters[seq%4] != from || from.Addr().Is6() {
			t.Errorf("datagram %d (%v) from %s", seq, ok, from)
		}
	}
	st := s.Stats()
	checkIdentity(t, st)
	if st.Written != 10 || st.Dropped["wrong_family"] != 10 || st.Errors != 0 {
		t.Errorf("stats %+v; want 10 written, 10 wrong_family", st)
	}
}

// icmpCounter reads a counter of /proc/net/snmp (IPv4, "Icmp" line) or
// /proc/net/snmp6 in side's namespace.
func icmpCounter(t *testing.T, side *testbed.Side, v6 bool) uint64 {
	t.Helper()
	file, name := "/proc/net/snmp", "InDestUnreachs"
	if v6 {
		file, name = "/proc/net/snmp6", "Icmp6InDestUnreachs"
	}
	out, err := side.Command("cat", file).Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(out), "\n")
	for i, l := range lines {
		f := strings.Fields(l)
		if v6 && len(f) == 2 && f[0] == name {
			n, _ := strconv.ParseUint(f[1], 10, 64)
			return n
		}
		if !v6 && strings.HasPrefix(l, "Icmp: ") && i+1 < len(lines) && strings.HasPrefix(lines[i+1], "Icmp: ") {
			vals := strings.Fields(lines[i+1])
			for j, k := range f {
				if k == name && j < len(vals) {
					n, _ := strconv.ParseUint(vals[j], 10, 64)
					return n
				}
			}
		}
	}
	t.Fatalf("no %s in %s", name, file)
	return 0
}

// A collector that is not listening: its ICMP port unreachable goes to the
// exporter (the packets' source), not to the relay, whose raw socket never
// learns of it. Every datagram counts as written, none as failed.
func TestUDPKeepSourceRefused(t *testing.T) {
	rb := newRelayBed(t, testbed.Config{})
	for _, v6 := range []bool{false, true} {
		f, exp := famIPv4, testExporters[0]
		if v6 {
			f, exp = famIPv6, testExporters[2]
		}
		refusing := netip.AddrPortFrom(rb.coll[f].Addr(), 9) // nothing listens there
		s := openUDPIn(t, rb.Rx, "udp://"+refusing.String()+"?source=original", Options{})
		genBefore, rxBefore := icmpCounter(t, rb.Gen, v6), icmpCounter(t, rb.Rx, v6)
		for i := range 20 {
			d := datapath.Datagram{Src: exp, Payload: putRelayPayload(make([]byte, 64), uint64(i), 64)}
			if err := s.Writer(0).Write([]datapath.Datagram{d}); err != nil {
				t.Errorf("write %d: %v", i, err)
			}
			time.Sleep(5 * time.Millisecond) // as TestUDPRelayRefused: time for an ICMP error to come back
		}
		s.Close()
		gen, rx := icmpCounter(t, rb.Gen, v6)-genBefore, icmpCounter(t, rb.Rx, v6)-rxBefore
		st := s.Stats()
		t.Logf("IPv6 %v: destination unreachable at the exporter %d, at the relay %d; stats %+v", v6, gen, rx, st)
		if gen == 0 || rx != 0 {
			t.Errorf("IPv6 %v: %d port unreachable at the exporter, %d at the relay: want some, none", v6, gen, rx)
		}
		checkIdentity(t, st)
		if st.Written != 20 || st.Errors != 0 || st.DroppedTotal() != 0 {
			t.Errorf("stats %+v: want all 20 written", st)
		}
	}
}

// Per datagram, the sink sending to a collector behind the receiving
// namespace: relay (a UDP socket) against source=original (raw socket and
// headers of our own, IPv4 and IPv6), with 22-byte payloads (64-byte
// frames on the wire) and 1400-byte ones; the last, 8000 bytes at MTU 1500,
// goes in 6 fragments. The collector never reads: this measures the sender.
// Run with -count to alternate the cases.
func BenchmarkUDPKeepSource(b *testing.B) {
	testutil.RequireRoot(b)
	bed := testutil.NewBed(b, testbed.Config{})
	p, err := bed.AddPeer("coll")
	if err != nil {
		b.Fatal(err)
	}
	coll := [2]netip.AddrPort{netip.AddrPortFrom(p.IPv4, collPort), netip.AddrPortFrom(p.IPv6, collPort)}
	for _, c := range coll {
		listenUDP(b, p.Side, c)
	}
	for _, bc := range []struct {
		name string
		fam  int
		q    string
		size int
	}{
		{"relay/v4/22", famIPv4, "", 22},
		{"original/v4/22", famIPv4, "?source=original", 22},
		{"original/v6/22", famIPv6, "?source=original", 22},
		{"relay/v4/1400", famIPv4, "", 1400},
		{"original/v4/1400", famIPv4, "?source=original", 1400},
		{"relay/v4/8000", famIPv4, "", 8000},
		{"original/v4/8000", famIPv4, "?source=original", 8000},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := openUDPIn(b, bed.Rx, "udp://"+coll[bc.fam].String()+bc.q, Options{})
			defer s.Close()
			w := s.Writer(0)
			dgs := make([]datapath.Datagram, 64)
			for i := range dgs {
				dgs[i] = datapath.Datagram{Src: testExporters[2*bc.fam+i%2], Payload: make([]byte, bc.size)}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += len(dgs) {
				if err := w.Write(dgs[:min(len(dgs), b.N-i)]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/datagram")
			if st := s.Stats(); st.Written != uint64(b.N) {
				b.Fatalf("written %d of %d: %+v", st.Written, b.N, st)
			}
		})
	}
}

// No route to the collector: each datagram fails (send_failed, an error);
// when the route is back, they get through again, without a reopen.
func TestUDPKeepSourceNoRoute(t *testing.T) {
	rb := newRelayBed(t, testbed.Config{})
	s := openUDPIn(t, rb.Rx, rb.url("46", "source=original"), Options{})
	defer s.Close()
	routes := [][]string{
		{"route", "del", rb.peer.Prefix4.String(), "dev", rb.peer.RxEnd.Link},
		{"-6", "route", "del", rb.peer.Prefix6.String(), "dev", rb.peer.RxEnd.Link},
	}
	for _, r := range routes {
		if err := rb.Rx.Run("ip", r...); err != nil {
			t.Fatal(err)
		}
	}
	exps := []netip.AddrPort{testExporters[0], testExporters[2]}
	size := func(seq uint64) int { return []int{100, 5000}[seq/2%2] }
	dgs := make([]datapath.Datagram, 4)
	buf := make([]byte, 4*5000)
	batch := func(first uint64) []datapath.Datagram {
		for i := range dgs {
			seq := first + uint64(i)
			dgs[i] = datapath.Datagram{Src: exps[seq%2], Payload: putRelayPayload(buf[i*5000:], seq, size(seq))}
		}
		return dgs
	}
	err := s.Writer(0).Write(batch(0))
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("write without a route: %v; want network unreachable", err)
	}
	st := s.Stats()
	checkIdentity(t, st)
	if st.Dropped["send_failed"] != 4 || st.Errors != 4 || st.Written != 0 {
		t.Errorf("without a route: stats %+v; want 4 send_failed", st)
	}
	for _, r := range routes {
		r[slices.Index(r, "del")] = "add"
		if err := rb.Rx.Run("ip", r...); err != nil {
			t.Fatal(err)
		}
	}
	rc := rb.collect(t, exporterOf(exps), exporterOf(exps), size)
	if err := s.Writer(0).Write(batch(4)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the datagrams sent with the route back", func() bool { return rc.received.Load() >= 4 })
	rc.stop()
	missing := rc.verify(8)
	if len(missing) != 4 || missing[3] != 3 {
		t.Errorf("missing %v; want 0-3", missing)
	}
	if st := s.Stats(); st.Written != 4 || st.Dropped["send_failed"] != 4 {
		t.Errorf("stats %+v", st)
	}
}
