package hostile

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"

	"github.com/xdpingest/xdpingest/internal/frames"
)

// Config chooses what a mix holds.
type Config struct {
	// Ports are the server's ingest ports (at least one); cases take them
	// in turn.
	Ports []uint16
	// Policy is the server's source lists. The zero value allows every
	// source, and the mix then has no refused datagrams (no floods).
	Policy Policy
	// Seed drives every random choice: orders, random sizes, the order of
	// the cases. The same seed on the same Env gives the same mix, with
	// fresh identifications.
	Seed uint64
	// Sizes are the payload sizes of the size sweep (nil: DefaultSizes).
	// Sizes above 65,507 are sent over IPv6 only, above 65,527 not at all.
	Sizes []int
	// RandomSizes adds that many sizes drawn from 0..65,507 (0: 6;
	// negative: none).
	RandomSizes int
	// FragMTUs are the MTUs at which raw frames of the size sweep are cut
	// into fragments (nil: 1500 and the bed's MTU). Values above the bed's
	// MTU are left out.
	FragMTUs []int
	// Flood is the number of datagrams of a whole-datagram flood case
	// (0: 200); fragmented floods send a tenth of it.
	Flood int
	// Kinds are the kinds of case to build (nil: AllKinds).
	Kinds []Kind
}

// DefaultSizes is the spread of payload sizes the size sweep sends: the
// edges of the 1500 and 9000 MTUs for both families, powers of two, and
// the largest of each family.
var DefaultSizes = []int{0, 1, 7, 8, 9, 1452, 1453, 1471, 1472, 1473, 1480, 2000, 4000, 8952, 8953, 8972, 8973, 9000, 16384, 32768, 40000, 65507, 65527}

// Largest UDP payloads.
const (
	MaxPayload4 = 65507
	MaxPayload6 = 65527
)

// builder holds the state of one Mix being built.
type builder struct {
	e   *Env
	m   *Mix
	cfg Config
	rng *rand.Rand
	// Sources by family (index 0: IPv4, 1: IPv6) and class.
	rawAllowed, sockAllowed, leftover, denied, notAllowed [2][]netip.Addr
	nport                                                 int
}

// Mix builds a mix of cases for the Env's bed. See Config.
func (e *Env) Mix(cfg Config) (*Mix, error) {
	if len(cfg.Ports) == 0 {
		return nil, fmt.Errorf("hostile mix: no ingest ports: give Config.Ports")
	}
	if slices.Contains(cfg.Ports, 0) {
		return nil, fmt.Errorf("hostile mix: port 0 is not an ingest port")
	}
	if cfg.Sizes == nil {
		cfg.Sizes = DefaultSizes
	}
	if cfg.RandomSizes == 0 {
		cfg.RandomSizes = 6
	}
	if cfg.FragMTUs == nil {
		cfg.FragMTUs = []int{1500, e.Bed.MTU}
	}
	var mtus []int
	for _, m := range cfg.FragMTUs {
		if m >= 1280 && m <= e.Bed.MTU && !slices.Contains(mtus, m) {
			mtus = append(mtus, m)
		}
	}
	if len(mtus) == 0 {
		return nil, fmt.Errorf("hostile mix: no usable FragMTUs in %v for a bed of MTU %d (1280 up to the bed's)", cfg.FragMTUs, e.Bed.MTU)
	}
	cfg.FragMTUs = mtus
	if cfg.Flood <= 0 {
		cfg.Flood = 200
	}
	if cfg.Kinds == nil {
		cfg.Kinds = AllKinds
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	g := &builder{e: e, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x486f7374696c65))}
	g.m = &Mix{Env: e, Cfg: cfg, OtherPort: otherPort(cfg.Ports)}
	if err := g.classify(); err != nil {
		return nil, err
	}
	if e.id4 == 0 {
		// Start somewhere the seed picks, away from what the kernel's own
		// sockets in Gen use (those send from other addresses anyway).
		e.id4 = uint16(g.rng.Uint32())
		e.id6 = g.rng.Uint32()
	}
	for _, k := range cfg.Kinds {
		build, ok := kindBuilders[k]
		if !ok {
			return nil, fmt.Errorf("hostile mix: unknown kind %q", k)
		}
		build(g)
	}
	g.rng.Shuffle(len(g.m.Cases), func(i, j int) { g.m.Cases[i], g.m.Cases[j] = g.m.Cases[j], g.m.Cases[i] })
	return g.m, nil
}

var kindBuilders = map[Kind]func(*builder){
	KindSizes:      (*builder).sizes,
	KindFragments:  (*builder).fragments,
	KindExt6:       (*builder).ext6,
	KindVLAN:       (*builder).vlan,
	KindChecksum:   (*builder).checksum,
	KindMalformed:  (*builder).malformed,
	KindOdd:        (*builder).odd,
	KindFlood:      (*builder).flood,
	KindOtherIface: (*builder).otherIface,
	KindOtherPort:  (*builder).otherPort,
	KindNotForUs:   (*builder).notForUs,
}

func otherPort(ports []uint16) uint16 {
	for p := uint16(7000); ; p++ {
		if !slices.Contains(ports, p) {
			return p
		}
	}
}

// classify sorts Gen's addresses by what the policy does with them. Of the
// allowed ones, raw frames, Gen's sockets and the fragments that never
// complete each get their own where there are enough (Gen's own address
// goes to the sockets, which other tests use too): the kernel's
// identifications then never meet ours, and a fragment queue left behind
// (it waits 30 s) never meets a later datagram's fragments, even once the
// 16-bit IPv4 identifications wrap in a long soak.
func (g *builder) classify() error {
	b := g.e.Bed
	for f, own := range []netip.Addr{b.Gen.IPv4, b.Gen.IPv6} {
		var allowed []netip.Addr
		for _, a := range g.e.Sources {
			if a.Is4() != (f == 0) || a == own {
				continue
			}
			switch g.cfg.Policy.Refuses(a) {
			case RefusedDeny:
				g.denied[f] = append(g.denied[f], a)
			case RefusedNotAllowed:
				g.notAllowed[f] = append(g.notAllowed[f], a)
			default:
				allowed = append(allowed, a)
			}
		}
		if g.cfg.Policy.Refuses(own) == "" {
			g.sockAllowed[f] = append(g.sockAllowed[f], own)
		}
		if len(allowed) == 0 && len(g.sockAllowed[f]) == 0 {
			return fmt.Errorf("hostile mix: the policy refuses every IPv%d source on Gen (%s and %v): allow one of them", 4+2*f, own, g.e.Sources)
		}
		if len(allowed) >= 3 {
			g.leftover[f] = allowed[len(allowed)-1:]
			allowed = allowed[:len(allowed)-1]
		}
		for i, a := range allowed {
			if i%2 == 0 || len(allowed) == 1 {
				g.rawAllowed[f] = append(g.rawAllowed[f], a)
			}
			if i%2 == 1 || len(allowed) == 1 {
				g.sockAllowed[f] = append(g.sockAllowed[f], a)
			}
		}
		if len(g.rawAllowed[f]) == 0 {
			g.rawAllowed[f] = g.sockAllowed[f]
		}
		if len(g.sockAllowed[f]) == 0 {
			g.sockAllowed[f] = g.rawAllowed[f]
		}
		if len(g.leftover[f]) == 0 {
			g.leftover[f] = g.rawAllowed[f]
		}
	}
	return nil
}

// fam is 0 for IPv4, 1 for IPv6.
var famNames = [2]string{"v4", "v6"}

func (g *builder) rx(f int) netip.Addr {
	if f == 0 {
		return g.e.Bed.Rx.IPv4
	}
	return g.e.Bed.Rx.IPv6
}

func (g *builder) port() uint16 {
	p := g.cfg.Ports[g.nport%len(g.cfg.Ports)]
	g.nport++
	return p
}

func pick(as []netip.Addr, i int) netip.Addr { return as[i%len(as)] }

func (g *builder) newCase(kind Kind, via Via, format string, args ...any) *Case {
	g.e.cases++
	c := &Case{ID: g.e.cases, Name: string(kind) + "/" + fmt.Sprintf(format, args...), Kind: kind, Via: via}
	g.m.Cases = append(g.m.Cases, c)
	return c
}

func srcPort(c *Case) uint16 { return uint16(srcPortBase + c.ID%40000) }

// add adds a datagram of size bytes from src to dst to c.
func (g *builder) add(c *Case, src netip.Addr, dst netip.AddrPort, size int) *Datagram {
	d := &Datagram{Case: c, Seq: len(c.Datagrams), Src: netip.AddrPortFrom(src, srcPort(c)), Dst: dst,
		Payload: payloadFor(c.ID, len(c.Datagrams), size), Refused: g.cfg.Policy.Refuses(src)}
	c.Datagrams = append(c.Datagrams, d)
	return d
}

// spec is the frame of d from Gen to Rx, with a fresh identification.
func (g *builder) spec(d *Datagram) frames.Spec {
	b := g.e.Bed
	s := frames.Spec{SrcMAC: b.Gen.MAC, DstMAC: b.Rx.MAC, Src: d.Src, Dst: d.Dst, Payload: d.Payload}
	if d.Src.Addr().Is4() {
		g.e.id4++
		s.ID = g.e.id4
	}
	return s
}

// fragSpec is spec with an IPv6 Fragment header's identification too.
func (g *builder) fragSpec(d *Datagram) frames.Spec {
	s := g.spec(d)
	if d.Src.Addr().Is6() {
		g.e.id6++
		s.Frag6 = &frames.Frag6{ID: g.e.id6}
	}
	return s
}

// ipLen is the IP packet's size for a payload of n bytes, unfragmented.
func ipLen(f, n int) int { return 28 + 20*f + n }

func maxPayload(f int) int { return MaxPayload4 + 20*f }

// sizes: every size of the sweep over both families, as raw frames cut at
// each FragMTU (every other size shuffled) and from Gen's sockets.
func (g *builder) sizes() {
	sizes := slices.Clone(g.cfg.Sizes)
	for range max(g.cfg.RandomSizes, 0) {
		sizes = append(sizes, g.rng.IntN(MaxPayload4+1))
	}
	for f := range 2 {
		for i, size := range sizes {
			if size < 0 || size > maxPayload(f) {
				continue
			}
			for _, mtu := range g.cfg.FragMTUs {
				c := g.newCase(KindSizes, ViaRaw, "raw-mtu%d/%s/%d", mtu, famNames[f], size)
				d := g.add(c, pick(g.rawAllowed[f], i), netip.AddrPortFrom(g.rx(f), g.port()), size)
				d.Kernel = true
				if ipLen(f, size) <= mtu {
					d.XDP = true
					c.Frames = [][]byte{frames.Build(g.spec(d))}
					continue
				}
				c.Frames = frames.Fragment(g.fragSpec(d), mtu)
				if i%2 == 1 {
					c.Frames = frames.Shuffled(c.Frames, g.rng)
					c.Name += "/shuffled"
				}
			}
			c := g.newCase(KindSizes, ViaGen, "socket/%s/%d", famNames[f], size)
			d := g.add(c, pick(g.sockAllowed[f], i), netip.AddrPortFrom(g.rx(f), g.port()), size)
			d.Kernel = true
			d.XDP = ipLen(f, size) <= g.e.Bed.MTU
		}
	}
}

// fragCase starts a fragments case of one 3000-byte datagram cut in 1200-
// byte pieces (three fragments: 0-1200, 1200-2400, 2400-3008).
func (g *builder) fragCase(kind Kind, f int, src netip.Addr, variant string, mod func(*frames.Spec)) (c *Case, d *Datagram, s frames.Spec, next uint8, data []byte, ps []frames.Piece) {
	c = g.newCase(kind, ViaRaw, "%s/%s", variant, famNames[f])
	d = g.add(c, src, netip.AddrPortFrom(g.rx(f), g.port()), 3000)
	s = g.fragSpec(d)
	if mod != nil {
		mod(&s)
	}
	next, data = frames.Fragmentable(s)
	return c, d, s, next, data, frames.Split(data, 1200)
}

func invert(b []byte) []byte {
	out := make([]byte, len(b))
	for i := range b {
		out[i] = ^b[i]
	}
	return out
}

// fragments: orders, overlaps, duplicates, holes, tiny fragments. What the
// kernel does with each was found on Linux 6.18 and is checked by the
// package's test: a fragment that partly overlaps one already queued
// discards the whole datagram (IPv4 as IPv6, same bytes or not); one that
// lies wholly inside a queued one is dropped as a duplicate and the first
// bytes stand; a non-final IPv4 fragment of under 8 bytes discards what
// was queued, while IPv6 refuses just that fragment.
func (g *builder) fragments() {
	for f := range 2 {
		i := 0
		frag := func(variant string, kernel bool, note string, mod func(*frames.Spec), order func(s frames.Spec, next uint8, data []byte, ps []frames.Piece, fs [][]byte) [][]byte) {
			// What leaves fragments queued in the kernel sends from its own
			// address.
			src := pick(g.rawAllowed[f], i)
			if !kernel || variant == "last-again-after-completion" {
				src = pick(g.leftover[f], i)
			}
			c, d, s, next, data, ps := g.fragCase(KindFragments, f, src, variant, mod)
			i++
			d.Kernel, d.Note = kernel, note
			c.Frames = order(s, next, data, ps, frames.Fragments(s, next, ps))
		}
		asIs := func(_ frames.Spec, _ uint8, _ []byte, _ []frames.Piece, fs [][]byte) [][]byte { return fs }
		frag("in-order", true, "", nil, asIs)
		frag("reversed", true, "", nil, func(_ frames.Spec, _ uint8, _ []byte, _ []frames.Piece, fs [][]byte) [][]byte {
			return frames.Reversed(fs)
		})
		frag("shuffled", true, "", nil, func(_ frames.Spec, _ uint8, _ []byte, _ []frames.Piece, fs [][]byte) [][]byte {
			return frames.Shuffled(fs, g.rng)
		})
		frag("duplicate-fragment", true, "the kernel drops the second copy", nil, func(_ frames.Spec, _ uint8, _ []byte, _ []frames.Piece, fs [][]byte) [][]byte {
			return [][]byte{fs[0], fs[1], fs[1], fs[2]}
		})
		frag("last-again-after-completion", true, "the late copy starts a queue that never completes", nil, func(_ frames.Spec, _ uint8, _ []byte, _ []frames.Piece, fs [][]byte) [][]byte {
			return append(fs, fs[2])
		})
		overlap := "a fragment overlapping one already queued discards the whole datagram (RFC 5722; IPv4 likewise since Linux 4.19)"
		frag("overlap-same-bytes", false, overlap, nil, func(s frames.Spec, next uint8, data []byte, ps []frames.Piece, _ [][]byte) [][]byte {
			return frames.Fragments(s, next, frames.Overlap(data, ps, 0, 64, true))
		})
		frag("overlap-same-bytes-reversed", false, overlap, nil, func(s frames.Spec, next uint8, data []byte, ps []frames.Piece, _ [][]byte) [][]byte {
			return frames.Reversed(frames.Fragments(s, next, frames.Overlap(data, ps, 1, 64, true)))
		})
		frag("overlap-different-bytes", false, overlap, nil, func(s frames.Spec, next uint8, data []byte, ps []frames.Piece, _ [][]byte) [][]byte {
			return frames.Fragments(s, next, frames.Overlap(data, ps, 0, 64, false))
		})
		frag("inside-different-bytes-after", true, "a fragment wholly inside one already queued is a duplicate: dropped, the first bytes stand", nil,
			func(s frames.Spec, next uint8, data []byte, ps []frames.Piece, fs [][]byte) [][]byte {
				inside := frames.Fragments(s, next, []frames.Piece{{Off: 200, Data: invert(data[200:400]), More: true}})
				return [][]byte{fs[0], inside[0], fs[1], fs[2]}
			})
		frag("inside-different-bytes-before", false, "the bigger fragment arriving second overlaps the small one partly: the datagram is discarded", nil,
			func(s frames.Spec, next uint8, data []byte, ps []frames.Piece, fs [][]byte) [][]byte {
				inside := frames.Fragments(s, next, []frames.Piece{{Off: 200, Data: invert(data[200:400]), More: true}})
				return [][]byte{inside[0], fs[0], fs[1], fs[2]}
			})
		frag("lone-first", false, "never completes", nil, func(_ frames.Spec, _ uint8, _ []byte, _ []frames.Piece, fs [][]byte) [][]byte { return fs[:1] })
		frag("lone-last", false, "never completes", nil, func(_ frames.Spec, _ uint8, _ []byte, _ []frames.Piece, fs [][]byte) [][]byte { return fs[2:] })
		frag("missing-middle", false, "never completes", nil, func(_ frames.Spec, _ uint8, _ []byte, _ []frames.Piece, fs [][]byte) [][]byte {
			return [][]byte{fs[0], fs[2]}
		})
		tiny := func(s frames.Spec, next uint8, data []byte) []byte {
			return frames.Fragments(s, next, []frames.Piece{{Off: 0, Data: data[:4], More: true}})[0]
		}
		frag("tiny-first-then-all", true, "the 4-byte non-final fragment is refused before the rest arrives", nil,
			func(s frames.Spec, next uint8, data []byte, _ []frames.Piece, fs [][]byte) [][]byte {
				return append([][]byte{tiny(s, next, data)}, fs...)
			})
		if f == 0 {
			frag("tiny-first-in-the-middle", false, "a non-final IPv4 fragment of under 8 bytes discards the queue; the rest never completes", nil,
				func(s frames.Spec, next uint8, data []byte, _ []frames.Piece, fs [][]byte) [][]byte {
					return [][]byte{fs[0], tiny(s, next, data), fs[1], fs[2]}
				})
		} else {
			frag("tiny-first-in-the-middle", true, "IPv6 refuses the 4-byte fragment alone (ICMPv6 parameter problem) and keeps the queue", nil,
				func(s frames.Spec, next uint8, data []byte, _ []frames.Piece, fs [][]byte) [][]byte {
					return [][]byte{fs[0], tiny(s, next, data), fs[1], fs[2]}
				})
		}
		frag("udp-header-alone-first", true, "", nil, func(s frames.Spec, next uint8, data []byte, _ []frames.Piece, _ [][]byte) [][]byte {
			rest := frames.Split(data[8:], 1200)
			for k := range rest {
				rest[k].Off += 8
			}
			return frames.Fragments(s, next, append([]frames.Piece{{Off: 0, Data: data[:8], More: true}}, rest...))
		})
		if f == 0 {
			frag("ip-options-in-every-fragment", true, "", func(s *frames.Spec) { s.IPOptions = []byte{1, 1, 1, 1} }, asIs)
			continue
		}
		frag("hop-by-hop-then-fragment", true, "", func(s *frames.Spec) { s.HopByHop = true }, asIs)
		frag("destination-options-after-fragment-header", true, "", func(s *frames.Spec) { s.Ext6Tail = []frames.Ext6{{Proto: frames.ProtoDestOpts6}} }, asIs)
		frag("first-fragment-without-udp-header", false, "the first fragment must hold the whole header chain (RFC 7112): dropped with an ICMPv6 parameter problem",
			func(s *frames.Spec) { s.Ext6Tail = []frames.Ext6{{Proto: frames.ProtoDestOpts6}} },
			func(s frames.Spec, next uint8, data []byte, _ []frames.Piece, _ [][]byte) [][]byte {
				rest := frames.Split(data[8:], 1200)
				for k := range rest {
					rest[k].Off += 8
				}
				return frames.Fragments(s, next, append([]frames.Piece{{Off: 0, Data: data[:8], More: true}}, rest...))
			})
		c := g.newCase(KindFragments, ViaRaw, "atomic-fragment/v6")
		d := g.add(c, pick(g.rawAllowed[f], i), netip.AddrPortFrom(g.rx(f), g.port()), 100)
		d.Kernel, d.Note = true, "a Fragment header with offset 0 and no more fragments: the kernel delivers it as it is; the program passes it"
		c.Frames = [][]byte{frames.Build(g.fragSpec(d))}
	}
}

// Payload sizes of the cases of single frames.
var (
	three = []int{100, 0, 1000}
	one   = []int{100}
	two   = []int{100, 1000}
)

// single adds a case of one datagram per size from src, each in one frame
// built by spec after mod.
func (g *builder) single(kind Kind, f int, src netip.Addr, name string, sizes []int, kernel, xdp bool, note string, mod func(*frames.Spec, *Datagram)) *Case {
	c := g.newCase(kind, ViaRaw, "%s/%s", name, famNames[f])
	for _, size := range sizes {
		d := g.add(c, src, netip.AddrPortFrom(g.rx(f), g.port()), size)
		d.Kernel, d.XDP, d.Note = kernel, xdp, note
		s := g.spec(d)
		if mod != nil {
			mod(&s, d)
		}
		c.Frames = append(c.Frames, frames.Build(s))
	}
	return c
}

func (g *builder) ext6() {
	f := 1
	src := pick(g.rawAllowed[f], 0)
	rx := g.rx(f)
	for _, x := range []struct {
		name   string
		kernel bool
		note   string
		ext    []frames.Ext6
	}{
		{"hop-by-hop", true, "", []frames.Ext6{{Proto: frames.ProtoHopByHop}}},
		{"destination-options", true, "", []frames.Ext6{{Proto: frames.ProtoDestOpts6}}},
		{"routing-type0-no-segments-left", true, "a routing header with no segments left is skipped whatever its type (RFC 8200)", []frames.Ext6{frames.Routing6(0, 0)}},
		{"routing-type0-segments-left", false, "type 0 is deprecated (RFC 5095): dropped with an ICMPv6 parameter problem", []frames.Ext6{frames.Routing6(0, 1, rx)}},
		{"routing-type2-no-segments-left", true, "", []frames.Ext6{frames.Routing6(2, 0, rx)}},
		{"chain-hop-by-hop-destination-routing", true, "", []frames.Ext6{{Proto: frames.ProtoHopByHop}, {Proto: frames.ProtoDestOpts6}, frames.Routing6(0, 0)}},
		{"hop-by-hop-not-first", false, "hop-by-hop is only valid right after the IPv6 header: dropped with an ICMPv6 parameter problem", []frames.Ext6{{Proto: frames.ProtoDestOpts6}, {Proto: frames.ProtoHopByHop}}},
		{"unknown-extension-253", false, "no handler for next header 253: dropped with an ICMPv6 parameter problem", []frames.Ext6{{Proto: 253}}},
	} {
		g.single(KindExt6, f, src, x.name, three, x.kernel, false, x.note, func(s *frames.Spec, _ *Datagram) { s.Ext6 = x.ext })
	}
}

func (g *builder) vlan() {
	q := func(id uint16) frames.VLAN { return frames.VLAN{TPID: frames.EtherTypeVLAN, ID: id} }
	ad := func(id uint16) frames.VLAN { return frames.VLAN{TPID: frames.EtherTypeQinQ, ID: id} }
	const noVLANDev = "the kernel drops a tagged frame when the link has no VLAN device for the tag; the program takes it"
	for f := range 2 {
		src := pick(g.rawAllowed[f], 1)
		for _, x := range []struct {
			name        string
			tags        []frames.VLAN
			kernel, xdp bool
			note        string
		}{
			{"dot1q-7", []frames.VLAN{q(7)}, false, true, noVLANDev},
			{"dot1ad-8", []frames.VLAN{ad(8)}, false, true, noVLANDev},
			{"qinq-8-9", []frames.VLAN{ad(8), q(9)}, false, true, noVLANDev},
			{"dot1q-in-dot1q-5-6", []frames.VLAN{q(5), q(6)}, false, true, noVLANDev},
			{"priority-tag-0", []frames.VLAN{q(0)}, true, true, "VLAN 0 is a priority tag: the kernel strips it and delivers"},
			{"qinq-priority-tags-0-0", []frames.VLAN{ad(0), q(0)}, true, true, "two priority tags: the kernel strips both and delivers"},
			{"three-tags", []frames.VLAN{ad(1), q(2), q(3)}, false, false, "the program passes more than two tags; the kernel has no VLAN device: dropped"},
		} {
			g.single(KindVLAN, f, src, x.name, three, x.kernel, x.xdp, x.note, func(s *frames.Spec, _ *Datagram) { s.VLANs = x.tags })
		}
		for _, x := range []struct {
			name   string
			tag    uint16
			kernel bool
		}{{"dot1q-7-fragmented", 7, false}, {"priority-tag-0-fragmented", 0, true}} {
			c, d, s, next, _, ps := g.fragCase(KindVLAN, f, pick(g.rawAllowed[f], 2), x.name, nil)
			s.VLANs = []frames.VLAN{q(x.tag)}
			d.Kernel = x.kernel
			c.Frames = frames.Fragments(s, next, ps)
		}
		if len(g.denied[f]) > 0 {
			g.single(KindVLAN, f, g.denied[f][0], "dot1q-7-denied", three, false, true, noVLANDev, func(s *frames.Spec, _ *Datagram) { s.VLANs = []frames.VLAN{q(7)} })
		}
	}
}

func (g *builder) checksum() {
	for f := range 2 {
		src := pick(g.rawAllowed[f], 0)
		g.single(KindChecksum, f, src, "bad-udp-checksum", three, false, true, "the kernel drops a bad UDP checksum; the program and AF_XDP don't verify it",
			func(s *frames.Spec, _ *Datagram) { s.BadL4Checksum = true })
		if f == 0 {
			g.single(KindChecksum, f, src, "no-udp-checksum", three, true, true, "a zero UDP checksum means none over IPv4", func(s *frames.Spec, _ *Datagram) { s.NoUDPChecksum = true })
			g.single(KindChecksum, f, src, "bad-ip-header-checksum", three, false, true, "the kernel drops a bad IPv4 header checksum; the program doesn't verify it",
				func(s *frames.Spec, _ *Datagram) { s.BadIPChecksum = true })
		} else {
			g.single(KindChecksum, f, src, "no-udp-checksum", three, false, true, "a zero UDP checksum is illegal over IPv6 (RFC 8200): the kernel drops it; the program takes it",
				func(s *frames.Spec, _ *Datagram) { s.NoUDPChecksum = true })
		}
		c, d, s, _, _, _ := g.fragCase(KindChecksum, f, pick(g.rawAllowed[f], 1), "bad-udp-checksum-fragmented", func(s *frames.Spec) { s.BadL4Checksum = true })
		d.Note = "the kernel verifies the checksum of the reassembled datagram and drops it"
		next, data := frames.Fragmentable(s)
		c.Frames = frames.Fragments(s, next, frames.Split(data, 1200))
	}
}

func (g *builder) malformed() {
	const note = "the program passes it; the kernel drops it"
	for f := range 2 {
		src := pick(g.rawAllowed[f], 1)
		hl := 14 + 20 + 20*f // Ethernet and IP header
		bad := func(name string, mod func(*frames.Spec, *Datagram)) {
			g.single(KindMalformed, f, src, name, one, false, false, note, mod)
		}
		cut := func(name string, at func(frame []byte) int) {
			c := g.single(KindMalformed, f, src, name, one, false, false, note, nil)
			c.Frames[0] = c.Frames[0][:at(c.Frames[0])]
		}
		if f == 0 {
			bad("ihl-under-5", func(s *frames.Spec, _ *Datagram) { s.IHL = 4 })
			c := g.single(KindMalformed, f, src, "ihl-beyond-total-length", one, false, false, note, func(s *frames.Spec, d *Datagram) {
				s.IHL = 15 // 60 bytes of header in a 48-byte datagram
				s.Payload = d.Payload[:20]
			})
			c.Datagrams[0].Payload = c.Datagrams[0].Payload[:20]
			bad("version-6-in-ipv4", func(s *frames.Spec, _ *Datagram) { s.Version = 6 })
		} else {
			bad("version-4-in-ipv6", func(s *frames.Spec, _ *Datagram) { s.Version = 4 })
			bad("payload-length-zero", func(s *frames.Spec, _ *Datagram) { s.IPLen = frames.U16(0) })
		}
		ipLenOf := func(d *Datagram) int { // IPv4 total length, IPv6 payload length
			if f == 0 {
				return 28 + len(d.Payload)
			}
			return 8 + len(d.Payload)
		}
		bad("ip-length-beyond-frame", func(s *frames.Spec, d *Datagram) { s.IPLen = frames.U16(uint16(ipLenOf(d) + 100)) })
		bad("ip-length-short-of-udp-length", func(s *frames.Spec, d *Datagram) { s.IPLen = frames.U16(uint16(ipLenOf(d) - 10)) })
		bad("udp-length-beyond-ip-length", func(s *frames.Spec, d *Datagram) { s.UDPLen = frames.U16(uint16(8 + len(d.Payload) + 10)) })
		bad("udp-length-under-8", func(s *frames.Spec, _ *Datagram) { s.UDPLen = frames.U16(4) })
		cut("truncated-in-ip-header", func([]byte) int { return 14 + 12 })
		cut("truncated-in-udp-header", func([]byte) int { return hl + 4 })
		cut("truncated-in-payload", func(fr []byte) int { return len(fr) - 10 })
	}
}

func (g *builder) odd() {
	for f := range 2 {
		src := pick(g.rawAllowed[f], 0)
		if f == 0 {
			g.single(KindOdd, f, src, "ip-options", three, true, true, "", func(s *frames.Spec, _ *Datagram) {
				s.IPOptions = []byte{0x94, 4, 0, 0, 1, 1, 1, 1} // router alert, NOPs
			})
		}
		g.single(KindOdd, f, src, "ethernet-trailer", three, true, true, "bytes after the IP datagram are not part of it", func(s *frames.Spec, _ *Datagram) {
			s.Trailer = []byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3}
		})
		// A UDP length shorter than the IP payload: the datagram ends where
		// UDP says, on both paths.
		c := g.single(KindOdd, f, src, "udp-length-short-checksum-over-it", two, true, true, "the datagram ends where the UDP length says", func(s *frames.Spec, d *Datagram) {
			s.UDPLen = frames.U16(uint16(8 + len(d.Payload)/2))
		})
		for _, d := range c.Datagrams {
			d.Payload = d.Payload[:len(d.Payload)/2]
		}
		c = g.single(KindOdd, f, src, "udp-length-short-checksum-over-all", two, false, true,
			"the kernel checks the checksum over what the UDP length covers: it fails, dropped; the program takes the shorter datagram", nil)
		for k, d := range c.Datagrams {
			fr := c.Frames[k]
			binary.BigEndian.PutUint16(fr[14+20+20*f+4:], uint16(8+len(d.Payload)/2))
			d.Payload = d.Payload[:len(d.Payload)/2]
		}
		if f == 0 {
			bc := netip.MustParseAddr("198.18.0.255")
			for _, s := range [][]netip.Addr{{src}, g.denied[f]} {
				if len(s) == 0 {
					continue
				}
				name := "broadcast"
				if g.cfg.Policy.Refuses(s[0]) != "" {
					name = "broadcast-denied"
				}
				c := g.single(KindOdd, f, s[0], name, two, true, true, "every socket on the port that matches gets a copy: one per SO_REUSEPORT member", func(sp *frames.Spec, d *Datagram) {
					sp.DstMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
					d.Dst = netip.AddrPortFrom(bc, d.Dst.Port())
					sp.Dst = d.Dst
				})
				for _, d := range c.Datagrams {
					d.Broadcast = true
				}
			}
			// In fragments, which the program passes: on the AF_XDP path
			// too, the kernel's sockets get one copy each.
			c := g.newCase(KindOdd, ViaRaw, "broadcast-fragmented/v4")
			d := g.add(c, src, netip.AddrPortFrom(bc, g.port()), 3000)
			d.Kernel, d.Broadcast = true, true
			d.Note = "every socket on the port that matches gets a copy of the reassembled datagram: one per SO_REUSEPORT member"
			s := g.fragSpec(d)
			s.DstMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
			c.Frames = frames.Fragment(s, 1500)
		}
	}
}

func (g *builder) flood() {
	for f := range 2 {
		for _, class := range []struct {
			name string
			srcs []netip.Addr
		}{{RefusedDeny, g.denied[f]}, {RefusedNotAllowed, g.notAllowed[f]}} {
			if len(class.srcs) == 0 {
				continue
			}
			raw, sock := class.srcs, class.srcs[len(class.srcs)-1:]
			if len(class.srcs) > 1 {
				raw = class.srcs[:len(class.srcs)-1]
			}
			// Whole datagrams, every tenth from an allowed source.
			c := g.newCase(KindFlood, ViaRaw, "%s/whole/%s", class.name, famNames[f])
			for k := range g.cfg.Flood {
				src := pick(raw, k)
				if k%10 == 9 {
					src = pick(g.rawAllowed[f], k)
				}
				d := g.add(c, src, netip.AddrPortFrom(g.rx(f), g.port()), 64+k%448)
				d.Kernel, d.XDP = true, true
				c.Frames = append(c.Frames, frames.Build(g.spec(d)))
			}
			// Fragmented, every fifth from an allowed source.
			c = g.newCase(KindFlood, ViaRaw, "%s/fragmented/%s", class.name, famNames[f])
			for k := range max(g.cfg.Flood/10, 2) {
				src := pick(raw, k)
				if k%5 == 4 {
					src = pick(g.rawAllowed[f], k)
				}
				d := g.add(c, src, netip.AddrPortFrom(g.rx(f), g.port()), 4000)
				d.Kernel = true
				c.Frames = append(c.Frames, frames.Fragment(g.fragSpec(d), g.cfg.FragMTUs[0])...)
			}
			// Big datagrams from Gen's sockets, which the kernel fragments.
			c = g.newCase(KindFlood, ViaGen, "%s/socket/%s", class.name, famNames[f])
			for k := range max(g.cfg.Flood/20, 2) {
				d := g.add(c, pick(sock, k), netip.AddrPortFrom(g.rx(f), g.port()), 20000+k)
				d.Kernel = true
			}
		}
	}
}

func (g *builder) otherIface() {
	b, p := g.e.Bed, g.e.Peer
	big := b.MTU + 1000 // fragmented on any MTU
	for f := range 2 {
		peerAddr, rxEnd, lo := p.IPv4, p.RxEnd.IPv4, netip.MustParseAddr("127.0.0.1")
		if f == 1 {
			peerAddr, rxEnd, lo = p.IPv6, p.RxEnd.IPv6, netip.IPv6Loopback()
		}
		for _, x := range []struct {
			name     string
			via      Via
			src, dst netip.Addr
			local    bool
		}{
			{"peer-to-rx-link-address", ViaPeer, peerAddr, g.rx(f), false},
			{"peer-to-peer-link-address", ViaPeer, peerAddr, rxEnd, false},
			{"loopback", ViaRx, lo, lo, false},
			{"loopback-to-rx-link-address", ViaRx, g.rx(f), g.rx(f), true},
		} {
			c := g.newCase(KindOtherIface, x.via, "%s/%s", x.name, famNames[f])
			for _, size := range []int{100, big} {
				d := g.add(c, x.src, netip.AddrPortFrom(x.dst, g.port()), size)
				if x.local {
					d.Kernel, d.Refused = true, RefusedLocal
					d.Note = "sent by Rx to its own link address: the kernel hands it to sockets bound to the link (IP_PKTINFO names the link), though it came over loopback"
					continue
				}
				d.Elsewhere = true
				d.Note = "arrives on another interface: sockets bound to Rx's link don't get it"
			}
		}
	}
}

func (g *builder) otherPort() {
	for f := range 2 {
		c := g.newCase(KindOtherPort, ViaGen, "%s", famNames[f])
		for k, size := range []int{100, g.e.Bed.MTU + 1000} {
			d := g.add(c, pick(g.sockAllowed[f], k), netip.AddrPortFrom(g.rx(f), g.m.OtherPort), size)
			d.Note = "no socket on the port: the kernel answers port unreachable"
		}
	}
}

func (g *builder) notForUs() {
	b, p := g.e.Bed, g.e.Peer
	for f := range 2 {
		src := pick(g.rawAllowed[f], 1)
		const takes = "the program matches ports, not addresses: it takes it"
		g.single(KindNotForUs, f, src, "foreign-mac", two, false, true, "the kernel drops a frame for another MAC (PACKET_OTHERHOST); "+takes,
			func(s *frames.Spec, _ *Datagram) { s.DstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0x99, 0x99} })
		foreign := netip.MustParseAddr("198.18.200.77")
		if f == 1 {
			foreign = netip.MustParseAddr("2001:db8:200::77")
		}
		g.single(KindNotForUs, f, src, "foreign-ip", two, false, true, "not a local address and no route: the kernel drops it (ICMP unreachable); "+takes,
			func(s *frames.Spec, d *Datagram) {
				d.Dst = netip.AddrPortFrom(foreign, d.Dst.Port())
				s.Dst = d.Dst
			})
		peer := p.IPv4
		if f == 1 {
			peer = p.IPv6
		}
		c := g.newCase(KindNotForUs, ViaGen, "transit/%s", famNames[f])
		for k, size := range []int{100, b.MTU + 1000} {
			d := g.add(c, pick(g.sockAllowed[f], k), netip.AddrPortFrom(peer, g.port()), size)
			d.Transit = true
			d.XDP = k == 0
			if d.XDP {
				d.Note = "for the host behind Rx, which forwards it; " + takes + " and the peer never gets it"
			} else {
				d.Note = "fragments for the host behind Rx: the program passes them, Rx forwards them"
			}
		}
	}
}
