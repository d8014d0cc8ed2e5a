package afxdp

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/frames"
	"github.com/xdpingest/xdpingest/internal/testbed"
)

// fakeTx is a fake kernel for the TX side: it consumes the TX ring and
// completes every frame.
type fakeTx struct {
	s    *Socket
	comp *fakeShared[uint64]
	txd  *fakeShared[unix.XDPDesc]
	sent [][]byte
}

func newFakeTx(t *testing.T, cfg Config) *fakeTx {
	t.Helper()
	cfg.Iface = "fake"
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeTx{
		comp: newFakeShared[uint64](cfg.CompletionRingSize, 1<<32-3),
		txd:  newFakeShared[unix.XDPDesc](cfg.TxRingSize, 1<<32-3),
	}
	fill := newFakeShared[uint64](cfg.FillRingSize, 0)
	res := &resources{fd: -1, efd: -1, umem: alignedBytes(cfg.NumFrames*cfg.FrameSize, 4096)}
	s := &Socket{ifname: "fake", frameSize: uint64(cfg.FrameSize), res: res, umem: res.umem}
	for 1<<s.shift < cfg.FrameSize {
		s.shift++
	}
	s.fill = newProdRing(&fill.prod, &fill.cons, &fill.flags, fill.entries)
	s.comp = newConsRing(&f.comp.prod, &f.comp.cons, &f.comp.flags, f.comp.entries)
	s.tx = newProdRing(&f.txd.prod, &f.txd.cons, &f.txd.flags, f.txd.entries)
	s.initFrames(cfg)
	t.Cleanup(func() { s.Close() })
	f.s = s
	return f
}

// run plays the kernel: it sends what the TX ring holds and completes it.
func (f *fakeTx) run() {
	p := atomic.LoadUint32(&f.txd.prod)
	c := f.txd.cons
	for ; c != p; c++ {
		d := f.txd.entries[c&uint32(len(f.txd.entries)-1)]
		f.sent = append(f.sent, append([]byte(nil), f.s.umem[d.Addr:d.Addr+uint64(d.Len)]...))
		if f.comp.kernelProduce([]uint64{d.Addr}) != 1 {
			panic("completion ring full")
		}
	}
	atomic.StoreUint32(&f.txd.cons, c)
}

// The TX bookkeeping on fake memory: reservations limited by free frames
// and ring room, partial submits cancel the rest, completions return
// frames, misuse is refused, and no frame is ever lost.
func TestTxOnFakeKernel(t *testing.T) {
	f := newFakeTx(t, Config{TxOnly: true, NumFrames: 16, TxRingSize: 8, CompletionRingSize: 16})
	s := f.s
	bufs := make([][]byte, 32)
	n, err := s.ReserveTx(bufs)
	if err != nil || n != 8 {
		t.Fatalf("ReserveTx: %d, %v; want 8 (the TX ring's size)", n, err)
	}
	for i := range bufs[:n] {
		if len(bufs[i]) != 2048 {
			t.Fatalf("reserved buffer of %d bytes", len(bufs[i]))
		}
		bufs[i] = bufs[i][:copy(bufs[i], []byte{byte(i), 1, 2, 3})]
	}
	// Submit 5 of the 8: 3 are cancelled and come back.
	if err := s.SubmitTx(bufs[:5]); err != nil {
		t.Fatal(err)
	}
	if got := len(s.txFree); got != 11 {
		t.Fatalf("%d free send frames after submitting 5 of 16, want 11", got)
	}
	if s.TxInFlight() != 5 {
		t.Fatalf("%d in flight, want 5", s.TxInFlight())
	}
	f.run()
	if len(f.sent) != 5 || f.sent[4][0] != 4 || len(f.sent[4]) != 4 {
		t.Fatalf("kernel sent %q", f.sent)
	}
	if n, err := s.Complete(); n != 5 || err != nil {
		t.Fatalf("Complete: %d, %v; want 5", n, err)
	}
	if len(s.txFree) != 16 || s.TxInFlight() != 0 {
		t.Fatalf("%d free, %d in flight after completion", len(s.txFree), s.TxInFlight())
	}

	// Misuse: a buffer that is not the reserved one, an empty one, too many.
	if n, _ := s.ReserveTx(bufs[:2]); n != 2 {
		t.Fatalf("ReserveTx reserved %d of 2", n)
	}
	if err := s.SubmitTx([][]byte{bufs[1], bufs[0]}); err == nil {
		t.Error("SubmitTx accepted buffers out of order")
	}
	if err := s.SubmitTx([][]byte{bufs[0][:0]}); err == nil {
		t.Error("SubmitTx accepted an empty frame")
	}
	if err := s.SubmitTx(bufs[:3]); err == nil {
		t.Error("SubmitTx accepted more frames than reserved")
	}
	// A new reservation cancels the old one.
	if n, _ = s.ReserveTx(bufs[:4]); n != 4 || len(s.txFree) != 12 {
		t.Fatalf("re-reserve: %d, %d free", n, len(s.txFree))
	}
	if err := s.SubmitTx(nil); err != nil || len(s.txFree) != 16 {
		t.Fatalf("empty submit: %v, %d free; want all 16 back", err, len(s.txFree))
	}

	// Transmit many frames through a ring of 8 and 16 frames: every frame
	// goes out once, in order.
	want := 1000
	var frames [][]byte
	for i := range want {
		frames = append(frames, []byte{byte(i), byte(i >> 8), 7})
	}
	for sent := 0; sent < want; {
		n, err := s.Transmit(frames[sent:])
		if err != nil {
			t.Fatal(err)
		}
		sent += n
		f.run()
	}
	f.sent = f.sent[5:]
	if len(f.sent) != want {
		t.Fatalf("kernel sent %d frames, want %d", len(f.sent), want)
	}
	for i, fr := range f.sent {
		if fr[0] != byte(i) || fr[1] != byte(i>>8) {
			t.Fatalf("frame %d is %v", i, fr)
		}
	}
	if _, err := s.Transmit([][]byte{make([]byte, 2049)}); err == nil || !strings.Contains(err.Error(), "at most 2048") {
		t.Errorf("oversized frame: %v", err)
	}
	if _, err := s.Receive(make([]datapath.Datagram, 1)); err == nil {
		t.Error("Receive on a TX-only socket did not fail")
	}
	s.Close()
	if _, err := s.ReserveTx(bufs); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReserveTx after Close: %v", err)
	}
}

// An RX-only socket refuses TX.
func TestNoTxRing(t *testing.T) {
	k := newFakeKernel(t, Config{NumFrames: 16}, 0)
	if _, err := k.s.ReserveTx(make([][]byte, 1)); !errors.Is(err, errNoTx) {
		t.Errorf("ReserveTx without a TX ring: %v", err)
	}
}

// Frames sent from an AF_XDP socket in the generating namespace reach a
// kernel UDP socket (IPv4, zero-copy TX API) and an AF_XDP receive path
// through the XDP program (IPv6, Transmit), every one exactly once.
func TestTransmitOnTestBed(t *testing.T) {
	const count = 20_000
	t.Run("ipv4-to-udp-socket", func(t *testing.T) {
		b := bedT(t, 1)
		dst := netip.AddrPortFrom(testbed.RxIPv4, testPort)
		var conn *net.UDPConn
		if err := b.Rx.Do(func() (err error) { conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(dst)); return err }); err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetReadBuffer(4 << 20)
		tx := txSocketT(t, b)
		tr := bench.NewTracker(count)
		g := &gate{window: 256, stall: 10 * time.Second}
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 2048)
			for tr.Unique() < count {
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, from, err := conn.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				seq, ok := bench.DecodeSized(buf[:n])
				tr.Mark(seq, ok && from == netip.AddrPortFrom(testbed.GenIPv4, 5000))
				g.received.Add(1)
			}
		}()
		bufs := make([][]byte, 64)
		pbuf := make([]byte, bench.SizedSpan)
		for seq := uint64(0); seq < count; {
			if err := g.wait(); err != nil {
				t.Fatalf("%v (%v)", err, tr.Check())
			}
			n, err := tx.ReserveTx(bufs[:min(64, count-seq)])
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				tx.Kick()
				time.Sleep(20 * time.Microsecond)
				continue
			}
			for i := range bufs[:n] {
				spec := frames.Spec{SrcMAC: b.Gen.MAC, DstMAC: b.Rx.MAC, Src: netip.AddrPortFrom(testbed.GenIPv4, 5000), Dst: dst, Payload: bench.PutSized(pbuf, seq)}
				bufs[i] = frames.Append(bufs[i][:0], spec)
				seq++
			}
			if err := tx.SubmitTx(bufs[:n]); err != nil {
				t.Fatal(err)
			}
			g.sent.Add(uint64(n))
		}
		if err := tx.FlushTx(5 * time.Second); err != nil {
			t.Error(err)
		}
		<-done
		if err := tr.Check(); err != nil {
			t.Fatalf("%v; tx %+v", err, tx.LoopStats())
		}
		st := tx.Stats().XDP
		if st.TxInvalidDescs != 0 {
			t.Errorf("kernel refused descriptors: %+v", st)
		}
		t.Logf("tx: %+v", tx.LoopStats())
	})

	t.Run("ipv6-to-afxdp", func(t *testing.T) {
		b := bedT(t, 1)
		prog := programT(t, b)
		path := openT(t, b, Config{NumFrames: 512}, prog)
		tx := txSocketT(t, b)
		src := netip.AddrPortFrom(testbed.GenIPv6, 5001)
		dst := netip.AddrPortFrom(testbed.RxIPv6, testPort)
		tr := bench.NewTracker(count)
		g := &gate{window: 256, stall: 10 * time.Second}
		var bad errorList
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			receiveAll(path.Sockets()[0], 64, func(d *datapath.Datagram) {
				if d.Src != src || d.Dst != dst {
					bad.add(errors.New(d.Src.String() + " -> " + d.Dst.String()))
				}
				seq, ok := bench.DecodeSized(d.Payload)
				tr.Mark(seq, ok)
				g.received.Add(1)
			})
		}()
		frs := make([][]byte, 0, 32)
		pbuf := make([]byte, bench.SizedSpan)
		for seq := uint64(0); seq < count; {
			if err := g.wait(); err != nil {
				t.Fatalf("%v (%v)", err, tr.Check())
			}
			frs = frs[:0]
			for i := seq; i < count && len(frs) < cap(frs); i++ {
				frs = append(frs, frames.Build(frames.Spec{SrcMAC: b.Gen.MAC, DstMAC: b.Rx.MAC, Src: src, Dst: dst, Payload: bench.PutSized(pbuf, i)}))
			}
			n, err := tx.Transmit(frs)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				tx.Kick()
				time.Sleep(20 * time.Microsecond)
			}
			seq += uint64(n)
			g.sent.Add(uint64(n))
		}
		for deadline := time.Now().Add(10 * time.Second); tr.Unique() < count && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		path.Close()
		wg.Wait()
		if err := tr.Check(); err != nil {
			t.Fatalf("%v; rx %+v; tx %+v", err, path.Stats(), tx.LoopStats())
		}
		if err := bad.err(); err != nil {
			t.Error(err)
		}
	})
}

// txSocketT opens a TX-only socket on the generating end's queue 0.
func txSocketT(t *testing.T, b *testbed.Bed) *Socket {
	t.Helper()
	var s *Socket
	if err := b.Gen.Do(func() (err error) {
		s, err = NewSocket(Config{Ifindex: b.Gen.Index, TxOnly: true, NumFrames: 256, TxRingSize: 128, CompletionRingSize: 256}, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Receive(make([]datapath.Datagram, 1)); err == nil {
		t.Error("Receive on a TX-only socket did not fail")
	}
	return s
}
