package xdp

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/internal/frames"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// XDP return codes.
const (
	xdpAborted  = 0
	xdpDrop     = 1
	xdpPass     = 2
	xdpTX       = 3
	xdpRedirect = 4
)

func loadT(tb testing.TB, cfg Config) *Program {
	tb.Helper()
	return loadVariant(tb, cfg, false)
}

// loadVariant loads the multi-buffer program, or with single the program
// for kernels before 5.18.
func loadVariant(tb testing.TB, cfg Config, single bool) *Program {
	tb.Helper()
	testutil.RequireBPF(tb)
	p, err := Load(cfg, LoadOptions{MaxQueues: 4, MaxPrefixes: 1024, SingleBuffer: single})
	if errors.Is(err, errors.ErrUnsupported) {
		testutil.Skip(tb, err.Error())
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	if p.MultiBuffer() == single {
		tb.Fatalf("MultiBuffer() = %v with SingleBuffer %v on a kernel with frags support (5.18+)", p.MultiBuffer(), single)
	}
	return p
}

// variants are the two XDP programs: both must take every branch alike.
var variants = []struct {
	name   string
	single bool
}{{"multi-buffer", false}, {"single-buffer", true}}

// xskT registers an (unbound) AF_XDP socket for queue 0: enough for
// bpf_redirect_map to find it, which is all BPF_PROG_RUN looks at.
func xskT(tb testing.TB, p *Program) {
	tb.Helper()
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW, 0)
	if err != nil {
		testutil.Skip(tb, "can't create an AF_XDP socket (CONFIG_XDP_SOCKETS): "+err.Error())
	}
	tb.Cleanup(func() { unix.Close(fd) })
	if err := p.RegisterXSK(0, fd); err != nil {
		tb.Fatal(err)
	}
}

func run(tb testing.TB, p *Program, frame []byte) uint32 {
	tb.Helper()
	ret, err := p.objs.Xdpingest.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		tb.Fatalf("BPF_PROG_RUN: %v", err)
	}
	return ret
}

var (
	src4  = netip.MustParseAddrPort("198.18.0.1:40000")
	dst4  = netip.MustParseAddrPort("198.18.0.2:9000")
	src6  = netip.MustParseAddrPort("[2001:db8::1]:40000")
	dst6  = netip.MustParseAddrPort("[2001:db8::2]:9000")
	other = uint16(9999)
)

func withPort(ap netip.AddrPort, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr(), port)
}

func udp(src, dst netip.AddrPort, vlans ...frames.VLAN) []byte {
	return frames.Build(frames.Spec{Src: src, Dst: dst, VLANs: vlans, Payload: []byte("payload")})
}

var (
	q  = frames.VLAN{TPID: frames.EtherTypeVLAN, ID: 100}
	ad = frames.VLAN{TPID: frames.EtherTypeQinQ, ID: 200}
)

func TestProgramBranches(t *testing.T) {
	base := Config{Ports: []uint16{9000, 53}, Action: Redirect}
	cases := []struct {
		name    string
		cfg     *Config // nil: base
		noXSK   bool
		frame   []byte
		action  uint32
		outcome Outcome
	}{
		{name: "ipv4 udp match", frame: udp(src4, dst4), action: xdpRedirect, outcome: OutcomeRedirect},
		{name: "ipv6 udp match", frame: udp(src6, dst6), action: xdpRedirect, outcome: OutcomeRedirect},
		{name: "ipv4 single vlan", frame: udp(src4, dst4, q), action: xdpRedirect, outcome: OutcomeRedirect},
		{name: "ipv6 single vlan", frame: udp(src6, dst6, q), action: xdpRedirect, outcome: OutcomeRedirect},
		{name: "ipv4 double vlan qinq", frame: udp(src4, dst4, ad, q), action: xdpRedirect, outcome: OutcomeRedirect},
		{name: "ipv6 double vlan 802.1q twice", frame: udp(src6, dst6, q, q), action: xdpRedirect, outcome: OutcomeRedirect},
		{name: "three vlan tags", frame: udp(src4, dst4, ad, q, q), action: xdpPass, outcome: OutcomeVLANDepth},
		{name: "ipv4 with options", frame: frames.Build(frames.Spec{Src: src4, Dst: dst4, IPOptions: []byte{0x94, 4, 0, 0, 1, 1, 1, 1}, Payload: []byte("x")}), action: xdpRedirect, outcome: OutcomeRedirect},
		{name: "ipv4 second port", frame: udp(src4, withPort(dst4, 53)), action: xdpRedirect, outcome: OutcomeRedirect},
		{name: "ipv4 other port", frame: udp(src4, withPort(dst4, other)), action: xdpPass, outcome: OutcomeOtherPort},
		{name: "ipv6 other port", frame: udp(src6, withPort(dst6, other)), action: xdpPass, outcome: OutcomeOtherPort},
		{name: "ipv4 port 0 not in set", frame: udp(src4, withPort(dst4, 0)), action: xdpPass, outcome: OutcomeOtherPort},
		{name: "no socket for queue", noXSK: true, frame: udp(src4, dst4), action: xdpPass, outcome: OutcomeNoSocket},
		{name: "pass mode", cfg: &Config{Ports: []uint16{9000}, Action: Pass}, frame: udp(src6, dst6), action: xdpPass, outcome: OutcomePassMatch},
		{name: "drop mode", cfg: &Config{Ports: []uint16{9000}, Action: Drop}, frame: udp(src4, dst4), action: xdpDrop, outcome: OutcomeDropMode},
		{name: "ipv4 denied", cfg: &Config{Ports: []uint16{9000}, Deny: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}}, frame: udp(src4, dst4), action: xdpDrop, outcome: OutcomeDeny},
		{name: "ipv4 deny other prefix", cfg: &Config{Ports: []uint16{9000}, Deny: []netip.Prefix{netip.MustParsePrefix("198.19.0.0/16")}}, frame: udp(src4, dst4), action: xdpRedirect, outcome: OutcomeRedirect},
		{name: "ipv4 deny other port untouched", cfg: &Config{Ports: []uint16{9000}, Deny: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}}, frame: udp(src4, withPort(dst4, other)), action: xdpPass, outcome: OutcomeOtherPort},
		{name: "ipv4 allowed", cfg: &Config{Ports: []uint16{9000}, Allow: []netip.Prefix{netip.MustParsePrefix("198.18.0.1/32")}}, frame: udp(src4, dst4), action: xdpRedirect, outcome: OutcomeRedirect},
		{name: "ipv4 not allowed", cfg: &Config{Ports: []uint16{9000}, Allow: []netip.Prefix{netip.MustParsePrefix("198.18.0.128/25")}}, frame: udp(src4, dst4), action: xdpDrop, outcome: OutcomeNotAllowed},
		{name: "ipv4 deny wins over allow", cfg: &Config{Ports: []uint16{9000}, Allow: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}, Deny: []netip.Prefix{netip.MustParsePrefix("198.18.0.1/32")}}, frame: udp(src4, dst4), action: xdpDrop, outcome: OutcomeDeny},
		{name: "ipv4 allow list leaves ipv6 alone", cfg: &Config{Ports: []uint16{9000}, Allow: []netip.Prefix{netip.MustParsePrefix("198.19.0.0/16")}}, frame: udp(src6, dst6), action: xdpRedirect, outcome: OutcomeRedirect},
		{name: "ipv6 denied", cfg: &Config{Ports: []uint16{9000}, Deny: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}}, frame: udp(src6, dst6, q), action: xdpDrop, outcome: OutcomeDeny},
		{name: "ipv6 allowed", cfg: &Config{Ports: []uint16{9000}, Allow: []netip.Prefix{netip.MustParsePrefix("2001:db8::1/128")}}, frame: udp(src6, dst6), action: xdpRedirect, outcome: OutcomeRedirect},
		{name: "ipv6 not allowed", cfg: &Config{Ports: []uint16{9000}, Allow: []netip.Prefix{netip.MustParsePrefix("2001:db8:1::/48")}}, frame: udp(src6, dst6), action: xdpDrop, outcome: OutcomeNotAllowed},
		{name: "ipv4 first fragment", frame: frames.Build(frames.Spec{Src: src4, Dst: dst4, MoreFrags: true, Payload: make([]byte, 16)}), action: xdpPass, outcome: OutcomeFragment},
		{name: "ipv4 later fragment", frame: frames.Build(frames.Spec{Src: src4, Dst: dst4, FragOff: 2, Proto: 250, Payload: make([]byte, 16)}), action: xdpPass, outcome: OutcomeFragment},
		{name: "ipv4 last fragment udp-looking", frame: frames.Build(frames.Spec{Src: src4, Dst: dst4, FragOff: 185, Payload: make([]byte, 16)}), action: xdpPass, outcome: OutcomeFragment},
		{name: "ipv4 tcp to matched port", frame: frames.Build(frames.Spec{Src: src4, Dst: dst4, Proto: frames.ProtoTCP}), action: xdpPass, outcome: OutcomeTCP},
		{name: "ipv6 tcp", frame: frames.Build(frames.Spec{Src: src6, Dst: dst6, Proto: frames.ProtoTCP}), action: xdpPass, outcome: OutcomeTCP},
		{name: "icmp", frame: frames.Build(frames.Spec{Src: src4, Dst: dst4, Proto: frames.ProtoICMP}), action: xdpPass, outcome: OutcomeICMP},
		{name: "icmpv6", frame: frames.Build(frames.Spec{Src: src6, Dst: dst6, Proto: frames.ProtoICMPv6}), action: xdpPass, outcome: OutcomeICMP},
		{name: "ipv4 gre", frame: frames.Build(frames.Spec{Src: src4, Dst: dst4, Proto: 47, Payload: make([]byte, 8)}), action: xdpPass, outcome: OutcomeOtherL4},
		{name: "arp", frame: frames.ARP(nil, src4.Addr(), dst4.Addr()), action: xdpPass, outcome: OutcomeARP},
		{name: "other ethertype", frame: append([]byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0xcc}, make([]byte, 46)...), action: xdpPass, outcome: OutcomeOtherL3},
		{name: "ipv6 hop-by-hop before udp", frame: frames.Build(frames.Spec{Src: src6, Dst: dst6, HopByHop: true, Payload: []byte("x")}), action: xdpPass, outcome: OutcomeIPv6Ext},
		{name: "ipv4 bad version", frame: patch(udp(src4, dst4), 14, 0x55), action: xdpPass, outcome: OutcomeMalformed},
		{name: "ipv4 ihl below 5", frame: patch(udp(src4, dst4), 14, 0x44), action: xdpPass, outcome: OutcomeMalformed},
		{name: "ipv4 total length below ihl", frame: patch(udp(src4, dst4), 16, 0, 19), action: xdpPass, outcome: OutcomeMalformed},
		{name: "ipv4 total length beyond frame", frame: patch(udp(src4, dst4), 16, 0x05, 0xdc), action: xdpPass, outcome: OutcomeTruncated},
		{name: "ipv4 udp length beyond ip", frame: patch(udp(src4, dst4), 14+20+4, 0x05, 0xdc), action: xdpPass, outcome: OutcomeMalformed},
		{name: "ipv4 udp length below 8", frame: patch(udp(src4, dst4), 14+20+4, 0, 7), action: xdpPass, outcome: OutcomeMalformed},
		{name: "ipv4 ip length too short for udp", frame: patch(udp(src4, dst4), 16, 0, 24), action: xdpPass, outcome: OutcomeMalformed},
		{name: "ipv6 bad version", frame: patch(udp(src6, dst6), 14, 0x40), action: xdpPass, outcome: OutcomeMalformed},
		{name: "ipv6 payload length beyond frame", frame: patch(udp(src6, dst6), 18, 0x05, 0xdc), action: xdpPass, outcome: OutcomeTruncated},
		{name: "ipv6 jumbogram length 0", frame: patch(udp(src6, dst6), 18, 0, 0), action: xdpPass, outcome: OutcomeMalformed},
		{name: "ipv6 udp length beyond ip", frame: patch(udp(src6, dst6), 14+40+4, 0x05, 0xdc), action: xdpPass, outcome: OutcomeMalformed},
		{name: "ethernet padding after ipv4 is fine", frame: append(frames.Build(frames.Spec{Src: src4, Dst: dst4, Payload: []byte{1}}), make([]byte, 17)...), action: xdpRedirect, outcome: OutcomeRedirect},
		{name: "ipv6 fragment header first", frame: patch(udp(src6, dst6), 14+6, 44), action: xdpPass, outcome: OutcomeFragment},
		{name: "ipv6 fragment header after hop-by-hop", frame: patch(frames.Build(frames.Spec{Src: src6, Dst: dst6, HopByHop: true, Payload: []byte("x")}), 14+40, 44), action: xdpPass, outcome: OutcomeIPv6Ext},
		{name: "ipv6 routing header", frame: patch(udp(src6, dst6), 14+6, 43), action: xdpPass, outcome: OutcomeIPv6Ext},
		{name: "ipv4 frame of max redirect", cfg: &Config{Ports: []uint16{9000}, MaxRedirect: 1792}, frame: sized(src4, dst4, 1792), action: xdpRedirect, outcome: OutcomeRedirect},
		{name: "ipv4 frame one byte over max redirect", cfg: &Config{Ports: []uint16{9000}, MaxRedirect: 1792}, frame: sized(src4, dst4, 1793), action: xdpPass, outcome: OutcomeOversize},
		{name: "ipv6 frame of max redirect", cfg: &Config{Ports: []uint16{9000}, MaxRedirect: 1792}, frame: sized(src6, dst6, 1792), action: xdpRedirect, outcome: OutcomeRedirect},
		{name: "ipv6 frame one byte over max redirect", cfg: &Config{Ports: []uint16{9000}, MaxRedirect: 1792}, frame: sized(src6, dst6, 1793), action: xdpPass, outcome: OutcomeOversize},
		{name: "vlan counts in the frame size", cfg: &Config{Ports: []uint16{9000}, MaxRedirect: 1792}, frame: sizedVLAN(src4, dst4, 1793, q), action: xdpPass, outcome: OutcomeOversize},
		{name: "oversize without a socket", cfg: &Config{Ports: []uint16{9000}, MaxRedirect: 1792}, noXSK: true, frame: sized(src4, dst4, 3000), action: xdpPass, outcome: OutcomeOversize},
		{name: "oversize denied is denied", cfg: &Config{Ports: []uint16{9000}, MaxRedirect: 1792, Deny: []netip.Prefix{netip.MustParsePrefix("198.18.0.1/32")}}, frame: sized(src4, dst4, 3000), action: xdpDrop, outcome: OutcomeDeny},
		{name: "oversize not allowed is dropped", cfg: &Config{Ports: []uint16{9000}, MaxRedirect: 1792, Allow: []netip.Prefix{netip.MustParsePrefix("2001:db8:1::/48")}}, frame: sized(src6, dst6, 3000), action: xdpDrop, outcome: OutcomeNotAllowed},
		{name: "no limit without max redirect", frame: sized(src6, dst6, 3500), action: xdpRedirect, outcome: OutcomeRedirect},
		{name: "pass mode ignores max redirect", cfg: &Config{Ports: []uint16{9000}, Action: Pass, MaxRedirect: 1792}, frame: sized(src4, dst4, 3000), action: xdpPass, outcome: OutcomePassMatch},
		{name: "drop mode ignores max redirect", cfg: &Config{Ports: []uint16{9000}, Action: Drop, MaxRedirect: 1792}, frame: sized(src4, dst4, 3000), action: xdpDrop, outcome: OutcomeDropMode},
		{name: "other port over max redirect", cfg: &Config{Ports: []uint16{9000}, MaxRedirect: 1792}, frame: sized(src4, withPort(dst4, other), 3000), action: xdpPass, outcome: OutcomeOtherPort},
	}
	for _, v := range variants {
		for _, tc := range cases {
			t.Run(v.name+"/"+tc.name, func(t *testing.T) {
				runBranch(t, v.single, base, tc.cfg, tc.noXSK, tc.frame, tc.action, tc.outcome)
			})
		}
	}
}

func runBranch(t *testing.T, single bool, base Config, tcfg *Config, noXSK bool, frame []byte, action uint32, outcome Outcome) {
	t.Helper()
	cfg := base
	if tcfg != nil {
		cfg = *tcfg
	}
	p := loadVariant(t, cfg, single)
	if !noXSK {
		xskT(t, p)
	}
	before, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if got := run(t, p, frame); got != action {
		t.Errorf("action %d, want %d", got, action)
	}
	after, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	assertOnly(t, after.Sub(before), outcome, uint64(len(frame)))
}

// sized is a UDP frame of n bytes from the Ethernet header on.
func sized(src, dst netip.AddrPort, n int) []byte {
	return sizedVLAN(src, dst, n)
}

func sizedVLAN(src, dst netip.AddrPort, n int, vlans ...frames.VLAN) []byte {
	s := frames.Spec{Src: src, Dst: dst, VLANs: vlans}
	s.Payload = make([]byte, n-frames.HeaderLen(s))
	for i := range s.Payload {
		s.Payload[i] = byte(i)
	}
	f := frames.Build(s)
	if len(f) != n {
		panic(fmt.Sprintf("sized: built %d bytes, want %d", len(f), n))
	}
	return f
}

// assertOnly checks that exactly one frame of n bytes moved exactly outcome.
func assertOnly(tb testing.TB, d Counters, outcome Outcome, n uint64) {
	tb.Helper()
	for o := Outcome(0); o < NumOutcomes; o++ {
		want := Count{}
		if o == outcome {
			want = Count{Packets: 1, Bytes: n}
		}
		if d[o] != want {
			tb.Errorf("counter %s moved by %+v, want %+v", o, d[o], want)
		}
	}
}

func patch(f []byte, off int, b ...byte) []byte {
	copy(f[off:], b)
	return f
}

// Every frame cut short inside its headers is passed and counted as
// truncated, whatever the cut. BPF_PROG_RUN refuses frames shorter than an
// Ethernet header, so cuts start at 14.
func TestProgramTruncatedAtEveryOffset(t *testing.T) {
	p := loadT(t, Config{Ports: []uint16{9000}, Deny: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}})
	xskT(t, p)
	specs := map[string]frames.Spec{
		"ipv4":             {Src: src4, Dst: dst4, Payload: []byte("p")},
		"ipv4 options":     {Src: src4, Dst: dst4, IPOptions: []byte{1, 1, 1, 1, 1, 1, 1, 1}, Payload: []byte("p")},
		"ipv6":             {Src: src6, Dst: dst6, Payload: []byte("p")},
		"ipv4 double vlan": {Src: src4, Dst: dst4, VLANs: []frames.VLAN{ad, q}, Payload: []byte("p")},
		"ipv6 single vlan": {Src: src6, Dst: dst6, VLANs: []frames.VLAN{q}, Payload: []byte("p")},
	}
	for name, s := range specs {
		full := frames.Build(s)
		hl := frames.HeaderLen(s)
		if got := run(t, p, full); got != xdpRedirect {
			t.Fatalf("%s: the whole frame gets action %d, want redirect", name, got)
		}
		for cut := 14; cut < hl+len(s.Payload); cut++ {
			before, _ := p.Counters()
			if got := run(t, p, full[:cut]); got != xdpPass {
				t.Errorf("%s cut at %d: action %d, want pass", name, cut, got)
			}
			after, _ := p.Counters()
			d := after.Sub(before)
			if d[OutcomeTruncated].Packets != 1 || d.Total().Packets != 1 {
				t.Errorf("%s cut at %d: counters moved %v, want truncated only", name, cut, nonzero(d))
			}
		}
	}
}

func nonzero(c Counters) map[string]uint64 {
	m := map[string]uint64{}
	for o := Outcome(0); o < NumOutcomes; o++ {
		if c[o].Packets != 0 {
			m[o.String()] = c[o].Packets
		}
	}
	return m
}

// Ports and prefix lists change without reloading or reattaching.
func TestProgramUpdate(t *testing.T) {
	p := loadT(t, Config{Ports: []uint16{9000}})
	xskT(t, p)
	f9000 := udp(src4, dst4)
	f7000 := udp(src4, withPort(dst4, 7000))
	if run(t, p, f9000) != xdpRedirect || run(t, p, f7000) != xdpPass {
		t.Fatal("initial port set not in force")
	}
	if err := p.Update(Config{Ports: []uint16{7000, 65535}}); err != nil {
		t.Fatal(err)
	}
	if run(t, p, f9000) != xdpPass || run(t, p, f7000) != xdpRedirect {
		t.Fatal("updated port set not in force")
	}
	if run(t, p, udp(src4, withPort(dst4, 65535))) != xdpRedirect {
		t.Fatal("port 65535 not matched")
	}
	if got := p.Config().Ports; len(got) != 2 || got[0] != 7000 || got[1] != 65535 {
		t.Fatalf("Config().Ports = %v", got)
	}
	// Deny, then lift the deny.
	deny := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/16")}
	if err := p.Update(Config{Ports: []uint16{7000}, Deny: deny}); err != nil {
		t.Fatal(err)
	}
	if run(t, p, f7000) != xdpDrop {
		t.Fatal("deny not in force")
	}
	if err := p.Update(Config{Ports: []uint16{7000}}); err != nil {
		t.Fatal(err)
	}
	if run(t, p, f7000) != xdpRedirect {
		t.Fatal("deny not lifted")
	}
	if err := p.SetAction(Pass); err != nil {
		t.Fatal(err)
	}
	if run(t, p, f7000) != xdpPass {
		t.Fatal("pass action not in force")
	}
	// Every port at once.
	all := make([]uint16, 65536)
	for i := range all {
		all[i] = uint16(i)
	}
	if err := p.Update(Config{Ports: all}); err != nil {
		t.Fatal(err)
	}
	if n := len(p.Config().Ports); n != 65536 {
		t.Fatalf("%d ports in force, want 65536", n)
	}
	if run(t, p, udp(src4, withPort(dst4, 12345))) != xdpRedirect {
		t.Fatal("all-ports set does not match 12345")
	}
}

func TestProgramUnregisterXSK(t *testing.T) {
	p := loadT(t, Config{Ports: []uint16{9000}})
	xskT(t, p)
	if run(t, p, udp(src4, dst4)) != xdpRedirect {
		t.Fatal("not redirected with a socket")
	}
	if err := p.UnregisterXSK(0); err != nil {
		t.Fatal(err)
	}
	if run(t, p, udp(src4, dst4)) != xdpPass {
		t.Fatal("redirected without a socket")
	}
	if err := p.RegisterXSK(4, 1); err == nil {
		t.Fatal("queue beyond MaxQueues accepted")
	}
}

func TestLoadRefusesBadConfig(t *testing.T) {
	if _, err := Load(Config{Action: 7}, LoadOptions{}); err == nil {
		t.Fatal("bad action accepted")
	}
	if _, err := Load(Config{Deny: []netip.Prefix{{}}}, LoadOptions{}); err == nil {
		t.Fatal("invalid prefix accepted")
	}
}

// FuzzProgram runs arbitrary frames through the program: it must always
// answer pass, drop or redirect, and count each frame exactly once.
func FuzzProgram(f *testing.F) {
	seeds := [][]byte{
		udp(src4, dst4), udp(src6, dst6), udp(src4, dst4, ad, q),
		frames.Build(frames.Spec{Src: src4, Dst: dst4, MoreFrags: true}),
		frames.Build(frames.Spec{Src: src6, Dst: dst6, HopByHop: true}),
		frames.ARP(nil, src4.Addr(), dst4.Addr()),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	p := loadT(f, Config{Ports: []uint16{9000, 53}, Allow: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("2001:db8::/32")},
		Deny: []netip.Prefix{netip.MustParsePrefix("198.18.0.128/25")}})
	xskT(f, p)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > 3000 {
			t.Skip("BPF_PROG_RUN takes 14..(page - headroom) bytes")
		}
		before, err := p.Counters()
		if err != nil {
			t.Fatal(err)
		}
		switch got := run(t, p, frame); got {
		case xdpPass, xdpDrop, xdpRedirect:
		default:
			t.Fatalf("action %d for %x", got, frame)
		}
		after, err := p.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if d := after.Sub(before).Total(); d.Packets != 1 || d.Bytes != uint64(len(frame)) {
			t.Fatalf("counters moved %+v for one frame of %d bytes", d, len(frame))
		}
	})
}
