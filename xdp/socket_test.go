package xdp

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xdpingest/xdpingest/internal/frames"
)

// runSock runs the socket filter on a frame with BPF_PROG_RUN. The kernel
// strips the Ethernet header (eth_type_trans) and sets skb->protocol and
// the network header from it, as the receive path has by the time the
// filter runs; skb->len is then the IP datagram's length.
func runSock(tb testing.TB, p *Program, frame []byte) uint32 {
	tb.Helper()
	ret, err := p.SocketFilter().Program().Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		tb.Fatalf("BPF_PROG_RUN of the socket filter: %v", err)
	}
	return ret
}

// assertSockOnly checks that exactly one datagram of n bytes moved exactly
// outcome.
func assertSockOnly(tb testing.TB, d SocketCounters, outcome SocketOutcome, n uint64) {
	tb.Helper()
	for o := SocketOutcome(0); o < NumSocketOutcomes; o++ {
		want := SocketCount{}
		if o == outcome {
			want = SocketCount{Packets: 1, Bytes: n, Buffers: 1}
		}
		if d[o] != want {
			tb.Errorf("socket counter %s moved by %+v, want %+v", o, d[o], want)
		}
	}
}

func TestSocketFilter(t *testing.T) {
	arp := frames.ARP(nil, src4.Addr(), dst4.Addr())
	v4, v6 := udp(src4, dst4), udp(src6, dst6)
	big4 := sized(src4, dst4, 3000) // BPF_PROG_RUN takes at most a page for an skb
	other4 := udp(netip.MustParseAddrPort("198.19.5.5:1"), dst4)
	other6 := udp(netip.MustParseAddrPort("[2001:db8:1::5]:1"), dst6)
	cases := []struct {
		name    string
		cfg     Config
		frame   []byte
		outcome SocketOutcome
	}{
		{"ipv4 no lists", Config{}, v4, SocketAccepted},
		{"ipv6 no lists", Config{}, v6, SocketAccepted},
		{"non-ip no lists", Config{}, arp, SocketAccepted},
		{"ipv4 allowed", Config{Allow: pfxs("198.18.0.0/24")}, v4, SocketAccepted},
		{"ipv4 large allowed", Config{Allow: pfxs("198.18.0.0/24")}, big4, SocketAccepted},
		{"ipv4 not allowed", Config{Allow: pfxs("198.18.0.0/24")}, other4, SocketNotAllowed},
		{"ipv4 denied", Config{Deny: pfxs("198.18.0.1/32")}, v4, SocketDenied},
		{"ipv4 large denied", Config{Deny: pfxs("198.18.0.1/32")}, big4, SocketDenied},
		{"ipv4 deny other prefix", Config{Deny: pfxs("198.18.0.2/32")}, v4, SocketAccepted},
		{"ipv4 deny wins over allow", Config{Allow: pfxs("198.18.0.0/15"), Deny: pfxs("198.18.0.0/31")}, v4, SocketDenied},
		{"ipv4 allow list leaves ipv6 alone", Config{Allow: pfxs("198.19.0.0/16")}, v6, SocketAccepted},
		{"ipv6 allowed", Config{Allow: pfxs("2001:db8::1/128")}, v6, SocketAccepted},
		{"ipv6 not allowed", Config{Allow: pfxs("2001:db8::1/128")}, other6, SocketNotAllowed},
		{"ipv6 denied", Config{Deny: pfxs("2001:db8::/32")}, v6, SocketDenied},
		{"ipv6 deny wins over allow", Config{Allow: pfxs("2001:db8::/32"), Deny: pfxs("2001:db8::/126")}, v6, SocketDenied},
		{"ipv6 allow list leaves ipv4 alone", Config{Allow: pfxs("2001:db8:1::/48")}, v4, SocketAccepted},
		{"v4-mapped prefix in the ipv4 list", Config{Deny: pfxs("::ffff:198.18.0.0/120")}, v4, SocketDenied},
		{"non-ip with lists fails closed", Config{Allow: pfxs("198.18.0.0/15")}, arp, SocketUnreadable},
		// Ports and action are the XDP program's business: the socket
		// was bound to its port.
		{"no ports, drop action", Config{Action: Drop}, v4, SocketAccepted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := loadT(t, tc.cfg)
			before, err := p.SocketCounters()
			if err != nil {
				t.Fatal(err)
			}
			skbLen := uint32(len(tc.frame) - 14)
			want := uint32(0)
			if tc.outcome == SocketAccepted {
				want = skbLen // keep all of it
			}
			if got := runSock(t, p, tc.frame); got != want {
				t.Errorf("filter returned %d, want %d", got, want)
			}
			after, err := p.SocketCounters()
			if err != nil {
				t.Fatal(err)
			}
			assertSockOnly(t, after.Sub(before), tc.outcome, uint64(skbLen))
			// The XDP program's counters don't move.
			if c, _ := p.Counters(); c.Total().Packets != 0 {
				t.Errorf("the XDP counters moved: %v", nonzero(c))
			}
		})
	}
}

// The filter follows Update: it reads the XDP program's maps and flags.
func TestSocketFilterFollowsUpdate(t *testing.T) {
	p := loadT(t, Config{Ports: []uint16{9000}})
	v4 := udp(src4, dst4)
	if runSock(t, p, v4) == 0 {
		t.Fatal("refused without lists")
	}
	if err := p.Update(Config{Ports: []uint16{9000}, Deny: pfxs("198.18.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	if runSock(t, p, v4) != 0 {
		t.Fatal("kept after its source was denied")
	}
	if err := p.Update(Config{Ports: []uint16{9000}, Allow: pfxs("198.18.0.1/32")}); err != nil {
		t.Fatal(err)
	}
	if runSock(t, p, v4) == 0 {
		t.Fatal("refused after the deny was lifted and its source allowed")
	}
	if err := p.Update(Config{Ports: []uint16{9000}, Allow: pfxs("198.18.0.2/32")}); err != nil {
		t.Fatal(err)
	}
	if runSock(t, p, v4) != 0 {
		t.Fatal("kept after the allow list moved away from its source")
	}
	c, err := p.SocketCounters()
	if err != nil {
		t.Fatal(err)
	}
	if c[SocketAccepted].Packets != 2 || c[SocketDenied].Packets != 1 || c[SocketNotAllowed].Packets != 1 || c.Refused().Packets != 2 {
		t.Fatalf("socket counters %+v: want 2 accepted, 1 denied, 1 not allowed", c)
	}
}

// skbCtx is the head of struct __sk_buff, up to tc_index: what BPF_PROG_RUN
// lets a test set for a socket filter. ifindex picks the device the skb
// comes in on (loopback, index 1, when 0 or 1), ingress_ifindex sets
// skb_iif; every other field must stay zero.
type skbCtx struct {
	Len, PktType, Mark, QueueMapping, Protocol, VlanPresent, VlanTCI, VlanProto, Priority uint32
	IngressIfindex, Ifindex, TCIndex                                                      uint32
}

// The filter refuses what came in over another interface than
// SocketIfindex, whether the lists are in force or not, judging both the
// device (skb->dev) and the input interface (skb_iif), which a reassembled
// datagram takes from different fragments. Loopback (index 1) stands for
// "the" interface here: BPF_PROG_RUN runs on it unless told otherwise.
func TestSocketFilterInterface(t *testing.T) {
	v4, v6 := udp(src4, dst4), udp(src6, dst6)
	cases := []struct {
		name    string
		cfg     Config
		frame   []byte
		ctx     skbCtx
		outcome SocketOutcome
	}{
		{"no check", Config{}, v4, skbCtx{IngressIfindex: 7}, SocketAccepted},
		{"same interface", Config{SocketIfindex: 1}, v4, skbCtx{IngressIfindex: 1}, SocketAccepted},
		{"same interface v6", Config{SocketIfindex: 1}, v6, skbCtx{IngressIfindex: 1}, SocketAccepted},
		{"same interface, lists in force", Config{SocketIfindex: 1, Allow: pfxs("198.18.0.0/24")}, v4, skbCtx{IngressIfindex: 1}, SocketAccepted},
		{"input interface differs", Config{SocketIfindex: 1}, v4, skbCtx{IngressIfindex: 7}, SocketOtherIface},
		{"input interface differs v6", Config{SocketIfindex: 1}, v6, skbCtx{IngressIfindex: 7}, SocketOtherIface},
		{"no input interface", Config{SocketIfindex: 1}, v4, skbCtx{}, SocketOtherIface},
		{"device differs", Config{SocketIfindex: 7}, v4, skbCtx{IngressIfindex: 7}, SocketOtherIface},
		{"other interface wins over an allowing list", Config{SocketIfindex: 7, Allow: pfxs("198.18.0.0/24")}, v4, skbCtx{IngressIfindex: 1}, SocketOtherIface},
		{"other interface, denied source", Config{SocketIfindex: 7, Deny: pfxs("198.18.0.0/24")}, v4, skbCtx{IngressIfindex: 1}, SocketOtherIface},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := loadT(t, tc.cfg)
			before, err := p.SocketCounters()
			if err != nil {
				t.Fatal(err)
			}
			ctx := tc.ctx
			ret, err := p.SocketFilter().Program().Run(&ebpf.RunOptions{Data: tc.frame, Context: &ctx})
			if err != nil {
				t.Fatalf("BPF_PROG_RUN of the socket filter: %v", err)
			}
			skbLen := uint32(len(tc.frame) - 14)
			want := uint32(0)
			if tc.outcome == SocketAccepted {
				want = skbLen
			}
			if ret != want {
				t.Errorf("filter returned %d, want %d", ret, want)
			}
			after, err := p.SocketCounters()
			if err != nil {
				t.Fatal(err)
			}
			assertSockOnly(t, after.Sub(before), tc.outcome, uint64(skbLen))
		})
	}
}
