package kernel

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// collector records the payloads its Receivers deliver.
type collector struct {
	mu  sync.Mutex
	got []string
	rx  *receiving
}

func collect(rs []*Receiver) *collector {
	c := &collector{}
	c.rx = startReceiving(rs, func(_ int, d *datapath.Datagram) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.got = append(c.got, string(d.Payload))
		return nil
	})
	return c
}

func (c *collector) stop(t *testing.T) []string {
	t.Helper()
	if err := c.rx.stop(); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	slices.Sort(c.got)
	return c.got
}

// A socket bound to the bed's interface (Config.Device) receives what
// arrives on that interface, and nothing sent to its port over another
// interface of the namespace, whatever the destination address, nor to a
// loopback address. A socket without Device, on the next port, receives all
// of it: the traffic does reach the namespace.
//
// A local process that sends to the bound interface's own address does
// reach the socket: Linux routes the datagram over loopback but gives it
// the interface that owns the address as its input interface (the route's
// rt_iif), which is what SO_BINDTODEVICE compares. Its source is then that
// local address, which the lists (the socket filter) judge like any other.
func TestDeviceBinding(t *testing.T) {
	b := newBed(t, testbed.Config{})
	peer, err := b.AddPeer("other")
	if err != nil {
		t.Fatal(err)
	}
	bound, _ := openRx(t, b, Config{Ports: []uint16{testPort}, Device: b.Rx.Link})
	open, _ := openRx(t, b, Config{Ports: []uint16{testPort + 1}})
	cb, co := collect(bound), collect(open)

	type send struct {
		from *testbed.Side
		to   netip.Addr
		name string
	}
	sends := []send{
		{b.Gen, testbed.RxIPv4, "link v4"},
		{b.Gen, testbed.RxIPv6, "link v6"},
		// Another interface: to its own address, and to the bed link's
		// address (Linux takes any local address on any interface).
		{peer.Side, peer.RxEnd.IPv4, "other if v4"},
		{peer.Side, peer.RxEnd.IPv6, "other if v6"},
		{peer.Side, testbed.RxIPv4, "other if to link addr v4"},
		{peer.Side, testbed.RxIPv6, "other if to link addr v6"},
		// Loopback, from a process of the receiving namespace.
		{b.Rx, netip.MustParseAddr("127.0.0.1"), "loopback v4"},
		{b.Rx, netip.IPv6Loopback(), "loopback v6"},
		{b.Rx, testbed.RxIPv4, "local to link addr v4"},
		{b.Rx, testbed.RxIPv6, "local to link addr v6"},
	}
	var wantBound, wantOpen []string
	for _, s := range sends {
		for _, port := range []uint16{testPort, testPort + 1} {
			msg := s.name + " " + strings.Repeat("p", int(port-testPort))
			testutil.SendUDP(t, s.from, netip.AddrPortFrom(s.to, port), msg)
			if port == testPort+1 {
				wantOpen = append(wantOpen, msg)
			} else if s.from == b.Gen || strings.HasPrefix(s.name, "local to link addr") {
				wantBound = append(wantBound, msg)
			}
		}
	}
	slices.Sort(wantBound)
	slices.Sort(wantOpen)
	// Everything is on its way once the unbound socket has all of it.
	testutil.WaitFor(5*time.Second, func() bool { return co.rx.received.Load() >= uint64(len(wantOpen)) })
	time.Sleep(200 * time.Millisecond) // and anything the bound socket would get
	gotBound, gotOpen := cb.stop(t), co.stop(t)
	if !slices.Equal(gotOpen, wantOpen) {
		t.Fatalf("the socket without Device got %q, want %q: the test's traffic did not arrive", gotOpen, wantOpen)
	}
	if !slices.Equal(gotBound, wantBound) {
		t.Fatalf("the socket bound to %s got %q, want only what came over it: %q", b.Rx.Link, gotBound, wantBound)
	}
}

func TestDeviceAndFilterRefused(t *testing.T) {
	b := newBed(t, testbed.Config{})
	err := b.Rx.Do(func() error {
		_, err := Open(Config{Ports: []uint16{testPort}, Device: "xnosuch0"})
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "SO_BINDTODEVICE") || !strings.Contains(err.Error(), "no interface") {
		t.Fatalf("Open bound to a missing interface: err = %v, want SO_BINDTODEVICE and \"no interface\"", err)
	}
	// A descriptor that is not a BPF program.
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = b.Rx.Do(func() error {
		_, err := Open(Config{Ports: []uint16{testPort}, Filter: fdFilter(f.Fd())})
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "SO_ATTACH_BPF") {
		t.Fatalf("Open with a filter that is no BPF program: err = %v, want one naming SO_ATTACH_BPF", err)
	}
}

type fdFilter uintptr

func (f fdFilter) FD() int { return int(f) }
