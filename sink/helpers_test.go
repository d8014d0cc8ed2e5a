package sink

import (
	"context"
	"net/netip"
	"testing"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testbed"
)

// slotSize is the buffer space gen.batch needs per datagram.
const slotSize = 4096

// rxTimeBase is the receive time of datagram 0 in the tests; datagram i was
// received i microseconds later.
const rxTimeBase = 1_700_000_000_000_000_000

// gen makes the tests' datagrams: datagram i has the sized payload of
// sequence number i, ports that depend on i, and a mix of IPv4 and IPv6, 0-2
// VLAN tags, and a frame (as on the AF_XDP path) or none (kernel path).
type gen struct {
	mixed bool // vary family, VLANs and frames; else IPv4 without frame
}

func (g gen) expect(i uint64) (v6 bool, nvlan int, withFrame bool, src, dst netip.AddrPort) {
	if g.mixed {
		v6, nvlan, withFrame = i%3 == 1, int(i%4)%3, i%5 == 0
	}
	sport, dport := uint16(40000+i%7), uint16(9000+i%100)
	if v6 {
		return v6, nvlan, withFrame, netip.AddrPortFrom(testbed.GenIPv6, sport), netip.AddrPortFrom(testbed.RxIPv6, dport)
	}
	return v6, nvlan, withFrame, netip.AddrPortFrom(testbed.GenIPv4, sport), netip.AddrPortFrom(testbed.RxIPv4, dport)
}

// batch fills dgs with datagrams first.. and returns it; buf backs the
// payloads and frames and is reused by the next call, as a receiver reuses
// its frames.
func (g gen) batch(dgs []datapath.Datagram, buf []byte, first uint64) []datapath.Datagram {
	if len(buf) < len(dgs)*slotSize {
		panic("gen.batch: buf too small")
	}
	for k := range dgs {
		i := first + uint64(k)
		_, nvlan, withFrame, src, dst := g.expect(i)
		b := buf[k*slotSize : (k+1)*slotSize]
		d := datapath.Datagram{Src: src, Dst: dst, RxTime: rxTimeBase + int64(i)*1000, NVLAN: uint8(nvlan), VLAN: [2]uint16{uint16(i % 4095), 7}}
		if withFrame {
			// Build the frame the AF_XDP path would hand over: real
			// MAC addresses, the payload inside the frame.
			d.Payload = bench.PutSized(b[slotSize/2:], i)
			f := AppendFrame(b[:0], &d)
			copy(f[0:12], []byte{0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1})
			d.Frame = f
			d.Payload = f[len(f)-len(d.Payload):]
		} else {
			d.Payload = bench.PutSized(b, i)
		}
		dgs[k] = d
	}
	return dgs
}

// checkFrame checks that frame is datagram seq's, as gen made it, and marks
// seq in tr.
func (g gen) checkFrame(t testing.TB, tr *bench.Tracker, frame []byte, ts int64) {
	t.Helper()
	p, err := parseTestFrame(frame)
	if err != nil {
		t.Errorf("frame %x: %v", frame[:min(len(frame), 64)], err)
		tr.Mark(0, false)
		return
	}
	seq, ok := bench.DecodeSized(p.payload)
	tr.Mark(seq, ok)
	if !ok {
		return
	}
	v6, nvlan, withFrame, src, dst := g.expect(seq)
	if p.src != src || p.dst != dst || (p.ver == 6) != v6 || len(p.vlans) != nvlan {
		t.Errorf("datagram %d: %v -> %v v%d %d VLANs; want %v -> %v, %d VLANs", seq, p.src, p.dst, p.ver, len(p.vlans), src, dst, nvlan)
	}
	if withFrame != (frame[0] == 0x02) {
		t.Errorf("datagram %d: frame kept %v, want %v", seq, frame[0] == 0x02, withFrame)
	}
	if want := int64(rxTimeBase + seq*1000); ts != want {
		t.Errorf("datagram %d: timestamp %d, want %d", seq, ts, want)
	}
}

func mustOpen(t testing.TB, url string, opts Options) Sink {
	t.Helper()
	spec, err := Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkIdentity checks that every datagram offered to s is accounted for.
func checkIdentity(t testing.TB, s Stats) {
	t.Helper()
	if got := s.Written + s.InFlight + s.DroppedTotal(); got != s.Offered {
		t.Errorf("offered %d != written %d + in flight %d + dropped %d (%v)", s.Offered, s.Written, s.InFlight, s.DroppedTotal(), s.Dropped)
	}
}
