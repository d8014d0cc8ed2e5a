package bench

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/xdpingest/xdpingest/datapath"
)

func TestSeqMeterLossAndDups(t *testing.T) {
	m := NewSeqMeter(0)
	buf := make([]byte, 22)
	// Stream 1: 0..999 without 10 and 500; 7 twice. Stream 2: 0..99.
	for c := uint64(0); c < 1000; c++ {
		if c == 10 || c == 500 {
			continue
		}
		PutWide(buf, StreamSeq(1, c))
		m.Add(buf)
	}
	PutWide(buf, StreamSeq(1, 7))
	m.Add(buf)
	for c := uint64(0); c < 100; c++ {
		m.Mark(StreamSeq(2, c))
	}
	m.Add(buf[:3])
	if m.Received != 998+1+100+1 || m.Dups != 1 || m.Short != 1 || m.Unique() != 1098 {
		t.Fatalf("received %d dups %d short %d unique %d", m.Received, m.Dups, m.Short, m.Unique())
	}
	if !m.Has(StreamSeq(1, 999)) || m.Has(StreamSeq(1, 10)) || m.Has(StreamSeq(3, 0)) {
		t.Error("Has")
	}
	l := m.LossAgainst(map[uint16]uint64{1: 1000, 2: 90, 3: 5})
	// Stream 1 misses 2, stream 2 has 10 beyond its count, stream 3 is
	// missing entirely.
	if l.Sent != 1095 || l.Missing != 2+5 || l.Unexpected != 10+1 || l.Dups != 1 {
		t.Fatalf("%+v", l)
	}
	sc := m.Streams()
	if len(sc) != 2 || sc[0].Stream != 1 || sc[0].Highest != 999 || sc[0].Unique != 998 || sc[1].Unique != 100 {
		t.Fatalf("%+v", sc)
	}
}

func TestSeqMeterMerge(t *testing.T) {
	a, b := NewSeqMeter(0), NewSeqMeter(0)
	// Numbers across a page boundary, split between two meters with an
	// overlap of 3.
	base := uint64(1<<pageShift - 50)
	for c := base; c < base+100; c++ {
		if c%2 == 0 || c < base+3 {
			a.Mark(StreamSeq(0, c))
		}
		if c%2 == 1 || c < base+3 {
			b.Mark(StreamSeq(0, c))
		}
	}
	b.Mark(StreamSeq(5, 1))
	a.Merge(b)
	if a.Unique() != 101 || a.Dups != 3 {
		t.Fatalf("unique %d dups %d", a.Unique(), a.Dups)
	}
	l := a.LossAgainst(map[uint16]uint64{0: base + 100, 5: 2})
	if l.Missing != base+1 || l.Unexpected != 0 {
		t.Fatalf("%+v", l)
	}
}

func TestSeqMeterBounds(t *testing.T) {
	m := NewSeqMeter(1000)
	m.Mark(StreamSeq(0, 1000))
	m.Mark(uint64(MaxStreams) << StreamShift)
	m.Mark(StreamSeq(0, 999))
	if m.OutOfRange != 2 || m.Unique() != 1 {
		t.Fatalf("out of range %d unique %d", m.OutOfRange, m.Unique())
	}
	// A stray number far out allocates one page, not a bitmap up to it.
	m2 := NewSeqMeter(0)
	m2.Mark(StreamSeq(0, 3<<30))
	if n := len(m2.streams[0].pages); n != (3<<30)>>pageShift+1 {
		t.Fatalf("%d page slots", n)
	}
	allocated := 0
	for _, p := range m2.streams[0].pages {
		if p != nil {
			allocated++
		}
	}
	if allocated != 1 {
		t.Fatalf("%d pages allocated", allocated)
	}
}

// Marking allocates nothing once the pages exist.
func TestSeqMeterNoAllocs(t *testing.T) {
	m := NewSeqMeter(0)
	m.Reserve(0, 1<<16)
	buf := make([]byte, 8)
	c := uint64(0)
	allocs := testing.AllocsPerRun(1000, func() {
		PutWide(buf, StreamSeq(0, c%(1<<16)))
		m.Add(buf)
		c++
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per Add", allocs)
	}
}

func BenchmarkSeqMeterAdd(b *testing.B) {
	m := NewSeqMeter(0)
	m.Reserve(0, uint64(b.N))
	buf := make([]byte, 22)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		PutWide(buf, uint64(i))
		m.Add(buf)
	}
}

func TestParseCPUStat(t *testing.T) {
	const a = `cpu  100 0 50 1000 0 0 20 0 0 0
cpu0 60 0 30 400 0 0 20 0 0 0
cpu1 40 0 20 600 0 0 0 0 0 0
intr 1 2 3
`
	const b = `cpu  300 0 100 1100 0 0 120 0 0 0
cpu0 60 0 30 400 0 0 120 0 0 0
cpu1 240 0 70 700 0 0 0 0 0 0
`
	s0, err := ParseCPUStat(strings.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	s1, err := ParseCPUStat(strings.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	l := s1.Since(s0)
	if len(l) != 2 || l[0].CPU != 0 || l[0].Busy != 1 || l[0].SoftIRQ != 1 || l[1].Busy != 250.0/350 {
		t.Fatalf("%+v", l)
	}
	if d := s1.BusySince(s0); d != 350*ClockTick {
		t.Fatalf("busy %v", d)
	}
	if got := FormatLoads(l); got != "cpu0 100% (si 100%) cpu1  71%" {
		t.Fatalf("%q", got)
	}
	if _, err := ParseCPUStat(strings.NewReader("intr 1\n")); err == nil {
		t.Fatal("no cpu line accepted")
	}
}

// Add's fast path (the page of the last new number) must count exactly as
// Mark does: checked against a map over numbers that hop between streams
// and pages, repeat, and cross a limit in the middle of a page.
func TestSeqMeterAddFastPath(t *testing.T) {
	limit := uint64(2<<pageShift + 100)
	m := NewSeqMeter(limit)
	type key struct {
		stream uint16
		c      uint64
	}
	seen := map[key]bool{}
	var dups, outOfRange, short, received uint64
	highest := map[uint16]uint64{}
	buf := make([]byte, 22)
	rng := uint64(1)
	next := func() uint64 { rng = rng*6364136223846793005 + 1442695040888963407; return rng >> 33 }
	for _, start := range []uint64{0, 1<<pageShift - 70, 2<<pageShift - 30, 2<<pageShift + 60} {
		stream := uint16(0)
		for i := uint64(0); i < 3000; i++ {
			if next()%100 == 0 { // runs from one stream, as a queue sees
				stream = uint16(next() % 3)
			}
			c := start + i
			switch next() % 10 {
			case 0:
				c -= next() % 200 // often a duplicate
			case 1:
				c = next() % (c + 1) // anywhere below, often another page
			}
			received++
			if next()%50 == 0 {
				m.Add(buf[:7])
				short++
				continue
			}
			PutWide(buf, StreamSeq(stream, c))
			m.Add(buf)
			k := key{stream, c}
			switch {
			case c >= limit:
				outOfRange++
			case seen[k]:
				dups++
			default:
				seen[k] = true
				highest[stream] = max(highest[stream], c)
			}
		}
		for _, sc := range m.Streams() {
			if sc.Highest != highest[sc.Stream] {
				t.Errorf("from %d: stream %d: highest %d, want %d", start, sc.Stream, sc.Highest, highest[sc.Stream])
			}
		}
	}
	if m.Received != received {
		t.Errorf("received %d, want %d", m.Received, received)
	}
	if m.Dups != dups || m.OutOfRange != outOfRange || m.Short != short || m.Unique() != uint64(len(seen)) {
		t.Fatalf("dups %d out of range %d short %d unique %d, want %d %d %d %d",
			m.Dups, m.OutOfRange, m.Short, m.Unique(), dups, outOfRange, short, len(seen))
	}
	for k := range seen {
		if !m.Has(StreamSeq(k.stream, k.c)) {
			t.Fatalf("%v not marked", k)
		}
	}
	// Merging into a meter whose page is cached: a number both saw is a
	// duplicate when the cached page sees it again.
	o := NewSeqMeter(limit)
	o.Mark(StreamSeq(7, 5))
	n := NewSeqMeter(limit)
	n.Mark(StreamSeq(7, 4))
	n.Merge(o)
	PutWide(buf, StreamSeq(7, 5))
	n.Add(buf)
	if n.Dups != 1 || n.Unique() != 2 {
		t.Fatalf("after merge: dups %d unique %d, want 1 2", n.Dups, n.Unique())
	}
}

func TestAddBatchMatchesAdd(t *testing.T) {
	// A batch of numbers across two pages, duplicates, a short payload,
	// another stream and a datagram without a frame, marked both ways.
	seqs := []uint64{1, 2, 2, 1<<pageShift - 1, 1 << pageShift, 5, StreamSeq(3, 7), 1<<pageShift + 1}
	var dgs []datapath.Datagram
	for i, s := range seqs {
		p := make([]byte, 22)
		PutWide(p, s)
		d := datapath.Datagram{Payload: p, Src: netip.MustParseAddrPort("198.18.0.1:5000")}
		if i%2 == 0 {
			d.Frame = make([]byte, 64)
		}
		dgs = append(dgs, d)
	}
	dgs = append(dgs, datapath.Datagram{Payload: []byte{1, 2, 3}, Src: netip.MustParseAddrPort("[2001:db8::1]:5000")})
	one, batch := NewSeqMeter(0), NewSeqMeter(0)
	var wire uint64
	for i := range dgs {
		one.Add(dgs[i].Payload)
		wire += WireBytes(&dgs[i])
	}
	if got := batch.AddBatch(dgs[:3]) + batch.AddBatch(dgs[3:]); got != wire {
		t.Errorf("AddBatch counted %d wire bytes, want %d", got, wire)
	}
	if one.Received != batch.Received || one.Short != batch.Short || one.Unique() != batch.Unique() || !reflect.DeepEqual(one.Streams(), batch.Streams()) {
		t.Errorf("AddBatch: received %d short %d unique %d %v; Add: %d %d %d %v",
			batch.Received, batch.Short, batch.Unique(), batch.Streams(), one.Received, one.Short, one.Unique(), one.Streams())
	}
	for _, s := range seqs {
		if !batch.Has(s) {
			t.Errorf("AddBatch lost %#x", s)
		}
	}
	if wire != 4*64+4*(22+42)+3+62 {
		t.Errorf("wire bytes %d", wire)
	}
}

func BenchmarkSeqMeterAddBatch(b *testing.B) {
	m := NewSeqMeter(0)
	const batch = 64
	m.Reserve(0, uint64(b.N)+batch)
	dgs := make([]datapath.Datagram, batch)
	for i := range dgs {
		dgs[i].Payload = make([]byte, 22)
		dgs[i].Frame = make([]byte, 64)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i += batch {
		for j := range dgs {
			PutWide(dgs[j].Payload, uint64(i+j))
		}
		m.AddBatch(dgs)
	}
}
