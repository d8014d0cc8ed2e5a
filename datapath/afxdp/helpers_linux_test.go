package afxdp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
	"github.com/xdpingest/xdpingest/xdp"
)

// testMTU lets a 1472-byte payload through over IPv6 too (1472 + 8 + 40),
// so that both families carry every size of the sized encoding.
const testMTU = 1520

const testPort = 9000

// bedT makes a test bed with queues RX queues and the MTU above.
func bedT(t testing.TB, queues int) *testbed.Bed {
	t.Helper()
	testutil.RequireBPF(t)
	return testutil.NewBed(t, testbed.Config{Queues: queues, MTU: testMTU})
}

// programT loads the XDP program redirecting port testPort and attaches it
// natively to the bed's receiving end.
func programT(t testing.TB, b *testbed.Bed) *xdp.Program {
	t.Helper()
	p, err := xdp.Load(xdp.Config{Ports: []uint16{testPort}, Action: xdp.Redirect}, xdp.LoadOptions{MaxQueues: 8, MaxPrefixes: 16})
	if errors.Is(err, errors.ErrUnsupported) {
		testutil.Skip(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if err := b.Rx.Do(func() error { _, err := p.Attach(b.Rx.Index, xdp.AttachOptions{Mode: xdp.ModeNative}); return err }); err != nil {
		t.Fatal(err)
	}
	return p
}

// openT opens a path on the bed's receiving end.
func openT(t testing.TB, b *testbed.Bed, cfg Config, reg datapath.XSKRegistrar) *Path {
	t.Helper()
	cfg.Ifindex = b.Rx.Index
	var p *Path
	err := b.Rx.Do(func() (err error) { p, err = Open(cfg, reg); return err })
	if errors.Is(err, errors.ErrUnsupported) {
		testutil.Skip(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// flow is one sending UDP socket in the generating namespace.
type flow struct {
	conn *net.UDPConn
	src  netip.AddrPort
}

func dialT(t testing.TB, b *testbed.Bed, dst netip.AddrPort) *flow {
	t.Helper()
	var c *net.UDPConn
	err := b.Gen.Do(func() (err error) {
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	src := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return &flow{conn: c, src: netip.AddrPortFrom(src.Addr().Unmap(), src.Port())}
}

// pinThread locks the goroutine to its thread and the thread to cpu (when
// the process may use it), so that the veth picks the queue of that CPU.
func pinThread(cpu int) {
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu % runtime.NumCPU())
	unix.SchedSetaffinity(0, &set)
}

// gate is the closed loop between senders and receivers: a sender waits
// while more than window datagrams are in flight, and gives up when nothing
// arrives for stall.
type gate struct {
	sent, received atomic.Uint64
	window         uint64
	stall          time.Duration
	stop           atomic.Bool
}

func (g *gate) wait() error {
	last, since := g.received.Load(), time.Now()
	for g.sent.Load()-g.received.Load() > g.window {
		if g.stop.Load() {
			return errStopped
		}
		if r := g.received.Load(); r != last {
			last, since = r, time.Now()
		} else if time.Since(since) > g.stall {
			return fmt.Errorf("nothing received for %v with %d sent and %d received", g.stall, g.sent.Load(), r)
		}
		time.Sleep(20 * time.Microsecond)
	}
	return nil
}

var errStopped = errors.New("stopped")

// sendSized sends datagrams first, first+step, ... < n of the sized encoding
// on f, paced by g.
func sendSized(f *flow, g *gate, first, step, n uint64) error {
	buf := make([]byte, bench.SizedSpan)
	for i := first; i < n; i += step {
		if err := g.wait(); err != nil {
			return err
		}
		g.sent.Add(1)
		if err := testutil.WriteUDP(f.conn, bench.PutSized(buf, i)); err != nil {
			return err
		}
	}
	return nil
}

// receiveAll runs a receive loop on r until it returns an error (which it
// returns; net.ErrClosed after Close), passing each datagram to check.
func receiveAll(r datapath.Receiver, batchSize int, check func(*datapath.Datagram)) error {
	batch := make([]datapath.Datagram, batchSize)
	for {
		n, err := r.Receive(batch)
		if err != nil {
			return err
		}
		for i := range batch[:n] {
			check(&batch[i])
		}
		r.Release(batch[:n])
	}
}

// errorList keeps the first few errors of many goroutines.
type errorList struct {
	mu   sync.Mutex
	errs []error
	n    int
}

func (l *errorList) add(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	if len(l.errs) < 5 {
		l.errs = append(l.errs, err)
	}
}

func (l *errorList) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == 0 {
		return nil
	}
	return fmt.Errorf("%d errors, first: %w", l.n, errors.Join(l.errs...))
}
