package measure

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath/afxdp"
)

const (
	afxdpTxBatch = 64
	// afxdpTxStall ends a run whose TX ring made no progress for this long.
	afxdpTxStall = 5 * time.Second
	// afxdpTxBurst is the token bucket's depth in time (see bench.UDPGen).
	afxdpTxBurst = 20 * time.Millisecond
)

// runAFXDP sends from a TX-only AF_XDP socket on the generator's queue:
// frames are stamped in the UMEM (a copy of the template, then the sequence
// number, source port and checksum) and handed to the kernel in batches. In
// copy mode the kernel sends only inside the sendto() that SubmitTx and
// Kick make, a budget of frames per call.
func (g *genOne) runAFXDP(ctx context.Context) (uint64, time.Duration, error) {
	p, err := afxdp.Open(afxdp.Config{Ifindex: g.spec.Iface.Index, Queues: []int{g.queue}, TxOnly: true, FrameSize: g.spec.AFXDPFrameSize}, nil)
	if err != nil {
		return 0, 0, err
	}
	defer p.Close()
	s := p.Sockets()[0]

	var (
		bufs     = make([][]byte, afxdpTxBatch)
		start    = time.Now()
		deadline time.Time
		sent     uint64
		flows    = uint64(g.spec.Flows)
		base     = g.sportBase()
		done     = ctx.Done()
		tokens   float64
		burst    float64
		last     = start
		progress = start
	)
	if g.spec.Duration > 0 {
		deadline = start.Add(g.spec.Duration)
	}
	if g.rate > 0 {
		burst = max(afxdpTxBatch, g.rate*afxdpTxBurst.Seconds())
		tokens = 1
	}
loop:
	for {
		select {
		case <-done:
			break loop
		default:
		}
		now := time.Now()
		if !deadline.IsZero() && !now.Before(deadline) {
			break
		}
		k := uint64(afxdpTxBatch)
		if g.count > 0 {
			if sent >= g.count {
				break
			}
			k = min(k, g.count-sent)
		}
		if g.rate > 0 {
			tokens = min(burst, tokens+now.Sub(last).Seconds()*g.rate)
			last = now
			if tokens < 1 {
				time.Sleep(time.Duration((1 - tokens) / g.rate * float64(time.Second)))
				continue
			}
			k = min(k, uint64(tokens))
		}
		n, err := s.ReserveTx(bufs[:k])
		if err != nil {
			return sent, time.Since(start), err
		}
		if n == 0 {
			// Every send frame is in flight: let the kernel send some.
			if err := s.Kick(); err != nil {
				return sent, time.Since(start), err
			}
			if time.Since(progress) > afxdpTxStall {
				return sent, time.Since(start), fmt.Errorf("the AF_XDP TX ring of %s queue %d made no progress for %v", g.spec.Iface.Name, g.queue, afxdpTxStall)
			}
			runtime.Gosched()
			continue
		}
		for i := 0; i < n; i++ {
			c := sent + uint64(i)
			l := g.tpl.Stamp(bufs[i], bench.StreamSeq(g.stream, c), base+uint16(c%flows))
			bufs[i] = bufs[i][:l]
		}
		if err := s.SubmitTx(bufs[:n]); err != nil {
			return sent, time.Since(start), err
		}
		sent += uint64(n)
		progress = time.Now()
		if g.rate > 0 {
			tokens -= float64(n)
		}
	}
	// Let the kernel send what is still in the ring, so that Sent is what
	// left.
	for t0 := time.Now(); s.TxInFlight() > 0 && time.Since(t0) < time.Second; {
		s.Kick()
		s.Complete()
		if s.TxInFlight() > 0 {
			time.Sleep(50 * time.Microsecond)
		}
	}
	return sent, time.Since(start), nil
}
