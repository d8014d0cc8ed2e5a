package hostile

import (
	"net/netip"
)

// Reasons a server's source lists refuse a datagram (Datagram.Refused).
const (
	// RefusedDeny: the source is in a deny prefix (deny wins over allow).
	RefusedDeny = "deny"
	// RefusedNotAllowed: an allow list of the source's family is set and
	// the source is outside it.
	RefusedNotAllowed = "not_allowed"
	// RefusedLocal: the receiving host sent it to its own address on the
	// ingest link. It never crossed the link, but the kernel hands it to
	// sockets bound to that link (SO_BINDTODEVICE) all the same, with the
	// link's index in IP_PKTINFO: the server must refuse it some other way
	// (its source is one of the host's own addresses).
	RefusedLocal = "local"
)

// Policy is a server's source lists, with the server's semantics: per
// family, an allow list in force only when it has prefixes of that family;
// deny wins over allow.
type Policy struct {
	Allow, Deny []netip.Prefix
}

// Refuses returns why the lists refuse a datagram from a (RefusedDeny,
// RefusedNotAllowed), or "" when they let it through.
func (p Policy) Refuses(a netip.Addr) string {
	a = a.Unmap()
	for _, pfx := range p.Deny {
		if pfx.Contains(a) {
			return RefusedDeny
		}
	}
	inForce := false
	for _, pfx := range p.Allow {
		if pfx.Addr().Is4() != a.Is4() {
			continue
		}
		inForce = true
		if pfx.Contains(a) {
			return ""
		}
	}
	if inForce {
		return RefusedNotAllowed
	}
	return ""
}

// Args returns the lists as xdpingest's flags: --allow P and --deny P for
// each prefix.
func (p Policy) Args() []string {
	var args []string
	for _, x := range []struct {
		flag string
		pfx  []netip.Prefix
	}{{"--allow", p.Allow}, {"--deny", p.Deny}} {
		for _, pfx := range x.pfx {
			args = append(args, x.flag, pfx.String())
		}
	}
	return args
}

// DefaultPolicy allows 198.18.0.0/16 and 2001:db8::/48 (which hold Gen's
// and the peers' addresses) and denies 198.18.0.192/26, 198.18.1.192/26,
// 2001:db8::200/120 and 2001:db8:0:1::200/120 inside them. The sources of
// Prepare then fall in all three classes for both families: allowed,
// denied, and outside the allow list (198.19.0.0/16, 2001:db8:1::/48 and
// up).
func DefaultPolicy() Policy {
	return Policy{
		Allow: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/16"), netip.MustParsePrefix("2001:db8::/48")},
		Deny: []netip.Prefix{netip.MustParsePrefix("198.18.0.192/26"), netip.MustParsePrefix("198.18.1.192/26"),
			netip.MustParsePrefix("2001:db8::200/120"), netip.MustParsePrefix("2001:db8:0:1::200/120")},
	}
}

// sourcePool is the addresses Prepare puts on Gen's link: on and off the
// link's prefixes, in every class of DefaultPolicy, for both families.
var sourcePool = []netip.Addr{
	netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.0.11"),
	netip.MustParseAddr("198.18.1.10"), netip.MustParseAddr("198.18.1.11"), netip.MustParseAddr("198.18.0.12"),
	netip.MustParseAddr("198.18.0.200"), netip.MustParseAddr("198.18.0.201"), netip.MustParseAddr("198.18.1.200"),
	netip.MustParseAddr("198.19.0.10"), netip.MustParseAddr("198.19.0.11"),
	netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("2001:db8::11"),
	netip.MustParseAddr("2001:db8:0:1::10"), netip.MustParseAddr("2001:db8:0:1::11"), netip.MustParseAddr("2001:db8::12"),
	netip.MustParseAddr("2001:db8::200"), netip.MustParseAddr("2001:db8::201"), netip.MustParseAddr("2001:db8:0:1::200"),
	netip.MustParseAddr("2001:db8:1::10"), netip.MustParseAddr("2001:db8:ffff::10"),
}
