package hostile

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/internal/frames"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// TestMixOnPlainKernel checks the mix's expectations against the kernel
// alone, with no XDP and no server: sockets on the ingest ports bound to
// Rx's link (as the server binds its own) get exactly the datagrams marked
// Kernel, byte for byte, once each; sockets bound to no device get those
// that came from another interface; the peer gets what Rx forwards. The
// kernel does not filter sources, so refused datagrams arrive too, and
// their sources must be what the policy refuses.
func TestMixOnPlainKernel(t *testing.T) {
	for _, mtu := range []int{1500, 9000} {
		t.Run(fmt.Sprintf("mtu%d", mtu), func(t *testing.T) { plainKernel(t, mtu) })
	}
}

func plainKernel(t *testing.T, mtu int) {
	b := testutil.NewBed(t, testbed.Config{MTU: mtu})
	env, err := Prepare(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	ports := []uint16{9000, 9001}
	pol := DefaultPolicy()
	m, err := env.Mix(Config{Ports: ports, Policy: pol, Seed: uint64(mtu)})
	if err != nil {
		t.Fatal(err)
	}
	listen := func(s *testbed.Side, dev string) *Listener {
		l, err := Listen(s, ports, dev)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	bound := listen(b.Rx, b.Rx.Link)
	witness := listen(b.Rx, "")
	beyond := listen(env.Peer.Side, "")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := m.Send(ctx, SendOptions{}); err != nil {
		t.Fatal(err)
	}
	sent := time.Since(start)

	checks := []struct {
		name string
		l    *Listener
		want func(*Datagram) bool
	}{
		{"sockets bound to Rx's link", bound, DeliveredOn(PlainKernel)},
		{"sockets bound to no device in Rx", witness, func(d *Datagram) bool { return d.Elsewhere || (d.Broadcast && d.Kernel) }},
		{"sockets in the peer behind Rx", beyond, func(d *Datagram) bool { return d.Transit }},
	}
	for _, c := range checks {
		got := c.l.Settle(len(m.Select(c.want)), 300*time.Millisecond, 5*time.Second)
		if err := m.Check(got, c.want); err != nil {
			t.Errorf("%s:\n%v", c.name, err)
		}
		if err := c.l.Err(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	// What the server's lists must refuse, it can tell by the source the
	// kernel reports.
	count, _ := m.Match(bound.Received())
	for d := range count {
		if d.Refused == RefusedLocal {
			continue
		}
		if got := pol.Refuses(d.Src.Addr()); got != d.Refused {
			t.Errorf("%v arrived from %s, which the policy answers %q; the mix says %q", d, d.Src, got, d.Refused)
		}
	}
	n := map[Path]int{}
	for _, p := range []Path{AFXDP, Kernel, PlainKernel} {
		n[p] = len(m.Select(DeliveredOn(p)))
	}
	t.Logf("MTU %d: %d cases, %d frames, %d datagrams sent in %v; to deliver: afxdp %d, kernel %d; the plain kernel hands over %d",
		mtu, len(m.Cases), m.Frames(), len(m.Datagrams()), sent.Round(time.Millisecond), n[AFXDP], n[Kernel], n[PlainKernel])
}

// The kernel gives a broadcast datagram to every socket of a SO_REUSEPORT
// group on its port, where a unicast one goes to one of them: a server
// with several sockets per port must not deliver a broadcast several times.
func TestBroadcastReachesEveryReuseportSocket(t *testing.T) {
	b := testutil.NewBed(t, testbed.Config{})
	var conns []*net.UDPConn
	for range 2 {
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
				if serr == nil {
					serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, b.Rx.Link)
				}
			})
			return serr
		}}
		if err := b.Rx.Do(func() error {
			pc, err := lc.ListenPacket(context.Background(), "udp4", ":9000")
			if err == nil {
				conns = append(conns, pc.(*net.UDPConn))
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer conns[len(conns)-1].Close()
	}
	r, err := b.Gen.RawSender()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := frames.Spec{SrcMAC: b.Gen.MAC, DstMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		Src: netip.AddrPortFrom(b.Gen.IPv4, 5000), Dst: netip.MustParseAddrPort("198.18.0.255:9000"), Payload: []byte("broadcast")}
	if err := r.Send(frames.Build(s)); err != nil {
		t.Fatal(err)
	}
	s.DstMAC, s.Dst, s.Payload = b.Rx.MAC, netip.AddrPortFrom(b.Rx.IPv4, 9000), []byte("unicast")
	if err := r.Send(frames.Build(s)); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	buf := make([]byte, 64)
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			got[string(buf[:n])]++
		}
	}
	if got["broadcast"] != 2 || got["unicast"] != 1 {
		t.Errorf("broadcast arrived %d times, unicast %d, over two SO_REUSEPORT sockets; this kernel gives 2 and 1", got["broadcast"], got["unicast"])
	}
}
