package sink

import (
	"encoding/binary"
	"math/bits"

	"github.com/xdpingest/xdpingest/datapath"
)

// Header sizes of the frames AppendFrame builds.
const (
	ethHeaderLen  = 14
	vlanTagLen    = 4
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	udpHeaderLen  = 8
)

// EtherTypes and the TPIDs of the tags AppendFrame writes: a single tag is an
// 802.1Q C-tag, the outer of two is an 802.1ad S-tag (QinQ).
const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeVLAN = 0x8100
	etherTypeQinQ = 0x88a8
	ipProtoUDP    = 17
	synthTTL      = 64
	ipv4FlagDF    = 0x4000
	vlanIDMask    = 0x0fff
	maxVLANs      = 2
)

// FrameLen returns the length of the frame AppendFrame builds for d, or of
// d.Frame when it is set.
func FrameLen(d *datapath.Datagram) int {
	if d.Frame != nil {
		return len(d.Frame)
	}
	return synthHeaderLen(d) + len(d.Payload)
}

func synthHeaderLen(d *datapath.Datagram) int {
	n := ethHeaderLen + vlanTagLen*int(min(d.NVLAN, maxVLANs)) + udpHeaderLen
	if is4(d) {
		return n + ipv4HeaderLen
	}
	return n + ipv6HeaderLen
}

// is4 says whether d is carried over IPv4: both addresses are IPv4 (or
// IPv4-mapped IPv6, which the datapath contract rules out but costs nothing
// to accept).
func is4(d *datapath.Datagram) bool {
	return d.Src.Addr().Unmap().Is4() && d.Dst.Addr().Unmap().Is4()
}

// AppendFrame appends to dst the Ethernet frame that carries d and returns
// the extended slice. When d.Frame is set it appends it unchanged; otherwise
// it synthesizes one from d's addresses, ports, VLAN tags and payload, so that
// a pcap file written from the kernel path looks like one written from
// AF_XDP:
//
//   - Ethernet with all-zero MAC addresses (the kernel path never sees them;
//     zeros tell a synthesized frame apart);
//   - d.NVLAN VLAN tags with d.VLAN's IDs (priority 0): one tag is 802.1Q
//     (0x8100), the outer of two is 802.1ad (0x88a8);
//   - IPv4 (no options, DF set, TTL 64, ID 0, correct header checksum) when
//     both addresses are IPv4, else IPv6 (hop limit 64, flow label 0);
//   - UDP with correct lengths. The UDP checksum is 0 ("none") over IPv4, as
//     RFC 768 allows, and computed over IPv6, where RFC 8200 requires it.
//
// Lengths are written as the 16-bit fields they are: a payload larger than a
// UDP datagram can carry (65507 bytes over IPv4) gives a frame whose length
// fields are wrong, which no receive path produces.
//
// AppendFrame allocates only when dst lacks the capacity (FrameLen(d) more
// bytes).
func AppendFrame(dst []byte, d *datapath.Datagram) []byte {
	if d.Frame != nil {
		return append(dst, d.Frame...)
	}
	dst = appendSynthHeaders(dst, d)
	return append(dst, d.Payload...)
}

// appendSynthHeaders appends the Ethernet, VLAN, IP and UDP headers of the
// frame AppendFrame synthesizes for d, without the payload.
func appendSynthHeaders(dst []byte, d *datapath.Datagram) []byte {
	be := binary.BigEndian
	var zeroMACs [12]byte
	dst = append(dst, zeroMACs[:]...)
	nv := int(min(d.NVLAN, maxVLANs))
	for i := 0; i < nv; i++ {
		tpid := uint16(etherTypeVLAN)
		if nv == 2 && i == 0 {
			tpid = etherTypeQinQ
		}
		dst = be.AppendUint16(dst, tpid)
		dst = be.AppendUint16(dst, d.VLAN[i]&vlanIDMask)
	}
	udpLen := udpHeaderLen + len(d.Payload)
	src, dstAddr := d.Src.Addr().Unmap(), d.Dst.Addr().Unmap()
	if src.Is4() && dstAddr.Is4() {
		dst = be.AppendUint16(dst, etherTypeIPv4)
		ip := len(dst)
		s4, d4 := src.As4(), dstAddr.As4()
		dst = append(dst,
			0x45, 0, // version 4, IHL 5; DSCP/ECN 0
			byte((ipv4HeaderLen+udpLen)>>8), byte(ipv4HeaderLen+udpLen),
			0, 0, // identification
			ipv4FlagDF>>8, 0, // flags DF, fragment offset 0
			synthTTL, ipProtoUDP,
			0, 0, // header checksum, filled below
			s4[0], s4[1], s4[2], s4[3],
			d4[0], d4[1], d4[2], d4[3])
		be.PutUint16(dst[ip+10:], ^fold(sum(0, dst[ip:ip+ipv4HeaderLen])))
		return appendUDP(dst, d, udpLen, 0)
	}
	dst = be.AppendUint16(dst, etherTypeIPv6)
	s16, d16 := d.Src.Addr().As16(), d.Dst.Addr().As16()
	dst = append(dst, 0x60, 0, 0, 0, // version 6, traffic class 0, flow label 0
		byte(udpLen>>8), byte(udpLen),
		ipProtoUDP, synthTTL)
	dst = append(dst, s16[:]...)
	dst = append(dst, d16[:]...)
	// The checksum covers the pseudo-header (addresses, upper-layer length,
	// next header), the UDP header and the payload.
	s := sum(0, s16[:])
	s = sum(s, d16[:])
	s = add(s, uint64(udpLen)+ipProtoUDP)
	s = add(s, uint64(d.Src.Port())+uint64(d.Dst.Port())+uint64(udpLen))
	s = sum(s, d.Payload)
	c := ^fold(s)
	if c == 0 {
		c = 0xffff // 0 means "no checksum", which IPv6 forbids
	}
	return appendUDP(dst, d, udpLen, c)
}

func appendUDP(dst []byte, d *datapath.Datagram, udpLen int, csum uint16) []byte {
	be := binary.BigEndian
	dst = be.AppendUint16(dst, d.Src.Port())
	dst = be.AppendUint16(dst, d.Dst.Port())
	dst = be.AppendUint16(dst, uint16(udpLen))
	return be.AppendUint16(dst, csum)
}

// sum adds b, read as big-endian 16-bit words (an odd last byte padded with
// zero), to the one's-complement accumulator s. It adds 8 bytes at a time and
// adds the carries back in: since 2^16 = 1 modulo 2^16-1, the 64-bit sum folds
// down to the same 16-bit one's-complement sum.
func sum(s uint64, b []byte) uint64 {
	be := binary.BigEndian
	var c, carries uint64
	for len(b) >= 32 {
		s, c = bits.Add64(s, be.Uint64(b), 0)
		s, c = bits.Add64(s, be.Uint64(b[8:]), c)
		s, c = bits.Add64(s, be.Uint64(b[16:]), c)
		s, c = bits.Add64(s, be.Uint64(b[24:]), c)
		carries += c
		b = b[32:]
	}
	for len(b) >= 8 {
		s, c = bits.Add64(s, be.Uint64(b), 0)
		carries += c
		b = b[8:]
	}
	var tail uint64
	if len(b) >= 4 {
		tail += uint64(be.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		tail += uint64(be.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		tail += uint64(b[0]) << 8
	}
	return add(add(s, tail), carries)
}

// add is one's-complement addition of 64-bit accumulators. When s+v
// overflows, the truncated sum is at most 2^64-2, so adding the carry back
// cannot overflow again.
func add(s, v uint64) uint64 {
	s, c := bits.Add64(s, v, 0)
	return s + c
}

// fold reduces a one's-complement accumulator to 16 bits.
func fold(s uint64) uint16 {
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return uint16(s)
}
