package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

//go:generate go tool bpf2go -cc clang-16 -strip llvm-strip-16 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -go-package bench livegen bpf/livegen.c

// LiveConfig configures a live-frames generator: BPF_PROG_RUN with
// BPF_F_TEST_XDP_LIVE_FRAMES transmits a template frame out of an interface,
// as fast as one core can (several Mpps on veth), stamping each frame with a
// sequence number.
type LiveConfig struct {
	// Ifindex is the interface the frames leave by. It is resolved in the
	// network namespace of the calling thread.
	Ifindex int
	// Frame is the template: an Ethernet/IP/UDP frame (see FrameSpec).
	Frame []byte
	// SeqOffset is where the 8-byte sequence number goes; SportOffset and
	// CsumOffset locate the UDP source port and checksum (CsumOffset 0:
	// not fixed up).
	SeqOffset, SportOffset, CsumOffset int
	// Flows spreads frames over this many UDP source ports from SportBase,
	// so that RSS on a real NIC spreads them over queues.
	Flows     int
	SportBase uint16
	// Stream goes into the top 16 bits of every sequence number, so that
	// several generators (one per core) never collide.
	Stream uint16

	// Count stops after this many frames (0: no limit). Duration stops
	// after this long (0: no limit). One of them must be set.
	Count    uint64
	Duration time.Duration
	// Rate limits the frames per second (0: as fast as possible).
	Rate float64
}

// LiveResult is what a generator sent.
type LiveResult struct {
	Sent    uint64
	Elapsed time.Duration
}

// Live is a loaded live-frames generator program.
type Live struct {
	objs livegenObjects
}

// LoadLive loads the generator program. One Live serves one generator at a
// time; load one per concurrent generator.
func LoadLive() (*Live, error) {
	l := &Live{}
	if err := loadLivegenObjects(&l.objs, nil); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("can't load the generator program: %w: run as root or grant CAP_BPF and CAP_NET_ADMIN", err)
		}
		return nil, fmt.Errorf("can't load the generator program: %w", err)
	}
	return l, nil
}

// Close releases the program.
func (l *Live) Close() error { return l.objs.Close() }

// xdpMD is struct xdp_md, the context BPF_PROG_RUN takes for XDP.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// maxRepeat is the largest repetition count per BPF_PROG_RUN call. Each
// call ends in synchronize_rcu; 2^20 per call leaves the generator idle
// 10-17% of the time, 2^24 about 1% (see the guide).
const maxRepeat = 1 << 24

// Run generates until Count or Duration is reached or ctx is done (checked
// between calls). The calling thread must be in the interface's namespace;
// the caller pins it to a CPU if it wants to.
func (l *Live) Run(ctx context.Context, cfg LiveConfig) (LiveResult, error) {
	if cfg.Count == 0 && cfg.Duration == 0 {
		return LiveResult{}, errors.New("a generator needs a count or a duration: it never runs unbounded")
	}
	if cfg.Ifindex <= 0 {
		return LiveResult{}, errors.New("a generator needs an interface")
	}
	if len(cfg.Frame) < 14 || cfg.SeqOffset+8 > len(cfg.Frame) || cfg.SportOffset+2 > len(cfg.Frame) || cfg.CsumOffset+2 > len(cfg.Frame) {
		return LiveResult{}, fmt.Errorf("bad template: %d-byte frame, sequence at %d, source port at %d, checksum at %d", len(cfg.Frame), cfg.SeqOffset, cfg.SportOffset, cfg.CsumOffset)
	}
	flows := max(cfg.Flows, 1)
	gc := livegenGenConfig{SeqOff: uint32(cfg.SeqOffset), SportOff: uint32(cfg.SportOffset), CsumOff: uint32(cfg.CsumOffset),
		Flows: uint32(flows), SportBase: uint32(cfg.SportBase), Stream: uint32(cfg.Stream)}
	if err := l.objs.GenConfig.Update(uint32(0), gc, ebpf.UpdateAny); err != nil {
		return LiveResult{}, fmt.Errorf("can't configure the generator: %w", err)
	}

	first, err := l.sequence()
	if err != nil {
		return LiveResult{}, err
	}
	start := time.Now()
	var res LiveResult
	// Calls start small to learn the rate, then grow towards a second each
	// (bounded by maxRepeat and by what Count, Duration and Rate leave).
	repeat := uint64(1 << 16)
	for ctx.Err() == nil {
		n := repeat
		if cfg.Count > 0 {
			if res.Sent >= cfg.Count {
				break
			}
			n = min(n, cfg.Count-res.Sent)
		}
		elapsed := time.Since(start)
		if cfg.Duration > 0 && elapsed >= cfg.Duration {
			break
		}
		if cfg.Rate > 0 {
			// Send what the schedule owes. Each call ends in
			// synchronize_rcu (milliseconds, tens on a loaded machine), so a
			// fixed small chunk per call would fall behind: a slow call is
			// followed by a larger one, up to 100 ms worth.
			owed := cfg.Rate*elapsed.Seconds() - float64(res.Sent)
			if owed < 1 {
				wait := time.Duration((1 - owed) / cfg.Rate * float64(time.Second))
				if cfg.Duration > 0 {
					wait = min(wait, cfg.Duration-elapsed)
				}
				time.Sleep(max(wait, 50*time.Microsecond))
				continue
			}
			n = min(n, uint64(min(owed, cfg.Rate/10)))
		}
		if cfg.Duration > 0 && cfg.Rate == 0 && res.Sent > 0 {
			// Don't overshoot the duration by more than ~10%.
			pps := float64(res.Sent) / elapsed.Seconds()
			left := (cfg.Duration - elapsed).Seconds()
			n = min(n, max(1024, uint64(pps*left)+1))
		}
		n = max(n, 1)
		t0 := time.Now()
		err := l.run(cfg, uint32(n))
		// Count from the program's own sequence counter: when a signal
		// interrupts a call, the kernel's partial run has sent frames and
		// cilium/ebpf reruns the call whole, so n would under-count.
		if seq, serr := l.sequence(); serr == nil {
			res.Sent = seq - first
		} else if err == nil {
			res.Sent += n
		}
		if err != nil {
			res.Elapsed = time.Since(start)
			return res, err
		}
		if d := time.Since(t0); d < 500*time.Millisecond && repeat < maxRepeat {
			repeat = min(repeat*4, maxRepeat)
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// sequence reads the program's next sequence number (frames sent since it
// was loaded).
func (l *Live) sequence() (uint64, error) {
	var v uint64
	if err := l.objs.GenSeq.Lookup(uint32(0), &v); err != nil {
		return 0, fmt.Errorf("can't read the generator's sequence counter: %w", err)
	}
	return v, nil
}

func (l *Live) run(cfg LiveConfig, repeat uint32) error {
	ctxIn := xdpMD{DataEnd: uint32(len(cfg.Frame)), IngressIfindex: uint32(cfg.Ifindex)}
	_, err := l.objs.Livegen.Run(&ebpf.RunOptions{
		Data:    cfg.Frame,
		Context: ctxIn,
		Repeat:  repeat,
		Flags:   unix.BPF_F_TEST_XDP_LIVE_FRAMES,
	})
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("can't run the generator: %w: needs CAP_BPF and CAP_NET_ADMIN", err)
		}
		return fmt.Errorf("can't run the generator on interface %d: %w", cfg.Ifindex, err)
	}
	return nil
}
