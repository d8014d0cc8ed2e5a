package frames

import (
	"math/rand/v2"
)

// Piece is what one fragment carries of a datagram's fragmentable part: for
// IPv4 everything after the IP header (the L4 header and data), for IPv6
// everything after the Fragment header (Ext6Tail, then L4).
type Piece struct {
	// Off is the byte offset of Data in the fragmentable part. The wire
	// carries it in 8-byte units: Off is rounded down to a multiple of 8.
	Off int
	// Data is the bytes the fragment carries. Normally a slice of the
	// fragmentable part; an overlapping piece may carry other bytes.
	Data []byte
	// More is the MF (IPv4) or M (IPv6) flag: more fragments follow.
	More bool
}

// End is the offset just after the piece.
func (p Piece) End() int { return p.Off + len(p.Data) }

// Fragmentable returns the part of s's datagram that fragmentation cuts up,
// with the L4 checksum computed over the whole of it, and the protocol
// number of its first header (what the IPv4 protocol field or the IPv6
// Fragment header's next header names). The breakage fields that concern
// IP headers do not apply; those of UDP do.
func Fragmentable(s Spec) (next uint8, data []byte) {
	proto := s.proto()
	l4 := l4Bytes(s, proto)
	if s.Src.Addr().Is4() {
		a4, d4 := s.Src.Addr().As4(), s.Dst.Addr().As4()
		s.fixL4(l4, proto, func(n int) uint32 { return pseudo4(a4, d4, proto, n) })
		return proto, l4
	}
	tail, next := extBytes(s.Ext6Tail, proto)
	a16, d16 := s.Src.Addr().As16(), s.Dst.Addr().As16()
	s.fixL4(l4, proto, func(n int) uint32 { return pseudo6(a16, d16, proto, n) })
	return next, append(tail, l4...)
}

// MaxPiece returns the largest piece (a multiple of 8 bytes) that keeps a
// fragment of s within an IP MTU of mtu.
func MaxPiece(s Spec, mtu int) int {
	var hdr int
	if s.Src.Addr().Is4() {
		hdr = 20 + (len(s.IPOptions)+3)/4*4
	} else {
		hdr = 40 + ext6Len(s.head6()) + 8
	}
	return (mtu - hdr) / 8 * 8
}

// Split cuts data into pieces of at most size bytes (rounded down to a
// multiple of 8, at least 8), in order, all but the last with More set.
func Split(data []byte, size int) []Piece {
	size = max(size/8*8, 8)
	var ps []Piece
	for off := 0; ; off += size {
		end := min(off+size, len(data))
		ps = append(ps, Piece{Off: off, Data: data[off:end], More: end < len(data)})
		if end == len(data) {
			return ps
		}
	}
}

// Fragments returns one frame per piece, in the order of pieces: s's
// Ethernet and VLAN headers, its IP header (IPv4: with s.ID, s.IPOptions on
// every fragment; IPv6: s's extension headers before a Fragment header whose
// identification is s.Frag6.ID, or 0 without s.Frag6) and the piece. next is
// the protocol number Fragmentable returned.
func Fragments(s Spec, next uint8, pieces []Piece) [][]byte {
	out := make([][]byte, 0, len(pieces))
	for _, p := range pieces {
		var b []byte
		if s.Src.Addr().Is4() {
			b = appendEth(b, s, EtherTypeIPv4)
			b = appendIPv4(b, s, next, len(p.Data), uint16(p.Off/8), p.More)
		} else {
			var id uint32
			if s.Frag6 != nil {
				id = s.Frag6.ID
			}
			head, first := extBytes(s.head6(), ProtoFragment6)
			head = appendFrag6(head, Frag6{Off: p.Off, More: p.More, ID: id}, next)
			b = appendEth(b, s, EtherTypeIPv6)
			b = appendIPv6(b, s, first, len(head)+len(p.Data))
			b = append(b, head...)
		}
		out = append(out, append(b, p.Data...))
	}
	return out
}

// Fragment returns s's datagram as fragments that fit an IP MTU of mtu, in
// order. A datagram that fits is still one fragment (IPv4: neither MF nor
// an offset, so not a fragment at all; IPv6: an atomic fragment).
func Fragment(s Spec, mtu int) [][]byte {
	next, data := Fragmentable(s)
	return Fragments(s, next, Split(data, MaxPiece(s, mtu)))
}

// Reversed returns the frames in reverse order (a new slice).
func Reversed(fs [][]byte) [][]byte {
	out := make([][]byte, len(fs))
	for i, f := range fs {
		out[len(fs)-1-i] = f
	}
	return out
}

// Shuffled returns the frames in an order drawn from r (a new slice).
func Shuffled(fs [][]byte, r *rand.Rand) [][]byte {
	out := append([][]byte(nil), fs...)
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// Overlap returns a copy of pieces in which piece i+1 starts n bytes (a
// multiple of 8) earlier, overlapping the end of piece i. The overlap
// carries the datagram's own bytes (data, from Fragmentable) when same is
// true, and the complement of them otherwise.
func Overlap(data []byte, pieces []Piece, i, n int, same bool) []Piece {
	out := append([]Piece(nil), pieces...)
	next := out[i+1]
	n = n / 8 * 8
	start := next.Off - n
	b := append([]byte(nil), data[start:next.Off]...)
	if !same {
		for k := range b {
			b[k] = ^b[k]
		}
	}
	out[i+1] = Piece{Off: start, Data: append(b, next.Data...), More: next.More}
	return out
}
