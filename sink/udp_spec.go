package sink

import (
	"net/netip"
	"strings"
)

// The parameter of udp:// and its values.
const (
	udpParamSource    = "source"
	udpSourceOriginal = "original"
	udpSourceRelay    = "relay"
)

// Address families as indices: a UDP sink has at most one collector address
// of each.
const (
	famIPv4 = 0
	famIPv6 = 1
)

// udpFamily returns famIPv4 for an IPv4 (or IPv4-mapped) address, else
// famIPv6.
func udpFamily(a netip.Addr) int {
	if a.Unmap().Is4() {
		return famIPv4
	}
	return famIPv6
}

// collectors returns the collector's HOST:PORT entries, one or two.
func (u UDPSpec) collectors() []string { return strings.Split(u.Addr, ",") }
