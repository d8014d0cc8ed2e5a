package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Stamp copies the template's frame into frame (which must hold it) and
// writes a wide sequence number and a UDP source port into the copy, fixing
// the UDP checksum incrementally (RFC 1624), as the live-frames program does
// in the kernel. It returns the frame's length. Generators that build frames
// in user space (AF_XDP TX) call it once per frame; it allocates nothing.
func (t Template) Stamp(frame []byte, seq uint64, sport uint16) int {
	n := copy(frame, t.Frame)
	sum := uint32(0)
	old := t.Frame
	for i := 0; i < 8; i += 2 {
		sum += uint32(^binary.BigEndian.Uint16(old[t.SeqOffset+i:])) + uint32(uint16(seq>>(48-8*i)))
	}
	binary.BigEndian.PutUint64(frame[t.SeqOffset:], seq)
	sum += uint32(^binary.BigEndian.Uint16(old[t.SportOffset:])) + uint32(sport)
	binary.BigEndian.PutUint16(frame[t.SportOffset:], sport)
	if c := binary.BigEndian.Uint16(old[t.CsumOffset:]); c != 0 {
		sum += uint32(^c)
		for sum>>16 != 0 {
			sum = sum&0xffff + sum>>16
		}
		c = ^uint16(sum)
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(frame[t.CsumOffset:], c)
	}
	return n
}

// ErrBadFrame is wrapped by every error of VerifyUDPFrame.
var ErrBadFrame = errors.New("bad frame")

// VerifyUDPFrame checks an untagged Ethernet frame carrying UDP over IPv4 or
// IPv6 the way a strict receiver would: IPv4 header checksum, IP and UDP
// lengths against each other and the frame, and the UDP checksum over the
// pseudo-header (mandatory for IPv6, optional (zero) for IPv4). It returns
// the UDP payload. It is for tests of generators: it allocates nothing but
// is not fast.
func VerifyUDPFrame(frame []byte) ([]byte, error) {
	bad := func(format string, args ...any) ([]byte, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrBadFrame}, args...)...)
	}
	if len(frame) < 14 {
		return bad("%d bytes: shorter than an Ethernet header", len(frame))
	}
	var l4 []byte
	var sum uint32
	switch et := binary.BigEndian.Uint16(frame[12:]); et {
	case 0x0800:
		ip := frame[14:]
		if len(ip) < 20 || ip[0]>>4 != 4 {
			return bad("not an IPv4 header")
		}
		ihl := int(ip[0]&0xf) * 4
		tot := int(binary.BigEndian.Uint16(ip[2:]))
		if ihl < 20 || tot < ihl+8 || tot > len(ip) {
			return bad("IPv4 header length %d, total length %d, %d bytes after Ethernet", ihl, tot, len(ip))
		}
		if ip[9] != 17 {
			return bad("IPv4 protocol %d, not UDP", ip[9])
		}
		if onesSum(ip[:ihl], 0) != 0xffff {
			return bad("IPv4 header checksum")
		}
		l4 = ip[ihl:tot]
		sum = onesSumRaw(ip[12:20], 0) + 17 + uint32(len(l4))
	case 0x86DD:
		ip := frame[14:]
		if len(ip) < 40 || ip[0]>>4 != 6 {
			return bad("not an IPv6 header")
		}
		pl := int(binary.BigEndian.Uint16(ip[4:]))
		if pl < 8 || 40+pl > len(ip) {
			return bad("IPv6 payload length %d, %d bytes after Ethernet", pl, len(ip))
		}
		if ip[6] != 17 {
			return bad("IPv6 next header %d, not UDP", ip[6])
		}
		l4 = ip[40 : 40+pl]
		sum = onesSumRaw(ip[8:40], 0) + 17 + uint32(len(l4))
	default:
		return bad("ethertype %#04x", et)
	}
	ul := int(binary.BigEndian.Uint16(l4[4:]))
	if ul != len(l4) {
		return bad("UDP length %d, IP says %d", ul, len(l4))
	}
	c := binary.BigEndian.Uint16(l4[6:])
	v6 := binary.BigEndian.Uint16(frame[12:]) == 0x86DD
	if c == 0 && v6 {
		return bad("zero UDP checksum over IPv6")
	}
	if c != 0 && onesSum(l4, sum) != 0xffff {
		return bad("UDP checksum")
	}
	return l4[8:], nil
}

// onesSumRaw adds b's 16-bit words to sum without folding.
func onesSumRaw(b []byte, sum uint32) uint32 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

// onesSum is the folded ones-complement sum (0xffff over data whose
// checksum is right).
func onesSum(b []byte, sum uint32) uint16 {
	sum = onesSumRaw(b, sum)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}
