package main

import (
	be "encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// relayExporter is one sender on the generating side, with its own address
// and port.
type relayExporter struct {
	addr netip.AddrPort
	conn *net.UDPConn
}

// relayPayload is datagram seq's payload of size bytes (at least 8): seq,
// then a filler that depends on seq.
func relayPayload(buf []byte, seq uint64, size int) []byte {
	p := buf[:size]
	be.BigEndian.PutUint64(p, seq)
	for k := 8; k < size; k++ {
		p[k] = byte(seq*131 + uint64(k)*7)
	}
	return p
}

func decodeRelayPayload(p []byte) (uint64, bool) {
	if len(p) < 8 {
		return 0, false
	}
	seq := be.BigEndian.Uint64(p)
	for k := 8; k < len(p); k++ {
		if p[k] != byte(seq*131+uint64(k)*7) {
			return seq, false
		}
	}
	return seq, true
}

// relayCollector is a collector's sockets in the peer namespace, which
// record each datagram's number and check its source and payload.
type relayCollector struct {
	name string
	// want returns the source datagram seq should come from; port 0: any.
	want func(seq uint64) netip.AddrPort
	size func(seq uint64) int

	mu       sync.Mutex
	seen     map[uint64]int
	bad      []string
	received atomic.Uint64
	done     chan struct{}
	wg       sync.WaitGroup
}

func newRelayCollector(t *testing.T, side *testbed.Side, name string, addrs []netip.AddrPort, want func(uint64) netip.AddrPort, size func(uint64) int) *relayCollector {
	c := &relayCollector{name: name, want: want, size: size, seen: map[uint64]int{}, done: make(chan struct{})}
	for _, a := range addrs {
		var conn *net.UDPConn
		if err := side.Do(func() (err error) {
			if conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(a)); err != nil {
				return err
			}
			rc, err := conn.SyscallConn()
			if err != nil {
				return err
			}
			var serr error
			rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 16<<20)
			})
			return serr
		}); err != nil {
			t.Fatalf("collector %s: %v", a, err)
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer conn.Close()
			buf := make([]byte, 1<<16)
			for {
				conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				k, from, err := conn.ReadFromUDPAddrPort(buf)
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					select {
					case <-c.done:
						return
					default:
						continue
					}
				}
				if err != nil {
					return
				}
				c.check(netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), buf[:k])
			}
		}()
	}
	t.Cleanup(c.stop)
	return c
}

func (c *relayCollector) check(from netip.AddrPort, p []byte) {
	seq, ok := decodeRelayPayload(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.received.Add(1)
	want := c.want(seq)
	switch {
	case !ok || len(p) != c.size(seq):
		c.bad = append(c.bad, fmt.Sprintf("%s: a %d-byte payload from %s that is not datagram %d's", c.name, len(p), from, seq))
	case from.Addr() != want.Addr() || want.Port() != 0 && from.Port() != want.Port():
		c.bad = append(c.bad, fmt.Sprintf("%s: datagram %d from %s, want %s", c.name, seq, from, want))
	default:
		c.seen[seq]++
	}
}

// stop waits until the sockets have been quiet for 100 ms, and closes them.
func (c *relayCollector) stop() {
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	c.wg.Wait()
}

// count returns how many of [from, to) arrived, and reports the datagrams
// that were not ours, came from the wrong source or arrived twice.
func (c *relayCollector) count(t *testing.T, from, to uint64) uint64 {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, b := range c.bad {
		if i == 10 {
			t.Errorf("... and %d more", len(c.bad)-10)
			break
		}
		t.Error(b)
	}
	c.bad = nil
	var n uint64
	var dups []uint64
	for i := from; i < to; i++ {
		if c.seen[i] > 0 {
			n++
		}
		if c.seen[i] > 1 {
			dups = append(dups, i)
		}
	}
	if len(dups) > 0 {
		t.Errorf("%s: %d datagrams arrived more than once (first %v)", c.name, len(dups), dups[:min(10, len(dups))])
	}
	return n
}

// waitArrived waits up to 10 s for c to have n of [from, to).
func (c *relayCollector) waitArrived(from, to, n uint64) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		c.mu.Lock()
		var k uint64
		for i := from; i < to; i++ {
			if c.seen[i] > 0 {
				k++
			}
		}
		c.mu.Unlock()
		if k >= n {
			return
		}
	}
}

// Issue 12, point 3: udp://...?source=original through the running server.
// Four exporters (two addresses per family, each with its own port) send to
// the server in the receiving namespace, which relays to a collector in a
// third namespace behind it: the relayed packets leave the receiving
// namespace with the exporters' addresses and cross a real route into the
// collector's, with strict reverse-path filtering (rp_filter=1) in both.
// The collector's recvfrom sees every datagram once, from its exporter's
// address and port, byte for byte, sizes up to 65507 bytes (IPv4) and 65527
// (IPv6), which arrive fragmented, are reassembled for the server, and are
// fragmented again by the relay. A second sink, source=relay, to another
// port of the collector, gets the same datagrams from the relay's address.
// Then the collector's route back to the exporters leaves by another
// interface: strict rp_filter drops the relayed IPv4 datagrams (the server
// counts them written: it can't know), loose (rp_filter=2) lets them in.
func TestRelayKeepsSender(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{})
	peer, err := b.AddPeer("coll")
	if err != nil {
		t.Fatal(err)
	}
	extra4, extra6 := netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("2001:db8::11")
	if err := b.AddGenAddrs(extra4, extra6); err != nil {
		t.Fatal(err)
	}
	// What a careful host sets: strict reverse-path filtering everywhere
	// (the effective value is the larger of all and the interface's).
	for _, s := range []struct {
		side  *testbed.Side
		links []string
	}{{b.Rx, []string{b.Rx.Link, peer.RxEnd.Link}}, {peer.Side, []string{peer.Link}}} {
		for _, l := range append([]string{"all", "default"}, s.links...) {
			if err := s.side.SetSysctl("net/ipv4/conf/"+l+"/rp_filter", "1"); err != nil {
				t.Fatal(err)
			}
		}
	}

	exps := make([]relayExporter, 4)
	for i, a := range []netip.AddrPort{
		netip.AddrPortFrom(b.Gen.IPv4, 41001), netip.AddrPortFrom(extra4, 41002),
		netip.AddrPortFrom(b.Gen.IPv6, 41003), netip.AddrPortFrom(extra6, 41004),
	} {
		dst := netip.AddrPortFrom(b.Rx.IPv4, 9000)
		if a.Addr().Is6() {
			dst = netip.AddrPortFrom(b.Rx.IPv6, 9000)
		}
		var c *net.UDPConn
		if err := b.Gen.Do(func() (err error) {
			c, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(a), net.UDPAddrFromAddrPort(dst))
			return err
		}); err != nil {
			t.Fatalf("exporter %s: %v", a, err)
		}
		c.SetWriteBuffer(4 << 20)
		t.Cleanup(func() { c.Close() })
		exps[i] = relayExporter{a, c}
	}
	// Datagrams [0, n) come from all four exporters, the later ones (the
	// reverse-path phases) from the two IPv4 ones.
	const n, m = 6000, 100
	exporter := func(seq uint64) relayExporter {
		if seq < n {
			return exps[seq%4]
		}
		return exps[seq%2]
	}
	large := []int{1473, 2000, 2953, 8192, 16384, 32768, 65000, 65507, 65527}
	size := func(seq uint64) int {
		sz := 8 + int(seq*37%1465) // 8..1472
		if seq%20 == 0 {
			sz = large[(seq/20)%uint64(len(large))]
		}
		if exporter(seq).addr.Addr().Is4() {
			sz = min(sz, 65507)
		}
		return sz
	}
	keep := newRelayCollector(t, peer.Side, "source=original",
		[]netip.AddrPort{netip.AddrPortFrom(peer.IPv4, 7777), netip.AddrPortFrom(peer.IPv6, 7777)},
		func(seq uint64) netip.AddrPort { return exporter(seq).addr }, size)
	relay := newRelayCollector(t, peer.Side, "source=relay",
		[]netip.AddrPort{netip.AddrPortFrom(peer.IPv4, 7778)},
		func(uint64) netip.AddrPort { return netip.AddrPortFrom(peer.RxEnd.IPv4, 0) }, size)

	keepSink := fmt.Sprintf("udp://%s,%s?source=original", netip.AddrPortFrom(peer.IPv4, 7777), netip.AddrPortFrom(peer.IPv6, 7777))
	relaySink := "udp://" + netip.AddrPortFrom(peer.IPv4, 7778).String()
	srv := startServer(t, b, "--ports", "9000", "--sink", keepSink, "--sink", relaySink)

	buf := make([]byte, 1<<16)
	send := func(seq uint64) error {
		_, err := exporter(seq).conn.Write(relayPayload(buf, seq, size(seq)))
		return err
	}
	if err := paced(0, n, 256, send, func() uint64 { return min(keep.received.Load(), relay.received.Load()) }); err != nil {
		t.Fatal(err)
	}
	keep.waitArrived(0, n, n)
	relay.waitArrived(0, n, n)
	for _, c := range []*relayCollector{keep, relay} {
		if got := c.count(t, 0, n); got != n {
			t.Errorf("%s: %d of %d datagrams arrived\n%s", c.name, got, n, dump(srv.scrape()))
		}
	}

	// The collector's route back to the exporters' network leaves by
	// another interface (lo stands for it): strict filtering drops what
	// the relay sends with their addresses.
	if err := peer.Run("ip", "route", "add", "198.18.0.0/24", "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	rpBefore := reversePathDrops(t, peer.Side)
	if err := paced(n, n+m, 32, send, func() uint64 { return relay.received.Load() - n }); err != nil {
		t.Fatal(err)
	}
	relay.waitArrived(n, n+m, m)
	time.Sleep(100 * time.Millisecond)
	strictDrops := reversePathDrops(t, peer.Side) - rpBefore
	var packets uint64 // the filter counts packets: the fragments of the large ones
	for seq := uint64(n); seq < n+m; seq++ {
		packets += uint64(8+size(seq)+1479) / 1480 // IPv4 at MTU 1500 carries 1480 bytes of UDP
	}
	if got := keep.count(t, n, n+m); got != 0 || strictDrops != packets {
		t.Errorf("strict rp_filter with the route back elsewhere: %d of %d arrived, IPReversePathFilter grew by %d; want none, %d packets", got, m, strictDrops, packets)
	}
	// Loose: any route back will do.
	if err := peer.SetSysctl("net/ipv4/conf/all/rp_filter", "2"); err != nil {
		t.Fatal(err)
	}
	if err := paced(n+m, n+2*m, 32, send, func() uint64 { return keep.received.Load() - n }); err != nil {
		t.Fatal(err)
	}
	keep.waitArrived(n+m, n+2*m, m)
	relay.waitArrived(n+m, n+2*m, m)
	if got := keep.count(t, n+m, n+2*m); got != m {
		t.Errorf("loose rp_filter: %d of %d arrived", got, m)
	}
	if got := relay.count(t, n, n+2*m); got != 2*m {
		t.Errorf("source=relay: %d of %d arrived while the collector filtered", got, 2*m)
	}

	// The server counts every datagram written to both sinks, the ones
	// strict filtering dropped beyond it too.
	met := waitQuiet(t, srv, 10*time.Second)
	for _, name := range []string{keepSink[:strings.Index(keepSink, "?")], relaySink} {
		sel := `sink="` + name + `"`
		written, errs := met.Sum("xdpingest_sink_written_total", sel), met.Sum("xdpingest_sink_errors_total", sel)
		dropped := met.Sum("xdpingest_sink_dropped_total", sel)
		if written != n+2*m || errs != 0 || dropped != 0 {
			t.Errorf("sink %s: written %v, errors %v, dropped %v; want %d, 0, 0\n%s", name, written, errs, dropped, n+2*m, dump(met))
		}
	}
	found := false
	for k := range met {
		found = found || strings.HasPrefix(k, "xdpingest_sink_dropped_total{") && strings.Contains(k, `reason="wrong_family"`) && strings.Contains(k, `sink="udp://`)
	}
	if !found {
		t.Errorf("no xdpingest_sink_dropped_total series with reason wrong_family\n%s", dump(met))
	}
	if code := srv.stop(syscall.SIGTERM, 5*time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

// reversePathDrops reads TcpExt IPReversePathFilter (packets dropped by
// rp_filter) in side's namespace.
func reversePathDrops(t *testing.T, side *testbed.Side) uint64 {
	t.Helper()
	out, err := side.Command("cat", "/proc/net/netstat").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(out), "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "TcpExt:" || len(vals) != len(names) {
			continue
		}
		for j, k := range names {
			if k == "IPReversePathFilter" {
				v, _ := strconv.ParseUint(vals[j], 10, 64)
				return v
			}
		}
	}
	t.Fatal("no TcpExt IPReversePathFilter in /proc/net/netstat")
	return 0
}
