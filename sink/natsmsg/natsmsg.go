package natsmsg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/xdpingest/xdpingest/datapath"
)

// Header names. Values are text: addresses as netip.AddrPort prints them
// ("198.18.0.1:40000", "[2001:db8::1]:40000"), numbers in decimal.
const (
	// HeaderSrc is the source address and port of a one-datagram message.
	HeaderSrc = "Xdpi-Src"
	// HeaderDst is the destination address and port.
	HeaderDst = "Xdpi-Dst"
	// HeaderDport is the destination port alone, for consumers that filter
	// on it without parsing addresses.
	HeaderDport = "Xdpi-Dport"
	// HeaderRxTime is the receive time in nanoseconds since the Unix epoch.
	HeaderRxTime = "Xdpi-Rxtime"
	// HeaderVLAN lists the VLAN IDs, outer first, separated by a comma
	// ("100" or "100,7"); absent for an untagged datagram.
	HeaderVLAN = "Xdpi-Vlan"
	// HeaderBatch marks a batch message; its value is the number of
	// datagrams in it.
	HeaderBatch = "Xdpi-Batch"
	// HeaderMsgID is JetStream's deduplication ID (Nats-Msg-Id), unique per
	// message: the sink retries a message with the same ID, so the stream
	// keeps one copy within its duplicate window.
	HeaderMsgID = "Nats-Msg-Id"
)

// The batch framing.
const (
	Magic          = "XDPB"
	Version        = 1
	BatchHeaderLen = 8
	// MaxBatch is the most records one batch can count.
	MaxBatch = 0xffff
	// recordFixedLen is a record's length before the addresses.
	recordFixedLen = 16
)

// ErrFormat is returned (wrapped) for a message that breaks the format.
var ErrFormat = errors.New("not a valid xdpingest message")

// SetHeaders sets the headers of a one-datagram message for d.
func SetHeaders(h nats.Header, d *datapath.Datagram) {
	h.Set(HeaderSrc, d.Src.String())
	h.Set(HeaderDst, d.Dst.String())
	h.Set(HeaderDport, strconv.Itoa(int(d.Dst.Port())))
	h.Set(HeaderRxTime, strconv.FormatInt(d.RxTime, 10))
	switch min(d.NVLAN, 2) {
	case 1:
		h.Set(HeaderVLAN, strconv.Itoa(int(d.VLAN[0])))
	case 2:
		h.Set(HeaderVLAN, strconv.Itoa(int(d.VLAN[0]))+","+strconv.Itoa(int(d.VLAN[1])))
	}
}

// AppendBatchHeader appends the header of a batch with a count of 0; set the
// count with SetBatchCount once the records are in.
func AppendBatchHeader(dst []byte) []byte {
	return append(dst, Magic[0], Magic[1], Magic[2], Magic[3], Version, 0, 0, 0)
}

// SetBatchCount sets the count of the batch that starts msg.
func SetBatchCount(msg []byte, n int) {
	binary.BigEndian.PutUint16(msg[6:], uint16(n))
}

// RecordLen returns the length of d's record in a batch.
func RecordLen(d *datapath.Datagram) int {
	return recordFixedLen + 2*addrLen(d) + 2*int(min(d.NVLAN, 2)) + len(d.Payload)
}

// addrLen is 4 for an IPv4 datagram, 16 for an IPv6 one. IPv4-mapped IPv6
// addresses stay IPv6: receivers give IPv4 as 4-byte addresses, so a mapped
// address is what an IPv6 header held, and a one-datagram message keeps it
// too ("[::ffff:198.18.0.1]:1").
func addrLen(d *datapath.Datagram) int {
	if d.Src.Addr().Is4() && d.Dst.Addr().Is4() {
		return 4
	}
	return 16
}

// AppendRecord appends d's record to a batch. The payload must be at most
// 65535 bytes (any UDP payload is).
func AppendRecord(dst []byte, d *datapath.Datagram) []byte {
	be := binary.BigEndian
	nv := min(d.NVLAN, 2)
	fam := byte(4)
	if addrLen(d) == 16 {
		fam = 6
	}
	dst = be.AppendUint16(dst, uint16(len(d.Payload)))
	dst = append(dst, fam, nv)
	dst = be.AppendUint64(dst, uint64(d.RxTime))
	dst = be.AppendUint16(dst, d.Src.Port())
	dst = be.AppendUint16(dst, d.Dst.Port())
	if fam == 4 {
		s, t := d.Src.Addr().As4(), d.Dst.Addr().As4()
		dst = append(dst, s[:]...)
		dst = append(dst, t[:]...)
	} else {
		s, t := d.Src.Addr().As16(), d.Dst.Addr().As16()
		dst = append(dst, s[:]...)
		dst = append(dst, t[:]...)
	}
	for i := range nv {
		dst = be.AppendUint16(dst, d.VLAN[i])
	}
	return append(dst, d.Payload...)
}

// IsBatch says whether a message with headers h is a batch.
func IsBatch(h nats.Header) bool { return h.Get(HeaderBatch) != "" }

// Decode appends the datagrams of a message (its headers and data) to dst
// and returns the extended slice. The datagrams' payloads point into data;
// Frame, Queue and Handle are zero.
func Decode(h nats.Header, data []byte, dst []datapath.Datagram) ([]datapath.Datagram, error) {
	if IsBatch(h) {
		n, err := strconv.Atoi(h.Get(HeaderBatch))
		if err != nil {
			return dst, fmt.Errorf("header %s=%q: %w", HeaderBatch, h.Get(HeaderBatch), ErrFormat)
		}
		out, err := DecodeBatch(data, dst)
		if err == nil && len(out)-len(dst) != n {
			return dst, fmt.Errorf("header %s says %d datagrams, the batch holds %d: %w", HeaderBatch, n, len(out)-len(dst), ErrFormat)
		}
		return out, err
	}
	d := datapath.Datagram{Payload: data}
	var err error
	if d.Src, err = netip.ParseAddrPort(h.Get(HeaderSrc)); err != nil {
		return dst, fmt.Errorf("header %s: %w: %w", HeaderSrc, err, ErrFormat)
	}
	if d.Dst, err = netip.ParseAddrPort(h.Get(HeaderDst)); err != nil {
		return dst, fmt.Errorf("header %s: %w: %w", HeaderDst, err, ErrFormat)
	}
	if d.RxTime, err = strconv.ParseInt(h.Get(HeaderRxTime), 10, 64); err != nil {
		return dst, fmt.Errorf("header %s: %w: %w", HeaderRxTime, err, ErrFormat)
	}
	if v := h.Get(HeaderVLAN); v != "" {
		ids := strings.Split(v, ",")
		if len(ids) > 2 {
			return dst, fmt.Errorf("header %s=%q: more than two tags: %w", HeaderVLAN, v, ErrFormat)
		}
		for i, s := range ids {
			id, err := strconv.ParseUint(s, 10, 16)
			if err != nil {
				return dst, fmt.Errorf("header %s=%q: %w", HeaderVLAN, v, ErrFormat)
			}
			d.VLAN[i] = uint16(id)
		}
		d.NVLAN = uint8(len(ids))
	}
	return append(dst, d), nil
}

// DecodeBatch appends the datagrams of a batch's data to dst and returns the
// extended slice. It allocates only when dst must grow.
func DecodeBatch(data []byte, dst []datapath.Datagram) ([]datapath.Datagram, error) {
	be := binary.BigEndian
	if len(data) < BatchHeaderLen || string(data[:4]) != Magic {
		return dst, fmt.Errorf("batch without the %q magic: %w", Magic, ErrFormat)
	}
	if data[4] != Version || data[5] != 0 {
		return dst, fmt.Errorf("batch version %d flags %#x: only version %d with flags 0 is known: %w", data[4], data[5], Version, ErrFormat)
	}
	count := int(be.Uint16(data[6:]))
	b := data[BatchHeaderLen:]
	start := len(dst)
	for i := range count {
		if len(b) < recordFixedLen {
			return dst[:start], fmt.Errorf("record %d of %d: cut short: %w", i, count, ErrFormat)
		}
		plen, fam, nv := int(be.Uint16(b)), b[2], int(b[3])
		al := 4
		switch fam {
		case 4:
		case 6:
			al = 16
		default:
			return dst[:start], fmt.Errorf("record %d: family %d: %w", i, fam, ErrFormat)
		}
		if nv > 2 {
			return dst[:start], fmt.Errorf("record %d: %d VLAN tags: %w", i, nv, ErrFormat)
		}
		hl := recordFixedLen + 2*al + 2*nv
		if len(b) < hl+plen {
			return dst[:start], fmt.Errorf("record %d of %d: cut short: %w", i, count, ErrFormat)
		}
		d := datapath.Datagram{RxTime: int64(be.Uint64(b[4:])), NVLAN: uint8(nv)}
		sport, dport := be.Uint16(b[12:]), be.Uint16(b[14:])
		var src, dstAddr netip.Addr
		if al == 4 {
			src, dstAddr = netip.AddrFrom4([4]byte(b[16:20])), netip.AddrFrom4([4]byte(b[20:24]))
		} else {
			src, dstAddr = netip.AddrFrom16([16]byte(b[16:32])), netip.AddrFrom16([16]byte(b[32:48]))
		}
		d.Src, d.Dst = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dstAddr, dport)
		for k := range nv {
			d.VLAN[k] = be.Uint16(b[recordFixedLen+2*al+2*k:])
		}
		d.Payload = b[hl : hl+plen : hl+plen]
		dst = append(dst, d)
		b = b[hl+plen:]
	}
	if len(b) != 0 {
		return dst[:start], fmt.Errorf("%d bytes after the last of %d records: %w", len(b), count, ErrFormat)
	}
	return dst, nil
}
