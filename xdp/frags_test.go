package xdp

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/xdpingest/xdpingest/internal/frames"
)

// BPF_PROG_RUN puts what does not fit in the first buffer (a page less
// XDP_PACKET_HEADROOM and the shared info, 3520 bytes on x86-64) into
// frags, as a driver or veth does with a jumbo frame: frames above that
// size exercise the multi-buffer path. Each is counted with all its bytes.
func TestProgramMultiBuffer(t *testing.T) {
	type tc struct {
		name    string
		cfg     Config
		frame   []byte
		action  uint32
		outcome Outcome
	}
	var cases []tc
	for _, fam := range []struct {
		name     string
		src, dst netip.AddrPort
	}{{"ipv4", src4, dst4}, {"ipv6", src6, dst6}} {
		// IP lengths; the frame has 14 bytes more.
		for _, ipLen := range []int{1400, 1800, 3000, 3506, 3507, 9000} {
			frame := sized(fam.src, fam.dst, ipLen+14)
			for _, limit := range []int{0, 1792, 3840, 9014, 9013} {
				c := tc{name: fmt.Sprintf("%s ip length %d limit %d", fam.name, ipLen, limit),
					cfg: Config{Ports: []uint16{9000}, MaxRedirect: limit}, frame: frame, action: xdpRedirect, outcome: OutcomeRedirect}
				if limit != 0 && len(frame) > limit {
					c.action, c.outcome = xdpPass, OutcomeOversize
				}
				cases = append(cases, c)
			}
		}
		jumbo := func(s frames.Spec) []byte {
			s.Src, s.Dst = fam.src, fam.dst
			s.Payload = make([]byte, 9014-frames.HeaderLen(s))
			return frames.Build(s)
		}
		base := Config{Ports: []uint16{9000}, MaxRedirect: 3840}
		long := jumbo(frames.Spec{})
		// The IP length says 100 bytes more than the frame has.
		if fam.name == "ipv4" {
			long = patch(long, 16, byte((9000+100)>>8), byte((9000+100)&0xff))
		} else {
			long = patch(long, 18, byte((8960+100)>>8), byte((8960+100)&0xff))
		}
		// A datagram that ends in the first buffer, then a trailer that
		// runs into frags: the size check must see the whole frame.
		trailer := frames.Build(frames.Spec{Src: fam.src, Dst: fam.dst, Payload: make([]byte, 1000), Trailer: make([]byte, 3000)})
		for _, limit := range []int{3840, 9014} {
			c := tc{name: fmt.Sprintf("%s datagram in the first buffer, trailer in frags, limit %d", fam.name, limit),
				cfg: Config{Ports: []uint16{9000}, MaxRedirect: limit}, frame: trailer, action: xdpRedirect, outcome: OutcomeRedirect}
			if len(trailer) > limit {
				c.action, c.outcome = xdpPass, OutcomeOversize
			}
			cases = append(cases, c)
		}
		cases = append(cases,
			tc{name: fam.name + " jumbo truncated", cfg: base, frame: long, action: xdpPass, outcome: OutcomeTruncated},
			tc{name: fam.name + " jumbo other port", cfg: base, frame: sized(fam.src, withPort(fam.dst, other), 9014), action: xdpPass, outcome: OutcomeOtherPort},
			tc{name: fam.name + " jumbo tcp", cfg: base, frame: jumbo(frames.Spec{Proto: frames.ProtoTCP}), action: xdpPass, outcome: OutcomeTCP},
			tc{name: fam.name + " jumbo denied", cfg: Config{Ports: []uint16{9000}, Deny: []netip.Prefix{netip.PrefixFrom(fam.src.Addr(), fam.src.Addr().BitLen())}}, frame: sized(fam.src, fam.dst, 9014), action: xdpDrop, outcome: OutcomeDeny},
			tc{name: fam.name + " jumbo pass mode", cfg: Config{Ports: []uint16{9000}, Action: Pass, MaxRedirect: 1792}, frame: sized(fam.src, fam.dst, 9014), action: xdpPass, outcome: OutcomePassMatch},
		)
	}
	cases = append(cases,
		tc{name: "ipv4 jumbo fragment", cfg: Config{Ports: []uint16{9000}}, frame: frames.Build(frames.Spec{Src: src4, Dst: dst4, MoreFrags: true, Payload: make([]byte, 8000)}), action: xdpPass, outcome: OutcomeFragment},
		tc{name: "ipv6 jumbo fragment header", cfg: Config{Ports: []uint16{9000}}, frame: patch(sized(src6, dst6, 9014), 14+6, 44), action: xdpPass, outcome: OutcomeFragment},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runBranch(t, false, Config{}, &c.cfg, false, c.frame, c.action, c.outcome)
		})
	}
}
