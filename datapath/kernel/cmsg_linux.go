package kernel

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/datapath"
)

// Sizes of the per-datagram areas the kernel writes into.
const (
	// nameSize holds a sockaddr_in6 (and so a sockaddr_in).
	nameSize = unix.SizeofSockaddrInet6
	// ctrlSize holds the control messages each buffer carries:
	// IPV6_PKTINFO (or IP_PKTINFO), SO_TIMESTAMPNS, SO_RXQ_OVFL and UDP_GRO,
	// with room to spare so that a message the kernel adds is not
	// truncated.
	ctrlSize = 128
)

// The control messages' payload sizes and offsets, from the kernel's
// struct in_pktinfo and struct in6_pktinfo.
const (
	inPktinfoSpecOff = 4 // after ipi_ifindex: ipi_spec_dst, the local address the kernel would answer from
	inPktinfoAddrOff = 8 // then ipi_addr, the header's destination
	sizeofTimespec64 = 16
)

// parseSockaddr returns the address and port of a sockaddr_in or
// sockaddr_in6 the kernel wrote into b (n bytes of it), without allocating.
// The IPv6 scope (zone) is dropped: a zone is a string, and making one would
// allocate.
func parseSockaddr(b []byte, n uint32) netip.AddrPort {
	if n < 2 || int(n) > len(b) {
		return netip.AddrPort{}
	}
	switch binary.NativeEndian.Uint16(b) {
	case unix.AF_INET:
		if n < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:]))
	case unix.AF_INET6:
		if n < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}
		}
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), binary.BigEndian.Uint16(b[2:]))
	}
	return netip.AddrPort{}
}

// cmsgAlign rounds a control message length up as CMSG_ALIGN does.
func cmsgAlign(n int) int {
	const a = int(unsafe.Sizeof(uintptr(0)))
	return (n + a - 1) &^ (a - 1)
}

// cmsgMeta is what parseCmsgs learns beyond the datagram's own fields.
type cmsgMeta struct {
	// drops is the socket's drop counter (SO_RXQ_OVFL), when hasDrops.
	drops    uint32
	hasDrops bool
	// shared: the kernel gives this datagram to every socket on its port,
	// one per SO_REUSEPORT member, not to one of them: an IPv4 broadcast
	// or multicast (the packet info's local address, ipi_spec_dst, is not
	// the header's destination, which the kernel makes so only for a
	// broadcast or multicast route), an IPv6 multicast (ff00::/8). Only
	// known on sockets that asked for the packet info.
	shared bool
}

// parseCmsgs reads the control messages of one received buffer: the
// destination address into d.Dst (keeping d.Dst's port), the receive time
// into d.RxTime, the socket's drop counter (SO_RXQ_OVFL; the kernel
// attaches it only once it is non-zero) and whether the datagram is shared
// into *m, and returns the GRO segment size (UDP_GRO; 0 when the buffer
// holds one datagram). The last message of each kind wins.
func parseCmsgs(ctrl []byte, d *datapath.Datagram, m *cmsgMeta) (seg int) {
	for len(ctrl) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(ctrl) {
			return seg
		}
		data := ctrl[unix.SizeofCmsghdr:l]
		switch h.Level {
		case unix.SOL_SOCKET:
			switch h.Type {
			case unix.SO_TIMESTAMPNS_NEW:
				if len(data) >= sizeofTimespec64 {
					sec := int64(binary.NativeEndian.Uint64(data))
					nsec := int64(binary.NativeEndian.Uint64(data[8:]))
					d.RxTime = sec*1e9 + nsec
				}
			case unix.SO_TIMESTAMPNS: // SCM_TIMESTAMPNS, a native struct timespec
				if len(data) >= int(unsafe.Sizeof(unix.Timespec{})) {
					ts := (*unix.Timespec)(unsafe.Pointer(&data[0]))
					d.RxTime = ts.Nano()
				}
			case unix.SO_RXQ_OVFL:
				if len(data) >= 4 {
					m.drops = binary.NativeEndian.Uint32(data)
					m.hasDrops = true
				}
			}
		case unix.IPPROTO_IP:
			if h.Type == unix.IP_PKTINFO && len(data) >= inPktinfoAddrOff+4 {
				d.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(data[inPktinfoAddrOff:])), d.Dst.Port())
				// ipi_ifindex is 0 when the kernel had no route to
				// compute ipi_spec_dst from: then nothing is known.
				m.shared = binary.NativeEndian.Uint32(data) != 0 &&
					[4]byte(data[inPktinfoSpecOff:]) != [4]byte(data[inPktinfoAddrOff:])
			}
		case unix.IPPROTO_IPV6:
			if h.Type == unix.IPV6_PKTINFO && len(data) >= 16 {
				d.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(data[:16])), d.Dst.Port())
				m.shared = data[0] == 0xff
			}
		case unix.SOL_UDP:
			if h.Type == unix.UDP_GRO && len(data) >= 4 {
				seg = int(int32(binary.NativeEndian.Uint32(data)))
			}
		}
		adv := cmsgAlign(l)
		if adv >= len(ctrl) {
			return seg
		}
		ctrl = ctrl[adv:]
	}
	return seg
}
