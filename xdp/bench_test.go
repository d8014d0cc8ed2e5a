package xdp

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/xdpingest/xdpingest/internal/frames"
)

// BenchmarkProgram measures the program per frame with BPF_PROG_RUN and a
// repeat count of b.N, so ns/op is nanoseconds per frame, beside a program
// that only returns XDP_PASS (the cost of running any program at all).
// In test mode a redirect only looks the socket up; the copy into the
// socket is not measured here (pktbench measures it).
func BenchmarkProgram(b *testing.B) {
	p := loadT(b, Config{Ports: []uint16{9000}})
	xskT(b, p)
	// The same with a deny list in force: one LPM lookup more per match.
	pd := loadT(b, Config{Ports: []uint16{9000}, Deny: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:ffff::/48")}})
	xskT(b, pd)
	// With MaxRedirect as the server sets it (4 KiB AF_XDP frames): the
	// size check every redirect makes.
	pm := loadT(b, Config{Ports: []uint16{9000}, MaxRedirect: MaxRedirectFor(4096, 0)})
	xskT(b, pm)
	cases := []struct {
		name  string
		prog  *ebpf.Program
		frame []byte
		want  uint32
	}{
		{"pass-only", p.objs.XdpPassOnly, frame64(src4, dst4), xdpPass},
		{"matched-ipv4", p.objs.Xdpingest, frame64(src4, dst4), xdpRedirect},
		{"unmatched-ipv4", p.objs.Xdpingest, frame64(src4, withPort(dst4, other)), xdpPass},
		{"matched-ipv6", p.objs.Xdpingest, frame64(src6, dst6), xdpRedirect},
		{"matched-ipv4-qinq", p.objs.Xdpingest, frame64(src4, dst4, ad, q), xdpRedirect},
		{"matched-ipv4-deny-list", pd.objs.Xdpingest, frame64(src4, dst4), xdpRedirect},
		{"matched-ipv6-deny-list", pd.objs.Xdpingest, frame64(src6, dst6), xdpRedirect},
		{"matched-ipv4-max-redirect", pm.objs.Xdpingest, frame64(src4, dst4), xdpRedirect},
		{"matched-ipv4-1500-max-redirect", pm.objs.Xdpingest, sized(src4, dst4, 1514), xdpRedirect},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ret, _, err := c.prog.Benchmark(c.frame, b.N, b.ResetTimer)
			if err != nil {
				b.Fatal(err)
			}
			if ret != c.want {
				b.Fatalf("action %d, want %d", ret, c.want)
			}
		})
	}
}

// frame64 is a UDP frame of at least 64 bytes (the minimum Ethernet frame
// without its FCS is 60; pktbench's smallest is 64).
func frame64(src, dst netip.AddrPort, vlans ...frames.VLAN) []byte {
	hl := frames.HeaderLen(frames.Spec{Src: src, Dst: dst, VLANs: vlans})
	return frames.Build(frames.Spec{Src: src, Dst: dst, VLANs: vlans, Payload: make([]byte, max(1, 64-hl))})
}

// BenchmarkSocketFilter measures the socket filter per datagram with
// BPF_PROG_RUN (an skb test run, repeated b.N times), so ns/op is
// nanoseconds per datagram the kernel delivers to a socket: what the lists
// cost on the kernel path and for what the XDP program passes. The
// receiving path itself (lookup, queueing, the copy to user space) is not
// in it.
func BenchmarkSocketFilter(b *testing.B) {
	none := loadT(b, Config{Ports: []uint16{9000}})
	deny := loadT(b, Config{Ports: []uint16{9000}, Deny: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:ffff::/48")}})
	both := loadT(b, Config{Ports: []uint16{9000},
		Allow: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("2001:db8::/32")},
		Deny:  []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:ffff::/48")}})
	// The baseline: a filter that keeps everything (return skb->len), the
	// cost of running any socket filter under BPF_PROG_RUN.
	keep, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "keep_all", Type: ebpf.SocketFilter, License: "MIT",
		Instructions: asm.Instructions{asm.LoadMem(asm.R0, asm.R1, 0, asm.Word), asm.Return()}})
	if err != nil {
		b.Fatal(err)
	}
	defer keep.Close()
	cases := []struct {
		name  string
		prog  *ebpf.Program
		frame []byte
	}{
		{"keep-only", keep, frame64(src4, dst4)},
		{"ipv4-no-lists", none.SocketFilter().Program(), frame64(src4, dst4)},
		{"ipv6-no-lists", none.SocketFilter().Program(), frame64(src6, dst6)},
		{"ipv4-deny-list", deny.SocketFilter().Program(), frame64(src4, dst4)},
		{"ipv6-deny-list", deny.SocketFilter().Program(), frame64(src6, dst6)},
		{"ipv4-allow-and-deny", both.SocketFilter().Program(), frame64(src4, dst4)},
		{"ipv6-allow-and-deny", both.SocketFilter().Program(), frame64(src6, dst6)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ret, _, err := c.prog.Benchmark(c.frame, b.N, b.ResetTimer)
			if err != nil {
				b.Fatal(err)
			}
			if ret != uint32(len(c.frame)-14) {
				b.Fatalf("filter returned %d, want %d (keep)", ret, len(c.frame)-14)
			}
		})
	}
}
