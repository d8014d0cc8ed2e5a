// Package frames builds Ethernet frames for tests and generators: UDP over
// IPv4 (with options) and IPv6 (with hop-by-hop, destination options,
// routing and fragment headers), with up to two VLAN tags, and the odd ones
// (TCP, ICMP, ARP) a filter has to let through. It cuts datagrams into
// fragments at an MTU or into any pieces (out of order, overlapping,
// duplicated), and breaks frames on purpose (header lengths, IP and UDP
// lengths, checksums, trailing bytes). Checksums are correct unless a Spec
// asks otherwise.
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
	ProtoRouting6  = 43
	ProtoFragment6 = 44
	ProtoNoNext6   = 59
	ProtoDestOpts6 = 60
)

// VLAN is one tag: its TPID (EtherTypeVLAN or EtherTypeQinQ) and ID.
type VLAN struct {
	TPID uint16
	ID   uint16
}

// Ext6 is one IPv6 extension header.
type Ext6 struct {
	// Proto is the header's type: ProtoHopByHop, ProtoDestOpts6,
	// ProtoRouting6, or any other number for a header the receiver does not
	// know.
	Proto uint8
	// Body is what follows the next-header and length bytes: 6 + 8n bytes
	// (shorter bodies are padded with zeros). Nil gives a minimal valid
	// header: a PadN option for options headers, a type 0 routing header
	// with no segments left for routing.
	Body []byte
}

// Routing6 returns a routing header of type typ with segLeft segments left
// and addrs as its addresses (the layout of type 0, RFC 2460).
func Routing6(typ, segLeft uint8, addrs ...netip.Addr) Ext6 {
	b := []byte{typ, segLeft, 0, 0, 0, 0}
	for _, a := range addrs {
		a16 := a.As16()
		b = append(b, a16[:]...)
	}
	return Ext6{Proto: ProtoRouting6, Body: b}
}

// Frag6 is an IPv6 Fragment header.
type Frag6 struct {
	Off  int // fragment offset in bytes (a multiple of 8)
	More bool
	ID   uint32
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
	// IPv6 only: a hop-by-hop options header before L4 (before Ext6).
	HopByHop bool
	// IPv6 only: extension headers after the IPv6 header (and the
	// hop-by-hop header HopByHop adds), in order.
	Ext6 []Ext6
	// IPv6 only: a Fragment header after Ext6. Build makes one frame of it
	// (an atomic fragment when Off is 0 and More false); Fragment and
	// Fragments set it for each piece.
	Frag6 *Frag6
	// IPv6 only: extension headers after the Fragment header (the
	// fragmentable part), before L4.
	Ext6Tail []Ext6

	// Breakage, for malformed frames; the zero values build a correct frame.

	// IHL, when non-zero, is written as the IPv4 header length (in 4-byte
	// words) instead of the real one.
	IHL uint8
	// Version, when non-zero, is written as the IP version instead of 4 or 6.
	Version uint8
	// IPLen, when set, is written as the IPv4 total length or the IPv6
	// payload length instead of the real one (the header checksum stays
	// right).
	IPLen *uint16
	// UDPLen, when set, is written as the UDP length instead of the real
	// one. The checksum then covers the first UDPLen bytes, as a receiver
	// that trims the datagram to the UDP length computes it.
	UDPLen *uint16
	// BadIPChecksum breaks the IPv4 header checksum.
	BadIPChecksum bool
	// BadL4Checksum breaks the UDP, TCP or ICMP checksum.
	BadL4Checksum bool
	// NoUDPChecksum writes 0 (no checksum): legal in IPv4, not in IPv6.
	NoUDPChecksum bool
	// Trailer is appended after the IP datagram: Ethernet padding or
	// garbage that the IP length does not cover.
	Trailer []byte
}

// U16 returns a pointer to v, for Spec.IPLen and Spec.UDPLen.
func U16(v uint16) *uint16 { return &v }

var (
	defSrcMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	defDstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

// Build returns the frame.
func Build(s Spec) []byte { return Append(nil, s) }

// Append appends the frame to b.
func Append(b []byte, s Spec) []byte {
	proto := s.proto()
	l4 := l4Bytes(s, proto)
	if s.Src.Addr().Is4() {
		b = appendEth(b, s, EtherTypeIPv4)
		b = appendIPv4(b, s, proto, len(l4), s.FragOff, s.MoreFrags)
		a4, d4 := s.Src.Addr().As4(), s.Dst.Addr().As4()
		l4Start := len(b)
		b = append(b, l4...)
		s.fixL4(b[l4Start:], proto, func(n int) uint32 { return pseudo4(a4, d4, proto, n) })
		return append(b, s.Trailer...)
	}
	b = appendEth(b, s, EtherTypeIPv6)
	tail, next := extBytes(s.Ext6Tail, proto)
	if s.Frag6 != nil {
		next = ProtoFragment6
	}
	head, next := extBytes(s.head6(), next)
	if s.Frag6 != nil {
		head = appendFrag6(head, *s.Frag6, firstProto(s.Ext6Tail, proto))
	}
	b = appendIPv6(b, s, next, len(head)+len(tail)+len(l4))
	b = append(b, head...)
	b = append(b, tail...)
	l4Start := len(b)
	b = append(b, l4...)
	a16, d16 := s.Src.Addr().As16(), s.Dst.Addr().As16()
	s.fixL4(b[l4Start:], proto, func(n int) uint32 { return pseudo6(a16, d16, proto, n) })
	return append(b, s.Trailer...)
}

func (s *Spec) proto() uint8 {
	if s.Proto == 0 {
		return ProtoUDP
	}
	return s.Proto
}

// head6 returns the extension headers before the Fragment header.
func (s *Spec) head6() []Ext6 {
	if !s.HopByHop {
		return s.Ext6
	}
	return append([]Ext6{{Proto: ProtoHopByHop}}, s.Ext6...)
}

func appendEth(b []byte, s Spec, etype uint16) []byte {
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
	return binary.BigEndian.AppendUint16(b, etype)
}

// appendIPv4 appends an IPv4 header for n bytes of payload.
func appendIPv4(b []byte, s Spec, proto uint8, n int, fragOff uint16, more bool) []byte {
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
	frag := fragOff & 0x1fff
	if more {
		frag |= 0x2000
	}
	ver, hl := byte(4), byte(ihl/4)
	if s.Version != 0 {
		ver = s.Version
	}
	if s.IHL != 0 {
		hl = s.IHL
	}
	total := uint16(ihl + n)
	if s.IPLen != nil {
		total = *s.IPLen
	}
	b = append(b, ver<<4|hl&0xf, 0)
	b = binary.BigEndian.AppendUint16(b, total)
	b = binary.BigEndian.AppendUint16(b, s.ID)
	b = binary.BigEndian.AppendUint16(b, frag)
	b = append(b, ttl, proto, 0, 0)
	a4, d4 := s.Src.Addr().As4(), s.Dst.Addr().As4()
	b = append(b, a4[:]...)
	b = append(b, d4[:]...)
	b = append(b, opts...)
	c := Checksum(b[ipStart:ipStart+ihl], 0)
	if s.BadIPChecksum {
		c ^= 0x5a5a
	}
	binary.BigEndian.PutUint16(b[ipStart+10:], c)
	return b
}

// appendIPv6 appends an IPv6 header with next header next for n bytes of
// payload.
func appendIPv6(b []byte, s Spec, next uint8, n int) []byte {
	ver := byte(6)
	if s.Version != 0 {
		ver = s.Version
	}
	plen := uint16(n)
	if s.IPLen != nil {
		plen = *s.IPLen
	}
	b = append(b, ver<<4, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, plen)
	b = append(b, next, 64)
	a16, d16 := s.Src.Addr().As16(), s.Dst.Addr().As16()
	b = append(b, a16[:]...)
	return append(b, d16[:]...)
}

// extBytes returns the headers chained in order, the last one pointing at
// last, and the protocol number of the first (last when there are none).
func extBytes(hs []Ext6, last uint8) ([]byte, uint8) {
	var b []byte
	for i, h := range hs {
		next := last
		if i+1 < len(hs) {
			next = hs[i+1].Proto
		}
		body := h.Body
		if body == nil {
			switch h.Proto {
			case ProtoRouting6:
				body = []byte{0, 0, 0, 0, 0, 0}
			default:
				body = []byte{1, 4, 0, 0, 0, 0} // PadN of 4 bytes
			}
		}
		n := (len(body) + 2 + 7) / 8 * 8
		b = append(b, next, byte(n/8-1))
		b = append(b, body...)
		b = append(b, make([]byte, n-2-len(body))...)
	}
	return b, firstProto(hs, last)
}

func firstProto(hs []Ext6, last uint8) uint8 {
	if len(hs) > 0 {
		return hs[0].Proto
	}
	return last
}

func appendFrag6(b []byte, f Frag6, next uint8) []byte {
	off := uint16(f.Off/8) << 3
	if f.More {
		off |= 1
	}
	b = append(b, next, 0)
	b = binary.BigEndian.AppendUint16(b, off)
	return binary.BigEndian.AppendUint32(b, f.ID)
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

// fixL4 fills the L4 checksum of l4; pseudo returns the pseudo-header sum
// for an L4 length.
func (s *Spec) fixL4(l4 []byte, proto uint8, pseudo func(n int) uint32) {
	var off int
	switch proto {
	case ProtoUDP:
		off = 6
		if s.UDPLen != nil && len(l4) >= 8 {
			binary.BigEndian.PutUint16(l4[4:], *s.UDPLen)
		}
	case ProtoTCP:
		off = 16
	case ProtoICMP:
		if len(l4) >= 4 {
			c := Checksum(l4, 0)
			if s.BadL4Checksum {
				c ^= 0x5a5a
			}
			binary.BigEndian.PutUint16(l4[2:], c)
		}
		return
	case ProtoICMPv6:
		off = 2
	default:
		return
	}
	if len(l4) < off+2 {
		return
	}
	if proto == ProtoUDP && s.NoUDPChecksum {
		return
	}
	covered := l4
	if proto == ProtoUDP && s.UDPLen != nil && int(*s.UDPLen) >= 8 && int(*s.UDPLen) < len(l4) {
		covered = l4[:*s.UDPLen]
	}
	c := Checksum(covered, pseudo(len(covered)))
	if c == 0 && proto == ProtoUDP {
		c = 0xffff
	}
	if s.BadL4Checksum {
		c ^= 0x5a5a
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
		n += 40 + ext6Len(s.head6()) + ext6Len(s.Ext6Tail)
		if s.Frag6 != nil {
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

func ext6Len(hs []Ext6) int {
	b, _ := extBytes(hs, 0)
	return len(b)
}
