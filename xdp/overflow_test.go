package xdp

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath/kernel"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// genT sends count datagrams of size bytes from src to dst in Gen, as fast
// as the kernel takes them.
func genT(t *testing.T, b *testbed.Bed, src netip.Addr, dst netip.AddrPort, count uint64, size int) {
	t.Helper()
	var g *bench.UDPGen
	if err := b.Gen.Do(func() (err error) {
		g, err = bench.NewUDPGen(bench.UDPGenConfig{Src: src, Dst: dst, Count: count, Size: size, Flows: 4})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if res, err := g.Run(context.Background()); err != nil || res.Sent != count {
		t.Fatalf("sending %d datagrams of %d bytes from %v: %+v, %v", count, size, src, res, err)
	}
}

func overflowsOf(rs []*kernel.Receiver) uint64 {
	var n uint64
	for _, r := range rs {
		n += r.Stats().SocketOverflows
	}
	return n
}

// The kernel counts the buffers a socket filter refuses in the socket's
// drop counter, with those a full receive buffer drops; with the filter's
// per-socket counts (SocketFilter is a kernel.RefusalCounter) the kernel
// path's SocketOverflows counts only the latter. A flood from a denied
// source, whole and fragmented, leaves it at 0; the same flood through the
// bare program, which counts nothing per socket, shows what the kernel
// counted; and a receive buffer that overflows while denied datagrams are
// refused counts exactly what it lost.
func TestSocketOverflowsLeaveRefusalsOut(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{})
	denied := netip.MustParseAddr("198.18.0.3")
	if err := b.AddGenAddrs(denied); err != nil {
		t.Fatal(err)
	}
	p := loadT(t, Config{Ports: []uint16{9000, 9001, 9002}, Deny: pfxs("198.18.0.3/32"), SocketIfindex: b.Rx.Index})
	open := func(port uint16, filter kernel.Filter, workers, rcvBuf int) []*kernel.Receiver {
		var rs []*kernel.Receiver
		if err := b.Rx.Do(func() (err error) {
			var kp *kernel.Path
			if kp, err = kernel.Open(kernel.Config{Ports: []uint16{port}, Addrs: []netip.Addr{testbed.RxIPv4},
				Device: b.Rx.Link, Filter: filter, Workers: workers, RcvBuf: rcvBuf}); err == nil {
				rs = kp.Workers()
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
		return rs
	}
	const whole, fragmented = 3000, 200

	for _, counting := range []bool{true, false} {
		t.Run(fmt.Sprintf("flood/refusal_counter=%v", counting), func(t *testing.T) {
			var f kernel.Filter = p.SocketFilter()
			port := uint16(9000)
			if !counting {
				f, port = p.SocketFilter().Program(), 9001
			}
			// One worker: a receiver sees a socket's drop counter only
			// when it reads from it.
			rs := open(port, f, 1, 0)
			var a arrivals
			for _, r := range rs {
				a.run("kernel", r)
			}
			before, err := p.SocketCounters()
			if err != nil {
				t.Fatal(err)
			}
			dst := netip.AddrPortFrom(testbed.RxIPv4, port)
			genT(t, b, denied, dst, whole, 200)
			genT(t, b, denied, dst, fragmented, 3000)
			// The allowed datagrams after the flood carry the drop
			// counter to the receivers.
			genT(t, b, testbed.GenIPv4, dst, 100, 200)
			a.wait(100)
			sc, err := p.SocketCounters()
			if err != nil {
				t.Fatal(err)
			}
			refused := sc.Sub(before).Refused()
			if refused.Packets != whole+fragmented {
				t.Fatalf("the filter refused %d datagrams, want the %d sent", refused.Packets, whole+fragmented)
			}
			// Through the bare program the receivers count what the kernel
			// counted, once they have seen it.
			if !counting {
				testutil.WaitFor(2*time.Second, func() bool { return overflowsOf(rs) >= refused.Buffers })
			}
			got := overflowsOf(rs)
			a.stop(t, asReceivers(rs)...)
			if n := a.count(); n != 100 {
				t.Errorf("%d datagrams delivered, want the 100 allowed", n)
			}
			switch {
			case counting && got != 0:
				t.Errorf("%d socket overflows after a flood of %d refused buffers and nothing lost", got, refused.Buffers)
			case !counting && got != refused.Buffers:
				t.Errorf("through the bare program, %d socket overflows; the kernel counted the %d refused buffers", got, refused.Buffers)
			}
		})
	}

	t.Run("overflow", func(t *testing.T) {
		rs := open(9002, p.SocketFilter(), 2, 1)
		dst := netip.AddrPortFrom(testbed.RxIPv4, 9002)
		// Nobody reads: the tiny buffers fill and overflow, while
		// denied datagrams in between are refused.
		const allowed = 2000
		genT(t, b, testbed.GenIPv4, dst, allowed/2, 200)
		genT(t, b, denied, dst, whole, 200)
		genT(t, b, denied, dst, fragmented, 3000)
		genT(t, b, testbed.GenIPv4, dst, allowed/2, 200)
		var a arrivals
		for _, r := range rs {
			a.run("kernel", r)
		}
		// One more allowed datagram per flow carries the final drop
		// counter (the receivers also read it back when idle).
		genT(t, b, testbed.GenIPv4, dst, 4, 200)
		sent := uint64(allowed + 4)
		if !testutil.WaitFor(5*time.Second, func() bool { return uint64(a.count())+overflowsOf(rs) >= sent }) {
			t.Errorf("%d delivered and %d overflows counted of %d allowed datagrams sent", a.count(), overflowsOf(rs), sent)
		}
		time.Sleep(200 * time.Millisecond)
		got := overflowsOf(rs)
		a.stop(t, asReceivers(rs)...)
		delivered := uint64(a.count())
		if got == 0 || delivered+got != sent {
			t.Errorf("%d allowed datagrams sent, %d delivered, %d socket overflows counted: want %d overflows", sent, delivered, got, sent-delivered)
		}
		// After Close the count stays.
		if after := overflowsOf(rs); after != got {
			t.Errorf("%d socket overflows after Close, %d before", after, got)
		}
		t.Logf("%d sent, %d delivered, %d overflows", sent, delivered, got)
	})
}
