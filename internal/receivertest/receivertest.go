// Package receivertest checks a datapath.Receiver against the contract
// written on that interface: batches, Release in any order, Drain to
// io.EOF, Close while blocked or under traffic, no allocation in steady
// state, every datagram exactly once. The Fake, the AF_XDP socket and the
// kernel path's Receiver run it from their tests; only tests import it.
package receivertest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/goleak"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// Harness is one receiver under test, opened for one subtest, and the means
// to send it datagrams.
type Harness struct {
	// Receiver is the receiver under test. The suite closes it; the
	// harness may close it again in its cleanup.
	Receiver datapath.Receiver
	// Send sends one datagram per payload to the receiver, in order, and
	// returns once they are on their way, without waiting for the receiver
	// to read them. The suite calls it from one goroutine at a time and
	// never has more than Capacity datagrams unread, except while it closes
	// the receiver under traffic (where it ignores Send's errors).
	Send func(payloads [][]byte) error
	// Settle returns once the path holds every datagram sent so far (in
	// its ring, socket buffers or channel): nothing is in flight, so a
	// Drain delivers them all. nil when Send already leaves them there.
	Settle func() error
	// Capacity is how many datagrams the path holds, those the caller holds
	// included, without losing one. At least 16.
	Capacity int
	// MaxPayload is the largest payload the path carries; the suite sends
	// every size from 1 to it.
	MaxPayload int
	// Src and Dst are the addresses and ports every datagram must carry.
	Src, Dst netip.AddrPort
	// Frames says whether datagrams carry their link-layer frame.
	Frames bool
	// FDs is how many file descriptors the receiver holds; Close must give
	// them all back.
	FDs int
}

// Timeouts. "Promptly" in the contract is well under closeWithin; the
// rest only bound a test that would otherwise hang.
const (
	closeWithin = time.Second
	drainWithin = 2 * time.Second
	// blockFor is how long a Receive on an idle path must stay blocked to
	// count as blocked.
	blockFor = 50 * time.Millisecond
	// stallAfter is how long the suite waits for datagrams it sent.
	stallAfter = 10 * time.Second
)

// Run runs the suite. open is called at the start of each subtest and
// returns a freshly opened receiver with nothing sent to it yet.
func Run(t *testing.T, open func(t *testing.T) Harness) {
	t.Helper()
	// Close under traffic runs last: its sender may leave datagrams in
	// flight towards the next receiver of the same path.
	for _, c := range []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"Batches", testBatches},
		{"ExactlyOnce", testExactlyOnce},
		{"HeldUntilRelease", testHeldUntilRelease},
		{"NoAllocs", testNoAllocs},
		{"DrainQueued", testDrainQueued},
		{"DrainWakesReceive", testDrainWakesReceive},
		{"CloseWhileBlocked", testCloseWhileBlocked},
		{"CloseUnderTraffic", testCloseUnderTraffic},
	} {
		t.Run(c.name, func(t *testing.T) {
			ignore := goleak.IgnoreCurrent()
			s := newSuite(t, open(t))
			c.fn(t, s)
			if c.name == "CloseWhileBlocked" {
				goleak.VerifyNone(t, ignore)
			}
		})
	}
}

// suite is one subtest's receiver and what the subtest sent it.
type suite struct {
	h     Harness
	r     datapath.Receiver
	span  int       // payload sizes are 1..span
	start time.Time // for RxTime
	next  uint64    // the next datagram number to send
	buf   []byte
}

func newSuite(t *testing.T, h Harness) *suite {
	t.Helper()
	switch {
	case h.Receiver == nil || h.Send == nil:
		t.Fatal("receivertest: the harness has no Receiver or no Send")
	case h.Capacity < 16:
		t.Fatalf("receivertest: Capacity %d: the suite needs at least 16", h.Capacity)
	case h.MaxPayload < 1:
		t.Fatalf("receivertest: MaxPayload %d", h.MaxPayload)
	}
	t.Cleanup(func() { h.Receiver.Close() })
	return &suite{h: h, r: h.Receiver, span: h.MaxPayload, start: time.Now(), buf: make([]byte, h.MaxPayload)}
}

// The payloads: datagram i has size 1 + i%span; its first bytes hold the
// round i/span, little-endian, as far as the size allows (the smallest
// sizes limit a run to 256 rounds), the rest a filler that depends on i.
// Any byte changed after delivery shows as an undecodable payload.

func (s *suite) payload(i uint64) []byte {
	n := 1 + int(i%uint64(s.span))
	p := s.buf[:n]
	r := i / uint64(s.span)
	for k := range p {
		if k < 8 {
			p[k] = byte(r >> (8 * k))
		} else {
			p[k] = byte(i*31 + uint64(k))
		}
	}
	return p
}

func (s *suite) decode(p []byte) (uint64, bool) {
	if len(p) < 1 || len(p) > s.span {
		return 0, false
	}
	var r uint64
	for k := 0; k < len(p) && k < 8; k++ {
		r |= uint64(p[k]) << (8 * k)
	}
	i := r*uint64(s.span) + uint64(len(p)-1)
	for k := 8; k < len(p); k++ {
		if p[k] != byte(i*31+uint64(k)) {
			return 0, false
		}
	}
	return i, true
}

// send sends the next n datagrams.
func (s *suite) send(t *testing.T, n int) {
	t.Helper()
	ps := make([][]byte, n)
	for k := range ps {
		ps[k] = bytes.Clone(s.payload(s.next))
		s.next++
	}
	if err := s.h.Send(ps); err != nil {
		t.Fatalf("send %d datagrams: %v", n, err)
	}
}

func (s *suite) settle(t *testing.T) {
	t.Helper()
	if s.h.Settle == nil {
		return
	}
	if err := s.h.Settle(); err != nil {
		t.Fatalf("waiting for the path to hold what was sent: %v", err)
	}
}

// check checks one delivered datagram and returns its number.
func (s *suite) check(t *testing.T, d *datapath.Datagram) (uint64, bool) {
	t.Helper()
	seq, ok := s.decode(d.Payload)
	if !ok {
		t.Errorf("a payload of %d bytes that was never sent (or was overwritten): % x", len(d.Payload), d.Payload[:min(len(d.Payload), 16)])
	}
	now := time.Now()
	switch {
	case d.Src != s.h.Src || d.Dst != s.h.Dst:
		t.Errorf("datagram %d: %v -> %v, want %v -> %v", seq, d.Src, d.Dst, s.h.Src, s.h.Dst)
	case d.Queue != uint32(s.r.Queue()):
		t.Errorf("datagram %d: queue %d from the receiver of queue %d", seq, d.Queue, s.r.Queue())
	case d.RxTime < s.start.Add(-time.Second).UnixNano() || d.RxTime > now.Add(time.Second).UnixNano():
		t.Errorf("datagram %d: receive time %v, outside the test's run (%v to %v)", seq, time.Unix(0, d.RxTime), s.start, now)
	case d.NVLAN != 0:
		t.Errorf("datagram %d: %d VLAN tags, none sent", seq, d.NVLAN)
	case s.h.Frames && !within(d.Payload, d.Frame):
		t.Errorf("datagram %d: the payload is not inside the frame (%d-byte frame)", seq, len(d.Frame))
	case !s.h.Frames && d.Frame != nil:
		t.Errorf("datagram %d: a %d-byte frame on a path without frames", seq, len(d.Frame))
	}
	return seq, ok
}

// within reports whether p lies inside f.
func within(p, f []byte) bool {
	if len(p) == 0 || len(f) == 0 {
		return false
	}
	pa, fa := uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(unsafe.Pointer(unsafe.SliceData(f)))
	return pa >= fa && pa+uintptr(len(p)) <= fa+uintptr(len(f))
}

// guard closes the receiver if the returned stop is not called within d,
// so that a Receive waiting for datagrams that never come returns; stop
// reports whether the guard fired.
func (s *suite) guard(d time.Duration) (stop func() bool) {
	var fired atomic.Bool
	tm := time.AfterFunc(d, func() {
		fired.Store(true)
		s.r.Close()
	})
	return func() bool {
		tm.Stop()
		return fired.Load()
	}
}

// receive calls Receive with batch until want datagrams arrived, passing
// each to each and each batch to after (which releases it, or not). It
// returns the number of Receive calls.
func (s *suite) receive(t *testing.T, want int, batch func(call int) []datapath.Datagram, each func(*datapath.Datagram), after func(call int, b []datapath.Datagram)) int {
	t.Helper()
	stop := s.guard(stallAfter)
	defer stop()
	got, calls := 0, 0
	for got < want {
		b := batch(calls)
		n, err := s.r.Receive(b)
		if err != nil {
			if stop() {
				t.Fatalf("%d of %d datagrams arrived in %v", got, want, stallAfter)
			}
			t.Fatalf("Receive after %d of %d datagrams: %v", got, want, err)
		}
		if n <= 0 || n > len(b) {
			t.Fatalf("Receive returned %d datagrams into a batch of %d, with no error", n, len(b))
		}
		for i := range b[:n] {
			each(&b[i])
		}
		got += n
		if after != nil {
			after(calls, b[:n])
		}
		calls++
	}
	if got != want {
		t.Errorf("%d datagrams arrived, %d sent", got, want)
	}
	return calls
}

// Receive fills batch[0:n] with 0 < n <= len(batch) datagrams, writes
// nothing beyond len(batch), describes each datagram as it was sent, and
// counts what it delivered in Stats.
func testBatches(t *testing.T, s *suite) {
	k := min(s.h.Capacity/2, 200)
	s.send(t, k)
	sizes := []int{1, 2, 3, 5, 8, 64}
	backing := make([]datapath.Datagram, 128)
	sentinel := datapath.Datagram{Handle: 0xfeedface, RxTime: -1}
	tr := bench.NewTracker(k)
	var bytes uint64
	calls := s.receive(t, k,
		func(call int) []datapath.Datagram {
			b := backing[:sizes[call%len(sizes)]]
			for i := len(b); i < len(backing); i++ {
				backing[i] = sentinel
			}
			return b
		},
		func(d *datapath.Datagram) {
			tr.Mark(s.check(t, d))
			bytes += uint64(len(d.Payload))
		},
		func(call int, b []datapath.Datagram) {
			size := sizes[call%len(sizes)]
			for i := size; i < len(backing); i++ {
				if backing[i].Handle != sentinel.Handle || backing[i].RxTime != sentinel.RxTime {
					t.Fatalf("Receive into a batch of %d wrote element %d of the array behind it", size, i)
				}
			}
			s.r.Release(b)
		})
	if err := tr.Check(); err != nil {
		t.Error(err)
	}
	st := s.r.Stats()
	if st.Packets != uint64(k) || st.Bytes != bytes || st.Batches != uint64(calls) || st.Malformed != 0 {
		t.Errorf("stats %+v, want %d packets, %d bytes in %d batches, none malformed", st, k, bytes, calls)
	}
}

// releases are the ways the suite hands a batch back: not at all (the
// next Receive does), whole, whole twice, one at a time backwards, second
// half first, every other one (the next Receive takes the rest).
var releases = []struct {
	name string
	fn   func(r datapath.Receiver, b []datapath.Datagram)
}{
	{"none", func(datapath.Receiver, []datapath.Datagram) {}},
	{"whole", func(r datapath.Receiver, b []datapath.Datagram) { r.Release(b) }},
	{"twice", func(r datapath.Receiver, b []datapath.Datagram) { r.Release(b); r.Release(b) }},
	{"backwards", func(r datapath.Receiver, b []datapath.Datagram) {
		for i := len(b) - 1; i >= 0; i-- {
			r.Release(b[i : i+1])
		}
	}},
	{"halves", func(r datapath.Receiver, b []datapath.Datagram) {
		r.Release(b[len(b)/2:])
		r.Release(b[:len(b)/2])
	}},
	{"every other", func(r datapath.Receiver, b []datapath.Datagram) {
		for i := 0; i < len(b); i += 2 {
			r.Release(b[i : i+1])
		}
	}},
}

// Many times the path's capacity, in rounds of half of it, with batches of
// every size and every way of releasing: each datagram arrives once,
// intact; a frame not given back would starve the path. Stats is read
// from another goroutine meanwhile.
func testExactlyOnce(t *testing.T, s *suite) {
	count := min(max(40*s.h.Capacity, 2000), 20_000)
	round := s.h.Capacity / 2
	tr := bench.NewTracker(count)
	var bytes uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
				s.r.Stats()
			}
		}
	}()
	defer func() { close(done); wg.Wait() }()
	sizes := []int{1, 7, 64, s.h.Capacity}
	batch := make([]datapath.Datagram, s.h.Capacity)
	calls := 0
	for sent := 0; sent < count; {
		k := min(round, count-sent)
		s.send(t, k)
		sent += k
		s.receive(t, k,
			func(int) []datapath.Datagram { return batch[:sizes[calls%len(sizes)]] },
			func(d *datapath.Datagram) {
				tr.Mark(s.check(t, d))
				bytes += uint64(len(d.Payload))
			},
			func(_ int, b []datapath.Datagram) {
				releases[calls%len(releases)].fn(s.r, b)
				calls++
			})
		if t.Failed() {
			t.FailNow()
		}
	}
	if err := tr.Check(); err != nil {
		t.Error(err)
	}
	st := s.r.Stats()
	if st.Packets != uint64(count) || st.Bytes != bytes || st.Malformed != 0 || st.SocketOverflows != 0 || st.XDP != (datapath.XDPStatistics{}) {
		t.Errorf("stats %+v, want %d packets, %d bytes, no losses", st, count, bytes)
	}
}

// A batch the caller holds is not overwritten while the path fills up
// behind it, nor are the datagrams of it not yet released when the rest
// is; released, its frames serve again.
func testHeldUntilRelease(t *testing.T, s *suite) {
	hold := min(32, s.h.Capacity/4)
	s.send(t, hold)
	s.settle(t)
	batch := make([]datapath.Datagram, hold)
	stop := s.guard(stallAfter)
	n, err := s.r.Receive(batch)
	if stop() || err != nil {
		t.Fatalf("Receive with %d datagrams sent: %v", hold, err)
	}
	held := batch[:n]
	tr := bench.NewTracker(2*s.h.Capacity + hold) // room for all sent below
	payloads := make([][]byte, n)
	frames := make([][]byte, n)
	for i := range held {
		tr.Mark(s.check(t, &held[i]))
		payloads[i] = bytes.Clone(held[i].Payload)
		frames[i] = bytes.Clone(held[i].Frame)
	}
	// Hand back every other datagram, then fill every frame of the path,
	// those just released included.
	released := 0
	for i := 0; i < n; i += 2 {
		s.r.Release(held[i : i+1])
		released++
	}
	more := s.h.Capacity - hold + released
	s.send(t, more)
	s.settle(t)
	for i := 1; i < n; i += 2 {
		if !bytes.Equal(held[i].Payload, payloads[i]) || !bytes.Equal(held[i].Frame, frames[i]) {
			t.Errorf("datagram %d of a held batch changed while %d more arrived: the receiver reused its memory before Release (%d of the batch's %d released)", i, more, released, n)
		}
	}
	s.r.Release(held)
	s.receive(t, hold-n+more,
		func(int) []datapath.Datagram { return batch },
		func(d *datapath.Datagram) { tr.Mark(s.check(t, d)) },
		func(_ int, b []datapath.Datagram) { s.r.Release(b) })
	// And once more through the frames just released.
	s.send(t, s.h.Capacity/2)
	s.receive(t, s.h.Capacity/2,
		func(int) []datapath.Datagram { return batch },
		func(d *datapath.Datagram) { tr.Mark(s.check(t, d)) },
		nil)
	if _, unique, dups, bad := tr.Counts(); unique != s.next || dups != 0 || bad != 0 {
		t.Errorf("%d datagrams sent, %d arrived, %d duplicates, %d undecodable", s.next, unique, dups, bad)
	}
}

// Receive and Release allocate nothing in steady state.
func testNoAllocs(t *testing.T, s *suite) {
	const per = 4
	runs := s.h.Capacity/per - 2
	batch := make([]datapath.Datagram, per)
	// Warm up: buffers grow to the largest batch and payload.
	s.send(t, per)
	s.receive(t, per, func(int) []datapath.Datagram { return batch }, func(*datapath.Datagram) {}, nil)
	// AllocsPerRun calls once more than it measures; each call takes at
	// least one datagram, so none waits for more.
	s.send(t, (runs+1)*per)
	s.settle(t)
	stop := s.guard(stallAfter)
	var err error
	allocs := testing.AllocsPerRun(runs, func() {
		var n int
		if n, err = s.r.Receive(batch); err == nil {
			s.r.Release(batch[:n])
		}
	})
	if stop() || err != nil {
		t.Fatalf("Receive of datagrams sent and settled: %v", err)
	}
	if allocs != 0 {
		t.Errorf("Receive and Release allocate %.1f times per batch of %d, want 0", allocs, per)
	}
}

// After Drain, Receive hands out what the path holds, then io.EOF, and
// io.EOF again; Drain may come from any goroutine, twice. Close then makes
// it net.ErrClosed. The datagrams arrive while the receiver, having read
// everything before, believes the path empty: the drain must look.
func testDrainQueued(t *testing.T, s *suite) {
	const before = 4
	k := s.h.Capacity / 2
	tr := bench.NewTracker(before + k)
	batch := make([]datapath.Datagram, 16)
	s.send(t, before)
	s.receive(t, before, func(int) []datapath.Datagram { return batch },
		func(d *datapath.Datagram) { tr.Mark(s.check(t, d)) }, nil)
	s.send(t, k)
	s.settle(t)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); s.r.Drain() }()
	}
	wg.Wait()
	got := 0
	stop := s.guard(drainWithin)
	var err error
	for {
		var n int
		n, err = s.r.Receive(batch)
		if err != nil {
			break
		}
		for i := range batch[:n] {
			tr.Mark(s.check(t, &batch[i]))
		}
		got += n
		s.r.Release(batch[:n])
	}
	if stop() {
		t.Fatalf("Receive still going %v after Drain, %d of %d datagrams", drainWithin, got, k)
	}
	if !errors.Is(err, io.EOF) {
		t.Fatalf("drained Receive ended with %v after %d of %d datagrams, want io.EOF", err, got, k)
	}
	if err := tr.Check(); err != nil {
		t.Errorf("drained: %v", err)
	}
	if st := s.r.Stats(); st.Packets != uint64(before+k) || st.SocketOverflows != 0 || st.XDP != (datapath.XDPStatistics{}) {
		t.Errorf("stats %+v, want %d packets, no losses", st, before+k)
	}
	if _, err := s.r.Receive(batch); !errors.Is(err, io.EOF) {
		t.Errorf("Receive after io.EOF: %v, want io.EOF again", err)
	}
	s.r.Drain()
	if err := s.r.Close(); err != nil {
		t.Errorf("Close after Drain: %v", err)
	}
	if _, err := s.r.Receive(batch); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Receive after Drain and Close: %v, want net.ErrClosed", err)
	}
}

// A Receive blocked on an idle path wakes with io.EOF when Drain is called
// from another goroutine.
func testDrainWakesReceive(t *testing.T, s *suite) {
	errc := blockedReceive(t, s)
	s.r.Drain()
	select {
	case err := <-errc:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("a blocked Receive woke from Drain with %v, want io.EOF", err)
		}
	case <-time.After(drainWithin):
		s.r.Close()
		t.Fatalf("Receive still blocked %v after Drain", drainWithin)
	}
}

// blockedReceive starts a Receive on the idle path and checks that it
// blocks; its error comes on the channel.
func blockedReceive(t *testing.T, s *suite) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		n, err := s.r.Receive(make([]datapath.Datagram, 8))
		if err == nil {
			err = fmt.Errorf("%d datagrams on an idle path", n)
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		t.Fatalf("Receive on an idle path returned (%v), want it to block", err)
	case <-time.After(blockFor):
	}
	return errc
}

// A Receive blocked on an idle path returns net.ErrClosed promptly when
// Close is called from another goroutine; Receive after Close says
// net.ErrClosed, Close again is harmless, Stats still answers, every
// descriptor is given back and no goroutine is left.
func testCloseWhileBlocked(t *testing.T, s *suite) {
	errc := blockedReceive(t, s)
	fds := testutil.OpenFDs(t)
	took := s.closeWaiting(t, errc)
	t.Logf("Receive returned %v after Close began", took)
	if got := testutil.OpenFDs(t); got != fds-s.h.FDs {
		t.Errorf("%d descriptors open after Close, %d before: want the receiver's %d given back", got, fds, s.h.FDs)
	}
	if _, err := s.r.Receive(make([]datapath.Datagram, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Receive after Close: %v, want net.ErrClosed", err)
	}
	s.r.Release(nil)
	s.r.Drain()
	if err := s.r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if st := s.r.Stats(); st.Packets != 0 {
		t.Errorf("stats after Close %+v, want no packets", st)
	}
}

// Close while datagrams pour in: the receiving loop ends with net.ErrClosed
// promptly.
func testCloseUnderTraffic(t *testing.T, s *suite) {
	stopSend := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ps := make([][]byte, 16)
		for i := range ps {
			ps[i] = bytes.Clone(s.payload(uint64(i)))
		}
		for {
			select {
			case <-stopSend:
				return
			default:
			}
			// Losses and errors once the receiver is closed don't matter.
			s.h.Send(ps)
			time.Sleep(100 * time.Microsecond)
		}
	}()
	defer func() {
		close(stopSend)
		wg.Wait()
		// Let what is in flight land before the next receiver of the path
		// opens.
		time.Sleep(20 * time.Millisecond)
	}()
	var received atomic.Uint64
	errc := make(chan error, 1)
	go func() {
		batch := make([]datapath.Datagram, 32)
		for {
			n, err := s.r.Receive(batch)
			if err != nil {
				errc <- err
				return
			}
			received.Add(uint64(n))
			s.r.Release(batch[:n])
		}
	}()
	for deadline := time.Now().Add(stallAfter); received.Load() < uint64(s.h.Capacity); {
		if time.Now().After(deadline) {
			s.r.Close()
			t.Fatalf("%d datagrams received in %v, want traffic flowing before the Close", received.Load(), stallAfter)
		}
		time.Sleep(time.Millisecond)
	}
	took := s.closeWaiting(t, errc)
	t.Logf("%d datagrams received; Receive returned %v after Close began", received.Load(), took)
}

// closeWaiting closes the receiver from this goroutine while another one
// receives, whose error comes on errc, and checks that both Close and
// Receive return within closeWithin, Receive with net.ErrClosed. It
// returns how long Receive took.
func (s *suite) closeWaiting(t *testing.T, errc <-chan error) time.Duration {
	t.Helper()
	start := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- s.r.Close() }()
	timeout := time.After(closeWithin)
	var took time.Duration
	for pending := 2; pending > 0; pending-- {
		select {
		case err := <-errc:
			took = time.Since(start).Round(time.Microsecond)
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("Receive woke from Close with %v, want net.ErrClosed", err)
			}
			errc = nil
		case err := <-closed:
			if err != nil {
				t.Errorf("Close: %v", err)
			}
			closed = nil
		case <-timeout:
			switch {
			case errc != nil && closed != nil:
				t.Fatalf("Close and Receive still blocked %v after Close began", closeWithin)
			case errc != nil:
				t.Fatalf("Receive still going %v after Close", closeWithin)
			default:
				t.Fatalf("Close still blocked %v after it began", closeWithin)
			}
		}
	}
	return took
}
