package hostile

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/xdpingest/xdpingest/internal/testbed"
)

// Path is where a datagram goes on the receiving side.
type Path int

const (
	// AFXDP is xdpingest --path afxdp: the XDP program redirects the
	// datagrams it matches whole (Datagram.XDP) to AF_XDP; what it passes
	// reaches kernel sockets bound to Rx's link (Datagram.Kernel); the
	// source lists hold on both.
	AFXDP Path = iota
	// Kernel is xdpingest --path kernel: everything goes through the
	// kernel's stack to sockets bound to Rx's link; the source lists hold.
	Kernel
	// PlainKernel is no server at all: UDP sockets bound to Rx's link with
	// SO_BINDTODEVICE and no source lists. The mix's own test checks the
	// expectations on it.
	PlainKernel
)

func (p Path) String() string {
	switch p {
	case AFXDP:
		return "afxdp"
	case Kernel:
		return "kernel"
	case PlainKernel:
		return "plain kernel"
	}
	return fmt.Sprintf("path(%d)", int(p))
}

// Kind groups cases by what they try.
type Kind string

// The kinds of case, all built by default.
const (
	KindSizes      Kind = "sizes"       // payloads of 0 to 65,507 (IPv4) or 65,527 (IPv6) bytes, raw frames fragmented at each FragMTU and UDP sockets
	KindFragments  Kind = "fragments"   // fragments in and out of order, overlapping, duplicated, incomplete, tiny
	KindExt6       Kind = "ext6"        // IPv6 hop-by-hop, destination options, routing and unknown extension headers
	KindVLAN       Kind = "vlan"        // 802.1Q, QinQ, priority tags, three tags
	KindChecksum   Kind = "checksum"    // bad and absent UDP checksums, bad IPv4 header checksums
	KindMalformed  Kind = "malformed"   // impossible header lengths, truncated frames
	KindOdd        Kind = "odd"         // valid but unusual: IP options, Ethernet trailers, short UDP lengths, broadcast
	KindFlood      Kind = "flood"       // floods from denied and not-allowed sources, whole and fragmented, with allowed datagrams among them
	KindOtherIface Kind = "other_iface" // to the ingest ports from a peer's link and from loopback
	KindOtherPort  Kind = "other_port"  // to a port that is not an ingest port
	KindNotForUs   Kind = "not_for_us"  // to another MAC, another IP, or a host behind Rx (forwarded)
)

// AllKinds lists every kind, in build order.
var AllKinds = []Kind{KindSizes, KindFragments, KindExt6, KindVLAN, KindChecksum, KindMalformed, KindOdd, KindFlood, KindOtherIface, KindOtherPort, KindNotForUs}

// Via is how a case is sent.
type Via int

const (
	// ViaRaw: Case.Frames, in order, from Gen's AF_PACKET socket.
	ViaRaw Via = iota
	// ViaGen: each datagram from a UDP socket in Gen bound to its Src; the
	// kernel builds the frames and fragments what doesn't fit the MTU.
	ViaGen
	// ViaPeer: each datagram from a UDP socket in the peer's namespace.
	ViaPeer
	// ViaRx: each datagram from a UDP socket in Rx itself (loopback).
	ViaRx
)

func (v Via) String() string {
	return [...]string{"raw", "gen socket", "peer socket", "rx socket"}[v]
}

// Case is a group of datagrams sent one way.
type Case struct {
	ID   int
	Name string // kind/variant/family[/size], unique in the mix
	Kind Kind
	Via  Via
	// Frames are the Ethernet frames sent for ViaRaw, in order. They carry
	// Datagrams (whole or in fragments); malformed ones may carry nothing
	// a kernel would call a datagram.
	Frames    [][]byte
	Datagrams []*Datagram
}

// Datagram is one UDP datagram the mix sends (or the datagram a set of
// frames would make), and what must become of it.
type Datagram struct {
	Case *Case
	Seq  int // index in Case.Datagrams
	// Src and Dst as sent; Dst's port is an ingest port unless the case is
	// KindOtherPort.
	Src, Dst netip.AddrPort
	// Payload is what a receiver that takes it must hand on, byte for byte
	// (shorter than what was sent when the UDP length says so).
	Payload []byte
	// Refused says why the server must not deliver it even though the
	// kernel or the program may hand it over: RefusedDeny,
	// RefusedNotAllowed (from the Config's Policy), RefusedLocal. Empty when
	// the server must deliver whatever of it reaches its sockets.
	Refused string
	// Kernel: Rx's kernel hands it to a UDP socket on Dst's port bound to
	// Rx's link (SO_BINDTODEVICE), once.
	Kernel bool
	// XDP: the XDP program sees one whole UDP datagram for an ingest port
	// (an untagged or one- or two-tag frame, not a fragment, no extension
	// header, lengths that fit) and redirects it to AF_XDP when the source
	// is allowed (drops it when not), so on the AF_XDP path the kernel
	// never sees it. Checksums are not verified.
	XDP bool
	// Elsewhere: it reaches Rx's UDP layer from another interface (a peer's
	// link, loopback): a socket on the port not bound to a device gets it;
	// one bound to Rx's link doesn't.
	Elsewhere bool
	// Broadcast: sent to the link's broadcast address. The kernel gives a
	// copy to every socket on the port that matches (one per
	// SO_REUSEPORT member, and one to a socket not bound to a device).
	Broadcast bool
	// Transit: addressed to a host behind Rx, which forwards it; the peer
	// gets it unless the XDP program takes it first.
	Transit bool
	// Note says what the kernel and the program do with it, when that is
	// not obvious.
	Note string
}

// Delivered reports whether the datagram must reach the sink on path p:
// exactly once, with Payload.
func (d *Datagram) Delivered(p Path) bool {
	switch p {
	case PlainKernel:
		return d.Kernel
	case Kernel:
		return d.Kernel && d.Refused == ""
	case AFXDP:
		return (d.XDP || d.Kernel) && d.Refused == ""
	}
	return false
}

func (d *Datagram) String() string {
	return fmt.Sprintf("%s #%d (%s -> %s, %d bytes)", d.Case.Name, d.Seq, d.Src, d.Dst, len(d.Payload))
}

// DeliveredOn returns the predicate "must be delivered on p", for Check.
func DeliveredOn(p Path) func(*Datagram) bool {
	return func(d *Datagram) bool { return d.Delivered(p) }
}

// Mix is a set of cases built for one bed.
type Mix struct {
	Env   *Env
	Cfg   Config
	Cases []*Case
	// OtherPort is the port KindOtherPort sends to.
	OtherPort uint16
}

// Datagrams returns every datagram of the mix, case by case.
func (m *Mix) Datagrams() []*Datagram {
	var ds []*Datagram
	for _, c := range m.Cases {
		ds = append(ds, c.Datagrams...)
	}
	return ds
}

// Select returns the datagrams for which want is true.
func (m *Mix) Select(want func(*Datagram) bool) []*Datagram {
	var ds []*Datagram
	for _, d := range m.Datagrams() {
		if want(d) {
			ds = append(ds, d)
		}
	}
	return ds
}

// Matched counts the datagrams the XDP program matches (Datagram.XDP), by
// what its lists make of them: allowed ones it redirects (or, in pass
// mode, passes as pass_match; above MaxRedirect, passes as oversize),
// denied and not-allowed ones it drops. Each is one frame on Rx's link.
func (m *Mix) Matched() (allowed, denied, notAllowed int) {
	for _, d := range m.Datagrams() {
		if !d.XDP {
			continue
		}
		switch d.Refused {
		case "":
			allowed++
		case RefusedDeny:
			denied++
		case RefusedNotAllowed:
			notAllowed++
		}
	}
	return allowed, denied, notAllowed
}

// Frames returns how many frames the raw cases send.
func (m *Mix) Frames() int {
	n := 0
	for _, c := range m.Cases {
		n += len(c.Frames)
	}
	return n
}

// Env is a bed prepared for hostile mixes: source addresses on Gen, a peer
// namespace behind Rx. Mixes built from one Env never share an IPv4 or
// IPv6 fragment identification or a source port, so that a queue of
// fragments one mix left incomplete can't swallow another's.
type Env struct {
	Bed *testbed.Bed
	// Peer is the namespace joined to Rx by its own link: "another
	// interface", and a host behind Rx.
	Peer *testbed.Peer
	// Sources are the addresses added to Gen's link (besides Gen's own).
	Sources []netip.Addr

	mu    sync.Mutex
	cases int    // cases made so far
	id4   uint16 // last IPv4 identification used
	id6   uint32 // last IPv6 fragment identification used
}

// Prepare readies a bed: adds the source pool to Gen's link (with Rx's
// routes back) and a peer named "hostile" joined to Rx (pass peer to use
// one the caller made). The bed's Close removes everything.
func Prepare(b *testbed.Bed, peer *testbed.Peer) (*Env, error) {
	if b.MTU < 1280 {
		return nil, fmt.Errorf("the bed's MTU is %d: the hostile mix needs at least 1280 (IPv6's minimum)", b.MTU)
	}
	if err := b.AddGenAddrs(sourcePool...); err != nil {
		return nil, fmt.Errorf("can't add the source addresses to Gen: %w", err)
	}
	if peer == nil {
		var err error
		if peer, err = b.AddPeer("hostile"); err != nil {
			return nil, fmt.Errorf("can't add the peer namespace: %w", err)
		}
	}
	return &Env{Bed: b, Peer: peer, Sources: slices.Clone(sourcePool)}, nil
}

// Payload layout: a 12-byte header (as much of it as fits) then a pattern,
// so that a receiver can tell case and sequence apart and compare bytes.
const payloadMagic = 0x5848 // "XH"

func payloadFor(caseID, seq, size int) []byte {
	p := make([]byte, size)
	var h [12]byte
	binary.BigEndian.PutUint16(h[0:], payloadMagic)
	binary.BigEndian.PutUint16(h[2:], uint16(caseID))
	binary.BigEndian.PutUint32(h[4:], uint32(seq))
	binary.BigEndian.PutUint32(h[8:], uint32(size))
	n := copy(p, h[:])
	for i := n; i < size; i++ {
		p[i] = byte(i*131 + caseID*7 + seq)
	}
	return p
}

// srcPortBase is the first source port the mixes use (one per case).
const srcPortBase = 20000
