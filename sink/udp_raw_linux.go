//go:build linux

package sink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/datapath"
)

// source=original: per family and worker, a raw UDP socket (SOCK_RAW,
// IPPROTO_UDP) with IP_TRANSPARENT (IPV6_TRANSPARENT), connected to the
// collector. We write the UDP header, with the exporter's port and a
// checksum over the exporter's address; the kernel writes the IP header,
// with the source address each message names in IP_PKTINFO (IPV6_PKTINFO),
// which IP_TRANSPARENT lets be an address that isn't ours, and fragments
// datagrams larger than the route's MTU as it does for any socket, with
// the MTU of the moment. IPv4 packets go out without DF
// (IP_PMTUDISC_DONT), so that a router with a smaller MTU further on
// fragments them: path MTU discovery can't work for them, since its
// "fragmentation needed" goes to the exporter's address, not to us.
//
// The other way, a raw socket with IP_HDRINCL (IPV6_HDRINCL) and IP
// headers of our own, must fragment itself: the kernel refuses such a packet
// larger than the interface's MTU (EMSGSIZE), and for IPv6 larger than the
// route's, so we would track the route MTU (which the socket's cached route
// kept unchanged after a change until connected again), send a message per
// fragment, and lose the datagrams cut for an MTU that just shrank (and on
// the bed, two workers' fragments of one exporter's datagrams interleaved
// enough for the collector's reassembly to drop some: ipfrag_max_dist).
// Measured side by side (docs/SINKS.md), both cost about the same per
// unfragmented datagram; an 8000-byte one, 6 fragments at MTU 1500, took
// half the time this way, the kernel cutting it inside one send.
// IP_TRANSPARENT on a UDP socket bound to the exporter's address and port
// would need a socket per exporter.
//
// A raw socket of protocol UDP would receive a copy of every UDP datagram
// the namespace receives; connected, it takes only those from the
// collector's address, and a filter that takes nothing drops even those.

const (
	maxIPPacket    = 65535
	maxUDPPayload4 = maxIPPacket - ipv4HeaderLen - udpHeaderLen // 65507
	maxUDPPayload6 = maxIPPacket - udpHeaderLen                 // 65527, without jumbograms
	// A UDP checksum of 0 means "none"; a computed 0 is sent as 0xffff.
	udpChecksumNone, udpChecksumZero = 0, 0xffff
)

// rawLane is what a lane that keeps the sender adds: the collector's
// address, the UDP headers and the control messages naming the source.
type rawLane struct {
	v6  bool
	dst netip.AddrPort
	d16 [16]byte // IPv6 collector address
	d4  [4]byte  // IPv4 collector address

	// hbuf holds message i's UDP header at i*udpHeaderLen, oob its control
	// message (IP_PKTINFO, IPV6_PKTINFO) at i*oobLen, the source address
	// at i*oobLen+addrOff.
	hbuf            []byte
	oob             []byte
	oobLen, addrOff int
}

func newRawLane(w *udpWriter, dst netip.AddrPort) (l *udpLane, err error) {
	r := &rawLane{v6: udpFamily(dst.Addr()) == famIPv6, dst: dst}
	domain, level, transparent, fam := unix.AF_INET, unix.IPPROTO_IP, unix.IP_TRANSPARENT, "IPv4"
	var sa unix.Sockaddr
	if r.v6 {
		domain, level, transparent, fam = unix.AF_INET6, unix.IPPROTO_IPV6, unix.IPV6_TRANSPARENT, "IPv6"
		r.d16 = dst.Addr().As16()
		sa6 := &unix.SockaddrInet6{Addr: r.d16}
		if z := dst.Addr().Zone(); z != "" {
			if sa6.ZoneId, err = zoneIndex(z); err != nil {
				return nil, fmt.Errorf("collector %s: %w", dst, err)
			}
		}
		sa = sa6
	} else {
		r.d4 = dst.Addr().As4()
		sa = &unix.SockaddrInet4{Addr: r.d4}
	}
	noPrivilege := func(what string, err error) error {
		return fmt.Errorf("can't %s to send to %s with the exporters' addresses: %w: run as root or grant CAP_NET_RAW, or use source=relay (%w)",
			what, dst, err, errors.ErrUnsupported)
	}
	fd, err := unix.Socket(domain, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return nil, noPrivilege("open a raw "+fam+" socket", err)
	}
	if err != nil {
		return nil, fmt.Errorf("can't open a raw %s socket to send to %s: %w", fam, dst, err)
	}
	f := os.NewFile(uintptr(fd), "raw "+fam+" socket to "+dst.String())
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if err := unix.SetsockoptInt(fd, level, transparent, 1); err != nil {
		return nil, noPrivilege("set IP_TRANSPARENT on a raw socket", err)
	}
	if !r.v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT); err != nil {
			return nil, fmt.Errorf("can't clear DF on a raw socket (IP_MTU_DISCOVER): %w", err)
		}
	}
	// Take nothing: "return 0" drops every packet the socket would receive.
	drop := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &drop[0]}); err != nil {
		return nil, fmt.Errorf("can't attach a filter to a raw socket: %w", err)
	}
	// Best effort, as for the UDP socket.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, udpSendBuf)
	if err := unix.Connect(fd, sa); err != nil {
		return nil, fmt.Errorf("can't connect a raw socket to %s: %w: is there a route to the collector?", dst, err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("can't get the raw socket's descriptor: %w", err)
	}
	l = &udpLane{w: w, sock: f, rc: rc, raw: r}
	l.grow(udpBatch)
	r.hbuf = make([]byte, udpBatch*udpHeaderLen)
	// One control message per message, its header written once: each send
	// only writes the source address into it.
	typ, size := unix.IP_PKTINFO, unix.SizeofInet4Pktinfo
	r.addrOff = unix.CmsgLen(0) + int(unsafe.Offsetof(unix.Inet4Pktinfo{}.Spec_dst))
	if r.v6 {
		typ, size = unix.IPV6_PKTINFO, unix.SizeofInet6Pktinfo
		r.addrOff = unix.CmsgLen(0) + int(unsafe.Offsetof(unix.Inet6Pktinfo{}.Addr))
	}
	r.oobLen = unix.CmsgSpace(size)
	r.oob = make([]byte, udpBatch*r.oobLen)
	for i := range udpBatch {
		c := r.oob[i*r.oobLen : (i+1)*r.oobLen]
		h := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
		h.Level, h.Type = int32(level), int32(typ)
		h.SetLen(unix.CmsgLen(size))
		l.hdrs[i].hdr.Control = &c[0]
		l.hdrs[i].hdr.SetControllen(len(c))
		l.iovs[2*i].Base = &r.hbuf[i*udpHeaderLen]
		l.iovs[2*i].SetLen(udpHeaderLen)
	}
	return l, nil
}

// zoneIndex returns the interface index of an IPv6 zone (a name or a
// number).
func zoneIndex(z string) (uint32, error) {
	if n, err := strconv.ParseUint(z, 10, 32); err == nil {
		return uint32(n), nil
	}
	ifi, err := net.InterfaceByName(z)
	if err != nil {
		return 0, fmt.Errorf("zone %s: %w", z, err)
	}
	return uint32(ifi.Index), nil
}

// fits reports whether a payload of n bytes fits a UDP datagram of the
// lane's family.
func (r *rawLane) fits(n int) bool {
	if r.v6 {
		return n <= maxUDPPayload6
	}
	return n <= maxUDPPayload4
}

// build writes message m of l: d's UDP header (the exporter's port, the
// checksum over the exporter's address), its payload in place, and the
// exporter's address in the control message.
func (r *rawLane) build(l *udpLane, d *datapath.Datagram, m int) {
	be := binary.BigEndian
	p := d.Payload
	data := udpHeaderLen + len(p)
	src := d.Src.Addr().Unmap()
	sport, dport := d.Src.Port(), r.dst.Port()
	a := r.oob[m*r.oobLen+r.addrOff:]
	// The checksum covers the pseudo-header (addresses, protocol, length),
	// the UDP header and the payload.
	var s uint64
	if r.v6 {
		s16 := src.As16()
		copy(a, s16[:])
		s = sum(sum(0, s16[:]), r.d16[:])
	} else {
		s4 := src.As4()
		copy(a, s4[:])
		s = sum(sum(0, s4[:]), r.d4[:])
	}
	s = add(s, uint64(data)+ipProtoUDP)
	s = add(s, uint64(sport)+uint64(dport)+uint64(data))
	s = sum(s, p)
	csum := ^fold(s)
	if csum == udpChecksumNone {
		csum = udpChecksumZero
	}
	h := r.hbuf[m*udpHeaderLen : (m+1)*udpHeaderLen]
	be.PutUint16(h[0:], sport)
	be.PutUint16(h[2:], dport)
	be.PutUint16(h[4:], uint16(data))
	be.PutUint16(h[6:], csum)
	if len(p) > 0 {
		l.iovs[2*m+1].Base = &p[0]
	} else {
		l.iovs[2*m+1].Base = nil
	}
	l.iovs[2*m+1].SetLen(len(p))
}
