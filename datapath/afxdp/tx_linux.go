package afxdp

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sending, over the TX and completion rings.
//
// The zero-copy way, for generators: ReserveTx hands out UMEM frames, the
// caller writes frames into them and reslices each to its length, SubmitTx
// gives them to the kernel (and wakes it when the ring's flag asks).
// Completions are reaped by the next ReserveTx, or by Complete. Transmit
// does all of it for frames the caller holds elsewhere, at the cost of a
// copy.
//
// In copy mode the kernel sends only inside sendto(), a budget of frames
// per call (32 by default), and always asks to be woken; a generator that
// keeps the ring full calls Kick (or SubmitTx, which kicks) in its loop.

// ReserveTx reserves up to len(bufs) TX descriptors and free send frames,
// and sets bufs[i], for i < n, to the whole of frame i (FrameSize bytes,
// from the start of its UMEM chunk). It reaps completions first. The
// reservation holds until SubmitTx; a new ReserveTx cancels an unsubmitted
// one.
func (s *Socket) ReserveTx(bufs [][]byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.txUsable(); err != nil {
		return 0, err
	}
	s.cancelTx()
	s.complete()
	want := min(len(bufs), len(s.txFree))
	idx, n := s.tx.reserve(uint32(want))
	free := s.txFree
	top := len(free) - 1
	for i := uint32(0); i < n; i++ {
		h := free[top-int(i)]
		s.tx.at(idx + i).Addr = h
		bufs[i] = s.umem[h : h+s.frameSize : h+s.frameSize]
	}
	s.txFree = free[:len(free)-int(n)]
	s.txResIdx, s.txResN = idx, n
	return int(n), nil
}

// SubmitTx sends the first len(bufs) frames of the pending reservation,
// each len(bufs[i]) bytes long; bufs[i] must still start where ReserveTx
// put it. Reserved frames beyond len(bufs) are cancelled. It wakes the
// kernel when the TX ring asks for it.
func (s *Socket) SubmitTx(bufs [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.txUsable(); err != nil {
		return err
	}
	if len(bufs) > int(s.txResN) {
		return fmt.Errorf("can't submit %d frames on %s queue %d: %d are reserved", len(bufs), s.ifname, s.queue, s.txResN)
	}
	for i, b := range bufs {
		desc := s.tx.at(s.txResIdx + uint32(i))
		if len(b) == 0 || len(b) > int(s.frameSize) || unsafe.SliceData(b) != &s.umem[desc.Addr] {
			return fmt.Errorf("can't submit frame %d on %s queue %d: it must be a non-empty prefix of the buffer ReserveTx returned", i, s.ifname, s.queue)
		}
		desc.Len = uint32(len(b))
		desc.Options = 0
	}
	n := uint32(len(bufs))
	s.txResN -= n
	s.txResIdx += n
	s.cancelTx()
	s.tx.submit()
	s.txInFlight += int(n)
	s.txPackets.Add(uint64(n))
	if s.tx.needsWakeup() {
		return s.kickAll()
	}
	return nil
}

// kickAll wakes the kernel until it has taken everything from the TX ring
// or stops making progress (device queue full, or a zero-copy driver that
// sends from its own NAPI): in copy mode one sendto sends only a budget of
// frames, and a frame left in the ring would wait for the next call.
func (s *Socket) kickAll() error {
	for {
		before := atomic.LoadUint32(s.tx.consumer)
		if before == s.tx.cachedProd {
			return nil
		}
		if err := s.kick(); err != nil {
			return err
		}
		if atomic.LoadUint32(s.tx.consumer) == before {
			return nil
		}
	}
}

// FlushTx wakes the kernel and reaps completions until every submitted
// frame has completed, or timeout passes (an error saying how many are
// left). Generators call it at the end of a run.
func (s *Socket) FlushTx(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		if err := s.txUsable(); err != nil {
			s.mu.Unlock()
			return err
		}
		err := s.kickAll()
		s.complete()
		left := s.txInFlight
		s.mu.Unlock()
		if err != nil {
			return err
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("can't flush the TX ring of %s queue %d: %d frames still in flight after %v", s.ifname, s.queue, left, timeout)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// cancelTx takes back the unsubmitted reservation, which is always at the
// end of what was reserved from the ring.
func (s *Socket) cancelTx() {
	if s.txResN == 0 {
		return
	}
	for i := s.txResN; i > 0; i-- {
		s.txFree = append(s.txFree, s.tx.at(s.txResIdx+i-1).Addr)
	}
	s.tx.cancel(s.txResN)
	s.txResN = 0
}

// Transmit copies frames into free send frames and submits them; it
// returns how many it queued, which is fewer than len(frames) when the TX
// ring or the send frames run out (call again after the kernel catches up).
func (s *Socket) Transmit(frames [][]byte) (int, error) {
	want := min(len(frames), len(s.txScratch))
	n, err := s.ReserveTx(s.txScratch[:want])
	if err != nil {
		return 0, err
	}
	bufs := s.txScratch[:n]
	for i := range bufs {
		if len(frames[i]) > len(bufs[i]) {
			s.mu.Lock()
			s.cancelTx()
			s.mu.Unlock()
			return 0, fmt.Errorf("can't send a %d-byte frame on %s queue %d: frames are at most %d bytes", len(frames[i]), s.ifname, s.queue, len(bufs[i]))
		}
		bufs[i] = bufs[i][:copy(bufs[i], frames[i])]
	}
	return n, s.SubmitTx(bufs)
}

// Complete reaps the completion ring and returns how many sent frames came
// back.
func (s *Socket) Complete() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.txUsable(); err != nil {
		return 0, err
	}
	return s.complete(), nil
}

func (s *Socket) complete() int {
	idx, n := s.comp.peek(s.comp.size)
	if n == 0 {
		return 0
	}
	mask := s.frameSize - 1
	for i := uint32(0); i < n; i++ {
		s.txFree = append(s.txFree, *s.comp.at(idx + i)&^mask)
	}
	s.comp.release()
	s.txInFlight -= int(n)
	s.txCompleted.Add(uint64(n))
	return int(n)
}

// TxInFlight is the number of frames submitted and not yet completed.
func (s *Socket) TxInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.txInFlight
}

// Kick wakes the kernel to send what the TX ring holds. In copy mode each
// call sends a budget of frames; errors that mean "busy, try again" are not
// errors.
func (s *Socket) Kick() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.txUsable(); err != nil {
		return err
	}
	return s.kickAll()
}

func (s *Socket) kick() error {
	s.kicks.Add(1)
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.res.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	switch e {
	case 0, unix.EAGAIN, unix.EBUSY, unix.ENOBUFS, unix.ENETDOWN:
		return nil
	}
	return fmt.Errorf("can't wake the kernel to send on %s queue %d: %w", s.ifname, s.queue, e)
}

func (s *Socket) txUsable() error {
	if s.closed.Load() {
		return net.ErrClosed
	}
	if s.tx.entries == nil {
		return errNoTx
	}
	return nil
}

var errNoTx = errors.New("the AF_XDP socket has no TX ring: set TxRingSize or TxOnly")
