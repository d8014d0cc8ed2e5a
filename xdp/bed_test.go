package xdp

import (
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/datapath/afxdp"
	"github.com/xdpingest/xdpingest/datapath/kernel"
	"github.com/xdpingest/xdpingest/internal/frames"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// arrival is one datagram a receiver delivered, copied.
type arrival struct {
	path    string // "afxdp" or "kernel"
	src     netip.AddrPort
	payload string
}

// arrivals runs receive loops and records what they deliver.
type arrivals struct {
	mu   sync.Mutex
	got  []arrival
	errs []error
	wg   sync.WaitGroup
}

func (a *arrivals) run(path string, r datapath.Receiver) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		batch := make([]datapath.Datagram, 64)
		for {
			n, err := r.Receive(batch)
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					a.mu.Lock()
					a.errs = append(a.errs, fmt.Errorf("%s receiver %d: %w", path, r.Queue(), err))
					a.mu.Unlock()
				}
				return
			}
			a.mu.Lock()
			for _, d := range batch[:n] {
				a.got = append(a.got, arrival{path: path, src: d.Src, payload: string(d.Payload)})
			}
			a.mu.Unlock()
			r.Release(batch[:n])
		}
	}()
}

func (a *arrivals) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.got)
}

// wait waits until n datagrams arrived, then a little longer for any that
// should not.
func (a *arrivals) wait(n int) {
	for deadline := time.Now().Add(5 * time.Second); a.count() < n && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
}

// stop closes the receivers and returns what arrived.
func (a *arrivals) stop(t *testing.T, rs ...datapath.Receiver) []arrival {
	t.Helper()
	for _, r := range rs {
		r.Close()
	}
	a.wg.Wait()
	if err := errors.Join(a.errs...); err != nil {
		t.Fatal(err)
	}
	return a.got
}

// payload is n bytes that name the datagram and then count.
func payload(name string, n int) string {
	b := []byte(name + ":")
	for len(b) < n {
		b = append(b, byte(len(b)))
	}
	return string(b[:n])
}

// openKernelT opens the kernel path's sockets on port 9000 in Rx, bound to
// the bed's link, with the program's socket filter.
func openKernelT(t *testing.T, b *testbed.Bed, p *Program) []*kernel.Receiver {
	t.Helper()
	var rs []*kernel.Receiver
	if err := b.Rx.Do(func() (err error) {
		var kp *kernel.Path
		if kp, err = kernel.Open(kernel.Config{Ports: []uint16{9000}, Device: b.Rx.Link, Filter: p.SocketFilter()}); err == nil {
			rs = kp.Workers()
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, r := range rs {
			r.Close()
		}
	})
	return rs
}

// Kernel sockets with the socket filter receive only datagrams from allowed
// sources, whole datagrams and fragmented ones alike, with the XDP program
// not attached (the kernel path) and with it attached in front of them
// (the AF_XDP path, whose program passes fragments and, on a queue without
// an AF_XDP socket, everything it matches).
func TestSocketFilterOnBed(t *testing.T) {
	for _, attach := range []bool{false, true} {
		name := "kernel path"
		if attach {
			name = "behind the XDP program"
		}
		t.Run(name, func(t *testing.T) {
			testutil.RequireBPF(t)
			b := testutil.NewBed(t, testbed.Config{})
			denied4, denied6 := netip.MustParseAddr("198.18.0.3"), netip.MustParseAddr("2001:db8::3")
			if err := b.AddGenAddrs(denied4, denied6); err != nil {
				t.Fatal(err)
			}
			p := loadT(t, Config{Ports: []uint16{9000}, Action: Redirect,
				Allow: pfxs("198.18.0.0/15", "2001:db8::1/128"), Deny: pfxs("198.18.0.3/32")})
			if attach {
				if _, err := attachIn(b.Rx, p, AttachOptions{Mode: ModeNative}); err != nil {
					t.Fatal(err)
				}
			}
			rs := openKernelT(t, b, p)
			var a arrivals
			for _, r := range rs {
				a.run("kernel", r)
			}

			type sent struct {
				src     netip.Addr
				dst     netip.Addr
				msg     string
				allowed bool
			}
			var all []sent
			for _, size := range []int{100, 4000} { // 4000 is fragmented at MTU 1500
				all = append(all,
					sent{testbed.GenIPv4, testbed.RxIPv4, payload("allowed v4", size), true},
					sent{denied4, testbed.RxIPv4, payload("denied v4", size), false},
					sent{testbed.GenIPv6, testbed.RxIPv6, payload("allowed v6", size), true},
					sent{denied6, testbed.RxIPv6, payload("not allowed v6", size), false})
			}
			var want []string
			for _, s := range all {
				testutil.SendUDPFrom(t, b.Gen, s.src, netip.AddrPortFrom(s.dst, 9000), s.msg)
				if s.allowed {
					want = append(want, describe(s.src, s.msg))
				}
			}
			a.wait(len(want))
			var got []string
			for _, g := range a.stop(t, asReceivers(rs)...) {
				got = append(got, describe(g.src.Addr(), g.payload))
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("the kernel sockets got %d datagrams, want the %d from allowed sources:\ngot  %q\nwant %q", len(got), len(want), got, want)
			}

			sc, err := p.SocketCounters()
			if err != nil {
				t.Fatal(err)
			}
			xc, err := p.Counters()
			if err != nil {
				t.Fatal(err)
			}
			// What reaches the sockets: everything without XDP; behind it,
			// the fragmented datagrams and (no AF_XDP socket) the whole
			// allowed ones, while XDP drops the whole refused ones itself.
			wantSock := [NumSocketOutcomes]uint64{SocketAccepted: 4, SocketDenied: 2, SocketNotAllowed: 2}
			if attach {
				wantSock = [NumSocketOutcomes]uint64{SocketAccepted: 4, SocketDenied: 1, SocketNotAllowed: 1}
				if xc[OutcomeDeny].Packets != 1 || xc[OutcomeNotAllowed].Packets != 1 || xc[OutcomeNoSocket].Packets != 2 || xc[OutcomeFragment].Packets < 4*3 {
					t.Errorf("XDP counters %v: want 1 deny, 1 not_allowed, 2 no_socket, 12+ fragment", nonzero(xc))
				}
			}
			for o := SocketOutcome(0); o < NumSocketOutcomes; o++ {
				if sc[o].Packets != wantSock[o] {
					t.Errorf("socket counter %s = %d, want %d (all: %+v)", o, sc[o].Packets, wantSock[o], sc)
				}
			}
			// The kernel counts the filter's refusals as socket drops; the
			// receivers leave them out.
			if n := overflowsOf(rs); n != 0 || sc.Refused().Buffers == 0 {
				t.Errorf("the receivers count %d socket overflows after the filter refused %d buffers, want none", n, sc.Refused().Buffers)
			}
		})
	}
}

// describe names a datagram by its source, the name its payload starts
// with and its length; the rest of the payload must match byte for byte.
func describe(src netip.Addr, msg string) string {
	name, _, _ := strings.Cut(msg, ":")
	return fmt.Sprintf("%v %s (%d bytes, %x)", src, name, len(msg), crc32.ChecksumIEEE([]byte(msg)))
}

func asReceivers[R datapath.Receiver](rs []R) []datapath.Receiver {
	out := make([]datapath.Receiver, len(rs))
	for i, r := range rs {
		out[i] = r
	}
	return out
}

// At MTU 9000 the multi-buffer program attaches to a veth (the single-buffer
// one is refused), and every size reaches a socket of ours whole: frames up
// to what an AF_XDP frame holds through the AF_XDP socket, larger ones
// (counted oversize) through the kernel sockets, none lost to the kernel's
// copy into the UMEM.
func TestJumboFrames(t *testing.T) {
	for _, frameSize := range []int{2048, 4096} {
		t.Run(fmt.Sprintf("frame size %d", frameSize), func(t *testing.T) {
			testutil.RequireBPF(t)
			b := testutil.NewBed(t, testbed.Config{MTU: 9000})
			maxRedirect := MaxRedirectFor(frameSize, 0)

			single := loadVariant(t, Config{Ports: []uint16{9000}}, true)
			if _, err := attachIn(b.Rx, single, AttachOptions{Mode: ModeNative}); err == nil {
				t.Fatal("the single-buffer program attached to a veth whose peer has MTU 9000; the test needs a link that refuses it")
			}

			p := loadT(t, Config{Ports: []uint16{9000}, Action: Redirect, MaxRedirect: maxRedirect})
			if _, err := attachIn(b.Rx, p, AttachOptions{Mode: ModeNative}); err != nil {
				t.Fatalf("attach the multi-buffer program at MTU 9000: %v", err)
			}
			var path *afxdp.Path
			err := b.Rx.Do(func() (err error) {
				path, err = afxdp.Open(afxdp.Config{Ifindex: b.Rx.Index, FrameSize: frameSize, ForceCopy: true}, p)
				return err
			})
			if errors.Is(err, errors.ErrUnsupported) {
				testutil.Skip(t, err.Error())
			}
			if err != nil {
				t.Fatal(err)
			}
			defer path.Close()
			rs := openKernelT(t, b, p)
			var a arrivals
			for _, r := range path.Receivers() {
				a.run("afxdp", r)
			}
			for _, r := range rs {
				a.run("kernel", r)
			}

			// IP lengths: the ones the issue names, and the two sides of
			// the limit (a frame has 14 bytes of Ethernet header more).
			ipLens := []int{1400, 1800, 3000, 9000, maxRedirect - 14, maxRedirect - 14 + 1}
			type sent struct{ msg, path string }
			var want []sent
			for _, fam := range []struct {
				name     string
				src, dst netip.Addr
				hdr      int
			}{{"v4", testbed.GenIPv4, testbed.RxIPv4, 20 + 8}, {"v6", testbed.GenIPv6, testbed.RxIPv6, 40 + 8}} {
				for _, n := range ipLens {
					msg := payload(fmt.Sprintf("%s ip length %d", fam.name, n), n-fam.hdr)
					testutil.SendUDPFrom(t, b.Gen, fam.src, netip.AddrPortFrom(fam.dst, 9000), msg)
					s := sent{msg: msg, path: "afxdp"}
					if n+14 > maxRedirect {
						s.path = "kernel"
					}
					want = append(want, s)
				}
			}
			// A datagram that ends in the frame's first buffer, followed
			// by a trailer that runs into more buffers: the whole frame is
			// too large for an AF_XDP frame, so it takes the kernel's way,
			// which cuts the trailer off.
			raw, err := b.Gen.RawSender()
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			for _, fam := range []struct {
				name     string
				src, dst netip.Addr
			}{{"v4", testbed.GenIPv4, testbed.RxIPv4}, {"v6", testbed.GenIPv6, testbed.RxIPv6}} {
				msg := payload(fam.name+" with a 5000-byte trailer", 1000)
				frame := frames.Build(frames.Spec{SrcMAC: b.Gen.MAC, DstMAC: b.Rx.MAC, Src: netip.AddrPortFrom(fam.src, 5000),
					Dst: netip.AddrPortFrom(fam.dst, 9000), Payload: []byte(msg), Trailer: make([]byte, 5000)})
				if err := raw.Send(frame); err != nil {
					t.Fatal(err)
				}
				want = append(want, sent{msg: msg, path: "kernel"})
			}
			a.wait(len(want))
			got := a.stop(t, append(path.Receivers(), asReceivers(rs)...)...)
			for _, w := range want {
				var seen []string
				for _, g := range got {
					if g.payload == w.msg {
						seen = append(seen, g.path)
					}
				}
				if len(seen) != 1 || seen[0] != w.path {
					t.Errorf("%s (%d bytes): arrived %d times, over %v; want once, over %s", w.msg[:strings.IndexByte(w.msg, ':')], len(w.msg), len(seen), seen, w.path)
				}
			}
			for _, g := range got {
				if !slices.ContainsFunc(want, func(w sent) bool { return w.msg == g.payload }) {
					t.Errorf("an unexpected datagram of %d bytes from %v arrived over %s: %.40q", len(g.payload), g.src, g.path, g.payload)
				}
			}
			var redirected, oversize int
			for _, w := range want {
				if w.path == "afxdp" {
					redirected++
				} else {
					oversize++
				}
			}
			c, err := p.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if c[OutcomeRedirect].Packets != uint64(redirected) || c[OutcomeOversize].Packets != uint64(oversize) {
				t.Errorf("XDP counters %v: want %d redirect, %d oversize", nonzero(c), redirected, oversize)
			}
			// Per port, the same frames with the same bytes, multi-buffer
			// frames included: port 9000 has all of the matched outcomes.
			pc, err := p.PortCounters()
			if err != nil {
				t.Fatal(err)
			}
			var matched Counters
			for _, o := range MatchedOutcomes {
				matched[o] = c[o]
			}
			if len(pc.Ports) != 1 || pc.Ports[9000] != matched || len(pc.OtherPorts) != 0 {
				t.Errorf("port counters %+v, want port 9000 alone with %+v", pc, matched)
			}
			if st := path.Stats(); st.XDP.RxDropped != 0 {
				t.Errorf("the AF_XDP sockets dropped %d frames (rx_dropped)", st.XDP.RxDropped)
			}
			// Check that the 9000 bytes really came as one multi-buffer
			// frame: counted with all its bytes.
			if c[OutcomeOversize].Bytes < 2*9014 {
				t.Errorf("oversize bytes %d: the 9000-byte datagrams were not counted whole", c[OutcomeOversize].Bytes)
			}
		})
	}
}
