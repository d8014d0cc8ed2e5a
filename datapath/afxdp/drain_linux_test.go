package afxdp

import (
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testbed"
)

// Drain: what is in the ring comes out, then io.EOF; a Receive sleeping
// when Drain is called wakes up.
func TestDrain(t *testing.T) {
	b := bedT(t, 1)
	prog := programT(t, b)
	p := openT(t, b, Config{Queues: []int{0}, NumFrames: 1024, FillRingSize: 512, RxRingSize: 512}, prog)
	rx := p.Receivers()[0]
	f := dialT(t, b, netip.AddrPortFrom(testbed.RxIPv4, testPort))
	const n = 300 // fewer than the RX ring holds: nothing is dropped
	for i := 0; i < n; i++ {
		if _, err := f.conn.Write([]byte("queued")); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until the kernel has put them all in the ring.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, _ := prog.Counters()
		if c[0].Packets >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	rx.Drain()
	got, err := 0, error(nil)
	batch := make([]datapath.Datagram, 64)
	for {
		var k int
		if k, err = rx.Receive(batch); err != nil {
			break
		}
		got += k
		rx.Release(batch[:k])
	}
	if !errors.Is(err, io.EOF) || got != n {
		t.Fatalf("drained %d of %d, ended with %v (want io.EOF)", got, n, err)
	}

	// A fresh socket whose Receive sleeps on an empty ring.
	p.Close()
	p2 := openT(t, b, Config{Queues: []int{0}, NumFrames: 1024, FillRingSize: 512, RxRingSize: 512}, prog)
	rx2 := p2.Receivers()[0]
	done := make(chan error, 1)
	go func() { _, err := rx2.Receive(batch); done <- err }()
	time.Sleep(50 * time.Millisecond)
	rx2.Drain()
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("a sleeping Receive woke with %v, want io.EOF", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Drain did not wake a sleeping Receive")
	}
}
