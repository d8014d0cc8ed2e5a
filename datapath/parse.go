package datapath

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// The sentinel errors of ParseFrame. They are package variables so that the
// walk returns them without allocating; match them with errors.Is.
var (
	// ErrMalformed says the frame is cut short or its lengths disagree: an
	// IPv4 header length under 20 bytes, an IP or UDP length that runs past
	// the frame, a UDP length under 8, a version nibble that contradicts the
	// ethertype.
	ErrMalformed = errors.New("malformed frame")
	// ErrNotUDP says the frame is well formed as far as the walk read it, but
	// is not a whole UDP datagram over IPv4 or IPv6 that the walk handles:
	// another ethertype or protocol, more than two VLAN tags, an IPv6
	// extension header, an IPv4 fragment, an IPv6 jumbogram.
	ErrNotUDP = errors.New("not a UDP datagram")
)

// Header sizes and field values the walk uses.
const (
	ethHdrLen  = 14
	vlanTagLen = 4
	ipv4MinLen = 20
	ipv6HdrLen = 40
	udpHdrLen  = 8

	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86DD
	etherTypeVLAN = 0x8100 // 802.1Q
	etherTypeQinQ = 0x88A8 // 802.1ad

	protoUDP = 17

	maxVLANTags = 2
)

// ParseFrame walks an Ethernet frame to its UDP payload and fills d's
// Payload, Frame, Src, Dst, VLAN and NVLAN. It handles up to two VLAN tags
// (802.1Q or 802.1ad), IPv4 with options, and IPv6 without extension headers
// (the XDP program hands those to the kernel). Payload and Frame point into
// frame; nothing is copied and nothing is allocated.
//
// Lengths are checked against each other and against the frame: the IPv4
// header length and total length, the IPv6 payload length and the UDP length
// must all fit, and the payload ends where the UDP length says, so Ethernet
// padding of short frames is not part of it. Checksums are not verified: the
// receive path never did (the kernel leaves UDP checksums of AF_XDP traffic
// to the consumer), and verifying costs more than the rest of the walk.
//
// It returns ErrMalformed or ErrNotUDP for anything else; the fields of d are
// then unspecified.
func ParseFrame(frame []byte, d *Datagram) error {
	if len(frame) < ethHdrLen {
		return ErrMalformed
	}
	// Locals, written to d once at the end: stores through d would make the
	// compiler reload what it already has.
	var (
		vlan  [maxVLANTags]uint16
		nvlan int
	)
	l3 := frame[ethHdrLen:]
	etype := binary.BigEndian.Uint16(frame[12:14])
	for etype == etherTypeVLAN || etype == etherTypeQinQ {
		if nvlan == maxVLANTags {
			return ErrNotUDP
		}
		if len(l3) < vlanTagLen {
			return ErrMalformed
		}
		vlan[nvlan] = binary.BigEndian.Uint16(l3[0:2]) & 0x0fff
		nvlan++
		etype = binary.BigEndian.Uint16(l3[2:4])
		l3 = l3[vlanTagLen:]
	}

	var src, dst netip.Addr
	var udp []byte // from the UDP header to the end of the IP payload
	switch etype {
	case etherTypeIPv4:
		ip := l3
		if len(ip) < ipv4MinLen {
			return ErrMalformed
		}
		ihl := int(ip[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(ip[2:4]))
		if ip[0]>>4 != 4 || ihl < ipv4MinLen || total < ihl || total > len(ip) {
			return ErrMalformed
		}
		// A set MF bit or a fragment offset: the datagram is in pieces and
		// only the kernel reassembles.
		if binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 || ip[9] != protoUDP {
			return ErrNotUDP
		}
		src = netip.AddrFrom4([4]byte(ip[12:16]))
		dst = netip.AddrFrom4([4]byte(ip[16:20]))
		udp = ip[ihl:total]
	case etherTypeIPv6:
		ip := l3
		if len(ip) < ipv6HdrLen {
			return ErrMalformed
		}
		if ip[0]>>4 != 6 {
			return ErrMalformed
		}
		if ip[6] != protoUDP {
			return ErrNotUDP
		}
		// A zero payload length means a jumbogram, whose length is in a
		// hop-by-hop option, which would have made the next header 0: with
		// UDP next, zero is a lie.
		plen := int(binary.BigEndian.Uint16(ip[4:6]))
		if plen == 0 || ipv6HdrLen+plen > len(ip) {
			return ErrMalformed
		}
		src = netip.AddrFrom16([16]byte(ip[8:24]))
		dst = netip.AddrFrom16([16]byte(ip[24:40]))
		udp = ip[ipv6HdrLen : ipv6HdrLen+plen]
	default:
		return ErrNotUDP
	}

	if len(udp) < udpHdrLen {
		return ErrMalformed
	}
	ulen := int(binary.BigEndian.Uint16(udp[4:6]))
	if ulen < udpHdrLen || ulen > len(udp) {
		return ErrMalformed
	}
	d.Payload = udp[udpHdrLen:ulen:ulen]
	d.Frame = frame
	d.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(udp[0:2]))
	d.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(udp[2:4]))
	d.VLAN = vlan
	d.NVLAN = uint8(nvlan)
	return nil
}
