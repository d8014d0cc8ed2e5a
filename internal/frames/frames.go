// Package frames builds Ethernet frames for tests and generators: UDP over
// IPv4 (with options, fragments) and IPv6 (with extension headers), with up to
// two VLAN tags, and the odd ones (TCP, ICMP, ARP) a filter has to let
// through. Checksums are correct unless a test breaks them on purpose.
package frames

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Ethertypes and protocols used here.
const (
	EtherTypeIPv4  = 0x0800
	EtherTypeARP   = 0x0806
	EtherTypeIPv6  = 0x86DD
	EtherTypeVLAN  = 0x8100 // 802.1Q
	EtherTypeQinQ  = 0x88A8 // 802.1ad
	ProtoICMP      = 1
	ProtoTCP       = 6
	ProtoUDP       = 17
	ProtoICMPv6    = 58
	ProtoHopByHop  = 0
	ProtoFragment6 = 44
)

// VLAN is one tag: its TPID (EtherTypeVLAN or EtherTypeQinQ) and ID.
type VLAN struct {
	TPID uint16
	ID   uint16
}

// Spec describes a frame. The zero value of a field means a sensible default.
type Spec struct {
	SrcMAC, DstMAC net.HardwareAddr
	VLANs          []VLAN
	Src, Dst       netip.AddrPort // the family of Src picks IPv4 or IPv6
	// Proto is the L4 protocol (default UDP). TCP and ICMP get minimal
	// headers; other values get Payload as their whole L4 data.
	Proto   uint8
	Payload []byte

	// IPv4 only.
	IPOptions []byte // padded to a multiple of 4 with end-of-options
	FragOff   uint16 // fragment offset in 8-byte units
	MoreFrags bool
	TTL       uint8
	ID        uint16
	// IPv6 only: a hop-by-hop options header before L4.
	HopByHop bool
}

var (
	defSrcMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	defDstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

// Build returns the frame.
func Build(s Spec) []byte { return Append(nil, s) }

// Append appends the frame to b.
func Append(b []byte, s Spec) []byte {
	src, dst := s.SrcMAC, s.DstMAC
	if src == nil {
		src = defSrcMAC
	}
	if dst == nil {
		dst = defDstMAC
	}
	b = append(b, dst...)
	b = append(b, src...)
	for _, v := range s.VLANs {
		b = binary.BigEndian.AppendUint16(b, v.TPID)
		b = binary.BigEndian.AppendUint16(b, v.ID&0x0fff)
	}
	proto := s.Proto
	if proto == 0 {
		proto = ProtoUDP
	}
	l4 := l4Bytes(s, proto)
	if s.Src.Addr().Is4() {
		b = binary.BigEndian.AppendUint16(b, EtherTypeIPv4)
		ipStart := len(b)
		opts := append([]byte(nil), s.IPOptions...)
		for len(opts)%4 != 0 {
			opts = append(opts, 0)
		}
		ihl := 20 + len(opts)
		ttl := s.TTL
		if ttl == 0 {
			ttl = 64
		}
		frag := s.FragOff & 0x1fff
		if s.MoreFrags {
			frag |= 0x2000
		}
		b = append(b, byte(0x40|ihl/4), 0)
		b = binary.BigEndian.AppendUint16(b, uint16(ihl+len(l4)))
		b = binary.BigEndian.AppendUint16(b, s.ID)
		b = binary.BigEndian.AppendUint16(b, frag)
		b = append(b, ttl, proto, 0, 0)
		a4, d4 := s.Src.Addr().As4(), s.Dst.Addr().As4()
		b = append(b, a4[:]...)
		b = append(b, d4[:]...)
		b = append(b, opts...)
		binary.BigEndian.PutUint16(b[ipStart+10:], Checksum(b[ipStart:ipStart+ihl], 0))
		l4Start := len(b)
		b = append(b, l4...)
		fixL4Checksum(b[l4Start:], proto, pseudo4(a4, d4, proto, len(l4)))
		return b
	}
	b = binary.BigEndian.AppendUint16(b, EtherTypeIPv6)
	next := proto
	var ext []byte
	if s.HopByHop {
		// Next header, length 0 (8 bytes), PadN of 4 bytes after a Pad1 pair.
		ext = []byte{proto, 0, 1, 4, 0, 0, 0, 0}
		next = ProtoHopByHop
	}
	b = append(b, 0x60, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(ext)+len(l4)))
	b = append(b, next, 64)
	a16, d16 := s.Src.Addr().As16(), s.Dst.Addr().As16()
	b = append(b, a16[:]...)
	b = append(b, d16[:]...)
	b = append(b, ext...)
	l4Start := len(b)
	b = append(b, l4...)
	fixL4Checksum(b[l4Start:], proto, pseudo6(a16, d16, proto, len(l4)))
	return b
}

func l4Bytes(s Spec, proto uint8) []byte {
	switch proto {
	case ProtoUDP:
		u := make([]byte, 8, 8+len(s.Payload))
		binary.BigEndian.PutUint16(u[0:], s.Src.Port())
		binary.BigEndian.PutUint16(u[2:], s.Dst.Port())
		binary.BigEndian.PutUint16(u[4:], uint16(8+len(s.Payload)))
		return append(u, s.Payload...)
	case ProtoTCP:
		t := make([]byte, 20, 20+len(s.Payload))
		binary.BigEndian.PutUint16(t[0:], s.Src.Port())
		binary.BigEndian.PutUint16(t[2:], s.Dst.Port())
		t[12] = 5 << 4
		t[13] = 0x02 // SYN
		binary.BigEndian.PutUint16(t[14:], 65535)
		return append(t, s.Payload...)
	case ProtoICMP, ProtoICMPv6:
		typ := byte(8) // echo request
		if proto == ProtoICMPv6 {
			typ = 128
		}
		return append([]byte{typ, 0, 0, 0, 0, 1, 0, 1}, s.Payload...)
	}
	return append([]byte(nil), s.Payload...)
}

func fixL4Checksum(l4 []byte, proto uint8, pseudo uint32) {
	var off int
	switch proto {
	case ProtoUDP:
		off = 6
	case ProtoTCP:
		off = 16
	case ProtoICMP:
		binary.BigEndian.PutUint16(l4[2:], Checksum(l4, 0))
		return
	case ProtoICMPv6:
		off = 2
	default:
		return
	}
	if len(l4) < off+2 {
		return
	}
	c := Checksum(l4, pseudo)
	if c == 0 && proto == ProtoUDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:], c)
}

func pseudo4(src, dst [4]byte, proto uint8, n int) uint32 {
	var s uint32
	s += uint32(binary.BigEndian.Uint16(src[0:])) + uint32(binary.BigEndian.Uint16(src[2:]))
	s += uint32(binary.BigEndian.Uint16(dst[0:])) + uint32(binary.BigEndian.Uint16(dst[2:]))
	return s + uint32(proto) + uint32(n)
}

func pseudo6(src, dst [16]byte, proto uint8, n int) uint32 {
	var s uint32
	for i := 0; i < 16; i += 2 {
		s += uint32(binary.BigEndian.Uint16(src[i:])) + uint32(binary.BigEndian.Uint16(dst[i:]))
	}
	return s + uint32(proto) + uint32(n)
}

// Checksum is the Internet checksum of b, starting from a partial sum.
func Checksum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// ARP returns an ARP request for target from src.
func ARP(src net.HardwareAddr, srcIP, target netip.Addr) []byte {
	if src == nil {
		src = defSrcMAC
	}
	b := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, src...)
	b = binary.BigEndian.AppendUint16(b, EtherTypeARP)
	b = append(b, 0, 1, 8, 0, 6, 4, 0, 1)
	b = append(b, src...)
	s4, t4 := srcIP.As4(), target.As4()
	b = append(b, s4[:]...)
	b = append(b, 0, 0, 0, 0, 0, 0)
	return append(b, t4[:]...)
}

// HeaderLen returns the length of the frame's headers up to the start of the
// L4 payload for the Spec (Ethernet, VLANs, IP with options or extension
// headers, and the L4 header).
func HeaderLen(s Spec) int {
	n := 14 + 4*len(s.VLANs)
	if s.Src.Addr().Is4() {
		n += 20 + (len(s.IPOptions)+3)/4*4
	} else {
		n += 40
		if s.HopByHop {
			n += 8
		}
	}
	switch s.Proto {
	case 0, ProtoUDP, ProtoICMP, ProtoICMPv6:
		n += 8
	case ProtoTCP:
		n += 20
	}
	return n
}
