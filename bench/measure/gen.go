package measure

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/tuning"
)

// GenSpec describes a set of generators: one per CPU in CPUs (or a single
// unpinned one), generator i stamping stream Stream+i and, for afxdp,
// sending on TX queue Queues[i].
type GenSpec struct {
	Kind  string // GenLive, GenAFXDP or GenSendmmsg
	Side  *testbed.Side
	Iface Iface

	SrcMAC, DstMAC net.HardwareAddr
	Src, Dst       netip.AddrPort // Src's port is the first flow's
	Size           int            // frame size without FCS
	Flows          int

	// Rate (pps) and Count are totals, split evenly over the generators.
	Rate     float64
	Count    uint64
	Duration time.Duration

	Stream uint16
	CPUs   []int
	Queues []int // afxdp: TX queue per generator (default 0, 1, ...)
	// AFXDPFrameSize is the UMEM chunk of the afxdp generator (2048 or 4096).
	AFXDPFrameSize int
}

// GenResult is what a set of generators sent.
type GenResult struct {
	// Sent per stream id: counters 0..Sent-1 went out.
	Sent    map[uint16]uint64
	Total   uint64
	Elapsed time.Duration // the longest generator's
}

// PPS is the set's rate: frames sent per second of the longest generator.
func (r GenResult) PPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Total) / r.Elapsed.Seconds()
}

// Check checks the spec and fills in its defaults (Flows, AFXDPFrameSize).
func (s *GenSpec) Check() error {
	switch s.Kind {
	case GenLive, GenAFXDP, GenSendmmsg:
	default:
		return fmt.Errorf("unknown generator %q: want live, afxdp or sendmmsg", s.Kind)
	}
	if s.Count == 0 && s.Duration <= 0 {
		return errors.New("a generator needs a count or a duration: it never runs unbounded")
	}
	if s.Rate < 0 {
		return fmt.Errorf("negative rate %v", s.Rate)
	}
	if s.Flows <= 0 {
		s.Flows = 1
	}
	if int(s.Src.Port())+max(1, len(s.CPUs))*s.Flows-1 > 65535 {
		return fmt.Errorf("%d generator(s) of %d flows from source port %d run past 65535", max(1, len(s.CPUs)), s.Flows, s.Src.Port())
	}
	v6 := !s.Dst.Addr().Is4()
	if s.Size < bench.MinFrameSize(v6) {
		return fmt.Errorf("frame size %d is below the %d bytes of headers and a sequence number", s.Size, bench.MinFrameSize(v6))
	}
	n := max(1, len(s.CPUs))
	if int(s.Stream)+n-1 >= bench.MaxStreams {
		return fmt.Errorf("stream ids %d..%d: at most %d", s.Stream, int(s.Stream)+n-1, bench.MaxStreams-1)
	}
	if s.Kind == GenAFXDP {
		if s.AFXDPFrameSize == 0 {
			s.AFXDPFrameSize = 2048
			if s.Size > 2048 {
				s.AFXDPFrameSize = 4096
			}
		}
		if s.Size > s.AFXDPFrameSize {
			return fmt.Errorf("AF_XDP sends frames of at most %d bytes, not %d", s.AFXDPFrameSize, s.Size)
		}
	}
	return nil
}

// RunGenerators runs the generators and waits for all of them. They stop at
// their count or duration, or when ctx is done.
func RunGenerators(ctx context.Context, spec GenSpec) (GenResult, error) {
	if err := spec.Check(); err != nil {
		return GenResult{}, err
	}
	tpl, err := bench.BuildTemplate(bench.FrameSpec{SrcMAC: spec.SrcMAC, DstMAC: spec.DstMAC, Src: spec.Src, Dst: spec.Dst, Size: spec.Size})
	if err != nil {
		return GenResult{}, err
	}
	cpus := spec.CPUs
	n := max(1, len(cpus))
	res := GenResult{Sent: map[uint16]uint64{}}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	// The generators fail together: one that can't start stops the rest.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := 0; i < n; i++ {
		g := genOne{spec: &spec, tpl: tpl, index: i, stream: spec.Stream + uint16(i), cpu: -1}
		if len(cpus) > 0 {
			g.cpu = cpus[i]
		}
		g.count = spec.Count / uint64(n)
		if uint64(i) < spec.Count%uint64(n) {
			g.count++
		}
		if spec.Count > 0 && g.count == 0 {
			continue
		}
		g.rate = spec.Rate / float64(n)
		g.queue = i
		if i < len(spec.Queues) {
			g.queue = spec.Queues[i]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent, elapsed, err := g.run(ctx)
			mu.Lock()
			defer mu.Unlock()
			res.Sent[g.stream] = sent
			res.Total += sent
			res.Elapsed = max(res.Elapsed, elapsed)
			if err != nil {
				errs = append(errs, fmt.Errorf("generator %d: %w", i, err))
				cancel()
			}
		}()
	}
	wg.Wait()
	return res, errors.Join(errs...)
}

// genOne is one generator of a set.
type genOne struct {
	spec   *GenSpec
	tpl    bench.Template
	index  int
	stream uint16
	cpu    int // -1: not pinned
	queue  int
	count  uint64
	rate   float64
}

// run runs the generator on a thread of its own, in the namespace, pinned.
// The thread is never unlocked: the runtime discards it afterwards.
func (g *genOne) run(ctx context.Context) (uint64, time.Duration, error) {
	if err := nsEnter(g.spec.Side); err != nil {
		return 0, 0, err
	}
	if g.cpu >= 0 {
		if err := tuning.PinThread(g.cpu); err != nil {
			return 0, 0, err
		}
	}
	if err := blockAsyncSignals(); err != nil {
		return 0, 0, fmt.Errorf("can't block signals on the generator's thread: %w", err)
	}
	switch g.spec.Kind {
	case GenLive:
		return g.runLive(ctx)
	case GenAFXDP:
		return g.runAFXDP(ctx)
	}
	return g.runSendmmsg(ctx)
}

func (g *genOne) runLive(ctx context.Context) (uint64, time.Duration, error) {
	// A program per run: its sequence counter starts at 0.
	live, err := bench.LoadLive()
	if err != nil {
		return 0, 0, err
	}
	defer live.Close()
	cfg := g.tpl.Config()
	cfg.Ifindex = g.spec.Iface.Index
	cfg.Flows, cfg.SportBase, cfg.Stream = g.spec.Flows, g.sportBase(), g.stream
	cfg.Count, cfg.Duration, cfg.Rate = g.count, g.spec.Duration, max(g.rate, 0)
	res, err := live.Run(ctx, cfg)
	return res.Sent, res.Elapsed, err
}

// sportBase is the generator's first source port: generators of a set
// use consecutive ranges of Flows ports.
func (g *genOne) sportBase() uint16 {
	return g.spec.Src.Port() + uint16(g.index*g.spec.Flows)
}

func (g *genOne) runSendmmsg(ctx context.Context) (uint64, time.Duration, error) {
	hl := len(g.tpl.Frame) - g.tpl.PayloadLen
	size := g.spec.Size - hl
	stream := g.stream
	gen, err := bench.NewUDPGen(bench.UDPGenConfig{
		Dst: g.spec.Dst, Src: g.spec.Src.Addr(), SrcPort: g.sportBase(), Flows: g.spec.Flows,
		Count: g.count, Duration: g.spec.Duration, Rate: g.rate, Size: size,
		Payload: func(buf []byte, seq uint64) []byte {
			p := buf[:size]
			bench.PutWide(p, bench.StreamSeq(stream, seq))
			return p
		},
	})
	if err != nil {
		return 0, 0, err
	}
	defer gen.Close()
	res, err := gen.Run(ctx)
	return res.Sent, res.Elapsed, err
}
