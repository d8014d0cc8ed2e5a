package frames

import (
	"encoding/binary"
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
