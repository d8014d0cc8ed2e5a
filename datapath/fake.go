package datapath

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Fake is an in-memory Receiver for consumers' tests. It serves datagrams
// from a slice or a channel and keeps the Receiver contract as strictly as the
// real paths do, so that a consumer that breaks it fails its tests:
//
//   - Each delivered datagram is copied into memory the Fake owns, and that
//     memory is overwritten (with 0xEE bytes) when the datagram is released,
//     by Release or by the next Receive. A consumer that reads a payload after
//     handing it back sees the poison, not the data.
//   - A datagram with a Frame is parsed from its (copied) frame with
//     ParseFrame, as the AF_XDP path does; frames the walk refuses are counted
//     in Stats.Malformed and never delivered. A datagram without a Frame is
//     delivered with its Payload and addresses as given.
//   - Queue is set to the Fake's queue, Handle to the Fake's own reference,
//     and RxTime, when zero, to one clock reading per batch.
//   - After Close, Receive returns net.ErrClosed, also when it was blocked.
//
// When the source runs out (the slice is consumed, the channel closed),
// Receive blocks until Close, like a real receiver on an idle link, unless
// AtEnd is set.
//
// Steady-state Receive and Release do not allocate once the Fake's buffers
// have grown to the largest batch and datagram, so consumers can benchmark
// their own loops on it.
type Fake struct {
	// AtEnd, when not nil, is returned by Receive once the source is
	// exhausted, instead of blocking until Close. Tests that want their
	// consumer loop to end by itself set it (to io.EOF, say) before the first
	// Receive.
	AtEnd error

	queue int
	slice []Datagram
	ch    <-chan Datagram

	done      chan struct{}
	closeOnce sync.Once
	drain     chan struct{}
	drainOnce sync.Once

	// Owned by the receiving goroutine.
	bufs [][]byte // per batch slot: the copy of its frame or payload
	live []bool   // per batch slot: delivered and not yet released
	gen  uint64   // the Receive call that filled the slots, part of Handle
	n    int      // slots filled by that call

	outstanding                        atomic.Int64
	packets, bytes, batches, malformed atomic.Uint64
	released                           atomic.Uint64
}

var _ Receiver = (*Fake)(nil)

// fakeSlotBits is how much of a Handle names the batch slot; the rest is
// the generation, so a stale batch released late cannot release the slots
// of a newer one.
const fakeSlotBits = 24

// NewFake returns a Fake for queue that delivers datagrams in order.
func NewFake(queue int, datagrams []Datagram) *Fake {
	return &Fake{queue: queue, slice: datagrams, done: make(chan struct{}), drain: make(chan struct{})}
}

// NewFakeChan returns a Fake for queue that delivers what arrives on ch.
// Closing ch exhausts the source.
func NewFakeChan(queue int, ch <-chan Datagram) *Fake {
	return &Fake{queue: queue, ch: ch, done: make(chan struct{}), drain: make(chan struct{})}
}

// Receive implements Receiver.
func (f *Fake) Receive(batch []Datagram) (int, error) {
	select {
	case <-f.done:
		return 0, net.ErrClosed
	default:
	}
	f.releaseAll()
	if len(batch) == 0 {
		return 0, nil
	}
	if len(batch) >= 1<<fakeSlotBits {
		batch = batch[:1<<fakeSlotBits-1]
	}
	f.grow(len(batch))
	f.gen++
	var now int64
	n := 0
	for n == 0 {
		// Block for the first datagram only; then take what is ready.
		d, ok, err := f.next(true)
		if err != nil {
			return 0, err
		}
		for ok {
			if f.deliver(&batch[n], n, d, &now) {
				n++
				if n == len(batch) {
					break
				}
			}
			d, ok, _ = f.next(false)
		}
	}
	f.n = n
	f.outstanding.Add(int64(n))
	f.batches.Add(1)
	f.packets.Add(uint64(n))
	return n, nil
}

// next returns the next datagram of the source. With wait, it blocks until
// one arrives, the Fake is closed (net.ErrClosed) or the source ends (AtEnd,
// or blocking until Close).
func (f *Fake) next(wait bool) (Datagram, bool, error) {
	if f.ch == nil {
		if len(f.slice) > 0 {
			d := f.slice[0]
			f.slice = f.slice[1:]
			return d, true, nil
		}
		if !wait {
			return Datagram{}, false, nil
		}
		return Datagram{}, false, f.exhausted()
	}
	if !wait {
		select {
		case d, ok := <-f.ch:
			if !ok {
				f.ch = nil
			}
			return d, ok, nil
		default:
			return Datagram{}, false, nil
		}
	}
	select {
	case d, ok := <-f.ch:
		if ok {
			return d, true, nil
		}
		f.ch = nil
		return Datagram{}, false, f.exhausted()
	case <-f.done:
		return Datagram{}, false, net.ErrClosed
	case <-f.drain:
		// Take what is ready; once nothing is, the drain is over.
		select {
		case d, ok := <-f.ch:
			if ok {
				return d, true, nil
			}
			f.ch = nil
		default:
		}
		return Datagram{}, false, io.EOF
	}
}

func (f *Fake) exhausted() error {
	if f.AtEnd != nil {
		return f.AtEnd
	}
	select {
	case <-f.done:
		return net.ErrClosed
	case <-f.drain:
		return io.EOF
	}
}

// Drain implements Receiver: once the source has nothing ready, Receive
// returns io.EOF instead of blocking.
func (f *Fake) Drain() { f.drainOnce.Do(func() { close(f.drain) }) }

// deliver copies d into slot i and describes it in out. It reports false
// when the frame was malformed and nothing was delivered.
func (f *Fake) deliver(out *Datagram, i int, d Datagram, now *int64) bool {
	rx := d.RxTime
	if rx == 0 {
		if *now == 0 {
			*now = time.Now().UnixNano()
		}
		rx = *now
	}
	if d.Frame != nil {
		f.bufs[i] = append(f.bufs[i][:0], d.Frame...)
		fr := f.bufs[i][:len(d.Frame):len(d.Frame)]
		if err := ParseFrame(fr, out); err != nil {
			f.malformed.Add(1)
			poison(f.bufs[i])
			return false
		}
	} else {
		f.bufs[i] = append(f.bufs[i][:0], d.Payload...)
		*out = d
		out.Payload = f.bufs[i][:len(d.Payload):len(d.Payload)]
	}
	out.RxTime = rx
	out.Queue = uint32(f.queue)
	out.Handle = f.gen<<fakeSlotBits | uint64(i)
	f.live[i] = true
	f.bytes.Add(uint64(len(out.Payload)))
	return true
}

func (f *Fake) grow(n int) {
	for len(f.bufs) < n {
		f.bufs = append(f.bufs, nil)
		f.live = append(f.live, false)
	}
}

// Release implements Receiver. Datagrams of an older batch, and datagrams
// released before, are ignored.
func (f *Fake) Release(batch []Datagram) {
	for i := range batch {
		h := batch[i].Handle
		if h>>fakeSlotBits != f.gen {
			continue
		}
		f.release(int(h & (1<<fakeSlotBits - 1)))
	}
}

func (f *Fake) release(slot int) {
	if slot >= f.n || !f.live[slot] {
		return
	}
	f.live[slot] = false
	poison(f.bufs[slot])
	f.outstanding.Add(-1)
	f.released.Add(1)
}

func (f *Fake) releaseAll() {
	for i := 0; i < f.n; i++ {
		f.release(i)
	}
	f.n = 0
}

func poison(b []byte) {
	for i := range b {
		b[i] = 0xEE
	}
}

// Queue implements Receiver.
func (f *Fake) Queue() int { return f.queue }

// Stats implements Receiver.
func (f *Fake) Stats() Stats {
	return Stats{
		Packets:   f.packets.Load(),
		Bytes:     f.bytes.Load(),
		Batches:   f.batches.Load(),
		Malformed: f.malformed.Load(),
	}
}

// Outstanding is the number of delivered datagrams not yet released; safe
// from any goroutine. Consumers' tests check it to see that they hand
// frames back.
func (f *Fake) Outstanding() int { return int(f.outstanding.Load()) }

// Released is the number of datagrams handed back so far, by Release or by
// the next Receive.
func (f *Fake) Released() uint64 { return f.released.Load() }

// Close implements Receiver. It wakes a blocked Receive.
func (f *Fake) Close() error {
	f.closeOnce.Do(func() { close(f.done) })
	return nil
}
