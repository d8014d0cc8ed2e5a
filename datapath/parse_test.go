package datapath

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/xdpingest/xdpingest/internal/frames"
)

var (
	src4 = netip.MustParseAddrPort("198.18.0.1:40000")
	dst4 = netip.MustParseAddrPort("198.18.0.2:9000")
	src6 = netip.MustParseAddrPort("[2001:db8::1]:40001")
	dst6 = netip.MustParseAddrPort("[2001:db8::2]:9001")
)

func payloadOf(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + 3)
	}
	return p
}

// validSpecs are frames the walk must accept, with every branch of it: no
// tag, one tag of each kind, two tags; IPv4 with and without options (up to
// the longest header); IPv6; empty, short and full payloads.
func validSpecs() map[string]frames.Spec {
	q := frames.VLAN{TPID: frames.EtherTypeVLAN, ID: 100}
	ad := frames.VLAN{TPID: frames.EtherTypeQinQ, ID: 4095}
	specs := map[string]frames.Spec{}
	for _, n := range []int{0, 1, 18, 1472} {
		specs[fmt.Sprintf("v4/%d", n)] = frames.Spec{Src: src4, Dst: dst4, Payload: payloadOf(n)}
		specs[fmt.Sprintf("v6/%d", n)] = frames.Spec{Src: src6, Dst: dst6, Payload: payloadOf(n)}
	}
	specs["v4/options4"] = frames.Spec{Src: src4, Dst: dst4, Payload: payloadOf(33), IPOptions: []byte{1, 1, 1, 0}}
	specs["v4/options40"] = frames.Spec{Src: src4, Dst: dst4, Payload: payloadOf(33), IPOptions: bytes.Repeat([]byte{1}, 40)}
	specs["v4/dot1q"] = frames.Spec{Src: src4, Dst: dst4, Payload: payloadOf(5), VLANs: []frames.VLAN{q}}
	specs["v4/dot1ad"] = frames.Spec{Src: src4, Dst: dst4, Payload: payloadOf(5), VLANs: []frames.VLAN{ad}}
	specs["v4/qinq"] = frames.Spec{Src: src4, Dst: dst4, Payload: payloadOf(5), VLANs: []frames.VLAN{ad, q}}
	specs["v6/dot1q"] = frames.Spec{Src: src6, Dst: dst6, Payload: payloadOf(5), VLANs: []frames.VLAN{q}}
	specs["v6/qinq"] = frames.Spec{Src: src6, Dst: dst6, Payload: payloadOf(5), VLANs: []frames.VLAN{ad, q}}
	specs["v4/qinq-options"] = frames.Spec{Src: src4, Dst: dst4, Payload: payloadOf(5), VLANs: []frames.VLAN{q, q}, IPOptions: []byte{7, 7, 7, 7, 7, 7, 7, 7}}
	return specs
}

func checkParsed(t *testing.T, name string, f []byte, s frames.Spec, d *Datagram) {
	t.Helper()
	if d.Src != s.Src || d.Dst != s.Dst {
		t.Errorf("%s: addresses %v -> %v, want %v -> %v", name, d.Src, d.Dst, s.Src, s.Dst)
	}
	if d.Src.Addr().Is4In6() || d.Dst.Addr().Is4In6() {
		t.Errorf("%s: IPv4-mapped address", name)
	}
	if !bytes.Equal(d.Payload, s.Payload) {
		t.Errorf("%s: payload of %d bytes, want %d", name, len(d.Payload), len(s.Payload))
	}
	if int(d.NVLAN) != len(s.VLANs) {
		t.Errorf("%s: NVLAN %d, want %d", name, d.NVLAN, len(s.VLANs))
	}
	for i, v := range s.VLANs {
		if i < int(d.NVLAN) && d.VLAN[i] != v.ID {
			t.Errorf("%s: VLAN[%d] %d, want %d", name, i, d.VLAN[i], v.ID)
		}
	}
	if len(d.Frame) != len(f) || (len(f) > 0 && &d.Frame[0] != &f[0]) {
		t.Errorf("%s: Frame is not the frame", name)
	}
	if len(d.Payload) > 0 && &d.Payload[0] != &f[frames.HeaderLen(s)] {
		t.Errorf("%s: Payload does not point into the frame at the UDP payload", name)
	}
	if cap(d.Payload) != len(d.Payload) {
		t.Errorf("%s: Payload's capacity reaches past the datagram", name)
	}
}

func TestParseFrameValid(t *testing.T) {
	for name, s := range validSpecs() {
		f := frames.Build(s)
		var d Datagram
		d.NVLAN = 2 // stale values from an earlier datagram must not survive
		if err := ParseFrame(f, &d); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		checkParsed(t, name, f, s, &d)
	}
}

// A short frame padded to the Ethernet minimum: the padding is not payload.
func TestParseFramePadding(t *testing.T) {
	for _, s := range []frames.Spec{
		{Src: src4, Dst: dst4, Payload: payloadOf(3)},
		{Src: src6, Dst: dst6, Payload: payloadOf(3)},
	} {
		f := frames.Build(s)
		f = append(f, make([]byte, 60+len(f))...) // more than enough padding
		var d Datagram
		if err := ParseFrame(f, &d); err != nil {
			t.Fatal(err)
		}
		checkParsed(t, "padded", f, s, &d)
	}
}

// Every strict prefix of a valid frame is refused as malformed: each byte
// up to the end of the datagram is covered by a length the walk checks.
// Nothing panics.
func TestParseFrameTruncated(t *testing.T) {
	for name, s := range validSpecs() {
		f := frames.Build(s)
		for n := 0; n < len(f); n++ {
			var d Datagram
			// A fresh copy, so that the race detector and -d=checkptr
			// see exactly n bytes.
			g := append([]byte(nil), f[:n]...)
			if err := ParseFrame(g, &d); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s cut to %d of %d bytes: err %v, want ErrMalformed", name, n, len(f), err)
			}
		}
	}
}

func TestParseFrameNotUDP(t *testing.T) {
	q := frames.VLAN{TPID: frames.EtherTypeVLAN, ID: 1}
	udp4 := frames.Spec{Src: src4, Dst: dst4, Payload: payloadOf(20)}
	udp6 := frames.Spec{Src: src6, Dst: dst6, Payload: payloadOf(20)}
	with := func(s frames.Spec, f func(*frames.Spec)) frames.Spec { f(&s); return s }
	cases := map[string][]byte{
		"arp":          frames.ARP(nil, src4.Addr(), dst4.Addr()),
		"tcp4":         frames.Build(with(udp4, func(s *frames.Spec) { s.Proto = frames.ProtoTCP })),
		"icmp4":        frames.Build(with(udp4, func(s *frames.Spec) { s.Proto = frames.ProtoICMP })),
		"tcp6":         frames.Build(with(udp6, func(s *frames.Spec) { s.Proto = frames.ProtoTCP })),
		"icmp6":        frames.Build(with(udp6, func(s *frames.Spec) { s.Proto = frames.ProtoICMPv6 })),
		"hop-by-hop":   frames.Build(with(udp6, func(s *frames.Spec) { s.HopByHop = true })),
		"more-frags":   frames.Build(with(udp4, func(s *frames.Spec) { s.MoreFrags = true })),
		"frag-offset":  frames.Build(with(udp4, func(s *frames.Spec) { s.FragOff = 185 })),
		"three-tags":   frames.Build(with(udp4, func(s *frames.Spec) { s.VLANs = []frames.VLAN{q, q, q} })),
		"tagged-arp":   append(frames.ARP(nil, src4.Addr(), dst4.Addr())[:12], append([]byte{0x81, 0, 0, 1}, frames.ARP(nil, src4.Addr(), dst4.Addr())[12:]...)...),
		"ipx":          append(frames.Build(udp4)[:12], append([]byte{0x81, 0x37}, frames.Build(udp4)[14:]...)...),
		"vlan-then-v6": frames.Build(with(udp6, func(s *frames.Spec) { s.VLANs = []frames.VLAN{q}; s.Proto = frames.ProtoTCP })),
	}
	// The "don't fragment" bit alone is not a fragment.
	df := frames.Build(udp4)
	df[14+6] |= 0x40
	var d Datagram
	if err := ParseFrame(df, &d); err != nil {
		t.Errorf("DF set: %v", err)
	}
	for name, f := range cases {
		if err := ParseFrame(f, &d); !errors.Is(err, ErrNotUDP) {
			t.Errorf("%s: err %v, want ErrNotUDP", name, err)
		}
	}
}

func TestParseFrameMalformed(t *testing.T) {
	v4 := frames.Build(frames.Spec{Src: src4, Dst: dst4, Payload: payloadOf(20)}) // IP at 14, UDP at 34
	v6 := frames.Build(frames.Spec{Src: src6, Dst: dst6, Payload: payloadOf(20)}) // IP at 14, UDP at 54
	mut := func(f []byte, edit func([]byte)) []byte {
		g := append([]byte(nil), f...)
		edit(g)
		return g
	}
	be := binary.BigEndian
	cases := map[string][]byte{
		"v4 ihl 4":              mut(v4, func(f []byte) { f[14] = 0x44 }),
		"v4 ihl 0":              mut(v4, func(f []byte) { f[14] = 0x40 }),
		"v4 ihl past total":     mut(v4, func(f []byte) { f[14] = 0x4f; be.PutUint16(f[16:], 56) }),
		"v4 version 6":          mut(v4, func(f []byte) { f[14] = 0x65 }),
		"v4 total < ihl":        mut(v4, func(f []byte) { be.PutUint16(f[16:], 19) }),
		"v4 total past frame":   mut(v4, func(f []byte) { be.PutUint16(f[16:], uint16(len(f)-14+1)) }),
		"v4 no room for udp":    mut(v4, func(f []byte) { be.PutUint16(f[16:], 27) }),
		"v4 udp len 7":          mut(v4, func(f []byte) { be.PutUint16(f[38:], 7) }),
		"v4 udp len 0":          mut(v4, func(f []byte) { be.PutUint16(f[38:], 0) }),
		"v4 udp len past ip":    mut(v4, func(f []byte) { be.PutUint16(f[38:], 29); be.PutUint16(f[16:], 20+28) }),
		"v6 version 4":          mut(v6, func(f []byte) { f[14] = 0x40 }),
		"v6 payload len 0":      mut(v6, func(f []byte) { be.PutUint16(f[18:], 0) }),
		"v6 payload past frame": mut(v6, func(f []byte) { be.PutUint16(f[18:], uint16(len(f)-54+1)) }),
		"v6 no room for udp":    mut(v6, func(f []byte) { be.PutUint16(f[18:], 7) }),
		"v6 udp len 0":          mut(v6, func(f []byte) { be.PutUint16(f[58:], 0) }),
		"v6 udp len past ip":    mut(v6, func(f []byte) { be.PutUint16(f[58:], 29) }),
		"vlan tag cut":          append(append([]byte(nil), v4[:12]...), 0x81, 0, 0),
	}
	var d Datagram
	for name, f := range cases {
		if err := ParseFrame(f, &d); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
	// A UDP length shorter than the IP payload is fine: the payload ends
	// where UDP says (the rest is the sender's padding).
	short := mut(v4, func(f []byte) { be.PutUint16(f[38:], 8+5) })
	if err := ParseFrame(short, &d); err != nil || len(d.Payload) != 5 {
		t.Errorf("UDP length under the IP payload: err %v, payload %d bytes, want 5", err, len(d.Payload))
	}
}

func TestParseFrameNoAllocs(t *testing.T) {
	f4 := frames.Build(frames.Spec{Src: src4, Dst: dst4, Payload: payloadOf(64), VLANs: []frames.VLAN{{TPID: frames.EtherTypeVLAN, ID: 7}}})
	f6 := frames.Build(frames.Spec{Src: src6, Dst: dst6, Payload: payloadOf(64)})
	bad := frames.ARP(nil, src4.Addr(), dst4.Addr())
	var d Datagram
	allocs := testing.AllocsPerRun(1000, func() {
		_ = ParseFrame(f4, &d)
		_ = ParseFrame(f6, &d)
		_ = ParseFrame(bad, &d)
	})
	if allocs != 0 {
		t.Fatalf("ParseFrame allocates %.1f times per run, want 0", allocs)
	}
}

// FuzzParseFrame checks that no input panics, and that an accepted frame
// gives a payload inside the frame whose length the UDP header announces.
func FuzzParseFrame(f *testing.F) {
	for _, s := range validSpecs() {
		f.Add(frames.Build(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		var d Datagram
		if err := ParseFrame(frame, &d); err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNotUDP) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if len(d.Payload) > 0 {
			off := -1
			for i := range frame {
				if &frame[i] == &d.Payload[0] {
					off = i
				}
			}
			if off < ethHdrLen+ipv4MinLen+udpHdrLen || off+len(d.Payload) > len(frame) {
				t.Fatalf("payload at %d+%d outside the %d-byte frame", off, len(d.Payload), len(frame))
			}
			ulen := int(binary.BigEndian.Uint16(frame[off-4:]))
			if ulen != len(d.Payload)+udpHdrLen {
				t.Fatalf("payload of %d bytes, UDP length %d", len(d.Payload), ulen)
			}
		}
	})
}

func BenchmarkParseFrame(b *testing.B) {
	for _, c := range []struct {
		name string
		s    frames.Spec
	}{
		{"v4", frames.Spec{Src: src4, Dst: dst4, Payload: payloadOf(18)}},
		{"v6", frames.Spec{Src: src6, Dst: dst6, Payload: payloadOf(18)}},
		{"v4-qinq-options", frames.Spec{Src: src4, Dst: dst4, Payload: payloadOf(18), IPOptions: []byte{1, 1, 1, 1},
			VLANs: []frames.VLAN{{TPID: frames.EtherTypeQinQ, ID: 1}, {TPID: frames.EtherTypeVLAN, ID: 2}}}},
	} {
		f := frames.Build(c.s)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var d Datagram
			for b.Loop() {
				if err := ParseFrame(f, &d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
