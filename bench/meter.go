package bench

import (
	"encoding/binary"
	"math/bits"
	"sort"

	"github.com/xdpingest/xdpingest/datapath"
)

// Stream numbering of pktbench's generators: every generator (one per core
// or queue) stamps wide sequence numbers whose top 16 bits are its stream id
// and whose low 48 bits count from 0. A meter reading several generators at
// once tells them apart by the stream id.
const (
	StreamShift = 48
	CounterMask = 1<<StreamShift - 1
)

// StreamSeq joins a stream id and a counter into a wide sequence number.
func StreamSeq(stream uint16, counter uint64) uint64 {
	return uint64(stream)<<StreamShift | counter&CounterMask
}

// SeqMeter finds loss and duplicates in the wide sequence numbers of
// pktbench's generators at receive-loop speed: it keeps a bitmap per stream,
// so marking a number is a shift, a load and a store, with no lock. A
// SeqMeter belongs to one goroutine; receive loops keep one each and Merge
// them when they are done.
//
// Bitmaps grow in pages of 4 Mi numbers (512 KiB), allocated when a number
// first lands in a page, so a run of n datagrams allocates about n/4Mi times
// in all (Reserve allocates ahead), and a stray number far away costs one
// page, not a bitmap up to it. Numbers at or above the limit, and streams
// at or above MaxStreams, are counted as out of range, not tracked.
type SeqMeter struct {
	limit   uint64
	streams []*seqStream

	// Received counts every payload offered (Add) or number marked (Mark).
	Received uint64
	// Dups counts numbers seen before.
	Dups uint64
	// OutOfRange counts numbers beyond the limit or of a stream beyond
	// MaxStreams; Short counts payloads too short to hold a number.
	OutOfRange uint64
	Short      uint64

	// The page the last new number landed in, for Add's fast path: cur is
	// its bitmap (nil until then), base the wide number of its first bit,
	// curS its stream. A page is cached only when it lies wholly below the
	// limit, so a number inside it needs no other check.
	cur  []uint64
	base uint64
	curS *seqStream
}

type seqStream struct {
	pages   [][]uint64
	unique  uint64
	highest uint64 // highest counter seen; valid when unique > 0
}

const (
	pageShift = 22 // numbers per page: 1<<22
	pageWords = 1 << (pageShift - 6)
	// MaxStreams bounds the stream ids a SeqMeter tracks.
	MaxStreams = 1024
	// DefaultSeqLimit is the per-stream limit NewSeqMeter(0) uses: 2^32
	// numbers, ten minutes at 7 Mpps. Only touched pages take memory.
	DefaultSeqLimit = 1 << 32
)

// NewSeqMeter returns a meter that tracks counters 0..limit-1 of each
// stream (limit 0: DefaultSeqLimit).
func NewSeqMeter(limit uint64) *SeqMeter {
	if limit == 0 || limit > CounterMask+1 {
		limit = DefaultSeqLimit
		if limit > CounterMask+1 {
			limit = CounterMask + 1
		}
	}
	return &SeqMeter{limit: limit}
}

// Reserve allocates the pages that counters 0..n-1 of the stream need, so
// that marking them allocates nothing.
func (m *SeqMeter) Reserve(stream uint16, n uint64) {
	s := m.stream(stream)
	if s == nil {
		return
	}
	n = min(n, m.limit)
	for p := uint64(0); p<<pageShift < n; p++ {
		s.page(p)
	}
}

func (m *SeqMeter) stream(id uint16) *seqStream {
	if int(id) >= MaxStreams {
		return nil
	}
	if int(id) >= len(m.streams) {
		m.streams = append(m.streams, make([]*seqStream, int(id)+1-len(m.streams))...)
	}
	s := m.streams[id]
	if s == nil {
		s = &seqStream{}
		m.streams[id] = s
	}
	return s
}

func (s *seqStream) page(p uint64) []uint64 {
	if p >= uint64(len(s.pages)) {
		s.pages = append(s.pages, make([][]uint64, p+1-uint64(len(s.pages)))...)
	}
	pg := s.pages[p]
	if pg == nil {
		pg = make([]uint64, pageWords)
		s.pages[p] = pg
	}
	return pg
}

// Add marks the wide sequence number at the start of a payload. A new
// number in the page of the last one is marked here without looking up its
// stream and page; everything else (a duplicate, another page, a short
// payload) goes through Mark.
func (m *SeqMeter) Add(payload []byte) {
	if len(payload) >= 8 {
		off := binary.BigEndian.Uint64(payload) - m.base
		if w := off >> 6; w < uint64(len(m.cur)) {
			if bit := uint64(1) << (off & 63); m.cur[w]&bit == 0 {
				m.cur[w] |= bit
				m.Received++
				s := m.curS
				s.unique++
				s.highest = max(s.highest, m.base&CounterMask+off)
				return
			}
		}
	}
	m.addSlow(payload)
}

// AddBatch marks the payload of every datagram of a batch, as Add does
// each, and returns the bytes they took on the wire: their frames, or
// their payloads and headers where a receiver has no frame. One call per
// batch: Add is too big to inline, and a call per datagram spills what the
// loop keeps in registers, which costs about as much as the marking.
func (m *SeqMeter) AddBatch(dgs []datapath.Datagram) (wire uint64) {
	cur, base := m.cur, m.base
	for i := range dgs {
		d := &dgs[i]
		wire += WireBytes(d)
		p := d.Payload
		if len(p) >= 8 {
			off := binary.BigEndian.Uint64(p) - base
			if w := off >> 6; w < uint64(len(cur)) {
				if bit := uint64(1) << (off & 63); cur[w]&bit == 0 {
					cur[w] |= bit
					m.Received++
					s := m.curS
					s.unique++
					s.highest = max(s.highest, base&CounterMask+off)
					continue
				}
			}
		}
		m.addSlow(p)
		cur, base = m.cur, m.base // Mark may have moved to another page
	}
	return wire
}

// WireBytes is what d took on the wire: its frame, or its payload with
// the Ethernet, IP and UDP headers of its source's family where a receiver
// has no frame.
func WireBytes(d *datapath.Datagram) uint64 {
	if d.Frame != nil {
		return uint64(len(d.Frame))
	}
	return uint64(len(d.Payload) + HeaderLen(!d.Src.Addr().Is4()))
}

func (m *SeqMeter) addSlow(payload []byte) {
	seq, ok := DecodeWide(payload)
	if !ok {
		m.Received++
		m.Short++
		return
	}
	m.Mark(seq)
}

// Mark marks one wide sequence number (stream id in the top 16 bits).
func (m *SeqMeter) Mark(seq uint64) {
	m.Received++
	id, c := seq>>StreamShift, seq&CounterMask
	if id >= MaxStreams || c >= m.limit {
		m.OutOfRange++
		return
	}
	var s *seqStream
	if int(id) < len(m.streams) && m.streams[id] != nil {
		s = m.streams[id]
	} else {
		s = m.stream(uint16(id))
	}
	p := c >> pageShift
	var pg []uint64
	if p < uint64(len(s.pages)) && s.pages[p] != nil {
		pg = s.pages[p]
	} else {
		pg = s.page(p)
	}
	w, bit := (c>>6)&(pageWords-1), uint64(1)<<(c&63)
	if pg[w]&bit != 0 {
		m.Dups++
		return
	}
	pg[w] |= bit
	if s.unique == 0 || c > s.highest {
		s.highest = c
	}
	s.unique++
	if (p+1)<<pageShift <= m.limit {
		m.cur, m.base, m.curS = pg, seq&^(1<<pageShift-1), s
	}
}

// Merge adds o's numbers and counters to m. A number both saw counts as a
// duplicate. o is left unchanged.
func (m *SeqMeter) Merge(o *SeqMeter) {
	m.Received += o.Received
	m.Dups += o.Dups
	m.OutOfRange += o.OutOfRange
	m.Short += o.Short
	for id, os := range o.streams {
		if os == nil || os.unique == 0 {
			continue
		}
		s := m.stream(uint16(id))
		for p, opg := range os.pages {
			if opg == nil {
				continue
			}
			pg := s.page(uint64(p))
			for w, x := range opg {
				both := pg[w] & x
				m.Dups += uint64(bits.OnesCount64(both))
				s.unique += uint64(bits.OnesCount64(x &^ pg[w]))
				pg[w] |= x
			}
		}
		if s.unique > 0 && os.highest > s.highest {
			s.highest = os.highest
		}
	}
}

// StreamCount is what a meter saw of one stream.
type StreamCount struct {
	Stream uint16
	// Unique is the number of distinct counters seen.
	Unique uint64
	// Highest is the highest counter seen. Highest+1-Unique numbers below
	// it are missing; losses after it are invisible without the sender's
	// count.
	Highest uint64
}

// Streams returns the streams seen, by id.
func (m *SeqMeter) Streams() []StreamCount {
	var out []StreamCount
	for id, s := range m.streams {
		if s != nil && s.unique > 0 {
			out = append(out, StreamCount{Stream: uint16(id), Unique: s.unique, Highest: s.highest})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Stream < out[j].Stream })
	return out
}

// Unique is the number of distinct numbers seen over all streams.
func (m *SeqMeter) Unique() uint64 {
	var n uint64
	for _, s := range m.streams {
		if s != nil {
			n += s.unique
		}
	}
	return n
}

// Has reports whether the number was seen.
func (m *SeqMeter) Has(seq uint64) bool {
	id, c := seq>>StreamShift, seq&CounterMask
	if id >= uint64(len(m.streams)) || m.streams[id] == nil || c >= m.limit {
		return false
	}
	s := m.streams[id]
	p := c >> pageShift
	if p >= uint64(len(s.pages)) || s.pages[p] == nil {
		return false
	}
	return s.pages[p][(c>>6)&(pageWords-1)]&(1<<(c&63)) != 0
}

// Loss compares what the meter saw with what the generators say they sent
// (counters 0..sent[stream]-1 of each stream).
type Loss struct {
	Sent uint64
	// Missing counts numbers sent and never seen.
	Missing uint64
	// Unexpected counts numbers seen that no generator claims (another
	// stream, or beyond a stream's count), and OutOfRange and Short
	// payloads.
	Unexpected uint64
	Dups       uint64
}

// Rate is the share of sent numbers that are missing.
func (l Loss) Rate() float64 {
	if l.Sent == 0 {
		return 0
	}
	return float64(l.Missing) / float64(l.Sent)
}

// LossAgainst returns the loss against the counts the generators sent, per
// stream id.
func (m *SeqMeter) LossAgainst(sent map[uint16]uint64) Loss {
	l := Loss{Dups: m.Dups, Unexpected: m.OutOfRange + m.Short}
	seenStreams := map[uint16]bool{}
	for _, sc := range m.Streams() {
		seenStreams[sc.Stream] = true
		n, claimed := sent[sc.Stream]
		if !claimed {
			l.Unexpected += sc.Unique
			continue
		}
		inside := sc.Unique
		if sc.Highest >= n {
			// Count what lies at or beyond n: rare (a generator that
			// miscounted), so walk the bits.
			beyond := m.countFrom(sc.Stream, n)
			inside -= beyond
			l.Unexpected += beyond
		}
		l.Missing += n - min(n, inside)
	}
	for id, n := range sent {
		l.Sent += n
		if !seenStreams[id] {
			l.Missing += n
		}
	}
	return l
}

// countFrom counts the numbers of a stream at or above counter c.
func (m *SeqMeter) countFrom(id uint16, c uint64) uint64 {
	s := m.streams[id]
	var n uint64
	for p, pg := range s.pages {
		if pg == nil {
			continue
		}
		base := uint64(p) << pageShift
		for w, x := range pg {
			lo := base + uint64(w)*64
			switch {
			case lo >= c:
				n += uint64(bits.OnesCount64(x))
			case lo+64 > c:
				n += uint64(bits.OnesCount64(x >> (c - lo)))
			}
		}
	}
	return n
}
