package frames

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestChecksumsVerify(t *testing.T) {
	for _, s := range []Spec{
		{Src: netip.MustParseAddrPort("198.18.0.1:1000"), Dst: netip.MustParseAddrPort("198.18.0.2:9000"), Payload: []byte("hello"), IPOptions: []byte{1, 1, 1}},
		{Src: netip.MustParseAddrPort("[2001:db8::1]:1000"), Dst: netip.MustParseAddrPort("[2001:db8::2]:9000"), Payload: []byte("hello!")},
	} {
		f := Build(s)
		if len(f) != HeaderLen(s)+len(s.Payload) {
			t.Fatalf("len %d, HeaderLen %d + %d", len(f), HeaderLen(s), len(s.Payload))
		}
		if s.Src.Addr().Is4() {
			ihl := int(f[14]&0xf) * 4
			if Checksum(f[14:14+ihl], 0) != 0 {
				t.Error("IPv4 header checksum does not verify")
			}
			a, d := s.Src.Addr().As4(), s.Dst.Addr().As4()
			l4 := f[14+ihl:]
			if Checksum(l4, pseudo4(a, d, ProtoUDP, len(l4))) != 0 {
				t.Error("UDP checksum does not verify")
			}
		} else {
			a, d := s.Src.Addr().As16(), s.Dst.Addr().As16()
			l4 := f[54:]
			if Checksum(l4, pseudo6(a, d, ProtoUDP, len(l4))) != 0 {
				t.Error("UDP/IPv6 checksum does not verify")
			}
			if binary.BigEndian.Uint16(f[18:]) != uint16(len(l4)) {
				t.Error("IPv6 payload length")
			}
		}
	}
}

var (
	v4src = netip.MustParseAddrPort("198.18.0.1:1000")
	v4dst = netip.MustParseAddrPort("198.18.0.2:9000")
	v6src = netip.MustParseAddrPort("[2001:db8::1]:1000")
	v6dst = netip.MustParseAddrPort("[2001:db8::2]:9000")
)

func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*13 + 1)
	}
	return p
}

// walk6 follows an IPv6 frame's header chain and returns the protocols in
// order, the fragment header if any, and where the chain's payload starts.
func walk6(t *testing.T, f []byte, stopAtFrag bool) (chain []uint8, frag *Frag6, next uint8, rest []byte) {
	t.Helper()
	ip := f[14:]
	plen := int(binary.BigEndian.Uint16(ip[4:]))
	if 40+plen != len(ip) {
		t.Fatalf("IPv6 payload length %d, frame carries %d", plen, len(ip)-40)
	}
	next = ip[6]
	p := ip[40:]
	for {
		switch next {
		case ProtoHopByHop, ProtoDestOpts6, ProtoRouting6:
			chain = append(chain, next)
			n := (int(p[1]) + 1) * 8
			next, p = p[0], p[n:]
			continue
		case ProtoFragment6:
			chain = append(chain, next)
			fo := binary.BigEndian.Uint16(p[2:])
			frag = &Frag6{Off: int(fo &^ 7), More: fo&1 == 1, ID: binary.BigEndian.Uint32(p[4:])}
			next, p = p[0], p[8:]
			if frag.Off != 0 || stopAtFrag {
				return chain, frag, next, p
			}
			continue
		}
		return chain, frag, next, p
	}
}

func TestExt6Chain(t *testing.T) {
	s := Spec{Src: v6src, Dst: v6dst, HopByHop: true, Payload: pattern(100),
		Ext6:     []Ext6{{Proto: ProtoDestOpts6}, Routing6(0, 0, netip.MustParseAddr("2001:db8::9"))},
		Frag6:    &Frag6{ID: 77},
		Ext6Tail: []Ext6{{Proto: ProtoDestOpts6}}}
	f := Build(s)
	chain, frag, next, rest := walk6(t, f, false)
	want := []uint8{ProtoHopByHop, ProtoDestOpts6, ProtoRouting6, ProtoFragment6, ProtoDestOpts6}
	if string(chain) != string(want) || next != ProtoUDP {
		t.Fatalf("chain %v then %d, want %v then UDP", chain, next, want)
	}
	if frag == nil || frag.ID != 77 || frag.More || frag.Off != 0 {
		t.Fatalf("fragment header %+v, want an atomic fragment with ID 77", frag)
	}
	if len(f) != HeaderLen(s)+len(s.Payload) || len(rest) != 8+len(s.Payload) {
		t.Fatalf("frame %d bytes, HeaderLen %d + %d, UDP %d", len(f), HeaderLen(s), len(s.Payload), len(rest))
	}
	a, d := v6src.Addr().As16(), v6dst.Addr().As16()
	if Checksum(rest, pseudo6(a, d, ProtoUDP, len(rest))) != 0 {
		t.Error("UDP checksum does not verify behind extension headers")
	}
}

// reassemble puts fragments back together as a receiver would without
// overlaps: by offset, until the last one.
func reassemble(t *testing.T, fs [][]byte) (next uint8, data []byte, id uint32) {
	t.Helper()
	got := map[int][]byte{}
	total := -1
	for _, f := range fs {
		var off int
		var more bool
		var p []byte
		if binary.BigEndian.Uint16(f[12:]) == EtherTypeIPv4 {
			ip := f[14:]
			ihl := int(ip[0]&0xf) * 4
			if Checksum(ip[:ihl], 0) != 0 {
				t.Fatal("IPv4 header checksum of a fragment")
			}
			if int(binary.BigEndian.Uint16(ip[2:])) != len(ip) {
				t.Fatal("IPv4 total length of a fragment")
			}
			fo := binary.BigEndian.Uint16(ip[6:])
			off, more, p, next, id = int(fo&0x1fff)*8, fo&0x2000 != 0, ip[ihl:], ip[9], uint32(binary.BigEndian.Uint16(ip[4:]))
		} else {
			_, fr, nx, rest := walk6(t, f, true)
			off, more, p, next, id = fr.Off, fr.More, rest, nx, fr.ID
		}
		if more && len(p)%8 != 0 {
			t.Fatalf("fragment at %d carries %d bytes, not a multiple of 8", off, len(p))
		}
		got[off] = p
		if !more {
			total = off + len(p)
		}
	}
	for off := 0; off < total; {
		p, ok := got[off]
		if !ok {
			t.Fatalf("hole at %d of %d", off, total)
		}
		data = append(data, p...)
		off += len(p)
	}
	return next, data, id
}

func TestFragmentReassembles(t *testing.T) {
	for _, s := range []Spec{
		{Src: v4src, Dst: v4dst, ID: 4242, Payload: pattern(65507)},
		{Src: v4src, Dst: v4dst, ID: 1, Payload: pattern(3000), IPOptions: []byte{1, 1, 1, 1}},
		{Src: v6src, Dst: v6dst, Frag6: &Frag6{ID: 0xdeadbeef}, Payload: pattern(65527)},
		{Src: v6src, Dst: v6dst, Frag6: &Frag6{ID: 5}, HopByHop: true, Ext6Tail: []Ext6{{Proto: ProtoDestOpts6}}, Payload: pattern(5000)},
	} {
		for _, mtu := range []int{1280, 1500, 9000} {
			fs := Fragment(s, mtu)
			for _, f := range fs {
				if len(f)-14 > mtu {
					t.Fatalf("a fragment of %d bytes of IP for MTU %d", len(f)-14, mtu)
				}
			}
			next, data := Fragmentable(s)
			gotNext, got, id := reassemble(t, Shuffled(fs, rand.New(rand.NewPCG(1, uint64(mtu)))))
			if gotNext != next || string(got) != string(data) {
				t.Fatalf("MTU %d: reassembled %d bytes (next %d), want %d (next %d)", mtu, len(got), gotNext, len(data), next)
			}
			if (s.Src.Addr().Is4() && id != uint32(s.ID)) || (s.Frag6 != nil && id != s.Frag6.ID) {
				t.Fatalf("identification %d", id)
			}
			// The checksum covers the whole datagram.
			udp := data
			if s.Src.Addr().Is6() && len(s.Ext6Tail) > 0 {
				udp = data[8:]
			}
			if binary.BigEndian.Uint16(udp[4:]) != uint16(len(udp)) && len(udp) < 65536 {
				t.Fatalf("UDP length %d, datagram %d", binary.BigEndian.Uint16(udp[4:]), len(udp))
			}
			var sum uint32
			if s.Src.Addr().Is4() {
				sum = pseudo4(s.Src.Addr().As4(), s.Dst.Addr().As4(), ProtoUDP, len(udp))
			} else {
				sum = pseudo6(s.Src.Addr().As16(), s.Dst.Addr().As16(), ProtoUDP, len(udp))
			}
			if Checksum(udp, sum) != 0 {
				t.Fatalf("MTU %d: UDP checksum of the reassembled datagram does not verify", mtu)
			}
		}
	}
}

func TestOverlapAndOrder(t *testing.T) {
	s := Spec{Src: v4src, Dst: v4dst, Payload: pattern(2000)}
	_, data := Fragmentable(s)
	ps := Split(data, 800)
	if len(ps) != 3 || ps[0].Off != 0 || ps[1].Off != 800 || ps[2].Off != 1600 || !ps[0].More || !ps[1].More || ps[2].More {
		t.Fatalf("split: %+v", ps)
	}
	same := Overlap(data, ps, 0, 100, true)
	if same[1].Off != 704 || string(same[1].Data) != string(data[704:1600]) {
		t.Fatalf("same-bytes overlap: off %d, %d bytes", same[1].Off, len(same[1].Data))
	}
	diff := Overlap(data, ps, 0, 96, false)
	if diff[1].Off != 704 || diff[1].Data[0] != ^data[704] || string(diff[1].Data[96:]) != string(data[800:1600]) {
		t.Fatalf("different-bytes overlap: off %d", diff[1].Off)
	}
	if ps[1].Off != 800 {
		t.Fatal("Overlap changed its input")
	}
	fs := Fragments(s, ProtoUDP, ps)
	r := Reversed(fs)
	if &r[0][0] != &fs[2][0] || &r[2][0] != &fs[0][0] {
		t.Fatal("Reversed")
	}
}

func TestBreakage(t *testing.T) {
	base := Spec{Src: v4src, Dst: v4dst, Payload: pattern(40)}
	ok := Build(base)
	mod := func(f func(*Spec)) []byte { s := base; f(&s); return Build(s) }
	if f := mod(func(s *Spec) { s.IHL = 4 }); f[14] != 0x44 {
		t.Errorf("IHL: %#x", f[14])
	}
	if f := mod(func(s *Spec) { s.IPLen = U16(10) }); binary.BigEndian.Uint16(f[16:]) != 10 || Checksum(f[14:34], 0) != 0 {
		t.Error("IPLen, or the header checksum after it")
	}
	if f := mod(func(s *Spec) { s.BadIPChecksum = true }); Checksum(f[14:34], 0) == 0 {
		t.Error("BadIPChecksum")
	}
	a, d := v4src.Addr().As4(), v4dst.Addr().As4()
	if f := mod(func(s *Spec) { s.BadL4Checksum = true }); Checksum(f[34:], pseudo4(a, d, ProtoUDP, len(f)-34)) == 0 {
		t.Error("BadL4Checksum")
	}
	if f := mod(func(s *Spec) { s.NoUDPChecksum = true }); binary.BigEndian.Uint16(f[40:]) != 0 {
		t.Error("NoUDPChecksum")
	}
	// A short UDP length: the checksum covers what the length says.
	if f := mod(func(s *Spec) { s.UDPLen = U16(20) }); binary.BigEndian.Uint16(f[38:]) != 20 || Checksum(f[34:54], pseudo4(a, d, ProtoUDP, 20)) != 0 {
		t.Error("UDPLen shorter than the datagram")
	}
	if f := mod(func(s *Spec) { s.Trailer = []byte{1, 2, 3} }); len(f) != len(ok)+3 || binary.BigEndian.Uint16(f[16:]) != uint16(len(ok)-14) {
		t.Error("Trailer")
	}
	if f := mod(func(s *Spec) { s.Version = 6 }); f[14]>>4 != 6 {
		t.Error("Version")
	}
}
