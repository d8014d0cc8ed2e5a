package afxdp

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeShared stands in for the mmapped part of a ring: the three shared
// words and the entries, in plain Go memory.
type fakeShared[T any] struct {
	prod, cons, flags uint32
	entries           []T
}

func newFakeShared[T any](size int, start uint32) *fakeShared[T] {
	return &fakeShared[T]{prod: start, cons: start, entries: make([]T, size)}
}

// The kernel's side of a ring we produce into: it consumes.
func (s *fakeShared[T]) kernelConsume(max uint32) []T {
	p := atomic.LoadUint32(&s.prod)
	c := s.cons
	n := min(p-c, max)
	out := make([]T, 0, n)
	for i := uint32(0); i < n; i++ {
		out = append(out, s.entries[(c+i)&uint32(len(s.entries)-1)])
	}
	atomic.StoreUint32(&s.cons, c+n)
	return out
}

// The kernel's side of a ring we consume from: it produces, as much as fits.
func (s *fakeShared[T]) kernelProduce(vals []T) int {
	c := atomic.LoadUint32(&s.cons)
	p := s.prod
	n := min(uint32(len(s.entries))-(p-c), uint32(len(vals)))
	for i := uint32(0); i < n; i++ {
		s.entries[(p+i)&uint32(len(s.entries)-1)] = vals[i]
	}
	atomic.StoreUint32(&s.prod, p+n)
	return int(n)
}

// Starting points for the indices: zero, and just before the wrap at 2^32 so
// that every test crosses it.
var starts = []uint32{0, math.MaxUint32 - 5, math.MaxUint32, 1 << 31}

func TestProdRingFullAndEmpty(t *testing.T) {
	for _, start := range starts {
		s := newFakeShared[uint64](8, start)
		r := newProdRing(&s.prod, &s.cons, &s.flags, s.entries)
		if got := r.free(1); got != 8 {
			t.Fatalf("start %#x: free %d on an empty ring, want 8", start, got)
		}
		idx, n := r.reserve(10)
		if n != 8 || idx != start {
			t.Fatalf("start %#x: reserve(10) = %#x, %d; want %#x, 8", start, idx, n, start)
		}
		for i := uint32(0); i < n; i++ {
			*r.at(idx + i) = uint64(100 + i)
		}
		if atomic.LoadUint32(&s.prod) != start {
			t.Fatal("producer index moved before submit")
		}
		r.submit()
		if _, n := r.reserve(1); n != 0 {
			t.Fatalf("start %#x: reserved %d on a full ring", start, n)
		}
		got := s.kernelConsume(3)
		for i, v := range got {
			if v != uint64(100+i) {
				t.Fatalf("kernel read %d at %d, want %d", v, i, 100+i)
			}
		}
		idx, n = r.reserve(5)
		if n != 3 || idx != start+8 {
			t.Fatalf("start %#x: after 3 consumed, reserve(5) = %#x, %d; want %#x, 3", start, idx, n, start+8)
		}
		// Cancel one, submit two.
		*r.at(idx) = 200
		*r.at(idx + 1) = 201
		r.cancel(1)
		r.submit()
		if p := atomic.LoadUint32(&s.prod); p != start+10 {
			t.Fatalf("producer %#x after submitting 10, want %#x", p, start+10)
		}
		got = s.kernelConsume(100)
		want := []uint64{103, 104, 105, 106, 107, 200, 201}
		if len(got) != len(want) {
			t.Fatalf("kernel read %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("kernel read %v, want %v", got, want)
			}
		}
		if got := r.free(8); got != 8 {
			t.Fatalf("free %d on a drained ring, want 8", got)
		}
	}
}

func TestConsRingFullAndEmpty(t *testing.T) {
	for _, start := range starts {
		s := newFakeShared[uint64](8, start)
		r := newConsRing(&s.prod, &s.cons, &s.flags, s.entries)
		if _, n := r.peek(4); n != 0 {
			t.Fatalf("peeked %d on an empty ring", n)
		}
		if s.kernelProduce([]uint64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) != 8 {
			t.Fatal("fake kernel overfilled")
		}
		idx, n := r.peek(3)
		if n != 3 || idx != start {
			t.Fatalf("peek(3) = %#x, %d; want %#x, 3", idx, n, start)
		}
		// The kernel can't produce into a ring we haven't released.
		if s.kernelProduce([]uint64{99}) != 0 {
			t.Fatal("kernel produced into a full ring")
		}
		r.release()
		if s.kernelProduce([]uint64{8, 9, 10, 11}) != 3 {
			t.Fatal("kernel could not produce into 3 released slots")
		}
		var got []uint64
		for {
			idx, n := r.peek(4)
			if n == 0 {
				break
			}
			for i := uint32(0); i < n; i++ {
				got = append(got, *r.at(idx + i))
			}
		}
		r.release()
		for i, v := range got {
			if v != uint64(3+i) {
				t.Fatalf("start %#x: consumed %v, want 3..10", start, got)
			}
		}
		if len(got) != 8 {
			t.Fatalf("consumed %v, want 3..10", got)
		}
		if c := atomic.LoadUint32(&s.cons); c != start+11 {
			t.Fatalf("consumer %#x, want %#x", c, start+11)
		}
	}
}

func TestNeedsWakeup(t *testing.T) {
	s := newFakeShared[uint64](4, 0)
	r := newProdRing(&s.prod, &s.cons, &s.flags, s.entries)
	if r.needsWakeup() {
		t.Fatal("needs wakeup with flags 0")
	}
	atomic.StoreUint32(&s.flags, xdpRingNeedWakeup)
	if !r.needsWakeup() {
		t.Fatal("no wakeup with XDP_RING_NEED_WAKEUP set")
	}
}

// A producer and a consumer running concurrently over the 2^32 wrap, one of
// them the fake kernel: every value arrives once, in order. Run with -race:
// the entries are plain memory published by the index stores.
func TestRingConcurrentWrap(t *testing.T) {
	const total = 200_000
	for _, size := range []int{1, 2, 64} {
		start := uint32(math.MaxUint32 - total/2)
		// We produce (fill ring), the kernel consumes.
		s := newFakeShared[uint64](size, start)
		p := newProdRing(&s.prod, &s.cons, &s.flags, s.entries)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := uint64(0)
			for next < total {
				for _, v := range s.kernelConsume(uint32(rand.IntN(size) + 1)) {
					if v != next {
						t.Errorf("kernel got %d, want %d", v, next)
						return
					}
					next++
				}
			}
		}()
		for v := uint64(0); v < total; {
			idx, n := p.reserve(uint32(rand.IntN(size) + 1))
			for i := uint32(0); i < n && v < total; i++ {
				*p.at(idx + i) = v
				v++
			}
			if v == total {
				// Cancel what the last reservation did not need.
				p.cancel(p.cachedProd - (start + uint32(v)))
			}
			p.submit()
		}
		wg.Wait()

		// The kernel produces (RX ring), we consume.
		s2 := newFakeShared[uint64](size, start)
		c := newConsRing(&s2.prod, &s2.cons, &s2.flags, s2.entries)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]uint64, 0, size)
			for v := uint64(0); v < total; {
				buf = buf[:0]
				for i := 0; i < rand.IntN(size)+1 && v+uint64(len(buf)) < total; i++ {
					buf = append(buf, v+uint64(len(buf)))
				}
				v += uint64(s2.kernelProduce(buf))
			}
		}()
		for next := uint64(0); next < total; {
			idx, n := c.peek(uint32(rand.IntN(size) + 1))
			for i := uint32(0); i < n; i++ {
				if v := *c.at(idx + i); v != next {
					t.Fatalf("size %d: consumed %d, want %d", size, v, next)
				}
				next++
			}
			c.release()
		}
		wg.Wait()
		if got := atomic.LoadUint32(&s2.cons); got != start+total {
			t.Fatalf("consumer index %#x after %d, want %#x (wrapped)", got, total, start+total)
		}
	}
}
