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
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/datapath"
)

// source=original: a raw socket (IPPROTO_RAW, which implies IP_HDRINCL, and
// IPV6_HDRINCL on Linux 4.5 and later) per family and worker, connected to
// the collector, to which we hand whole IP packets: our own IPv4 or IPv6 and
// UDP headers, the exporter's address and port as the source, the payload
// in place. IP_TRANSPARENT was the other way: a UDP socket bound to the
// exporter's address and port, one per exporter, each opened on its first
// datagram, where a raw socket serves every exporter.
//
// The kernel does not fragment what a raw socket sends with its own header
// beyond the interface MTU (EMSGSIZE), and for IPv6 not beyond the route's
// either, so we fragment ourselves to the route's MTU (IP_MTU, IPV6_MTU of
// the connected socket), read again once a second and after EMSGSIZE. IPv4
// packets go out without DF, so that a router with a smaller MTU further on
// fragments them: path MTU discovery can't work for them, since a router's
// "fragmentation needed" goes to the exporter's address, not to us. IPv6
// routers never fragment: a smaller MTU further on loses the datagram
// (docs/SINKS.md says to set the route's MTU).
//
// The kernel fills in the IPv4 header checksum; the UDP checksum is ours,
// computed over the payload, in both families.

const (
	// rawHdrStride is the header room per message: IPv6, a fragment
	// header and UDP.
	rawHdrStride         = 64
	ipv6FragHeaderLen    = 8
	ipProtoFragment      = 44
	ipv4FlagMF           = 0x2000
	ipv6FlagMF           = 1
	maxIPPacket          = 65535
	minMTU4, minMTU6     = 68, 1280
	maxUDPPayload4       = maxIPPacket - ipv4HeaderLen - udpHeaderLen // 65507
	maxUDPPayload6       = maxIPPacket - udpHeaderLen                 // 65527, without jumbograms
	udpChecksumNone      = 0
	udpChecksumZeroAsOne = 0xffff
)

// rawMTURefresh is how often a raw lane reads the route MTU again (a
// variable for the tests).
var rawMTURefresh = time.Second

// rawLane is what a lane that keeps the sender adds: the collector's
// address, the MTU and the header buffers.
type rawLane struct {
	v6  bool
	dst netip.AddrPort
	sa  unix.Sockaddr // dst, for connect
	d16 [16]byte      // IPv6 collector address
	d4  [4]byte       // IPv4 collector address

	mtu int
	// maxData is the largest UDP datagram (header and payload) sent in
	// one packet; larger ones go in fragments of step bytes of it (a
	// multiple of 8).
	maxData, step int
	mtuAt         time.Time
	mtuFn         func(fd uintptr) // r.readMTU, bound once
	mtuRead       int
	mtuErr        error
	mtuFailing    bool // the last reading failed (logged once)

	// hbuf holds the headers of message i at i*rawHdrStride.
	hbuf []byte
	// id is the identifier of the last datagram: the IPv4 identification
	// of every packet (each may be fragmented on the way), the IPv6
	// fragment header's identification. It steps by idStep, the number of
	// workers.
	id, idStep uint32
}

func newRawLane(w *udpWriter, dst netip.AddrPort, id, idStep uint32) (l *udpLane, err error) {
	r := &rawLane{v6: udpFamily(dst.Addr()) == famIPv6, dst: dst, id: id, idStep: idStep}
	domain, level, hdrincl, fam := unix.AF_INET, unix.IPPROTO_IP, unix.IP_HDRINCL, "IPv4"
	var sa unix.Sockaddr
	if r.v6 {
		domain, level, hdrincl, fam = unix.AF_INET6, unix.IPPROTO_IPV6, unix.IPV6_HDRINCL, "IPv6"
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
	fd, err := unix.Socket(domain, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return nil, fmt.Errorf("can't open a raw %s socket to send to %s with the exporters' addresses: %w: run as root or grant CAP_NET_RAW, or use source=relay (%w)", fam, dst, err, errors.ErrUnsupported)
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
	// IPPROTO_RAW implies it; set it anyway, so that a kernel without
	// IPV6_HDRINCL (before 4.5) refuses here rather than sending our
	// headers as a payload.
	if err := unix.SetsockoptInt(fd, level, hdrincl, 1); err != nil {
		return nil, fmt.Errorf("can't send %s packets with headers of our own (HDRINCL; Linux 4.5 for IPv6): %w (%w)", fam, err, errors.ErrUnsupported)
	}
	// Best effort, as for the UDP socket.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, udpSendBuf)
	r.sa = sa
	if err := unix.Connect(fd, sa); err != nil {
		return nil, fmt.Errorf("can't connect a raw socket to %s: %w: is there a route to the collector?", dst, err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("can't get the raw socket's descriptor: %w", err)
	}
	l = &udpLane{w: w, fam: udpFamily(dst.Addr()), sock: f, rc: rc, raw: r}
	r.mtuFn = r.readMTU
	if !r.refresh(l) {
		return nil, fmt.Errorf("can't read the MTU of the route to %s: %w", dst, r.mtuErr)
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

// readMTU connects the socket again, which looks the route up again (the
// socket's cached route keeps the MTU it had when it was connected, after
// the route changed), and reads the route's MTU.
func (r *rawLane) readMTU(fd uintptr) {
	if err := unix.Connect(int(fd), r.sa); err != nil {
		r.mtuRead, r.mtuErr = 0, fmt.Errorf("connect to %s again: %w", r.dst, err)
		return
	}
	if r.v6 {
		r.mtuRead, r.mtuErr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU)
	} else {
		r.mtuRead, r.mtuErr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU)
	}
}

// maybeRefresh reads the MTU again when the last reading is older than
// rawMTURefresh: routes change, and a smaller route MTU would otherwise
// fail every large datagram (IPv6) until an EMSGSIZE.
func (r *rawLane) maybeRefresh(l *udpLane) {
	if time.Since(r.mtuAt) >= rawMTURefresh {
		r.refresh(l)
	}
}

// refresh reads the route's MTU and sets the fragment sizes from it,
// growing l's messages when a datagram of the largest size needs more. It
// reports whether the MTU was read and differs from before (or is the
// first).
func (r *rawLane) refresh(l *udpLane) bool {
	r.mtuAt = time.Now()
	if err := l.rc.Control(r.mtuFn); err != nil {
		r.mtuErr = err
	}
	if r.mtuErr != nil {
		if r.mtu != 0 && !r.mtuFailing {
			l.w.s.log.Warn("can't read the MTU of the route to the collector; keeping the last", "collector", r.dst, "mtu", r.mtu, "err", r.mtuErr)
		}
		r.mtuFailing = true
		return false
	}
	if r.mtuFailing {
		l.w.s.log.Info("the route to the collector is back", "collector", r.dst)
		r.mtuFailing = false
	}
	mtu := min(r.mtuRead, maxIPPacket)
	ipHdr, fragHdr := ipv4HeaderLen, 0
	if r.v6 {
		mtu = max(mtu, minMTU6)
		ipHdr, fragHdr = ipv6HeaderLen, ipv6FragHeaderLen
	} else {
		mtu = max(mtu, minMTU4)
	}
	if mtu == r.mtu {
		return false
	}
	if r.mtu != 0 {
		l.w.s.log.Info("route MTU to the collector changed", "collector", r.dst, "from", r.mtu, "to", mtu)
	}
	r.mtu, r.maxData, r.step = mtu, mtu-ipHdr, (mtu-ipHdr-fragHdr)&^7
	largest := maxUDPPayload4
	if r.v6 {
		largest = maxUDPPayload6
	}
	if n := max(udpBatch, r.messages(largest)); n > len(l.hdrs) {
		l.grow(n)
		r.hbuf = make([]byte, n*rawHdrStride)
	}
	return true
}

// messages returns the number of packets a datagram with a payload of n
// bytes takes, or 0 if it is larger than an IP packet holds.
func (r *rawLane) messages(n int) int {
	largest := maxUDPPayload4
	if r.v6 {
		largest = maxUDPPayload6
	}
	switch data := udpHeaderLen + n; {
	case n > largest:
		return 0
	case data <= r.maxData:
		return 1
	default:
		return (data + r.step - 1) / r.step
	}
}

// build writes the messages of d into l's messages from first on:
// r.messages(len(d.Payload)) of them.
func (r *rawLane) build(l *udpLane, d *datapath.Datagram, first int) {
	be := binary.BigEndian
	p := d.Payload
	data := udpHeaderLen + len(p)
	src := d.Src.Addr().Unmap()
	sport, dport := d.Src.Port(), r.dst.Port()
	// The UDP checksum covers the pseudo-header (addresses, protocol,
	// length), the UDP header and the payload.
	var s uint64
	var s4 [4]byte
	var s16 [16]byte
	if r.v6 {
		s16 = src.As16()
		s = sum(sum(0, s16[:]), r.d16[:])
	} else {
		s4 = src.As4()
		s = sum(sum(0, s4[:]), r.d4[:])
	}
	s = add(s, uint64(data)+ipProtoUDP)
	s = add(s, uint64(sport)+uint64(dport)+uint64(data))
	s = sum(s, p)
	csum := ^fold(s)
	if csum == udpChecksumNone {
		csum = udpChecksumZeroAsOne // 0 means "no checksum"
	}
	whole := data <= r.maxData
	step := data
	if !whole {
		step = r.step
	}
	if !r.v6 || !whole {
		r.id += r.idStep
		if !r.v6 && uint16(r.id) == 0 {
			r.id += r.idStep // 0 would have the kernel pick one per fragment
		}
	}
	for a, m := 0, first; a < data; a, m = a+step, m+1 {
		b := min(a+step, data)
		h := r.hbuf[m*rawHdrStride : (m+1)*rawHdrStride]
		var hl int
		if r.v6 {
			hl = r.putIPv6(h, &s16, a, b, data, whole)
		} else {
			hl = r.putIPv4(h, &s4, a, b, data)
		}
		if a == 0 {
			be.PutUint16(h[hl:], sport)
			be.PutUint16(h[hl+2:], dport)
			be.PutUint16(h[hl+4:], uint16(data))
			be.PutUint16(h[hl+6:], csum)
			hl += udpHeaderLen
		}
		l.iovs[2*m].Base = &h[0]
		l.iovs[2*m].SetLen(hl)
		from, to := max(a-udpHeaderLen, 0), b-udpHeaderLen
		if to > from {
			l.iovs[2*m+1].Base = &p[from]
			l.iovs[2*m+1].SetLen(to - from)
		} else {
			l.iovs[2*m+1].Base = nil
			l.iovs[2*m+1].SetLen(0)
		}
	}
}

// putIPv4 writes the IPv4 header of the packet carrying bytes [a, b) of a
// UDP datagram of data bytes, and returns its length. DF stays clear.
func (r *rawLane) putIPv4(h []byte, src *[4]byte, a, b, data int) int {
	be := binary.BigEndian
	h[0], h[1] = 0x45, 0 // version 4, IHL 5; DSCP/ECN 0
	be.PutUint16(h[2:], uint16(ipv4HeaderLen+b-a))
	be.PutUint16(h[4:], uint16(r.id))
	fo := uint16(a / 8)
	if b < data {
		fo |= ipv4FlagMF
	}
	be.PutUint16(h[6:], fo)
	h[8], h[9] = synthTTL, ipProtoUDP
	h[10], h[11] = 0, 0 // the kernel computes the header checksum
	copy(h[12:16], src[:])
	copy(h[16:20], r.d4[:])
	return ipv4HeaderLen
}

// putIPv6 writes the IPv6 header, and the fragment header unless whole, of
// the packet carrying bytes [a, b) of a UDP datagram of data bytes, and
// returns their length.
func (r *rawLane) putIPv6(h []byte, src *[16]byte, a, b, data int, whole bool) int {
	be := binary.BigEndian
	be.PutUint32(h[0:], 6<<28) // version 6, traffic class 0, flow label 0
	plen, next := b-a, byte(ipProtoUDP)
	if !whole {
		plen, next = plen+ipv6FragHeaderLen, ipProtoFragment
	}
	be.PutUint16(h[4:], uint16(plen))
	h[6], h[7] = next, synthTTL
	copy(h[8:24], src[:])
	copy(h[24:40], r.d16[:])
	if whole {
		return ipv6HeaderLen
	}
	h[40], h[41] = ipProtoUDP, 0
	off := uint16(a) // a is a multiple of 8: the offset in 8-byte units, shifted left by 3
	if b < data {
		off |= ipv6FlagMF
	}
	be.PutUint16(h[42:], off)
	be.PutUint32(h[44:], r.id)
	return ipv6HeaderLen + ipv6FragHeaderLen
}
