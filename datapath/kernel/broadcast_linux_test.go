package kernel

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/internal/frames"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// The kernel gives a datagram to an IPv4 broadcast or multicast address, or
// an IPv6 multicast address, to every socket of its port, one per worker;
// each must still be delivered once. Which datagrams those are is the IP
// destination's business, not the frame's: a broadcast address in a
// unicast frame is copied too, while a unicast address in a broadcast or
// multicast frame (as some load balancers send) goes to one socket only
// and must not be lost on a worker that takes it for a copy.
func TestBroadcastDeliveredOnce(t *testing.T) {
	for _, workers := range []int{2, 3} {
		t.Run(fmt.Sprintf("workers%d", workers), func(t *testing.T) { broadcastOnce(t, workers) })
	}
}

func broadcastOnce(t *testing.T, workers int) {
	b := newBed(t, testbed.Config{})
	rs, _ := openRx(t, b, Config{Ports: []uint16{testPort}, Device: b.Rx.Link, Workers: workers})
	c := collect(rs)

	bcastMAC := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	mcast4MAC := net.HardwareAddr{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}
	mcast6MAC := net.HardwareAddr{0x33, 0x33, 0x00, 0x00, 0x00, 0x01}
	bcast := netip.MustParseAddr("198.18.0.255")
	type send struct {
		name   string
		mac    net.HardwareAddr
		dst    netip.Addr
		size   int
		shared bool // the kernel copies it to every socket of the port
	}
	sends := []send{
		{"broadcast", bcastMAC, bcast, 100, true},
		{"broadcast in a unicast frame", b.Rx.MAC, bcast, 100, true},
		{"limited broadcast", bcastMAC, netip.MustParseAddr("255.255.255.255"), 100, true},
		{"fragmented broadcast", bcastMAC, bcast, 3000, true},
		{"ipv4 multicast", mcast4MAC, netip.MustParseAddr("224.0.0.1"), 100, true},
		{"ipv6 multicast", mcast6MAC, netip.MustParseAddr("ff02::1"), 100, true},
		{"fragmented ipv6 multicast", mcast6MAC, netip.MustParseAddr("ff02::1"), 3000, true},
		{"unicast in a broadcast frame", bcastMAC, testbed.RxIPv4, 100, false},
		{"unicast in a multicast frame", mcast6MAC, testbed.RxIPv6, 100, false},
	}
	// Unicast flows, which the kernel spreads over the workers.
	for i := range 8 {
		sends = append(sends,
			send{fmt.Sprintf("unicast %d", i), b.Rx.MAC, testbed.RxIPv4, 100, false},
			send{fmt.Sprintf("unicast v6 %d", i), b.Rx.MAC, testbed.RxIPv6, 100, false})
	}
	r, err := b.Gen.RawSender()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var want []string
	shared := 0
	for i, s := range sends {
		src := testbed.GenIPv4
		if s.dst.Is6() {
			src = testbed.GenIPv6
		}
		msg := fmt.Sprintf("%s:%0*d", s.name, s.size-len(s.name)-1, 0)
		spec := frames.Spec{SrcMAC: b.Gen.MAC, DstMAC: s.mac, Src: netip.AddrPortFrom(src, uint16(6000+i)),
			Dst: netip.AddrPortFrom(s.dst, testPort), Payload: []byte(msg), ID: uint16(100 + i)}
		if s.dst.Is6() && s.size > 1400 {
			spec.Frag6 = &frames.Frag6{ID: uint32(100 + i)}
		}
		if err := r.SendAll(frames.Fragment(spec, 1500)); err != nil {
			t.Fatal(err)
		}
		want = append(want, msg)
		if s.shared {
			shared++
		}
	}
	slices.Sort(want)
	testutil.WaitFor(5*time.Second, func() bool { return c.rx.received.Load() >= uint64(len(want)) })
	time.Sleep(300 * time.Millisecond) // for copies that must not come
	copies := uint64(0)
	for _, r := range rs {
		copies += r.Copies()
	}
	if got := c.stop(t); !slices.Equal(got, want) {
		t.Errorf("%d workers delivered %d datagrams, want each of the %d once:\ngot  %q\nwant %q", workers, len(got), len(want), short(got), short(want))
	}
	if wantCopies := uint64(shared * (workers - 1)); copies != wantCopies || rs[0].Copies() != 0 {
		t.Errorf("%d copies counted (%d by worker 0), want %d: %d shared datagrams times %d other workers", copies, rs[0].Copies(), wantCopies, shared, workers-1)
	}
}

// short cuts the zero padding off the payloads.
func short(msgs []string) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = fmt.Sprintf("%.40s (%d bytes)", m, len(m))
	}
	return out
}
