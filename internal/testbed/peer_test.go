package testbed_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/internal/frames"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// expect reads one datagram from c and checks its payload and source
// address.
func expect(t *testing.T, c *net.UDPConn, want []byte, from netip.Addr) netip.AddrPort {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 70000)
	n, src, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("waiting for %d bytes from %s on %v: %v", len(want), from, c.LocalAddr(), err)
	}
	if string(buf[:n]) != string(want) || src.Addr().Unmap() != from {
		t.Fatalf("got %d bytes from %v on %v, want %d from %v", n, src, c.LocalAddr(), len(want), from)
	}
	return src
}

func TestRawSenderDelivers(t *testing.T) {
	b := testutil.NewBed(t, testbed.Config{})
	r, err := b.Gen.RawSender()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ln := testutil.ListenUDP(t, b.Rx, netip.AddrPortFrom(testbed.RxIPv4, 0))
	ln6 := testutil.ListenUDP(t, b.Rx, netip.AddrPortFrom(testbed.RxIPv6, 0))
	for _, x := range []struct {
		c        *net.UDPConn
		src, dst netip.Addr
	}{{ln, testbed.GenIPv4, testbed.RxIPv4}, {ln6, testbed.GenIPv6, testbed.RxIPv6}} {
		port := uint16(x.c.LocalAddr().(*net.UDPAddr).Port)
		f := frames.Build(frames.Spec{SrcMAC: b.Gen.MAC, DstMAC: b.Rx.MAC, Src: netip.AddrPortFrom(x.src, 4000), Dst: netip.AddrPortFrom(x.dst, port), Payload: []byte("raw")})
		if err := r.Send(f); err != nil {
			t.Fatal(err)
		}
		expect(t, x.c, []byte("raw"), x.src)
	}
	// Longer than the link takes: an error, not a silent loss.
	if err := r.Send(make([]byte, 14+1500+64)); !errors.Is(err, unix.EMSGSIZE) {
		t.Errorf("a frame beyond the MTU: %v, want EMSGSIZE", err)
	}
}

// MTU 9000 on both ends carries 8972-byte (IPv4) and 8952-byte (IPv6)
// payloads in one frame each: the sender forbids fragmentation, and a raw
// frame of the full size arrives whole.
func TestBedJumboFrames(t *testing.T) {
	b := testutil.NewBed(t, testbed.Config{MTU: 9000})
	for _, s := range []*testbed.Side{b.Gen, b.Rx} {
		out, err := s.Command("cat", "/sys/class/net/"+s.Link+"/mtu").Output()
		if err != nil || strings.TrimSpace(string(out)) != "9000" {
			t.Fatalf("MTU of %s: %q %v, want 9000", s.Link, out, err)
		}
	}
	for _, x := range []struct {
		src, dst netip.Addr
		size     int
	}{{testbed.GenIPv4, testbed.RxIPv4, 8972}, {testbed.GenIPv6, testbed.RxIPv6, 8952}} {
		ln := testutil.ListenUDP(t, b.Rx, netip.AddrPortFrom(x.dst, 0))
		dst := netip.AddrPortFrom(x.dst, uint16(ln.LocalAddr().(*net.UDPAddr).Port))
		var fd int
		if err := b.Gen.Do(func() (err error) {
			fam, level, opt, val := unix.AF_INET, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO
			if x.src.Is6() {
				fam, level, opt, val = unix.AF_INET6, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO
			}
			if fd, err = unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
				return err
			}
			return unix.SetsockoptInt(fd, level, opt, val)
		}); err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: x.dst.As16()}
		if x.dst.Is4() {
			sa = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: x.dst.As4()}
		}
		payload := make([]byte, x.size)
		for i := range payload {
			payload[i] = byte(i)
		}
		if err := unix.Sendto(fd, payload, 0, sa); err != nil {
			t.Fatalf("%d bytes unfragmented to %s: %v", x.size, dst, err)
		}
		expect(t, ln, payload, x.src)
		if err := unix.Sendto(fd, make([]byte, x.size+1), 0, sa); !errors.Is(err, unix.EMSGSIZE) {
			t.Errorf("%d bytes with fragmentation forbidden: %v, want EMSGSIZE (is the MTU really 9000?)", x.size+1, err)
		}
		r, err := b.Gen.RawSender()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		f := frames.Build(frames.Spec{SrcMAC: b.Gen.MAC, DstMAC: b.Rx.MAC, Src: netip.AddrPortFrom(x.src, 4000), Dst: dst, Payload: payload})
		if len(f) != 9014 {
			t.Fatalf("raw frame of %d bytes, want 9014", len(f))
		}
		if err := r.Send(f); err != nil {
			t.Fatal(err)
		}
		expect(t, ln, payload, x.src)
	}
}

// A peer reaches Rx on its own link, and Gen and the peer reach each other
// through Rx, both families, both ways.
func TestPeerRoutedBothWays(t *testing.T) {
	b := testutil.NewBed(t, testbed.Config{})
	p, err := b.AddPeer("other")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.AddPeer("other"); err == nil {
		t.Error("a second peer of the same name was accepted")
	}
	q, err := b.AddPeer("relay2")
	if err != nil {
		t.Fatal(err)
	}
	if q.Prefix4.Overlaps(p.Prefix4) || q.Prefix6.Overlaps(p.Prefix6) || q.Link == p.Link || q.RxEnd.Link == p.RxEnd.Link {
		t.Fatalf("two peers share prefixes or links: %+v %+v", p, q)
	}
	if !strings.HasPrefix(p.Netns, fmt.Sprintf("%s%d-", testbed.NamePrefix, os.Getpid())) {
		t.Errorf("peer namespace %s does not follow the naming Sweep relies on", p.Netns)
	}
	for _, fam := range []struct {
		name                     string
		gen, rx, peer, rxEnd     netip.Addr
		peerSide, rxSide, genSid *testbed.Side
	}{
		{"ipv4", b.Gen.IPv4, b.Rx.IPv4, p.IPv4, p.RxEnd.IPv4, p.Side, b.Rx, b.Gen},
		{"ipv6", b.Gen.IPv6, b.Rx.IPv6, p.IPv6, p.RxEnd.IPv6, p.Side, b.Rx, b.Gen},
	} {
		t.Run(fam.name, func(t *testing.T) {
			// Peer to both of Rx's addresses.
			for _, a := range []netip.Addr{fam.rx, fam.rxEnd} {
				ln := testutil.ListenUDP(t, b.Rx, netip.AddrPortFrom(a, 0))
				testutil.SendUDPFrom(t, p.Side, fam.peer, ln.LocalAddr().(*net.UDPAddr).AddrPort(), "to rx")
				expect(t, ln, []byte("to rx"), fam.peer)
			}
			// Gen to the peer and back, through Rx.
			lp := testutil.ListenUDP(t, p.Side, netip.AddrPortFrom(fam.peer, 0))
			testutil.SendUDPFrom(t, b.Gen, fam.gen, lp.LocalAddr().(*net.UDPAddr).AddrPort(), "via rx")
			expect(t, lp, []byte("via rx"), fam.gen)
			lg := testutil.ListenUDP(t, b.Gen, netip.AddrPortFrom(fam.gen, 0))
			testutil.SendUDPFrom(t, p.Side, fam.peer, lg.LocalAddr().(*net.UDPAddr).AddrPort(), "back")
			expect(t, lg, []byte("back"), fam.peer)
		})
	}
	// Rx forwards, and only Rx: Gen and the peer were left alone.
	for _, x := range []struct {
		s    *testbed.Side
		want string
	}{{b.Rx, "1"}, {b.Gen, "0"}, {p.Side, "0"}} {
		out, err := x.s.Command("cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding").Output()
		if err != nil || strings.Fields(string(out))[0] != x.want || strings.Fields(string(out))[1] != x.want {
			t.Errorf("forwarding in %s: %q %v, want %s for both families", x.s.Netns, out, err, x.want)
		}
	}
}

func TestPeerRemovedOnClose(t *testing.T) {
	testutil.RequireRoot(t)
	b, err := testbed.New(testbed.Config{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := b.AddPeer("gone")
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	names := []string{b.Gen.Netns, b.Rx.Netns, p.Netns}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if _, err := os.Stat("/var/run/netns/" + n); !os.IsNotExist(err) {
			t.Errorf("namespace %s still exists after Close (stat: %v)", n, err)
		}
	}
	// A bad name leaves nothing behind.
	if _, err := b.AddPeer("Bad-Name"); err == nil {
		t.Error("a bad peer name was accepted")
	}
}

// Sweep finds a peer's namespace left by a dead process by the pid in its
// name, like the bed's own.
func TestSweepRemovesDeadPeers(t *testing.T) {
	testutil.RequireRoot(t)
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	name := fmt.Sprintf("%s%d-abcdef-peer0", testbed.NamePrefix, dead)
	h, err := testbed.NewNamedNS(name)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	t.Cleanup(func() { netns.DeleteNamed(name) })
	removed, err := testbed.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range removed {
		found = found || r == name
	}
	if !found {
		t.Errorf("Sweep removed %v, not %s", removed, name)
	}
}

// A process killed between creating a namespace's file and mounting the
// namespace on it leaves a plain file: Sweep removes it too, instead of
// failing on it (EINVAL from the unmount) at every run.
func TestSweepRemovesUnmountedFile(t *testing.T) {
	testutil.RequireRoot(t)
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("%s%d-abcdef-gen", testbed.NamePrefix, cmd.Process.Pid)
	file := filepath.Join("/run/netns", name)
	if err := os.MkdirAll("/run/netns", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(file) })
	removed, err := testbed.Sweep()
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if !slices.Contains(removed, name) {
		t.Errorf("Sweep removed %v, not %s", removed, name)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there after Sweep (stat: %v)", file, err)
	}
}

// Addresses added to Gen send to Rx, and Rx's answers find them again, on
// the link's prefixes and off them.
func TestAddGenAddrs(t *testing.T) {
	b := testutil.NewBed(t, testbed.Config{})
	addrs := []netip.Addr{
		netip.MustParseAddr("198.18.0.21"), netip.MustParseAddr("198.18.1.21"),
		netip.MustParseAddr("2001:db8::21"), netip.MustParseAddr("2001:db8:1::21"),
	}
	if err := b.AddGenAddrs(addrs...); err != nil {
		t.Fatal(err)
	}
	if err := b.AddGenAddrs(netip.MustParseAddr("10.0.0.1")); err == nil {
		t.Error("an address outside the bed's ranges was accepted")
	}
	for _, a := range addrs {
		rxAddr := b.Rx.IPv4
		if a.Is6() {
			rxAddr = b.Rx.IPv6
		}
		ln := testutil.ListenUDP(t, b.Rx, netip.AddrPortFrom(rxAddr, 0))
		back := testutil.ListenUDP(t, b.Gen, netip.AddrPortFrom(a, 0))
		// Gen to Rx from a.
		testutil.SendUDPFrom(t, b.Gen, a, ln.LocalAddr().(*net.UDPAddr).AddrPort(), "hi")
		expect(t, ln, []byte("hi"), a)
		// Rx to a.
		testutil.SendUDPFrom(t, b.Rx, rxAddr, back.LocalAddr().(*net.UDPAddr).AddrPort(), "ho")
		expect(t, back, []byte("ho"), rxAddr)
	}
}
