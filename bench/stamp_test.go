package bench

import (
	"errors"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestStampKeepsFramesValid(t *testing.T) {
	for _, fam := range []struct {
		src, dst string
		size     int
	}{{"198.18.0.1", "198.18.0.2", 64}, {"2001:db8::1", "2001:db8::2", 90}, {"198.18.0.1", "198.18.0.2", 1514}} {
		tpl, err := BuildTemplate(FrameSpec{Src: netip.AddrPortFrom(netip.MustParseAddr(fam.src), 1000),
			Dst: netip.AddrPortFrom(netip.MustParseAddr(fam.dst), 9000), Size: fam.size})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyUDPFrame(tpl.Frame); err != nil {
			t.Fatalf("template: %v", err)
		}
		frame := make([]byte, 2048)
		for _, seq := range []uint64{0, 1, 0xffff, StreamSeq(3, 123456789), ^uint64(0)} {
			for _, sport := range []uint16{1000, 1001, 65535, 0} {
				n := tpl.Stamp(frame, seq, sport)
				p, err := VerifyUDPFrame(frame[:n])
				if err != nil {
					t.Fatalf("%s seq %#x sport %d: %v", fam.src, seq, sport, err)
				}
				if got, _ := DecodeWide(p); got != seq || len(p) != tpl.PayloadLen {
					t.Fatalf("seq %#x, payload %d bytes; want %#x, %d", got, len(p), seq, tpl.PayloadLen)
				}
			}
		}
		// A flipped bit is caught.
		n := tpl.Stamp(frame, 5, 1000)
		frame[n-1] ^= 1
		if _, err := VerifyUDPFrame(frame[:n]); !errors.Is(err, ErrBadFrame) {
			t.Fatalf("corrupt payload: %v", err)
		}
	}
}

func TestThreadAndProcessCPU(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	t0, err := ThreadCPU(tid)
	if err != nil {
		t.Fatal(err)
	}
	p0, err := ProcessCPU(unix.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); time.Since(start) < 30*time.Millisecond; {
	}
	t1, _ := ThreadCPU(tid)
	p1, _ := ProcessCPU(unix.Getpid())
	// Spinning 30 ms of wall time uses some CPU even on a busy machine.
	if t1 <= t0 || p1 <= p0 || p1-p0 < t1-t0-time.Millisecond {
		t.Fatalf("thread %v -> %v, process %v -> %v", t0, t1, p0, p1)
	}
}
