package testbed

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Peer is a third namespace joined to Rx by its own veth pair: "another
// interface" of the receiving host, and, through Rx, which forwards, another
// host that Gen reaches with routes (a collector behind a relay, a second
// exporter).
//
// The n-th peer of a bed (from 0) has 198.18.(10+n).1/24 and
// 2001:db8:0:(10+n)::1/64 (n in hex); Rx's end of the link has .2 and ::2.
// The peer's default routes go through Rx; Gen routes the peer's prefixes
// through Rx; Rx forwards (net.ipv4.ip_forward and
// net.ipv6.conf.all.forwarding are 1 in Rx once a peer exists).
type Peer struct {
	// Side is the peer's namespace and its end of the link.
	*Side
	// RxEnd is Rx's end of the link: Netns is Rx's, Link, Index, MAC and
	// addresses are those of the second veth end in Rx.
	RxEnd *Side
	// Prefix4 and Prefix6 are the link's prefixes.
	Prefix4, Prefix6 netip.Prefix
}

// maxPeers bounds the address plan (198.18.10.0/24 upwards).
const maxPeers = 100

var peerName = regexp.MustCompile(`^[a-z][a-z0-9]{0,9}$`)

// PeerPrefixes returns the prefixes of the n-th peer's link.
func PeerPrefixes(n int) (v4, v6 netip.Prefix) {
	v4 = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(10 + n), 0}), v4Bits)
	v6 = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, byte(10 + n)}), v6Bits)
	return v4, v6
}

// AddPeer adds a namespace named after name (lowercase letters and digits,
// up to 10, unique in the bed) joined to Rx, with the addresses and routes
// described on Peer. The bed's Close removes it; on failure AddPeer removes
// what it made.
func (b *Bed) AddPeer(name string) (p *Peer, err error) {
	if !peerName.MatchString(name) || name == "gen" || name == "rx" {
		return nil, fmt.Errorf("peer name %q: use up to 10 lowercase letters and digits, starting with a letter, not gen or rx", name)
	}
	n := len(b.peers)
	for _, q := range b.peers {
		if q.Netns == b.peerNetns(name) {
			return nil, fmt.Errorf("the bed already has a peer named %q", name)
		}
	}
	if n >= maxPeers {
		return nil, fmt.Errorf("a bed takes at most %d peers", maxPeers)
	}
	v4, v6 := PeerPrefixes(n)
	host := func(pfx netip.Prefix, i byte) netip.Addr {
		a := pfx.Addr().AsSlice()
		a[len(a)-1] = i
		ip, _ := netip.AddrFromSlice(a)
		return ip
	}
	p = &Peer{
		Side:    &Side{Netns: b.peerNetns(name), Link: "xp" + b.tag + strconv.Itoa(n), IPv4: host(v4, 1), IPv6: host(v6, 1), ns: -1},
		RxEnd:   &Side{Netns: b.Rx.Netns, Link: "xq" + b.tag + strconv.Itoa(n), IPv4: host(v4, 2), IPv6: host(v6, 2), ns: b.Rx.ns},
		Prefix4: v4, Prefix6: v6,
	}
	if p.Side.ns, err = newNamedNS(p.Netns); err != nil {
		return nil, fmt.Errorf("can't create network namespace %s: %w", p.Netns, err)
	}
	// From here on the bed owns the namespace: Close removes it even when
	// the rest fails.
	b.peers = append(b.peers, p)
	defer func() {
		if err != nil {
			b.peers = b.peers[:len(b.peers)-1]
			p.Side.ns.Close()
			_ = removeNamed(p.Netns)
			p = nil
		}
	}()
	if err := b.linkPeer(p); err != nil {
		return nil, err
	}
	return p, nil
}

func (b *Bed) peerNetns(name string) string {
	return fmt.Sprintf("%s%d-%s-%s", namePrefix, os.Getpid(), b.tag, name)
}

func (b *Bed) linkPeer(p *Peer) error {
	hp, err := netlink.NewHandleAt(p.Side.ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", p.Netns, err)
	}
	defer hp.Close()
	hr, err := netlink.NewHandleAt(b.Rx.ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", b.Rx.Netns, err)
	}
	defer hr.Close()
	hg, err := netlink.NewHandleAt(b.Gen.ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", b.Gen.Netns, err)
	}
	defer hg.Close()

	la := netlink.NewLinkAttrs()
	la.Name = p.Link
	la.MTU = b.MTU
	veth := &netlink.Veth{LinkAttrs: la, PeerName: p.RxEnd.Link, PeerNamespace: netlink.NsFd(int(b.Rx.ns))}
	if err := hp.LinkAdd(veth); err != nil {
		return fmt.Errorf("can't add veth pair %s/%s: %w", p.Link, p.RxEnd.Link, err)
	}
	ends := []struct {
		h *netlink.Handle
		s *Side
	}{{hp, p.Side}, {hr, p.RxEnd}}
	for _, x := range ends {
		if err := setUpEnd(x.h, x.s, b.MTU); err != nil {
			return err
		}
	}
	if err := permanentNeighbours(hp, p.Side, p.RxEnd); err != nil {
		return err
	}
	if err := permanentNeighbours(hr, p.RxEnd, p.Side); err != nil {
		return err
	}
	for _, x := range ends {
		if err := waitUp(x.h, x.s); err != nil {
			return err
		}
	}
	// The peer reaches everything through Rx; Gen reaches the peer's
	// prefixes through Rx; Rx forwards between them.
	for _, r := range []struct {
		h     *netlink.Handle
		dev   int
		dst   netip.Prefix
		gw    netip.Addr
		where string
	}{
		{hp, p.Index, netip.MustParsePrefix("0.0.0.0/0"), p.RxEnd.IPv4, p.Netns},
		{hp, p.Index, netip.MustParsePrefix("::/0"), p.RxEnd.IPv6, p.Netns},
		{hg, b.Gen.Index, p.Prefix4, b.Rx.IPv4, b.Gen.Netns},
		{hg, b.Gen.Index, p.Prefix6, b.Rx.IPv6, b.Gen.Netns},
	} {
		if err := r.h.RouteAdd(&netlink.Route{LinkIndex: r.dev, Dst: ipNet(r.dst), Gw: r.gw.AsSlice()}); err != nil {
			return fmt.Errorf("can't add route %s via %s in %s: %w", r.dst, r.gw, r.where, err)
		}
	}
	return b.Rx.Forward()
}

// Forward turns on IPv4 and IPv6 forwarding in the side's namespace.
func (s *Side) Forward() error {
	for _, k := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
		if err := s.SetSysctl(k, "1"); err != nil {
			return err
		}
	}
	return nil
}

// SetSysctl writes value to /proc/sys/<name> inside the side's namespace
// (name like "net/ipv4/ip_forward"; only the net.* keys are per namespace).
func (s *Side) SetSysctl(name, value string) error {
	return s.Do(func() error {
		if err := os.WriteFile(filepath.Join("/proc/sys", name), []byte(value), 0); err != nil {
			return fmt.Errorf("can't set %s to %s in %s: %w", name, value, s.Netns, err)
		}
		return nil
	})
}

// AddGenAddrs adds addresses to Gen's link (IPv4 as /32, IPv6 as /128
// without duplicate address detection), so that sockets in Gen can send
// from them and Gen answers ARP and ND for them. Rx gets a permanent
// neighbour entry for each address on the link's prefixes and a route
// through Gen for any other, so that its replies (ICMP errors) find the way
// back. Addresses must be from 198.18.0.0/15 or 2001:db8::/32.
func (b *Bed) AddGenAddrs(addrs ...netip.Addr) error {
	hg, err := netlink.NewHandleAt(b.Gen.ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", b.Gen.Netns, err)
	}
	defer hg.Close()
	hr, err := netlink.NewHandleAt(b.Rx.ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", b.Rx.Netns, err)
	}
	defer hr.Close()
	gl, err := hg.LinkByIndex(b.Gen.Index)
	if err != nil {
		return fmt.Errorf("can't find %s in %s: %w", b.Gen.Link, b.Gen.Netns, err)
	}
	var added []netip.Addr
	defer func() {
		// Usable once their local routes exist (see waitUp).
		for deadline := time.Now().Add(5 * time.Second); !localRoutes(hg, added...) && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
	}()
	for _, a := range addrs {
		a = a.Unmap()
		if !bedRange4.Contains(a) && !bedRange6.Contains(a) {
			return fmt.Errorf("address %s is outside 198.18.0.0/15 and 2001:db8::/32: the bed uses no other", a)
		}
		if a == b.Gen.IPv4 || a == b.Gen.IPv6 {
			continue
		}
		na := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a, a.BitLen()))}
		if a.Is6() {
			na.Flags = unix.IFA_F_NODAD
		}
		if err := hg.AddrAdd(gl, na); err != nil {
			return fmt.Errorf("can't add %s to %s in %s: %w", a, b.Gen.Link, b.Gen.Netns, err)
		}
		added = append(added, a)
		onLink := netip.PrefixFrom(b.Gen.IPv4, v4Bits).Masked().Contains(a) || netip.PrefixFrom(b.Gen.IPv6, v6Bits).Masked().Contains(a)
		if onLink {
			n := &netlink.Neigh{LinkIndex: b.Rx.Index, State: netlink.NUD_PERMANENT, IP: a.AsSlice(), HardwareAddr: b.Gen.MAC, Family: family(a)}
			if err := hr.NeighSet(n); err != nil {
				return fmt.Errorf("can't add neighbour %s on %s in %s: %w", a, b.Rx.Link, b.Rx.Netns, err)
			}
			continue
		}
		gw := b.Gen.IPv4
		if a.Is6() {
			gw = b.Gen.IPv6
		}
		if err := hr.RouteAdd(&netlink.Route{LinkIndex: b.Rx.Index, Dst: ipNet(netip.PrefixFrom(a, a.BitLen())), Gw: gw.AsSlice()}); err != nil {
			return fmt.Errorf("can't add route %s via %s in %s: %w", a, gw, b.Rx.Netns, err)
		}
	}
	return nil
}

var (
	bedRange4 = netip.MustParsePrefix("198.18.0.0/15")
	bedRange6 = netip.MustParsePrefix("2001:db8::/32")
)

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func family(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// setUpEnd sets a veth end's MTU, reads its index and MAC, gives it its
// addresses and sets it up.
func setUpEnd(h *netlink.Handle, s *Side, mtu int) error {
	l, err := h.LinkByName(s.Link)
	if err != nil {
		return fmt.Errorf("can't find %s in %s: %w", s.Link, s.Netns, err)
	}
	if err := h.LinkSetMTU(l, mtu); err != nil {
		return fmt.Errorf("set MTU of %s: %w", s.Link, err)
	}
	s.Index = l.Attrs().Index
	s.MAC = l.Attrs().HardwareAddr
	// Loopback first: IPv6 local routes made while lo is down can stay
	// unusable, and datagrams to the address are then lost now and then.
	if lo, err := h.LinkByName("lo"); err == nil {
		_ = h.LinkSetUp(lo)
	}
	a4 := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(s.IPv4, v4Bits))}
	a6 := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(s.IPv6, v6Bits)), Flags: unix.IFA_F_NODAD}
	for _, a := range []*netlink.Addr{a4, a6} {
		if err := h.AddrAdd(l, a); err != nil {
			return fmt.Errorf("add %s to %s: %w", a.IPNet, s.Link, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", s.Link, err)
	}
	return nil
}

// permanentNeighbours gives self permanent entries for peer's addresses: no
// ARP or ND round trip before the first datagram.
func permanentNeighbours(h *netlink.Handle, self, peer *Side) error {
	for _, ip := range []netip.Addr{peer.IPv4, peer.IPv6} {
		n := &netlink.Neigh{LinkIndex: self.Index, State: netlink.NUD_PERMANENT, IP: ip.AsSlice(), HardwareAddr: peer.MAC, Family: family(ip)}
		if err := h.NeighSet(n); err != nil {
			return fmt.Errorf("add neighbour %s on %s: %w", ip, self.Link, err)
		}
	}
	return nil
}

// waitUp waits until the end is operationally up, has its real queueing
// discipline and the local routes of its addresses: a datagram sent while
// the kernel's link watch has not yet replaced noop (a moment after "up")
// is lost silently, and one that arrives before addrconf has installed the
// IPv6 local route is dropped as an address error.
func waitUp(h *netlink.Handle, s *Side) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := h.LinkByIndex(s.Index)
		if err != nil {
			return fmt.Errorf("can't read %s: %w", s.Link, err)
		}
		if l.Attrs().OperState == netlink.OperUp && l.Attrs().RawFlags&unix.IFF_RUNNING != 0 && !noopQdisc(h, l) && hasLocalRoutes(h, s) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is not up after 5 s (operstate %v)", s.Link, l.Attrs().OperState)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// hasLocalRoutes reports whether the local table has routes for the side's
// addresses.
func hasLocalRoutes(h *netlink.Handle, s *Side) bool {
	return localRoutes(h, s.IPv4, s.IPv6)
}

// localRoutes reports whether the local table has routes for addrs.
func localRoutes(h *netlink.Handle, addrs ...netip.Addr) bool {
	for _, a := range addrs {
		rs, err := h.RouteListFiltered(family(a), &netlink.Route{Table: unix.RT_TABLE_LOCAL, Dst: ipNet(netip.PrefixFrom(a, a.BitLen()))}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST)
		if err != nil || len(rs) == 0 {
			return false
		}
	}
	return true
}
