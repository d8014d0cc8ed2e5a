package afxdp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testbed"
)

const (
	exactlyOnceCount = 200_000
	smallUMEM        = 1024
)

// TestReceiveExactlyOnce sends 200,000 datagrams of the sized encoding
// (payloads of 1..1472 bytes) through the XDP program into AF_XDP sockets
// with a small UMEM, so that every frame is recycled many times, and checks
// that each arrives exactly once with the addresses and ports it was sent
// with.
func TestReceiveExactlyOnce(t *testing.T) {
	for _, c := range []struct {
		family string
		queues int
	}{{"ipv4", 1}, {"ipv6", 1}, {"ipv4", 2}, {"ipv6", 2}} {
		t.Run(fmt.Sprintf("%s/%dq", c.family, c.queues), func(t *testing.T) {
			testExactlyOnce(t, c.family == "ipv6", c.queues)
		})
	}
}

func testExactlyOnce(t *testing.T, v6 bool, queues int) {
	b := bedT(t, queues)
	prog := programT(t, b)
	path := openT(t, b, Config{NumFrames: smallUMEM, FillRingSize: 512, RxRingSize: 512}, prog)
	if got := len(path.Sockets()); got != queues {
		t.Fatalf("Open made %d sockets, want one per queue (%d)", got, queues)
	}
	if path.ZeroCopy() || path.Mode() != "copy" {
		t.Errorf("veth bound in %s mode, want copy", path.Mode())
	}

	dst := netip.AddrPortFrom(testbed.RxIPv4, testPort)
	if v6 {
		dst = netip.AddrPortFrom(testbed.RxIPv6, testPort)
	}
	// Several flows per sender, senders pinned to different CPUs: the
	// veth's receiving queue follows the sending CPU (or the flow hash).
	// Eight each: with the hash of 8 flows from ephemeral ports, every one
	// landed on the same queue about once in a hundred runs (2 x 2^-8).
	const flowsPerSender = 8
	senders := queues
	var flows []*flow
	srcs := map[netip.AddrPort]bool{}
	for range senders * flowsPerSender {
		f := dialT(t, b, dst)
		flows = append(flows, f)
		srcs[f.src] = true
	}

	tr := bench.NewTracker(exactlyOnceCount)
	g := &gate{window: 128, stall: 20 * time.Second}
	var bad errorList
	var rwg sync.WaitGroup
	rerr := make([]error, queues)
	for i, s := range path.Sockets() {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			rerr[i] = receiveAll(s, 64, func(d *datapath.Datagram) {
				if d.Dst != dst || !srcs[d.Src] {
					bad.add(fmt.Errorf("datagram %v -> %v, want one of our flows -> %v", d.Src, d.Dst, dst))
				}
				if d.Queue != uint32(s.Queue()) || d.RxTime == 0 || d.NVLAN != 0 {
					bad.add(fmt.Errorf("datagram on socket %d: queue %d, rx time %d, %d VLAN tags", s.Queue(), d.Queue, d.RxTime, d.NVLAN))
				}
				seq, ok := bench.DecodeSized(d.Payload)
				tr.Mark(seq, ok)
				g.received.Add(1)
			})
		}()
	}

	start := time.Now()
	var swg sync.WaitGroup
	serr := make([]error, len(flows))
	for s := range senders {
		swg.Add(1)
		go func() {
			defer swg.Done()
			pinThread(s)
			// Flow f of this sender sends datagrams f, f+len(flows), ...
			var fwg sync.WaitGroup
			for k := range flowsPerSender {
				fi := s*flowsPerSender + k
				fwg.Add(1)
				go func() {
					defer fwg.Done()
					pinThread(s)
					serr[fi] = sendSized(flows[fi], g, uint64(fi), uint64(len(flows)), exactlyOnceCount)
				}()
			}
			fwg.Wait()
		}()
	}
	swg.Wait()
	for i, err := range serr {
		if err != nil {
			g.stop.Store(true)
			t.Errorf("flow %d: %v", i, err)
		}
	}
	// Wait for the last in-flight datagrams.
	deadline := time.Now().Add(10 * time.Second)
	for tr.Unique() < exactlyOnceCount && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	time.Sleep(20 * time.Millisecond) // let a duplicate show, if there is one
	st := path.Stats()
	counters, _ := prog.Counters()
	if err := path.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	rwg.Wait()
	for i, err := range rerr {
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("receiver %d ended with %v, want net.ErrClosed", i, err)
		}
	}

	if err := tr.Check(); err != nil {
		t.Errorf("%v; stats %+v; program %+v", err, st, counters)
	}
	if err := bad.err(); err != nil {
		t.Error(err)
	}
	if st.Packets != exactlyOnceCount || st.Malformed != 0 {
		t.Errorf("stats: %d packets, %d malformed; want %d and 0", st.Packets, st.Malformed, exactlyOnceCount)
	}
	if st.XDP != (datapath.XDPStatistics{}) {
		t.Errorf("the kernel counted losses or errors: %+v", st.XDP)
	}
	if st.Packets < 10*smallUMEM*uint64(queues) {
		t.Errorf("only %d packets through %d UMEMs of %d frames: recycling not exercised", st.Packets, queues, smallUMEM)
	}
	for _, s := range path.Sockets() {
		ss := s.Stats()
		if ss.Packets == 0 {
			t.Errorf("queue %d received nothing: the test did not spread traffic over the queues", s.Queue())
		}
		ls := s.LoopStats()
		t.Logf("queue %d: %d packets in %d batches, %d polls, %d wakeups", s.Queue(), ss.Packets, ss.Batches, ls.Polls, ls.Wakeups)
	}
	t.Logf("%d datagrams in %v (%.0f/s)", st.Packets, elapsed.Round(time.Millisecond), float64(st.Packets)/elapsed.Seconds())
}
