package bench

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// The sequence encodings: how a generator numbers its datagrams so that a
// meter can find every loss and every duplicate.
//
// Wide: payloads of 8 bytes or more start with the sequence number as a
// big-endian uint64 (pktbench's generators, any size from 8 up).
//
// Sized: the correctness tests send every payload size from 1 to SizedSpan,
// which leaves no room for a 64-bit number in the smallest. Datagram i has
// payload size 1 + i%SizedSpan, and its payload holds the round
// r = i/SizedSpan as a little-endian integer truncated to the payload size,
// followed by a filler that depends on i. The receiver recovers
// i = r*SizedSpan + size-1. One-byte payloads limit a run to
// 256*SizedSpan = 376,832 datagrams before numbers repeat; MaxSized says so.

// SizedSpan is the largest UDP payload of a 1500-byte IPv4 frame, and the
// number of distinct sizes in the sized encoding.
const SizedSpan = 1472

// MaxSized is the number of datagrams the sized encoding numbers uniquely.
const MaxSized = 256 * SizedSpan

// SizedLen returns the payload length of datagram i in the sized encoding.
func SizedLen(i uint64) int { return 1 + int(i%SizedSpan) }

// PutSized writes datagram i's sized payload into buf, which must hold
// SizedLen(i) bytes, and returns the payload.
func PutSized(buf []byte, i uint64) []byte {
	n := SizedLen(i)
	p := buf[:n]
	r := i / SizedSpan
	for k := 0; k < n; k++ {
		if k < 8 {
			p[k] = byte(r >> (8 * k))
		} else {
			p[k] = byte(i*31 + uint64(k))
		}
	}
	return p
}

// DecodeSized returns the datagram number of a sized payload, and false when
// the payload is not one PutSized could have written.
func DecodeSized(p []byte) (uint64, bool) {
	n := len(p)
	if n < 1 || n > SizedSpan {
		return 0, false
	}
	var r uint64
	for k := 0; k < n && k < 8; k++ {
		r |= uint64(p[k]) << (8 * k)
	}
	i := r*SizedSpan + uint64(n-1)
	for k := 8; k < n; k++ {
		if p[k] != byte(i*31+uint64(k)) {
			return 0, false
		}
	}
	return i, true
}

// PutWide writes seq into the first 8 bytes of p (len(p) >= 8).
func PutWide(p []byte, seq uint64) { binary.BigEndian.PutUint64(p, seq) }

// DecodeWide reads the sequence number at the start of p.
func DecodeWide(p []byte) (uint64, bool) {
	if len(p) < 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(p), true
}

// Tracker records which of n sequence numbers arrived, and how often. It is
// safe for concurrent use; Mark takes a lock, so it belongs in tests and
// meters, not in a receive loop that is being measured.
type Tracker struct {
	mu     sync.Mutex
	seen   []uint8 // count per number, saturating at 255
	dups   uint64
	bad    uint64 // numbers out of range or undecodable payloads
	unique uint64
}

// NewTracker tracks numbers 0..n-1.
func NewTracker(n int) *Tracker { return &Tracker{seen: make([]uint8, n)} }

// Mark records one arrival of seq; ok=false records an undecodable payload.
func (t *Tracker) Mark(seq uint64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !ok || seq >= uint64(len(t.seen)) {
		t.bad++
		return
	}
	switch c := t.seen[seq]; {
	case c == 0:
		t.unique++
	default:
		t.dups++
	}
	if t.seen[seq] < 255 {
		t.seen[seq]++
	}
}

// Unique is the number of distinct sequence numbers seen.
func (t *Tracker) Unique() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.unique
}

// Counts returns the numbers tracked, how many of them arrived, the
// duplicates, and the arrivals that were undecodable or out of range.
func (t *Tracker) Counts() (n, unique, dups, bad uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return uint64(len(t.seen)), t.unique, t.dups, t.bad
}

// Check returns nil when every number arrived exactly once and nothing else
// arrived, else an error that counts the missing, the duplicates and the
// rest, and names the first few missing numbers.
func (t *Tracker) Check() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	missing := uint64(len(t.seen)) - t.unique
	if missing == 0 && t.dups == 0 && t.bad == 0 {
		return nil
	}
	var first []int
	for i, c := range t.seen {
		if c == 0 && len(first) < 8 {
			first = append(first, i)
		}
	}
	return fmt.Errorf("of %d datagrams: %d missing (first %v), %d duplicates, %d undecodable or out of range",
		len(t.seen), missing, first, t.dups, t.bad)
}
