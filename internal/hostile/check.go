package hostile

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Received is one datagram as a receiver got it. Src and DstPort are what
// the matching needs: a receiver that can't tell the destination address
// leaves it out.
type Received struct {
	Src     netip.AddrPort
	DstPort uint16
	Payload []byte
}

type matchKey struct {
	src     netip.AddrPort
	dstPort uint16
	payload string
}

func keyOf(src netip.AddrPort, dstPort uint16, payload []byte) matchKey {
	return matchKey{netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), dstPort, string(payload)}
}

// Match pairs what a receiver got with the mix's datagrams, by source
// address and port, destination port and payload, byte for byte. It
// returns how many times each datagram arrived, and what matched none.
func (m *Mix) Match(got []Received) (count map[*Datagram]int, unknown []Received) {
	index := map[matchKey][]*Datagram{}
	for _, d := range m.Datagrams() {
		k := keyOf(d.Src, d.Dst.Port(), d.Payload)
		index[k] = append(index[k], d)
	}
	count = map[*Datagram]int{}
	for _, r := range got {
		ds := index[keyOf(r.Src, r.DstPort, r.Payload)]
		if len(ds) == 0 {
			unknown = append(unknown, r)
			continue
		}
		// Identical datagrams (none in a mix today) fill up in order.
		d := ds[0]
		for _, x := range ds {
			if count[x] == 0 {
				d = x
				break
			}
		}
		count[d]++
	}
	return count, unknown
}

// Check compares what a receiver got with the datagrams for which want is
// true (DeliveredOn(path), for one): each must have arrived exactly once,
// byte for byte, and nothing else. The error lists what is missing,
// duplicated, unexpected or unknown, case by case (the first few of each).
func (m *Mix) Check(got []Received, want func(*Datagram) bool) error {
	count, unknown := m.Match(got)
	var missing, dup, extra []string
	for _, d := range m.Datagrams() {
		n := count[d]
		switch {
		case want(d) && n == 0:
			missing = append(missing, describe(d))
		case want(d) && n > 1:
			dup = append(dup, fmt.Sprintf("%s: %d times", describe(d), n))
		case !want(d) && n > 0:
			extra = append(extra, fmt.Sprintf("%s: %d times", describe(d), n))
		}
	}
	var unk []string
	for _, r := range unknown {
		unk = append(unk, fmt.Sprintf("%d bytes %s -> port %d%s", len(r.Payload), r.Src, r.DstPort, m.guess(r)))
	}
	var errs []error
	for _, x := range []struct {
		what string
		list []string
	}{{"missing", missing}, {"duplicated", dup}, {"unexpected", extra}, {"unknown", unk}} {
		if len(x.list) == 0 {
			continue
		}
		total, more := len(x.list), ""
		if total > 12 {
			more = fmt.Sprintf("\n\t... and %d more", total-12)
			x.list = x.list[:12]
		}
		errs = append(errs, fmt.Errorf("%d %s:\n\t%s%s", total, x.what, strings.Join(x.list, "\n\t"), more))
	}
	return errors.Join(errs...)
}

func describe(d *Datagram) string {
	s := d.String()
	if d.Refused != "" {
		s += " refused " + d.Refused
	}
	if d.Note != "" {
		s += " (" + d.Note + ")"
	}
	return s
}

// guess names the case a payload that matched nothing claims to be from.
func (m *Mix) guess(r Received) string {
	if len(r.Payload) < 8 || r.Payload[0] != payloadMagic>>8 || r.Payload[1] != payloadMagic&0xff {
		return ""
	}
	id := int(r.Payload[2])<<8 | int(r.Payload[3])
	seq := int(r.Payload[4])<<24 | int(r.Payload[5])<<16 | int(r.Payload[6])<<8 | int(r.Payload[7])
	for _, c := range m.Cases {
		if c.ID&0xffff == id {
			return fmt.Sprintf(", claims to be %s #%d", c.Name, seq)
		}
	}
	return ""
}
