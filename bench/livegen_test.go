package bench

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/internal/frames"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// The live-frames generator's frames reach a kernel socket on the other
// side with valid checksums (the kernel drops bad ones), the sequence numbers
// it stamped, and the source ports of every flow.
func TestLiveGenFramesValid(t *testing.T) {
	testutil.RequireBPF(t)
	for _, fam := range []string{"ipv4", "ipv6"} {
		t.Run(fam, func(t *testing.T) {
			b := testutil.NewBed(t, testbed.Config{})
			src, dst := testbed.GenIPv4, testbed.RxIPv4
			size := 64
			if fam == "ipv6" {
				src, dst, size = testbed.GenIPv6, testbed.RxIPv6, 90
			}
			// The receiving veth end takes XDP_TX'd live frames only with GRO
			// on (or an XDP program attached).
			if err := b.Rx.Run("ethtool", "-K", b.Rx.Link, "gro", "on"); err != nil {
				t.Fatal(err)
			}
			var conn *net.UDPConn
			if err := b.Rx.Do(func() (err error) {
				conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9000)))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetReadBuffer(4 << 20)

			tpl, err := BuildTemplate(FrameSpec{SrcMAC: b.Gen.MAC, DstMAC: b.Rx.MAC, Src: netip.AddrPortFrom(src, 10000), Dst: netip.AddrPortFrom(dst, 9000), Size: size})
			if err != nil {
				t.Fatal(err)
			}
			if len(tpl.Frame) != size {
				t.Fatalf("template is %d bytes, want %d", len(tpl.Frame), size)
			}
			live, err := LoadLive()
			if err != nil {
				t.Fatal(err)
			}
			defer live.Close()
			cfg := tpl.Config()
			cfg.Ifindex, cfg.Count, cfg.Flows, cfg.SportBase, cfg.Stream = b.Gen.Index, 1000, 4, 10000, 3
			// Rate-limited so that a socket buffer holds them all.
			cfg.Rate = 20000
			var res LiveResult
			if err := b.Gen.Do(func() (err error) { res, err = live.Run(context.Background(), cfg); return err }); err != nil {
				t.Fatal(err)
			}
			if res.Sent != 1000 {
				t.Fatalf("sent %d, want 1000", res.Sent)
			}
			tr := NewTracker(1000)
			ports := map[uint16]int{}
			buf := make([]byte, 2048)
			for i := 0; i < 1000; i++ {
				conn.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, from, err := conn.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatalf("after %d datagrams: %v (%v)", i, err, tr.Check())
				}
				if n != tpl.PayloadLen {
					t.Fatalf("payload %d bytes, want %d", n, tpl.PayloadLen)
				}
				seq := binary.BigEndian.Uint64(buf)
				if seq>>48 != 3 {
					t.Fatalf("stream %d, want 3", seq>>48)
				}
				tr.Mark(seq&(1<<48-1), true)
				ports[from.Port()]++
			}
			if err := tr.Check(); err != nil {
				t.Fatal(err)
			}
			for p := uint16(10000); p < 10004; p++ {
				if ports[p] != 250 {
					t.Errorf("source port %d: %d datagrams, want 250 (%v)", p, ports[p], ports)
				}
			}
		})
	}
}

func TestBuildTemplateChecks(t *testing.T) {
	a := netip.MustParseAddrPort("198.18.0.1:1")
	b6 := netip.MustParseAddrPort("[2001:db8::2]:2")
	if _, err := BuildTemplate(FrameSpec{Src: a, Dst: b6, Size: 100}); err == nil {
		t.Error("mixed families accepted")
	}
	if _, err := BuildTemplate(FrameSpec{Src: a, Dst: a, Size: 40}); err == nil {
		t.Error("frame too small accepted")
	}
	tpl, err := BuildTemplate(FrameSpec{Src: a, Dst: a, Size: 64})
	if err != nil {
		t.Fatal(err)
	}
	if ihl := int(tpl.Frame[14]&0xf) * 4; frames.Checksum(tpl.Frame[14:14+ihl], 0) != 0 {
		t.Error("IPv4 header checksum")
	}
}

// A rate-limited run stays near its rate (a generous bound: this is a
// behaviour check, not a speed target) and counts exactly what it sent.
func TestLiveGenRate(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{})
	if err := b.Rx.Run("ethtool", "-K", b.Rx.Link, "gro", "on"); err != nil {
		t.Fatal(err)
	}
	tpl, err := BuildTemplate(FrameSpec{SrcMAC: b.Gen.MAC, DstMAC: b.Rx.MAC, Src: netip.AddrPortFrom(testbed.GenIPv4, 1), Dst: netip.AddrPortFrom(testbed.RxIPv4, 9), Size: 64})
	if err != nil {
		t.Fatal(err)
	}
	live, err := LoadLive()
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	cfg := tpl.Config()
	cfg.Ifindex, cfg.Rate, cfg.Duration = b.Gen.Index, 20000, 2*time.Second
	var res LiveResult
	if err := b.Gen.Do(func() (err error) { res, err = live.Run(context.Background(), cfg); return err }); err != nil {
		t.Fatal(err)
	}
	rate := float64(res.Sent) / res.Elapsed.Seconds()
	if rate < 20000*0.9 || rate > 20000*1.1 {
		t.Fatalf("%d frames in %v: %.0f/s, asked 20000/s", res.Sent, res.Elapsed, rate)
	}
	seq, err := live.sequence()
	if err != nil || seq != res.Sent {
		t.Fatalf("the program numbered %d frames, Run says %d sent (%v)", seq, res.Sent, err)
	}
}
