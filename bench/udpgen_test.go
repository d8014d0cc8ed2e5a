//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

var genFamilies = []struct {
	name    string
	gen, rx netip.Addr
}{
	{"ipv4", testbed.GenIPv4, testbed.RxIPv4},
	{"ipv6", testbed.GenIPv6, testbed.RxIPv6},
}

// newGenBed makes a bed and waits until datagrams cross it: until the
// kernel's linkwatch work attaches the veth's qdisc, the noop qdisc drops
// every packet silently.
func newGenBed(t *testing.T) *testbed.Bed {
	t.Helper()
	b := testutil.NewBed(t, testbed.Config{})
	deadline := time.Now().Add(10 * time.Second)
	for _, fam := range genFamilies {
		r := listen(t, b, fam.rx)
		var c *net.UDPConn
		if err := b.Gen.Do(func() (err error) {
			c, err = net.DialUDP("udp", nil, r.LocalAddr().(*net.UDPAddr))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		for r.n.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no %s datagram crossed the bed in 10s", fam.name)
			}
			c.Write([]byte("probe"))
			time.Sleep(10 * time.Millisecond)
		}
		c.Close()
		r.close()
	}
	return b
}

// sink is a plain UDP socket in the receiving namespace that counts what
// arrives and hands it to fn.
type sink struct {
	*net.UDPConn
	n    atomic.Uint64
	done chan struct{}
}

func listen(t *testing.T, b *testbed.Bed, addr netip.Addr) *sink {
	return listenFn(t, b, addr, nil)
}

func listenFn(t *testing.T, b *testbed.Bed, addr netip.Addr, fn func(p []byte, from netip.AddrPort)) *sink {
	t.Helper()
	s := &sink{done: make(chan struct{})}
	if err := b.Rx.Do(func() (err error) {
		s.UDPConn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s.SetReadBuffer(4 << 20)
	go func() {
		defer close(s.done)
		buf := make([]byte, 65536)
		for {
			n, from, err := s.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if fn != nil {
				fn(buf[:n], from)
			}
			s.n.Add(1)
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *sink) close() {
	s.UDPConn.Close()
	<-s.done
}

func (s *sink) dst() netip.AddrPort { return s.LocalAddr().(*net.UDPAddr).AddrPort() }

func newTestGen(t *testing.T, b *testbed.Bed, cfg UDPGenConfig) *UDPGen {
	t.Helper()
	var g *UDPGen
	if err := b.Gen.Do(func() (err error) {
		g, err = NewUDPGen(cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// window holds a generator while it is more than w datagrams ahead of
// received, and gives up after 20 s without progress.
func window(received func() uint64, w uint64) func(uint64) error {
	return func(sent uint64) error {
		last, since := received(), time.Now()
		for sent >= received()+w {
			if r := received(); r != last {
				last, since = r, time.Now()
			} else if time.Since(since) > 20*time.Second {
				return fmt.Errorf("receiver stalled at %d of %d", r, sent)
			}
			time.Sleep(50 * time.Microsecond)
		}
		return nil
	}
}

// TestUDPGenSequence checks that every datagram carries its sequence number
// exactly once, from the flows' source ports, over both families.
func TestUDPGenSequence(t *testing.T) {
	b := newGenBed(t)
	for _, fam := range genFamilies {
		t.Run(fam.name, func(t *testing.T) {
			const count, flows = 20_480, 4 // 640 batches of 32, 160 per flow
			tr := NewTracker(count)
			var mu sync.Mutex
			ports := map[netip.AddrPort]int{}
			s := listenFn(t, b, fam.rx, func(p []byte, from netip.AddrPort) {
				if len(p) != 40 {
					tr.Mark(0, false)
					return
				}
				tr.Mark(DecodeWide(p))
				mu.Lock()
				ports[netip.AddrPortFrom(from.Addr().Unmap(), from.Port())]++
				mu.Unlock()
			})
			g := newTestGen(t, b, UDPGenConfig{Dst: s.dst(), Src: fam.gen, SrcPort: 41000, Flows: flows,
				Count: count, Size: 40, Batch: 32, Gate: window(s.n.Load, 256)})
			res, err := g.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if res.Sent != count || res.Bytes != count*40 || g.Sent() != count {
				t.Errorf("result %+v (Sent() %d), want %d datagrams of 40 bytes", res, g.Sent(), count)
			}
			testutil.WaitFor(5*time.Second, func() bool { return s.n.Load() >= count })
			if err := tr.Check(); err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			srcs := g.SrcAddrs()
			for i, a := range srcs {
				if want := netip.AddrPortFrom(fam.gen, 41000+uint16(i)); a != want {
					t.Errorf("flow %d sends from %v, want %v", i, a, want)
				}
				if ports[a] != count/flows {
					t.Errorf("flow %v: %d datagrams, want %d (batches go to the flows in turn)", a, ports[a], count/flows)
				}
			}
			if len(ports) != flows {
				t.Errorf("datagrams from %v, want the %d flows %v", ports, flows, srcs)
			}
		})
	}
}

// TestUDPGenSizedAndCallback checks the sized encoding and a payload
// callback.
func TestUDPGenSizedAndCallback(t *testing.T) {
	b := newGenBed(t)
	const count = 3 * SizedSpan
	tr := NewTracker(count)
	s := listenFn(t, b, testbed.RxIPv4, func(p []byte, _ netip.AddrPort) { tr.Mark(DecodeSized(p)) })
	g := newTestGen(t, b, UDPGenConfig{Dst: s.dst(), Count: count, Encoding: EncodeSized, Gate: window(s.n.Load, 128)})
	if _, err := g.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(5*time.Second, func() bool { return s.n.Load() >= count })
	if err := tr.Check(); err != nil {
		t.Error(err)
	}

	var got sync.Map
	s2 := listenFn(t, b, testbed.RxIPv4, func(p []byte, _ netip.AddrPort) { got.Store(string(p), true) })
	g2 := newTestGen(t, b, UDPGenConfig{Dst: s2.dst(), Count: 10, Size: 100,
		Payload: func(buf []byte, seq uint64) []byte {
			if len(buf) != 100 {
				panic("buffer is not Size bytes")
			}
			return buf[:copy(buf, fmt.Sprintf("datagram %d", seq))]
		}})
	if _, err := g2.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(5*time.Second, func() bool { return s2.n.Load() >= 10 })
	for i := range 10 {
		if _, ok := got.Load(fmt.Sprintf("datagram %d", i)); !ok {
			t.Errorf("datagram %d missing", i)
		}
	}
}

// TestUDPGenRate checks that a rate-limited run stays within a generous
// bound of the asked rate. The upper bound holds on any machine (the bucket
// never gives more than Rate*(elapsed+20ms)); the lower one is loose, for a
// machine busy with other tests.
func TestUDPGenRate(t *testing.T) {
	b := newGenBed(t)
	s := listen(t, b, testbed.RxIPv4)
	for _, tc := range []struct {
		rate     float64
		count    uint64
		duration time.Duration
	}{
		{rate: 50_000, duration: time.Second},
		{rate: 2_000, count: 1_000},
	} {
		g := newTestGen(t, b, UDPGenConfig{Dst: s.dst(), Rate: tc.rate, Count: tc.count, Duration: tc.duration, Size: 16})
		res, err := g.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		pps := res.PPS()
		t.Logf("asked %.0f/s: sent %d in %v = %.0f/s (%d calls, %d retries)", tc.rate, res.Sent, res.Elapsed, pps, res.Calls, res.Retries)
		if pps > 1.05*tc.rate || pps < 0.5*tc.rate {
			t.Errorf("asked %.0f datagrams/s, got %.0f", tc.rate, pps)
		}
		// The run ends at the first check after Duration; on a machine
		// busy with other tests that check can come late.
		if tc.duration > 0 && (res.Elapsed < tc.duration || res.Elapsed > tc.duration+3*time.Second) {
			t.Errorf("a %v run took %v", tc.duration, res.Elapsed)
		}
		if tc.count > 0 && res.Sent != tc.count {
			t.Errorf("sent %d, want %d", res.Sent, tc.count)
		}
	}
}

// TestUDPGenStops checks that a run ends by itself: on a cancelled context,
// and on a Gate error.
func TestUDPGenStops(t *testing.T) {
	b := newGenBed(t)
	s := listen(t, b, testbed.RxIPv4)
	g := newTestGen(t, b, UDPGenConfig{Dst: s.dst(), Duration: time.Hour, Rate: 1000})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := g.Run(ctx)
	if err != nil || time.Since(start) > 2*time.Second {
		t.Errorf("cancelled run: %+v %v after %v", res, err, time.Since(start))
	}
	stop := errors.New("enough")
	g = newTestGen(t, b, UDPGenConfig{Dst: s.dst(), Count: 1000, Batch: 10,
		Gate: func(sent uint64) error {
			if sent >= 50 {
				return stop
			}
			return nil
		}})
	if res, err := g.Run(context.Background()); !errors.Is(err, stop) || res.Sent != 50 {
		t.Errorf("gated run: %+v %v, want 50 sent and the gate's error", res, err)
	}
}

// TestUDPGenPortUnreachable sends to a port nobody listens on: the ICMP
// port unreachable that comes back makes a connected socket's next send
// fail with ECONNREFUSED, which the generator counts and retries.
func TestUDPGenPortUnreachable(t *testing.T) {
	b := newGenBed(t)
	g := newTestGen(t, b, UDPGenConfig{Dst: netip.AddrPortFrom(testbed.RxIPv4, 9), Count: 2000, Rate: 20_000, Batch: 8})
	res, err := g.Run(context.Background())
	if err != nil || res.Sent != 2000 {
		t.Fatalf("%+v %v, want all 2000 sent", res, err)
	}
	if res.Refused == 0 {
		t.Errorf("no ECONNREFUSED counted: %+v", res)
	}
	t.Logf("%+v", res)
}

func TestUDPGenConfigRefused(t *testing.T) {
	dst := netip.MustParseAddrPort("198.18.0.2:9")
	for _, tc := range []struct {
		cfg  UDPGenConfig
		want string
	}{
		{UDPGenConfig{Count: 1}, "destination"},
		{UDPGenConfig{Dst: dst}, "unbounded"},
		{UDPGenConfig{Dst: dst, Count: 1, Size: 4}, "8 or more"},
		{UDPGenConfig{Dst: dst, Count: 1, Batch: 5000}, "limit"},
		{UDPGenConfig{Dst: dst, Count: 1, Src: testbed.GenIPv6}, "families"},
		{UDPGenConfig{Dst: dst, Count: 1, SrcPort: 65530, Flows: 10}, "past 65535"},
	} {
		if _, err := NewUDPGen(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one saying %q", tc.cfg, err, tc.want)
		}
	}
}

// TestUDPGenAllocs checks that a run allocates nothing per datagram.
func TestUDPGenAllocs(t *testing.T) {
	b := newGenBed(t)
	s := listen(t, b, testbed.RxIPv4)
	g := newTestGen(t, b, UDPGenConfig{Dst: s.dst(), Count: 20_000, Size: 64, Flows: 2})
	ctx := context.Background()
	allocs := testing.AllocsPerRun(3, func() {
		if _, err := g.Run(ctx); err != nil {
			t.Fatal(err)
		}
	})
	// The sink's goroutine shares the process; a handful of allocations
	// per run is the runtime's, 20,000 would be ours.
	if allocs > 20 {
		t.Errorf("%.0f allocations for a run of 20,000 datagrams", allocs)
	}
	t.Logf("%.0f allocations per run of 20,000 datagrams", allocs)
}
