package kernel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

const testPort = 5000

// newBed makes a bed and waits until datagrams cross it.
//
// A veth's queueing discipline is attached by the kernel's linkwatch work
// after the link comes up; until that worker runs (microseconds on an idle
// machine, much longer on a busy one), the device has the noop qdisc, which
// drops every packet without an error to the sender. A closed-loop test
// would then wait forever for datagrams that were lost before it began.
func newBed(t testing.TB, cfg testbed.Config) *testbed.Bed {
	t.Helper()
	b := testutil.NewBed(t, cfg)
	start := time.Now()
	for _, fam := range families {
		var ln, c *net.UDPConn
		if err := b.Rx.Do(func() (err error) {
			ln, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(fam.rx, 0)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if err := b.Gen.Do(func() (err error) {
			c, err = net.DialUDP("udp", nil, ln.LocalAddr().(*net.UDPAddr))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		for tries := 0; ; tries++ {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("no %s datagram crossed the bed in 10s", fam.name)
			}
			c.Write([]byte("probe"))
			ln.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, _, err := ln.ReadFromUDPAddrPort(buf); err == nil {
				if tries > 0 {
					t.Logf("%s: the bed passed datagrams after %d lost probes (%v)", fam.name, tries, time.Since(start))
				}
				break
			}
		}
		ln.Close()
		c.Close()
	}
	return b
}

// openRx opens Receivers in the bed's receiving namespace and closes them at
// cleanup.
func openRx(t testing.TB, b *testbed.Bed, cfg Config) ([]*Receiver, []string) {
	t.Helper()
	var rs []*Receiver
	var warnings []string
	if err := b.Rx.Do(func() (err error) {
		var p *Path
		if p, err = Open(cfg); err == nil {
			rs, warnings = p.Workers(), p.Notes()
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, r := range rs {
			r.Close()
		}
	})
	return rs, warnings
}

// newGen makes a generator in the bed's generating namespace.
func newGen(t testing.TB, b *testbed.Bed, cfg bench.UDPGenConfig) *bench.UDPGen {
	t.Helper()
	var g *bench.UDPGen
	if err := b.Gen.Do(func() (err error) {
		g, err = bench.NewUDPGen(cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// receiving runs one goroutine per Receiver that hands every datagram to fn
// until Close. stop closes the Receivers, waits for the goroutines and
// returns the first error other than net.ErrClosed.
type receiving struct {
	wg       sync.WaitGroup
	rs       []*Receiver
	received atomic.Uint64
	mu       sync.Mutex
	err      error
}

func startReceiving(rs []*Receiver, fn func(w int, d *datapath.Datagram) error) *receiving {
	rx := &receiving{rs: rs}
	for w, r := range rs {
		rx.wg.Add(1)
		go func() {
			defer rx.wg.Done()
			batch := make([]datapath.Datagram, 64)
			for {
				n, err := r.Receive(batch)
				if err != nil {
					if !errors.Is(err, net.ErrClosed) {
						rx.fail(fmt.Errorf("worker %d: %w", w, err))
					}
					return
				}
				if n <= 0 || n > len(batch) {
					rx.fail(fmt.Errorf("worker %d: Receive returned n=%d with no error", w, n))
					return
				}
				for i := range batch[:n] {
					if err := fn(w, &batch[i]); err != nil {
						rx.fail(err)
					}
				}
				rx.received.Add(uint64(n))
			}
		}()
	}
	return rx
}

func (rx *receiving) fail(err error) {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	if rx.err == nil {
		rx.err = err
	}
}

func (rx *receiving) stop() error {
	for _, r := range rx.rs {
		r.Close()
	}
	rx.wg.Wait()
	rx.mu.Lock()
	defer rx.mu.Unlock()
	return rx.err
}

// closedLoop returns a Gate that holds the sender while it is more than
// window datagrams ahead of the receivers, and fails after stall without
// progress: the test then holds on a busy machine, where a sender that
// outruns its receiver overflows the socket.
func closedLoop(received func() uint64, window uint64, stall time.Duration) func(uint64) error {
	return func(sent uint64) error {
		last, since := received(), time.Now()
		for {
			r := received()
			if sent < r+window {
				return nil
			}
			if r != last {
				last, since = r, time.Now()
			} else if time.Since(since) > stall {
				return fmt.Errorf("receivers stalled at %d of %d sent for %v", r, sent, stall)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
}

func statsOf(rs []*Receiver) datapath.Stats {
	var s datapath.Stats
	for _, r := range rs {
		s = s.Add(r.Stats())
	}
	return s
}

var families = []struct {
	name     string
	gen, rx  netip.Addr
	wildcard netip.Addr
}{
	{"ipv4", testbed.GenIPv4, testbed.RxIPv4, netip.IPv4Unspecified()},
	{"ipv6", testbed.GenIPv6, testbed.RxIPv6, netip.IPv6Unspecified()},
}

// TestExactlyOnce sends 200,000 sized datagrams (payloads of 1 to 1472
// bytes) over each family, to 1 worker on a single-queue bed and to 2
// workers on a two-queue bed, and checks every datagram arrives once with
// the addresses, ports, queue and time it should have.
func TestExactlyOnce(t *testing.T) {
	const count = 200_000
	const flows = 32
	const srcPort = 40000
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			b := newBed(t, testbed.Config{Queues: workers})
			for _, fam := range families {
				t.Run(fam.name, func(t *testing.T) {
					rs, warnings := openRx(t, b, Config{Ports: []uint16{testPort}, Workers: workers,
						RcvBuf: 4 << 20, ForceRcvBuf: true})
					if len(warnings) > 0 {
						t.Logf("warnings: %q", warnings)
					}
					tr := bench.NewTracker(count)
					start := time.Now().UnixNano()
					perWorker := make([]atomic.Uint64, workers)
					rx := startReceiving(rs, func(w int, d *datapath.Datagram) error {
						seq, ok := bench.DecodeSized(d.Payload)
						tr.Mark(seq, ok)
						perWorker[w].Add(1)
						switch now := time.Now().UnixNano(); {
						case d.Src.Addr() != fam.gen || d.Src.Port() < srcPort || d.Src.Port() >= srcPort+flows:
							return fmt.Errorf("datagram %d: source %v, want %v port %d..%d", seq, d.Src, fam.gen, srcPort, srcPort+flows-1)
						case d.Dst != netip.AddrPortFrom(fam.rx, testPort):
							return fmt.Errorf("datagram %d: destination %v, want %v", seq, d.Dst, netip.AddrPortFrom(fam.rx, testPort))
						case d.Queue != uint32(w):
							return fmt.Errorf("datagram %d: queue %d from worker %d", seq, d.Queue, w)
						case d.RxTime < start-int64(time.Second) || d.RxTime > now+int64(time.Second):
							return fmt.Errorf("datagram %d: receive time %v, outside the test's run", seq, time.Unix(0, d.RxTime))
						case d.Frame != nil:
							return fmt.Errorf("datagram %d: Frame set on the kernel path", seq)
						}
						return nil
					})
					defer rx.stop()

					g := newGen(t, b, bench.UDPGenConfig{
						Dst: netip.AddrPortFrom(fam.rx, testPort), Src: fam.gen, SrcPort: srcPort, Flows: flows,
						Count: count, Encoding: bench.EncodeSized,
						Gate: closedLoop(rx.received.Load, 512, 20*time.Second),
					})
					res, err := g.Run(context.Background())
					if err != nil {
						t.Fatalf("generator: %v (%+v)", err, res)
					}
					if !testutil.WaitFor(10*time.Second, func() bool { return rx.received.Load() >= count }) {
						t.Errorf("received %d of %d", rx.received.Load(), count)
					}
					if err := rx.stop(); err != nil {
						t.Error(err)
					}
					if err := tr.Check(); err != nil {
						t.Error(err)
					}
					st := statsOf(rs)
					if st.Packets != count || st.SocketOverflows != 0 || st.Malformed != 0 || st.Batches == 0 {
						t.Errorf("stats %+v, want %d packets and no loss", st, count)
					}
					var sizes uint64
					for i := uint64(0); i < count; i++ {
						sizes += uint64(bench.SizedLen(i))
					}
					if st.Bytes != sizes {
						t.Errorf("stats count %d payload bytes, sent %d", st.Bytes, sizes)
					}
					for w := range perWorker {
						t.Logf("worker %d: %d datagrams", w, perWorker[w].Load())
						// 32 flows hashed over 2 sockets: all on one is a
						// 2^-31 chance.
						if perWorker[w].Load() == 0 {
							t.Errorf("worker %d received nothing: SO_REUSEPORT spread nothing to it", w)
						}
					}
					t.Logf("%d datagrams in %v (%.0f/s), %d send retries, %d batches (%.1f per batch)",
						count, res.Elapsed, res.PPS(), res.Retries, st.Batches, float64(st.Packets)/float64(st.Batches))
				})
			}
		})
	}
}

// TestPortsAndFamilies receives on two ports of both families with one
// worker (four sockets) and checks each datagram's destination.
func TestPortsAndFamilies(t *testing.T) {
	b := newBed(t, testbed.Config{})
	ports := []uint16{5001, 5002}
	// Without coalescing (Receive sleeps in poll whenever it is drained),
	// and with the time of the read as RxTime.
	rs, _ := openRx(t, b, Config{Ports: ports, RcvBuf: 1 << 20, ForceRcvBuf: true, Coalesce: -1, ReadTimestamps: true})
	if got := len(rs[0].socks); got != 4 {
		t.Fatalf("%d sockets, want 4 (2 ports x 2 families)", got)
	}
	const per = 3000
	var mu sync.Mutex
	got := map[netip.AddrPort]*bench.Tracker{}
	for _, fam := range families {
		for _, p := range ports {
			got[netip.AddrPortFrom(fam.rx, p)] = bench.NewTracker(per)
		}
	}
	rx := startReceiving(rs, func(w int, d *datapath.Datagram) error {
		mu.Lock()
		tr := got[d.Dst]
		mu.Unlock()
		if tr == nil {
			return fmt.Errorf("datagram to unexpected %v", d.Dst)
		}
		if now := time.Now().UnixNano(); d.RxTime > now || d.RxTime < now-int64(10*time.Second) {
			return fmt.Errorf("read time %v, now %v", time.Unix(0, d.RxTime), time.Unix(0, now))
		}
		tr.Mark(bench.DecodeWide(d.Payload))
		return nil
	})
	defer rx.stop()
	// What the kernel dropped on a full socket buffer (it happens when the
	// whole suite loads both cores) is counted, not lost: the loop paces on
	// received + counted, and the check below wants every missing datagram
	// counted as an overflow.
	accounted := func() uint64 { return rx.received.Load() + statsOf(rs).SocketOverflows }
	var sent uint64
	for dst := range got {
		g := newGen(t, b, bench.UDPGenConfig{Dst: dst, Count: per, Size: 16,
			Gate: closedLoop(func() uint64 {
				// The last flow's tail may still be in flight: no wraparound.
				return max(accounted(), sent) - sent
			}, 256, 20*time.Second)})
		if res, err := g.Run(context.Background()); err != nil {
			t.Fatalf("to %v: %v (%+v); receivers: %+v", dst, err, res, statsOf(rs))
		}
		sent += per
	}
	if !testutil.WaitFor(10*time.Second, func() bool { return accounted() >= sent }) {
		t.Errorf("received %d of %d: %+v", rx.received.Load(), sent, statsOf(rs))
	}
	if err := rx.stop(); err != nil {
		t.Error(err)
	}
	var missing uint64
	for dst, tr := range got {
		n, unique, dups, bad := tr.Counts()
		if dups != 0 || bad != 0 {
			t.Errorf("to %v: %v", dst, tr.Check())
		}
		missing += n - unique
	}
	if ovfl := statsOf(rs).SocketOverflows; missing != ovfl {
		t.Errorf("%d datagrams missing, %d counted as socket overflows: the difference was lost uncounted", missing, ovfl)
	} else if missing > 0 {
		t.Logf("%d datagrams dropped on full socket buffers, all counted (SO_RXQ_OVFL)", missing)
	}
}

// TestSocketOverflows overflows a socket with a tiny receive buffer that
// nobody reads, then reads, and checks that every datagram sent was either
// delivered or counted as an overflow.
func TestSocketOverflows(t *testing.T) {
	b := newBed(t, testbed.Config{})
	const burst = 2000
	for _, cmsgOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("cmsgOnly=%v", cmsgOnly), func(t *testing.T) {
			port := uint16(testPort + 10)
			if cmsgOnly {
				port++
			}
			dst := netip.AddrPortFrom(testbed.RxIPv4, port)
			rs, _ := openRx(t, b, Config{Ports: []uint16{port}, Addrs: []netip.Addr{testbed.RxIPv4}, RcvBuf: 1})
			r := rs[0]
			if cmsgOnly {
				// Count from SO_RXQ_OVFL messages alone: no read-back when idle.
				r.noReadback = true
			}
			g := newGen(t, b, bench.UDPGenConfig{Dst: dst, Count: burst, Size: 200})
			if res, err := g.Run(context.Background()); err != nil || res.Sent != burst {
				t.Fatalf("burst: %+v %v", res, err)
			}
			tr := bench.NewTracker(burst)
			rx := startReceiving(rs, func(w int, d *datapath.Datagram) error {
				if len(d.Payload) == 200 {
					tr.Mark(bench.DecodeWide(d.Payload))
				}
				return nil
			})
			defer rx.stop()
			sent := uint64(burst)
			if cmsgOnly {
				// The queued datagrams were queued before the drops and
				// carry no count; one more datagram carries the total.
				testutil.WaitFor(5*time.Second, func() bool { return r.Stats().Packets > 0 })
				time.Sleep(100 * time.Millisecond)
				trailer := newGen(t, b, bench.UDPGenConfig{Dst: dst, Count: 1, Size: 8})
				if _, err := trailer.Run(context.Background()); err != nil {
					t.Fatal(err)
				}
				sent++
			}
			if !testutil.WaitFor(5*time.Second, func() bool {
				s := r.Stats()
				return s.Packets+s.SocketOverflows >= sent
			}) {
				t.Errorf("not all accounted for: %+v of %d sent", r.Stats(), sent)
			}
			st := r.Stats()
			if st.SocketOverflows == 0 || st.SocketOverflows != sent-st.Packets {
				t.Errorf("%d sent, %d received, %d overflows counted: want %d", sent, st.Packets, st.SocketOverflows, sent-st.Packets)
			}
			t.Logf("%d sent, %d received, %d overflows", sent, st.Packets, st.SocketOverflows)
			if err := rx.stop(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestRcvBuf asks for more than net.core.rmem_max (read, never written) and
// checks the warning, and that ForceRcvBuf gets it as root.
func TestRcvBuf(t *testing.T) {
	b := newBed(t, testbed.Config{})
	var rmemMax int
	if err := b.Rx.Do(func() error {
		v, err := os.ReadFile("/proc/sys/net/core/rmem_max")
		if err != nil {
			return err
		}
		rmemMax, err = strconv.Atoi(strings.TrimSpace(string(v)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	want := rmemMax + 1<<20
	_, warnings := openRx(t, b, Config{Ports: []uint16{testPort}, RcvBuf: want})
	if len(warnings) != 1 || !strings.Contains(warnings[0], "receive buffer capped") ||
		!strings.Contains(warnings[0], strconv.Itoa(want)) || !strings.Contains(warnings[0], "rmem_max") {
		t.Errorf("warnings %q, want one saying the %d-byte buffer was capped at rmem_max (%d)", warnings, want, rmemMax)
	}
	t.Logf("warning: %s", warnings)

	rs, warnings := openRx(t, b, Config{Ports: []uint16{testPort + 1}, RcvBuf: want, ForceRcvBuf: true})
	if len(warnings) != 0 {
		t.Errorf("ForceRcvBuf as root: warnings %q", warnings)
	}
	got, err := unix.GetsockoptInt(rs[0].socks[0].fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil || got/2 < want {
		t.Errorf("ForceRcvBuf: SO_RCVBUF reads %d (%v), want at least 2*%d", got, err, want)
	}
}

// UDP GRO is asked for by default, left off (with a warning) when the
// buffers are too small for a merged buffer, and off without one on
// request.
func TestGROOption(t *testing.T) {
	b := newBed(t, testbed.Config{})
	for i, c := range []struct {
		cfg     Config
		gro     int
		warning string
	}{
		{Config{}, 1, ""},
		{Config{MaxPayload: 9216}, 0, "UDP GRO off: a 9216-byte MaxPayload"},
		{Config{NoGRO: true}, 0, ""},
	} {
		c.cfg.Ports = []uint16{testPort + 30 + uint16(i)}
		rs, warnings := openRx(t, b, c.cfg)
		if got := strings.Join(warnings, "; "); (c.warning == "") != (got == "") || !strings.Contains(got, c.warning) {
			t.Errorf("%+v: warnings %q, want %q", c.cfg, got, c.warning)
		}
		for _, s := range rs[0].socks {
			if v, err := unix.GetsockoptInt(s.fd, unix.SOL_UDP, unix.UDP_GRO); err != nil || v != c.gro {
				t.Errorf("%+v: UDP_GRO on %v reads %d (%v), want %d", c.cfg, s.local, v, err, c.gro)
			}
		}
	}
}

// TestSteering pins a sender to each CPU in turn and checks that its
// datagrams are read by the worker of that CPU. On a veth the receive
// softirq runs on the sending CPU.
func TestSteering(t *testing.T) {
	cpus := testutil.CPUs(2)
	if len(cpus) < 2 {
		t.Logf("only CPU %v allowed: steering is checked with one worker", cpus)
	}
	b := newBed(t, testbed.Config{Queues: len(cpus)})
	rs, _ := openRx(t, b, Config{Ports: []uint16{testPort}, Addrs: []netip.Addr{testbed.RxIPv4, testbed.RxIPv6},
		Workers: len(cpus), CPUs: cpus, RcvBuf: 1 << 20, ForceRcvBuf: true})
	var mu sync.Mutex
	queues := map[uint32]int{}
	rx := startReceiving(rs, func(w int, d *datapath.Datagram) error {
		mu.Lock()
		queues[d.Queue]++
		mu.Unlock()
		// Sockets bound to an address report it without IP_PKTINFO.
		want := netip.AddrPortFrom(testbed.RxIPv6, testPort)
		if d.Src.Addr().Is4() {
			want = netip.AddrPortFrom(testbed.RxIPv4, testPort)
		}
		if d.Dst != want {
			return fmt.Errorf("datagram from %v to %v, want %v", d.Src, d.Dst, want)
		}
		return nil
	})
	defer rx.stop()
	const per = 2000
	var sent uint64
	for w, cpu := range cpus {
		for _, fam := range families {
			g := newGen(t, b, bench.UDPGenConfig{Dst: netip.AddrPortFrom(fam.rx, testPort), Flows: 16, Count: per, Size: 32,
				Gate: closedLoop(func() uint64 { return rx.received.Load() - sent }, 256, 20*time.Second)})
			if err := testutil.OnCPU(cpu, func() error { _, err := g.Run(context.Background()); return err }); err != nil {
				t.Fatal(err)
			}
			sent += per
			if !testutil.WaitFor(10*time.Second, func() bool { return rx.received.Load() >= sent }) {
				t.Fatalf("received %d of %d: %+v", rx.received.Load(), sent, statsOf(rs))
			}
			mu.Lock()
			if queues[uint32(w)] != per {
				t.Errorf("%s sent from CPU %d: queues %v, want all %d on worker %d", fam.name, cpu, queues, per, w)
			}
			clear(queues)
			mu.Unlock()
		}
	}
	if err := rx.stop(); err != nil {
		t.Error(err)
	}
}

// TestIdle checks that a Receiver without traffic sleeps: after a burst
// (which leaves it coalescing, then waiting for the drop counters'
// read-back) the process uses under 5% of a CPU while its workers wait.
func TestIdle(t *testing.T) {
	b := newBed(t, testbed.Config{})
	rs, _ := openRx(t, b, Config{Ports: []uint16{testPort}, Workers: 2})
	rx := startReceiving(rs, func(int, *datapath.Datagram) error { return nil })
	defer rx.stop()
	g := newGen(t, b, bench.UDPGenConfig{Dst: netip.AddrPortFrom(testbed.RxIPv4, testPort), Count: 1000, Flows: 4})
	if _, err := g.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(5*time.Second, func() bool { return rx.received.Load() > 0 })
	time.Sleep(100 * time.Millisecond)
	cpu := func() time.Duration {
		var ru unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	c0, w0 := cpu(), time.Now()
	time.Sleep(time.Second)
	used, wall := cpu()-c0, time.Since(w0)
	t.Logf("idle: %v of CPU in %v (%.2f%%)", used, wall, 100*used.Seconds()/wall.Seconds())
	if used > wall/20 {
		t.Errorf("idle receivers used %v of CPU in %v", used, wall)
	}
}
