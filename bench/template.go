package bench

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/xdpingest/xdpingest/internal/frames"
)

// FrameSpec describes the frames a generator sends.
type FrameSpec struct {
	SrcMAC, DstMAC net.HardwareAddr
	Src, Dst       netip.AddrPort // Src's port is the first of the flows
	// Size is the frame length without the FCS, headers included: 64
	// gives a 22-byte UDP payload over IPv4. The payload holds at least
	// the 8-byte sequence number.
	Size int
}

// Template is a frame and where a generator stamps it.
type Template struct {
	Frame                              []byte
	SeqOffset, SportOffset, CsumOffset int
	PayloadLen                         int
}

// HeaderLen is what Ethernet, IP and UDP put in front of a payload: 42
// bytes for IPv4, 62 for IPv6 (no VLAN tag, options or extension headers).
func HeaderLen(ipv6 bool) int {
	if ipv6 {
		return 14 + 40 + 8
	}
	return 14 + 20 + 8
}

// MinFrameSize is the smallest Size for the family: headers plus an 8-byte
// sequence number.
func MinFrameSize(ipv6 bool) int { return HeaderLen(ipv6) + 8 }

// BuildTemplate builds a UDP frame with a zero sequence number.
func BuildTemplate(s FrameSpec) (Template, error) {
	if s.Src.Addr().Is4() != s.Dst.Addr().Is4() {
		return Template{}, fmt.Errorf("source %s and destination %s are of different families", s.Src, s.Dst)
	}
	v6 := !s.Src.Addr().Is4()
	if s.Size < MinFrameSize(v6) || s.Size > 9000 {
		return Template{}, fmt.Errorf("frame size %d out of range: %d to 9000 bytes for %s", s.Size, MinFrameSize(v6), map[bool]string{false: "IPv4", true: "IPv6"}[v6])
	}
	spec := frames.Spec{SrcMAC: s.SrcMAC, DstMAC: s.DstMAC, Src: s.Src, Dst: s.Dst}
	hl := frames.HeaderLen(spec)
	spec.Payload = make([]byte, s.Size-hl)
	t := Template{Frame: frames.Build(spec), SeqOffset: hl, SportOffset: hl - 8, CsumOffset: hl - 2, PayloadLen: s.Size - hl}
	return t, nil
}

// Config returns a LiveConfig for the template, to be completed with the
// interface, bounds and rate.
func (t Template) Config() LiveConfig {
	return LiveConfig{Frame: t.Frame, SeqOffset: t.SeqOffset, SportOffset: t.SportOffset, CsumOffset: t.CsumOffset}
}
