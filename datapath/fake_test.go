package datapath

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xdpingest/xdpingest/internal/frames"
)

func numbered(n int) []Datagram {
	ds := make([]Datagram, n)
	for i := range ds {
		ds[i] = Datagram{Payload: []byte(fmt.Sprintf("datagram %d", i)), Src: src4, Dst: dst4}
	}
	return ds
}

func TestFakeDeliversInOrder(t *testing.T) {
	src := numbered(10)
	f := NewFake(3, src)
	f.AtEnd = io.EOF
	batch := make([]Datagram, 4)
	var got []string
	for {
		n, err := f.Receive(batch)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 || n > len(batch) {
			t.Fatalf("Receive returned %d datagrams into a batch of %d", n, len(batch))
		}
		for _, d := range batch[:n] {
			if d.Queue != 3 || d.RxTime == 0 || d.Src != src4 || d.Dst != dst4 {
				t.Errorf("datagram %+v: want queue 3, a receive time and the given addresses", d)
			}
			got = append(got, string(d.Payload))
		}
	}
	for i := range src {
		if got[i] != string(src[i].Payload) {
			t.Fatalf("datagram %d is %q, want %q", i, got[i], src[i].Payload)
		}
	}
	st := f.Stats()
	if st.Packets != 10 || st.Batches != 3 || st.Bytes != uint64(len(bytes.Join(toBytes(src), nil))) {
		t.Errorf("stats %+v, want 10 packets in 3 batches", st)
	}
	if f.Outstanding() != 0 || f.Released() != 10 {
		t.Errorf("%d outstanding, %d released after the last Receive, want 0 and 10", f.Outstanding(), f.Released())
	}
}

func toBytes(ds []Datagram) [][]byte {
	var out [][]byte
	for _, d := range ds {
		out = append(out, d.Payload)
	}
	return out
}

// Frames are parsed as the AF_XDP path parses them; those the walk refuses
// are counted and skipped.
func TestFakeParsesFrames(t *testing.T) {
	good := frames.Build(frames.Spec{Src: src6, Dst: dst6, Payload: []byte("hello"),
		VLANs: []frames.VLAN{{TPID: frames.EtherTypeVLAN, ID: 42}}})
	bad := frames.ARP(nil, src4.Addr(), dst4.Addr())
	f := NewFake(0, []Datagram{{Frame: bad}, {Frame: good}, {Frame: bad[:3]}})
	f.AtEnd = io.EOF
	batch := make([]Datagram, 8)
	n, err := f.Receive(batch)
	if err != nil || n != 1 {
		t.Fatalf("Receive: %d, %v; want 1 datagram", n, err)
	}
	d := batch[0]
	if string(d.Payload) != "hello" || d.Src != src6 || d.Dst != dst6 || d.NVLAN != 1 || d.VLAN[0] != 42 {
		t.Errorf("parsed %+v", d)
	}
	if !bytes.Equal(d.Frame, good) || &d.Frame[0] == &good[0] {
		t.Error("Frame is not a copy of the source frame")
	}
	if st := f.Stats(); st.Malformed != 2 || st.Packets != 1 {
		t.Errorf("stats %+v, want 2 malformed, 1 packet", st)
	}
}

// Released memory is poisoned, releasing twice or releasing a stale batch
// is harmless, and Receive releases what the previous call returned.
func TestFakeRelease(t *testing.T) {
	f := NewFake(0, numbered(6))
	batch := make([]Datagram, 2)
	if n, err := f.Receive(batch); n != 2 || err != nil {
		t.Fatal(n, err)
	}
	old := batch[0] // a copy of the first batch's datagram
	p := batch[0].Payload
	if f.Outstanding() != 2 {
		t.Fatalf("%d outstanding, want 2", f.Outstanding())
	}
	f.Release(batch[:1])
	f.Release(batch[:1])
	if f.Outstanding() != 1 || f.Released() != 1 {
		t.Fatalf("after releasing one twice: %d outstanding, %d released; want 1 and 1", f.Outstanding(), f.Released())
	}
	if !bytes.Equal(p, bytes.Repeat([]byte{0xEE}, len(p))) {
		t.Errorf("released payload still reads %q, want poison", p)
	}
	if n, err := f.Receive(batch); n != 2 || err != nil {
		t.Fatal(n, err)
	}
	if f.Released() != 2 || f.Outstanding() != 2 {
		t.Errorf("Receive did not release the previous batch: %d released, %d outstanding", f.Released(), f.Outstanding())
	}
	// The stale datagram's handle must not release the new batch's slot 0.
	f.Release([]Datagram{old})
	if f.Outstanding() != 2 {
		t.Errorf("a stale handle released a live datagram")
	}
	f.Release(batch)
	if f.Outstanding() != 0 {
		t.Errorf("%d outstanding after releasing the batch", f.Outstanding())
	}
}

// An exhausted source without AtEnd blocks like an idle link, until Close.
func TestFakeExhaustedBlocks(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := NewFake(0, numbered(1))
	batch := make([]Datagram, 4)
	if n, err := f.Receive(batch); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	errc := make(chan error, 1)
	go func() { _, err := f.Receive(batch); errc <- err }()
	select {
	case err := <-errc:
		t.Fatalf("Receive on an exhausted source returned %v, want it to block", err)
	case <-time.After(20 * time.Millisecond):
	}
	f.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("got %v, want net.ErrClosed", err)
	}
}

func TestFakeChanEnd(t *testing.T) {
	ch := make(chan Datagram, 3)
	ch <- Datagram{Payload: []byte("a")}
	ch <- Datagram{Payload: []byte("b")}
	close(ch)
	f := NewFakeChan(1, ch)
	f.AtEnd = io.EOF
	batch := make([]Datagram, 8)
	n, err := f.Receive(batch)
	if n != 2 || err != nil {
		t.Fatalf("Receive: %d, %v; want 2", n, err)
	}
	if _, err := f.Receive(batch); !errors.Is(err, io.EOF) {
		t.Fatalf("Receive after the channel closed: %v, want io.EOF", err)
	}
}
