package xdp

import (
	"errors"
	"flag"
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

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

var abObject = flag.String("xdp.ab", "", "BenchmarkProgramAB: another build of ingest_bpfel.o to compare the program with")

// BenchmarkProgramAB compares the program with another build of it, given
// with -xdp.ab (git show REV:xdp/ingest_bpfel.o > /tmp/base.o), where
// BenchmarkProgram's wall time is too noisy: on a shared machine its
// figures vary by 10 ns from run to run. Each of b.N rounds runs every
// case through both builds, each loaded twice, in alternating order
// (200000 frames per run), and takes the kernel's time per frame, which
// leaves out the time the thread was scheduled out (but has whole
// nanoseconds: the mean of many runs resolves a fraction of one only
// because of the noise). It reports the trimmed means: ns/frame of this
// build, base-ns/frame of the other, delta-ns, and load-ns, the mean gap
// between two loads of the same build (where the JIT put the code): a
// delta below it is no difference. Besides the plain configuration (port
// 9000, nothing else), the server's (MaxRedirect for 4 KiB frames) and
// one with deny lists in force that the source is not in.
func BenchmarkProgramAB(b *testing.B) {
	if *abObject == "" {
		b.Skip("needs -xdp.ab=FILE, another build of ingest_bpfel.o")
	}
	configs := map[string]Config{
		"plain":  {Ports: []uint16{9000}},
		"server": {Ports: []uint16{9000}, MaxRedirect: MaxRedirectFor(4096, 0)},
		"deny":   {Ports: []uint16{9000}, Deny: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:ffff::/48")}},
	}
	cur, base := map[string][]abBuild{}, map[string][]abBuild{}
	for name, cfg := range configs {
		for range 2 {
			p := loadT(b, cfg)
			xskT(b, p)
			cur[name] = append(cur[name], abBuild{xdp: p.objs.Xdpingest, passOnly: p.objs.XdpPassOnly})
			o, err := loadAB(b, *abObject, cfg)
			if err != nil {
				b.Fatalf("load %s: %v", *abObject, err)
			}
			base[name] = append(base[name], o)
		}
	}
	cases := []struct {
		name, config string
		pass         bool
		frame        []byte
		want         uint32
	}{
		{"pass-only", "plain", true, frame64(src4, dst4), xdpPass},
		{"matched-ipv4", "plain", false, frame64(src4, dst4), xdpRedirect},
		{"matched-ipv6", "plain", false, frame64(src6, dst6), xdpRedirect},
		{"unmatched-ipv4", "plain", false, frame64(src4, withPort(dst4, other)), xdpPass},
		{"matched-ipv4-qinq", "plain", false, frame64(src4, dst4, ad, q), xdpRedirect},
		{"matched-ipv4-max-redirect", "server", false, frame64(src4, dst4), xdpRedirect},
		{"matched-ipv6-max-redirect", "server", false, frame64(src6, dst6), xdpRedirect},
		{"matched-ipv4-deny-list", "deny", false, frame64(src4, dst4), xdpRedirect},
		{"matched-ipv6-deny-list", "deny", false, frame64(src6, dst6), xdpRedirect},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			cb, bb := cur[c.config], base[c.config]
			progs := []*ebpf.Program{cb[0].xdp, cb[1].xdp, bb[0].xdp, bb[1].xdp}
			if c.pass {
				progs = []*ebpf.Program{cb[0].passOnly, cb[1].passOnly, bb[0].passOnly, bb[1].passOnly}
			}
			ns := make([][]float64, len(progs))
			for round := range b.N {
				for i := range progs {
					if round%2 == 1 {
						i = len(progs) - 1 - i
					}
					ret, d, err := progs[i].Benchmark(c.frame, 200000, nil)
					if err != nil {
						b.Fatal(err)
					}
					if ret != c.want {
						b.Fatalf("action %d, want %d", ret, c.want)
					}
					ns[i] = append(ns[i], float64(d.Nanoseconds()))
				}
			}
			m := make([]float64, len(ns))
			for i := range ns {
				m[i] = trimmedMean(ns[i])
			}
			b.ReportMetric((m[0]+m[1])/2, "ns/frame")
			b.ReportMetric((m[2]+m[3])/2, "base-ns/frame")
			b.ReportMetric((m[0]+m[1]-m[2]-m[3])/2, "delta-ns")
			b.ReportMetric((abs(m[0]-m[1])+abs(m[2]-m[3]))/2, "load-ns")
		})
	}
}

// abBuild is a build of the program: the XDP program and the baseline, and
// the collection they came in.
type abBuild struct {
	xdp, passOnly *ebpf.Program
	coll          *ebpf.Collection
}

// loadAB loads another build of the program, configured with cfg's ports
// (at most 3, in slots 1 to 3), lists, action and MaxRedirect, and an
// AF_XDP socket for queue 0. It knows the layouts of the builds since per-port counters: the
// port table and the configuration as map entries (port_slots, config) or
// as globals (the variables port_slots and config).
func loadAB(tb testing.TB, path string, cfg Config) (o abBuild, err error) {
	spec, err := ebpf.LoadCollectionSpec(path)
	if err != nil {
		return o, err
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return o, err
	}
	tb.Cleanup(coll.Close)
	var words [65536 / 4]uint64
	for i, port := range cfg.Ports[:min(len(cfg.Ports), 3)] {
		words[port>>2] |= uint64(i+1+1) << ((port & 3) * 16)
	}
	conf := ingestConfig{Mode: uint32(cfg.Action), MaxRedirect: uint32(cfg.MaxRedirect)}
	for kind, list := range map[string][]netip.Prefix{"allow": cfg.Allow, "deny": cfg.Deny} {
		for _, pfx := range list {
			name := listName(kind, pfx)
			if err := coll.Maps[name].Update(lpmKey(pfx), uint8(1), ebpf.UpdateAny); err != nil {
				return o, err
			}
			conf.Flags |= map[string]uint32{"allow4": cfgAllow4, "allow6": cfgAllow6, "deny4": cfgDeny4, "deny6": cfgDeny6}[name]
		}
	}
	switch {
	case coll.Variables["port_slots"] != nil && coll.Variables["config"] != nil:
		if err := coll.Variables["port_slots"].Set(words); err != nil {
			return o, err
		}
		err = coll.Variables["config"].Set(conf)
	case coll.Maps["port_slots"] != nil && coll.Maps["config"] != nil:
		for w, v := range words {
			if v == 0 {
				continue
			}
			if err := coll.Maps["port_slots"].Update(uint32(w), v, ebpf.UpdateAny); err != nil {
				return o, err
			}
		}
		err = coll.Maps["config"].Update(uint32(0), conf, ebpf.UpdateAny)
	default:
		err = errors.New("neither port_slots and config maps nor variables: teach loadAB this build's layout")
	}
	if err != nil {
		return o, err
	}
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW, 0)
	if err != nil {
		return o, err
	}
	tb.Cleanup(func() { unix.Close(fd) })
	if err := coll.Maps["xsks"].Update(uint32(0), uint32(fd), ebpf.UpdateAny); err != nil {
		return o, err
	}
	o.xdp, o.passOnly, o.coll = coll.Programs["xdpingest"], coll.Programs["xdp_pass_only"], coll
	if o.xdp == nil || o.passOnly == nil {
		return o, errors.New("no xdpingest or xdp_pass_only program in it")
	}
	return o, nil
}

// trimmedMean is the mean of the middle half of x.
func trimmedMean(x []float64) float64 {
	y := slices.Sorted(slices.Values(x))
	y = y[len(y)/4 : len(y)-len(y)/4]
	var sum float64
	for _, v := range y {
		sum += v
	}
	return sum / float64(len(y))
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
