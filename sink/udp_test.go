//go:build linux

package sink

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// listenUDP opens a UDP socket on addr inside side's namespace with a large
// receive buffer (SO_RCVBUFFORCE: the namespace's rmem_max is small).
func listenUDP(t testing.TB, side *testbed.Side, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var conn *net.UDPConn
	err := side.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return err
		}
		rc, err := conn.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
		}); err != nil {
			return err
		}
		return serr
	})
	if err != nil {
		t.Fatalf("can't listen on %s in %s: %v", addr, side.Netns, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// openUDPIn opens a udp:// sink inside side's namespace.
func openUDPIn(t testing.TB, side *testbed.Side, url string, opts Options) Sink {
	t.Helper()
	spec, err := Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	var s Sink
	if err := side.Do(func() error {
		var err error
		s, err = Open(context.Background(), spec, opts)
		return err
	}); err != nil {
		t.Fatalf("can't open %s in %s: %v", url, side.Netns, err)
	}
	return s
}

// The relay delivers every datagram, IPv4 and IPv6, sizes 1..1472, to a
// collector in the other namespace.
func TestUDPRelayDelivers(t *testing.T) {
	b := testutil.NewBed(t, testbed.Config{})
	for _, rx := range []netip.Addr{testbed.RxIPv4, testbed.RxIPv6} {
		t.Run(rx.String(), func(t *testing.T) {
			collector := netip.AddrPortFrom(rx, 9999)
			conn := listenUDP(t, b.Rx, collector)
			s := openUDPIn(t, b.Gen, "udp://"+collector.String(), Options{Workers: 2})
			const n = 30000
			tr := bench.NewTracker(n)
			var received atomic.Uint64
			go func() {
				buf := make([]byte, 65536)
				for {
					k, err := conn.Read(buf)
					if err != nil {
						return
					}
					seq, ok := bench.DecodeSized(buf[:k])
					tr.Mark(seq, ok)
					received.Add(1)
				}
			}()
			// Two workers send alternate batches; the sender waits while
			// more than a window is unaccounted for, so that a busy machine
			// slows the test rather than overflowing the collector.
			g := gen{mixed: true}
			dgs := make([]datapath.Datagram, 64)
			buf := make([]byte, 64*slotSize)
			const window = 2048
			for i := uint64(0); i < n; i += 64 {
				k := min(64, n-i)
				deadline := time.Now().Add(30 * time.Second)
				for i-received.Load() > window {
					if time.Now().After(deadline) {
						t.Fatalf("collector stuck at %d of %d sent", received.Load(), i)
					}
					time.Sleep(100 * time.Microsecond)
				}
				if err := s.Writer(int(i/64) % 2).Write(g.batch(dgs[:k], buf, i)); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "the collector to receive everything", func() bool { return received.Load() >= n })
			time.Sleep(20 * time.Millisecond) // anything extra would show as a duplicate
			if err := tr.Check(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			st := s.Stats()
			checkIdentity(t, st)
			if st.Written != n || st.WrittenBytes != payloadTotal(0, n) || st.Errors != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// A collector that is not listening: the ICMP errors come back as failed
// sends, each counted, and the relay goes on. Linux reports them on the next
// send only, and sendmmsg loses the error when it hits a datagram other than
// the first of a call (that datagram is sent by the next call), so the test
// sends one datagram per Write.
func TestUDPRelayRefused(t *testing.T) {
	b := testutil.NewBed(t, testbed.Config{})
	s := openUDPIn(t, b.Gen, fmt.Sprintf("udp://%s:9", testbed.RxIPv4), Options{})
	g := gen{}
	dgs := make([]datapath.Datagram, 1)
	buf := make([]byte, slotSize)
	var errs int
	for i := uint64(0); i < 20; i++ {
		if err := s.Writer(0).Write(g.batch(dgs, buf, i)); err != nil {
			errs++
			if !strings.Contains(err.Error(), "connection refused") {
				t.Errorf("write: %v", err)
			}
		}
		time.Sleep(5 * time.Millisecond) // let the ICMP error come back
	}
	st := s.Stats()
	checkIdentity(t, st)
	if errs == 0 || st.Dropped["send_failed"] != uint64(errs) || st.Errors != uint64(errs) || st.Written == 0 {
		t.Fatalf("%d failed writes, stats %+v", errs, st)
	}
	t.Logf("%d of 20 refused", errs)
	s.Close()
	dgs = make([]datapath.Datagram, 3)
	if err := s.Writer(0).Write(g.batch(dgs, make([]byte, 3*slotSize), 0)); err == nil || s.Stats().Dropped["closed"] != 3 {
		t.Fatalf("write after close: %v, %+v", err, s.Stats())
	}
	checkIdentity(t, s.Stats())
}

func BenchmarkUDPRelay(b *testing.B) {
	bed := testutil.NewBed(b, testbed.Config{})
	collector := netip.AddrPortFrom(testbed.RxIPv4, 9999)
	listenUDP(b, bed.Rx, collector) // never read: the benchmark measures the sender
	s := openUDPIn(b, bed.Gen, "udp://"+collector.String(), Options{})
	defer s.Close()
	w := s.Writer(0)
	dgs := make([]datapath.Datagram, 64)
	for i := range dgs {
		dgs[i] = testDatagram(false, 0, make([]byte, 22)) // 64-byte frames on the wire
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
}
