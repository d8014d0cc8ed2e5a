package afxdp

import (
	"sync/atomic"
)

// The ring protocol, as in xdp-tools' xsk.h.
//
// Each ring is a power-of-two array of entries shared with the kernel, with
// a producer index, a consumer index and a flags word. Indices are free-running
// uint32s: they only grow, wrap at 2^32, and an entry's slot is index & mask.
// Every difference is taken in uint32 arithmetic, which stays right across
// the wrap as long as the ring holds at most 2^31 entries.
//
// The side that produces owns the producer index and only reads the consumer
// index; the other side the reverse. The peer's index is loaded with acquire
// semantics (so that the entries it covers are visible) and ours is
// published with release semantics (so that the entries we wrote are visible
// before the index says so). Go's sync/atomic is sequentially consistent,
// which is stronger than both. Each side caches both indices locally and
// touches the shared ones only when the cache runs out, and once per batch.

// ringHeader is the part common to both roles.
type ringHeader struct {
	producer *uint32 // shared with the kernel
	consumer *uint32 // shared with the kernel
	flags    *uint32 // shared with the kernel: XDP_RING_NEED_WAKEUP
	mask     uint32
	size     uint32

	// cachedProd and cachedCons are this side's copies of the indices.
	// On a producer ring, cachedCons is kept size ahead of the real
	// consumer index, so that free space is cachedCons - cachedProd without
	// an addition on the common path (xsk.h does the same).
	cachedProd uint32
	cachedCons uint32
}

// needsWakeup reports whether the kernel asked, through the ring's flags,
// to be woken up by a syscall before it processes this ring again.
func (r *ringHeader) needsWakeup() bool {
	return atomic.LoadUint32(r.flags)&xdpRingNeedWakeup != 0
}

// xdpRingNeedWakeup is unix.XDP_RING_NEED_WAKEUP, here so that ring.go
// builds without x/sys on any platform (the tests run it on fake memory).
const xdpRingNeedWakeup = 1

// prodRing is a ring this side produces into: the fill ring (entries are
// UMEM addresses) and the TX ring (entries are descriptors).
type prodRing[T any] struct {
	ringHeader
	entries []T // len == size
}

// consRing is a ring this side consumes from: the RX ring (descriptors) and
// the completion ring (addresses).
type consRing[T any] struct {
	ringHeader
	entries []T // len == size
}

// newHeader describes a ring over shared words. size must be a power of two
// and len(entries) == size; the caller checks.
func newHeader(producer, consumer, flags *uint32, size uint32) ringHeader {
	return ringHeader{producer: producer, consumer: consumer, flags: flags, mask: size - 1, size: size}
}

func newProdRing[T any](producer, consumer, flags *uint32, entries []T) prodRing[T] {
	r := prodRing[T]{ringHeader: newHeader(producer, consumer, flags, uint32(len(entries))), entries: entries}
	r.cachedProd = atomic.LoadUint32(producer)
	r.cachedCons = atomic.LoadUint32(consumer) + r.size
	return r
}

func newConsRing[T any](producer, consumer, flags *uint32, entries []T) consRing[T] {
	r := consRing[T]{ringHeader: newHeader(producer, consumer, flags, uint32(len(entries))), entries: entries}
	r.cachedProd = atomic.LoadUint32(producer)
	r.cachedCons = atomic.LoadUint32(consumer)
	return r
}

// free returns the number of entries that can be produced, looking at the
// shared consumer index only when the cache shows fewer than want.
func (r *prodRing[T]) free(want uint32) uint32 {
	n := r.cachedCons - r.cachedProd
	if n >= want {
		return n
	}
	r.cachedCons = atomic.LoadUint32(r.consumer) + r.size
	return r.cachedCons - r.cachedProd
}

// reserve claims up to want entries for writing and returns the index of
// the first and how many it got (possibly 0). The entries are
// r.entries[(idx+i)&r.mask] for i < n; they become the kernel's on submit.
func (r *prodRing[T]) reserve(want uint32) (idx, n uint32) {
	n = min(r.free(want), want)
	idx = r.cachedProd
	r.cachedProd += n
	return idx, n
}

// cancel gives back the last n reserved entries, which were not written.
func (r *prodRing[T]) cancel(n uint32) { r.cachedProd -= n }

// submit publishes every reserved entry to the kernel.
func (r *prodRing[T]) submit() { atomic.StoreUint32(r.producer, r.cachedProd) }

// at returns the entry for index idx.
func (r *prodRing[T]) at(idx uint32) *T { return &r.entries[idx&r.mask] }

// avail returns the number of entries ready to consume, at most want,
// looking at the shared producer index only when the cache is empty.
func (r *consRing[T]) avail(want uint32) uint32 {
	n := r.cachedProd - r.cachedCons
	if n == 0 {
		r.cachedProd = atomic.LoadUint32(r.producer)
		n = r.cachedProd - r.cachedCons
	}
	return min(n, want)
}

// peek claims up to want entries for reading and returns the index of the
// first and how many (possibly 0). They stay ours until release.
func (r *consRing[T]) peek(want uint32) (idx, n uint32) {
	n = r.avail(want)
	idx = r.cachedCons
	r.cachedCons += n
	return idx, n
}

// release hands every peeked entry back to the kernel.
func (r *consRing[T]) release() { atomic.StoreUint32(r.consumer, r.cachedCons) }

// at returns the entry for index idx.
func (r *consRing[T]) at(idx uint32) *T { return &r.entries[idx&r.mask] }
