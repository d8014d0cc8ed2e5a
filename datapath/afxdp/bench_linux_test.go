package afxdp

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
	"github.com/xdpingest/xdpingest/xdp"
)

// benchDuration is how long each generator runs per op.
var benchDuration = 2 * time.Second

// BenchmarkReceive measures the AF_XDP path on the test bed at full rate:
// 64-byte UDP frames from the live-frames generator (BPF_PROG_RUN, XDP_TX
// out of the generating veth end, one generator per queue, generator i
// pinned to CPU i, so that the frames land on RX queue i), the XDP program
// redirecting them to one socket per queue, each drained by a receiver that
// walks every frame and hands the batch back.
//
// Beside it, the same set-up with the program in drop mode and no socket:
// the XDP_DROP ceiling of the same run. Run with -count to alternate them
// (A B A B): the host moves the vCPUs around, so only figures from the same
// run compare.
//
// One op is one run of benchDuration; the figures are the custom metrics:
// rx-pps (datagrams the receivers got per second), gen-pps (frames the
// generators sent), prog-pps (frames the XDP program saw), rx/redirected
// (what the receivers got of what the program redirected), and
// allocs/datagram over the whole process.
func BenchmarkReceive(b *testing.B) {
	for _, queues := range []int{1, 2} {
		for _, mode := range []string{"xdp-drop", "afxdp"} {
			b.Run(fmt.Sprintf("%s/%dq", mode, queues), func(b *testing.B) {
				benchReceive(b, mode, queues)
			})
		}
	}
}

func benchReceive(b *testing.B, mode string, queues int) {
	bed := bedT(b, queues)
	action := xdp.Redirect
	if mode == "xdp-drop" {
		action = xdp.Drop
	}
	prog, err := xdp.Load(xdp.Config{Ports: []uint16{testPort}, Action: action}, xdp.LoadOptions{MaxQueues: 8, MaxPrefixes: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer prog.Close()
	if err := bed.Rx.Do(func() error { _, err := prog.Attach(bed.Rx.Index, xdp.AttachOptions{Mode: xdp.ModeNative}); return err }); err != nil {
		b.Fatal(err)
	}
	var path *Path
	if mode == "afxdp" {
		path = openT(b, bed, Config{}, prog)
	}
	tpl, err := bench.BuildTemplate(bench.FrameSpec{SrcMAC: bed.Gen.MAC, DstMAC: bed.Rx.MAC,
		Src: netip.AddrPortFrom(testbed.GenIPv4, 10000), Dst: netip.AddrPortFrom(testbed.RxIPv4, testPort), Size: 64})
	if err != nil {
		b.Fatal(err)
	}
	gens := make([]*bench.Live, queues)
	for i := range gens {
		if gens[i], err = bench.LoadLive(); err != nil {
			testutil.Skip(b, err.Error())
		}
		defer gens[i].Close()
	}

	var received atomic.Uint64
	var rwg sync.WaitGroup
	if path != nil {
		for i, s := range path.Sockets() {
			rwg.Add(1)
			go func() {
				defer rwg.Done()
				// Each receiver on its own thread, on the CPU of the
				// other queue's generator: the kernel copies into the
				// UMEM on the generator's CPU, and the receiver then
				// reads what it copied (see the guide on spinning).
				pinThread(i + 1)
				batch := make([]datapath.Datagram, 64)
				for {
					n, err := s.Receive(batch)
					if err != nil {
						return
					}
					received.Add(uint64(n))
				}
			}()
		}
	}

	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	c0, _ := prog.Counters()
	st0 := datapath.Stats{}
	if path != nil {
		st0 = path.Stats()
	}
	b.ResetTimer()
	var sent atomic.Uint64
	var elapsed time.Duration
	for range b.N {
		var gwg sync.WaitGroup
		gerr := make([]error, queues)
		start := time.Now()
		for i := range queues {
			gwg.Add(1)
			go func() {
				defer gwg.Done()
				cfg := tpl.Config()
				cfg.Ifindex, cfg.Duration, cfg.Stream, cfg.Flows, cfg.SportBase = bed.Gen.Index, benchDuration, uint16(i), 1, uint16(10000+i)
				gerr[i] = bed.Gen.Do(func() error {
					pinThread(i)
					defer runtime.UnlockOSThread()
					res, err := gens[i].Run(context.Background(), cfg)
					sent.Add(res.Sent)
					return err
				})
			}()
		}
		gwg.Wait()
		elapsed += time.Since(start)
		for _, err := range gerr {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	// Let the receivers drain what is left in the rings.
	if path != nil {
		for last := ^uint64(0); received.Load() != last; time.Sleep(50 * time.Millisecond) {
			last = received.Load()
		}
	}
	runtime.ReadMemStats(&ms1)
	c1, _ := prog.Counters()
	d := c1.Sub(c0)
	secs := elapsed.Seconds()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(sent.Load())/secs, "gen-pps")
	b.ReportMetric(float64(d.Total().Packets)/secs, "prog-pps")
	if path != nil {
		st := path.Stats()
		got := st.Packets - st0.Packets
		redirected := d[xdp.OutcomeRedirect].Packets
		b.ReportMetric(float64(got)/secs, "rx-pps")
		if redirected > 0 {
			b.ReportMetric(float64(got)/float64(redirected), "rx/redirected")
		}
		if got > 0 {
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(got), "allocs/datagram")
			b.ReportMetric(float64(got)/float64(st.Batches-st0.Batches), "datagrams/batch")
		}
		x, x0 := st.XDP, st0.XDP
		b.ReportMetric(float64(x.RxRingFull-x0.RxRingFull)/secs, "rx-ring-full/s")
		b.ReportMetric(float64(x.RxFillRingEmptyDescs-x0.RxFillRingEmptyDescs)/secs, "fill-empty/s")
		b.ReportMetric(float64(x.RxDropped-x0.RxDropped)/secs, "rx-dropped/s")
		var polls uint64
		for _, s := range path.Sockets() {
			polls += s.LoopStats().Polls
		}
		b.ReportMetric(float64(polls)/secs, "polls/s")
		if err := path.Close(); err != nil {
			b.Error(err)
		}
		rwg.Wait()
	} else {
		b.ReportMetric(float64(d[xdp.OutcomeDropMode].Packets)/secs, "drop-pps")
	}
}
