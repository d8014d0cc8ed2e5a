package bench

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Latency stamps: pktbench latency's sender writes a wide sequence number
// and, right after it, the CLOCK_MONOTONIC time at which it hands the
// datagram to the kernel, in nanoseconds as a big-endian uint64. The
// receiver reads its own clock when its receive call hands the datagram
// over and records the difference. Sender and receiver run on one host:
// CLOCK_MONOTONIC is the same clock for every process there.

// StampOffset is where the send time sits in the payload, after the
// sequence number; StampedLen is the shortest payload that holds both.
const (
	StampOffset = 8
	StampedLen  = StampOffset + 8
)

// PutStamp writes the send time ns into p (len(p) >= StampedLen).
func PutStamp(p []byte, ns int64) { binary.BigEndian.PutUint64(p[StampOffset:], uint64(ns)) }

// ReadStamp returns the send time written by PutStamp, and false when p is
// too short to hold one.
func ReadStamp(p []byte) (int64, bool) {
	if len(p) < StampedLen {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(p[StampOffset:])), true
}

// StampTime writes the send time ns into a frame that Stamp made from the
// template, and fixes the UDP checksum for it incrementally (RFC 1624): the
// template's payload is zero where the stamp goes. The payload must hold
// StampedLen bytes.
func (t Template) StampTime(frame []byte, ns int64) {
	off := t.SeqOffset + StampOffset
	c := binary.BigEndian.Uint16(frame[t.CsumOffset:])
	binary.BigEndian.PutUint64(frame[off:], uint64(ns))
	if c == 0 {
		return // IPv4 without a UDP checksum
	}
	// The old words are zero: ~0 adds nothing to a ones-complement sum.
	sum := uint32(^c)
	for i := 0; i < 8; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(frame[off+i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	c = ^uint16(sum)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(frame[t.CsumOffset:], c)
}

// monoAnchor ties the runtime's monotonic clock to CLOCK_MONOTONIC. Go's
// monotonic readings are CLOCK_MONOTONIC (through the vDSO) minus the
// runtime's start, which Go doesn't expose: reading both clocks once, and
// adding time.Since to that reading afterwards, gives CLOCK_MONOTONIC at the
// vDSO's cost rather than a system call's (x/sys's ClockGettime is a real
// syscall). Within the process the offset cancels exactly; against another
// process (bench/cref/xskdrop) it is off by at most MonoAnchorError.
var monoAnchor = sync.OnceValues(func() (time.Time, int64) {
	var best time.Duration = math.MaxInt64
	var at time.Time
	var mono int64
	// The narrowest of a few brackets: a preempted read only widens its
	// own.
	for range 16 {
		var ts unix.Timespec
		t0 := time.Now()
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			panic(fmt.Sprintf("clock_gettime(CLOCK_MONOTONIC): %v", err)) // never fails on Linux
		}
		t1 := time.Now()
		if d := t1.Sub(t0); d < best {
			best, at, mono = d, t0.Add(d/2), ts.Nano()
		}
	}
	monoErr = best / 2
	return at, mono
})

var monoErr time.Duration

// MonoNow returns CLOCK_MONOTONIC in nanoseconds, as clock_gettime gives
// it to any process on the host. It allocates nothing.
func MonoNow() int64 {
	at, mono := monoAnchor()
	return mono + int64(time.Since(at))
}

// MonoAnchorError is how far MonoNow may be from another process's
// clock_gettime(CLOCK_MONOTONIC): half the narrowest bracket of the two
// clock reads that anchored it.
func MonoAnchorError() time.Duration {
	monoAnchor()
	return monoErr
}

// Histogram is a log-linear histogram of non-negative nanosecond values
// with fixed memory: recording allocates nothing and costs a few shifts.
// Values below 2^(HistSubBits+1) ns (256 ns) have a bucket each; above,
// every power of two is split into 2^HistSubBits (128) equal buckets, so
// a bucket is at most 1/128 of its values wide: Quantile is exact to
// within 0.8% of the value (1 ns below 256 ns), and Max and Min are exact.
// Values at or above HistLimit (68.7 s) count in the last bucket. Negative
// values (a stamp from the future: not from this host's clock) are counted
// apart, in Negative.
//
// The zero Histogram is empty and ready. It is not safe for concurrent
// use: a receive loop keeps its own and Merge combines them.
type Histogram struct {
	counts   [HistBuckets]uint64
	n        uint64
	sum      float64
	min, max int64
	// Negative counts values below zero, left out of everything else.
	Negative uint64
}

// The histogram's layout; bench/cref/xskdrop.c computes the same bucket
// indices (hist_index) and prints them for HistogramFromBuckets.
const (
	HistSubBits = 7
	histSub     = 1 << HistSubBits
	histLinear  = 2 * histSub // values below this have a bucket each
	histMaxMag  = 36 - HistSubBits - 1
	// HistLimit is the first value that no longer has a bucket of its own.
	HistLimit = int64(1) << 36
	// HistBuckets is the number of buckets.
	HistBuckets = histLinear + histMaxMag*histSub
)

// HistIndex returns the bucket of v (0 <= v).
func HistIndex(v int64) int {
	if v < histLinear {
		return int(v)
	}
	if v >= HistLimit {
		return HistBuckets - 1
	}
	m := bits.Len64(uint64(v)) - HistSubBits - 1 // 1..histMaxMag
	return histLinear + (m-1)*histSub + int(uint64(v)>>m) - histSub
}

// HistBucketRange returns the smallest and the largest value of bucket i.
func HistBucketRange(i int) (lo, hi int64) {
	if i < histLinear {
		return int64(i), int64(i)
	}
	m := (i-histLinear)/histSub + 1
	sub := int64((i-histLinear)%histSub + histSub)
	lo = sub << m
	return lo, lo + int64(1)<<m - 1
}

// Record adds one value.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		h.Negative++
		return
	}
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
	h.counts[HistIndex(v)]++
}

// Merge adds o's values to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil {
		return
	}
	h.Negative += o.Negative
	if o.n == 0 {
		return
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
	for i, c := range o.counts {
		h.counts[i] += c
	}
}

// Count is the number of values recorded (Negative ones excluded).
func (h *Histogram) Count() uint64 { return h.n }

// Max and Min are the largest and smallest value recorded (0 when empty).
func (h *Histogram) Max() int64 { return h.max }
func (h *Histogram) Min() int64 { return h.min }

// Mean is the values' mean (0 when empty).
func (h *Histogram) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// Quantile returns the value at rank ceil(q*Count) (the nearest-rank
// q-quantile; q=0 gives Min, q=1 Max): the largest value of the bucket
// holding it, but never more than Max nor less than Min. The true value v
// is within [result*128/129, result]. Empty: 0.
func (h *Histogram) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	if q <= 0 {
		return h.min
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			_, hi := HistBucketRange(i)
			return min(max(hi, h.min), h.max)
		}
	}
	return h.max
}

// Buckets calls fn for every bucket that holds values, in order, with the
// bucket's index and count.
func (h *Histogram) Buckets(fn func(i int, count uint64)) {
	for i, c := range h.counts {
		if c > 0 {
			fn(i, c)
		}
	}
}

// AddBucket adds count values to bucket i, as another histogram with the
// same layout (xskdrop's) reported them; min and max are that histogram's
// exact extremes (vmin, vmax), which the buckets alone can't give. Mean then counts each
// value at its bucket's middle.
func (h *Histogram) AddBucket(i int, count uint64, vmin, vmax int64) error {
	if i < 0 || i >= HistBuckets {
		return fmt.Errorf("histogram bucket %d out of range 0..%d", i, HistBuckets-1)
	}
	if count == 0 {
		return nil
	}
	lo, hi := HistBucketRange(i)
	if h.n == 0 || vmin < h.min {
		h.min = vmin
	}
	h.max = max(h.max, vmax)
	h.n += count
	h.sum += float64(count) * (float64(lo) + float64(hi)) / 2
	h.counts[i] += count
	return nil
}

// Pacer schedules datagram i at start + i/rate: a sender asks it how many
// are due, sends them, and asks again. Deadlines are absolute, so the rate
// does not drift with the sender's own delays; a sender that fell behind
// catches up in batches.
type Pacer struct {
	start    time.Time
	interval float64 // ns
	due      uint64  // datagrams handed out so far
}

// pacerSpin is how long before a deadline Wait stops sleeping and watches
// the clock: a nanosleep wakes 50-60 µs late (timer slack and the
// hypervisor's timer), and a datagram must not.
const pacerSpin = 80 * time.Microsecond

// NewPacer starts a schedule of rate datagrams per second now.
func NewPacer(rate float64) *Pacer {
	return &Pacer{start: time.Now(), interval: 1e9 / rate}
}

// Wait returns once datagram number Next is due, with how many are due by
// now (at most limit), or 0 when stop says so first (stop is checked between
// sleeps, at least every millisecond). It sleeps in nanosleep on the
// calling thread until pacerSpin before the deadline, then spins on the
// clock.
func (p *Pacer) Wait(limit int, stop func() bool) int {
	for {
		now := time.Since(p.start)
		at := time.Duration(float64(p.due) * p.interval)
		if left := at - now; left > 0 {
			if stop() {
				return 0
			}
			if left > pacerSpin {
				ts := unix.NsecToTimespec(int64(min(left-pacerSpin, time.Millisecond)))
				unix.Nanosleep(&ts, nil)
			}
			continue
		}
		return int(min(dueBy(now, p.interval, p.due), uint64(limit)))
	}
}

// dueBy is how many datagrams from number due on are due at now, given
// that number due is: at least one, since its deadline is rounded down to
// a whole ns, and now/interval may floor to due-1 when now is that
// deadline (an interval that is no whole number of ns: 7k/s).
func dueBy(now time.Duration, interval float64, due uint64) uint64 {
	return max(uint64(float64(now)/interval)+1, due+1) - due
}

// Sent tells the pacer that n of the datagrams Wait returned went out.
func (p *Pacer) Sent(n int) { p.due += uint64(n) }

// Next is the number of the next datagram.
func (p *Pacer) Next() uint64 { return p.due }
