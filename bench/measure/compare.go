package measure

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath/afxdp"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/version"
	"github.com/xdpingest/xdpingest/tuning"
	"github.com/xdpingest/xdpingest/xdp"
)

// comparePort is the first run's UDP port; each run takes the next.
const comparePort = 9000

// Options are a sweep's settings.
type Options struct {
	// Sizes are the frame sizes in bytes (Ethernet header included, FCS
	// excluded), Queues the queue counts: each count gets a bed with that
	// many queues and one generator per queue, pinned to a CPU of its own.
	Sizes, Queues []int
	// Paths are the receive paths, in the order run (see KnownPaths).
	Paths []string
	// Gen is the generator kind (GenLive, GenAFXDP or GenSendmmsg), Flows
	// the flows (source ports) per generator.
	Gen   string
	Flows int
	IPv6  bool
	// Duration is each run's length; Reps the repetitions of every path,
	// alternating (A B C A B C ...).
	Duration time.Duration
	Reps     int
	XDPMode  xdp.Mode
	// GRO turns GRO on on the receiving veth, as a NIC has it.
	GRO bool
	// Rx holds the receivers' settings (Spin, Nap, SchedSlice, Frames,
	// RingSize, WorkerNice, Xdpingest, Xskdrop, PcapDir); the sweep sets
	// the rest.
	Rx PathOptions
	// Command is recorded in the report (pktbench's os.Args).
	Command []string
	// Progress, if set, is called before each run (Step.Result nil) and
	// after it.
	Progress func(Step)
}

// Step is where a sweep is: run N of Total.
type Step struct {
	N, Total     int
	Queues, Size int
	Rep, Reps    int
	Path         string
	Result       *RunResult // nil when the run starts
}

func (o Options) progress(s Step) {
	if o.Progress != nil {
		o.Progress(s)
	}
}

// check refuses what would fail only later, after a bed was built.
func (o Options) check() error {
	if len(o.Sizes) == 0 || len(o.Queues) == 0 || len(o.Paths) == 0 {
		return errors.New("a sweep needs at least one frame size, queue count and path")
	}
	if o.Reps < 1 || o.Duration <= 0 {
		return fmt.Errorf("a sweep needs at least one repetition (not %d) of a positive duration (not %v)", o.Reps, o.Duration)
	}
	for _, q := range o.Queues {
		if q < 1 {
			return fmt.Errorf("queue count %d: want 1 or more", q)
		}
	}
	for _, p := range o.Paths {
		if !slices.Contains(KnownPaths(), p) {
			return fmt.Errorf("unknown path %q: want some of %v", p, KnownPaths())
		}
		if IsServer(p) && o.Rx.Xdpingest == "" {
			return fmt.Errorf("the %s path needs the xdpingest binary: set Options.Rx.Xdpingest", p)
		}
		if IsCref(p) && o.Rx.Xskdrop == "" {
			return fmt.Errorf("the %s path needs the xskdrop binary: set Options.Rx.Xskdrop", p)
		}
	}
	return nil
}

// Compare runs the sweep and returns the report, complete or not (nil
// when the options are wrong or nothing could start). Every queue count
// gets a test bed of its own, removed whatever happens.
func Compare(ctx context.Context, o Options) (*Report, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	allowed, err := tuning.AllowedCPUs()
	if err != nil {
		return nil, err
	}
	cpus := allowed.List()
	rep := &Report{Tool: "pktbench compare", Version: version.String(), Started: time.Now().UTC(), Command: o.Command,
		Machine: ReadMachine(), Generator: o.Gen, IPv6: o.IPv6, Flows: o.Flows, Duration: o.Duration.Seconds(), Reps: o.Reps,
		Sizes: o.Sizes, Queues: o.Queues, Paths: o.Paths}
	rep.Machine.AllowedCPUs = allowed.String()
	st := &Step{Total: len(o.Queues) * len(o.Sizes) * o.Reps * len(o.Paths)}
	for _, q := range o.Queues {
		if err := compareBed(ctx, o, q, cpus, rep, st); err != nil {
			rep.Error = err.Error()
			rep.Summarize()
			return rep, err
		}
	}
	rep.Complete = true
	rep.Summarize()
	return rep, nil
}

// compareBed builds a bed with q queues, runs every size, repetition and
// path on it, and removes it whatever happens.
func compareBed(ctx context.Context, o Options, q int, cpus []int, rep *Report, st *Step) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	mtu := 1500
	for _, s := range o.Sizes {
		mtu = max(mtu, s-14)
	}
	bed, err := testbed.New(testbed.Config{Queues: q, MTU: mtu})
	if err != nil {
		return fmt.Errorf("can't build the test bed: %w", err)
	}
	defer func() {
		if cerr := bed.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("can't remove the test bed: %w", cerr))
		}
	}()
	if o.GRO {
		// As a NIC has it by default. The XDP paths run before GRO; the
		// kernel path's UDP GRO needs it; a net.UDPConn doesn't ask for
		// UDP GRO and gets no merged buffers.
		if err := bed.Rx.Run("ethtool", "-K", bed.Rx.Link, "gro", "on"); err != nil {
			return fmt.Errorf("can't turn GRO on on the receiving veth: %w", err)
		}
	}
	// Generator i runs on CPU i (queue i of the receiving veth is then
	// processed on it: veth picks the RX queue from the sending CPU);
	// receivers get the CPUs the generators leave. With none left, receiver
	// i shares its queue's CPU, where IRQ affinity would put it on a NIC
	// (and where the frames are in cache): measured steadier and faster
	// than letting the scheduler move them.
	var genCPUs, rxCPUs []int
	for i := 0; i < q; i++ {
		genCPUs = append(genCPUs, cpus[i%len(cpus)])
	}
	if q < len(cpus) {
		rxCPUs = cpus[q:]
	} else {
		rxCPUs = genCPUs
	}
	var queues []int
	for i := 0; i < q; i++ {
		queues = append(queues, i)
	}
	genEth := newEthStats(bed.Gen, bed.Gen.Link)
	if genEth != nil {
		defer genEth.close()
	}
	src, dst := bed.Gen.IPv4, bed.Rx.IPv4
	if o.IPv6 {
		src, dst = bed.Gen.IPv6, bed.Rx.IPv6
	}
	maxSize := slices.Max(o.Sizes)
	runs := 0
	// Frames above 1792 bytes need 4096-byte UMEM frames.
	frameSize := 0
	if maxSize > afxdp.DefaultFrameSize-256 {
		frameSize = 4096
	}
	for _, size := range o.Sizes {
		spec := GenSpec{Kind: o.Gen, Side: bed.Gen, Iface: Iface{Name: bed.Gen.Link, Index: bed.Gen.Index, MAC: bed.Gen.MAC},
			SrcMAC: bed.Gen.MAC, DstMAC: bed.Rx.MAC, Src: netip.AddrPortFrom(src, 10000), Dst: netip.AddrPortFrom(dst, comparePort),
			Size: size, Flows: o.Flows, Duration: o.Duration, CPUs: genCPUs}
		po := o.Rx
		po.Side, po.Iface, po.Port, po.Queues, po.CPUs, po.FrameSize = bed.Rx, bed.Rx.Link, comparePort, queues, rxCPUs, frameSize
		po.XDPMode, po.NoXDP, po.Meter = o.XDPMode, false, true
		for r := 1; r <= o.Reps; r++ {
			for _, path := range o.Paths {
				if err := ctx.Err(); err != nil {
					return err
				}
				st.N++
				st.Queues, st.Size, st.Rep, st.Reps, st.Path, st.Result = q, size, r, o.Reps, path, nil
				o.progress(*st)
				g := rep.Group(q, size, path)
				// A port per run: frames of the last run still queued in
				// the veth's rings when its path stopped go to another
				// port, and no counter of this run sees them.
				runs++
				po.Port = comparePort + uint16(runs%1000)
				spec.Dst = netip.AddrPortFrom(dst, po.Port)
				res, desc, err := runOnce(ctx, path, po, spec, genEth)
				if err != nil {
					return fmt.Errorf("%s, %d queue(s), %d-byte frames, repetition %d: %w", path, q, size, r, err)
				}
				res.Rep = r
				g.Describe, g.LossFrom = desc, res.lossFrom
				g.Runs = append(g.Runs, res)
				st.Result = res
				o.progress(*st)
			}
		}
	}
	return nil
}

// runOnce starts a path, runs the generators against it, and stops it.
func runOnce(ctx context.Context, path string, po PathOptions, spec GenSpec, genEth *ethStats) (res *RunResult, desc string, err error) {
	rx, err := StartPath(path, po)
	if err != nil {
		return nil, "", err
	}
	defer func() {
		if rx != nil {
			rx.Stop()
		}
	}()
	desc = rx.Describe()
	gen0 := map[string]uint64{}
	if genEth != nil {
		genEth.add(gen0)
	}
	s0 := rx.Snapshot()
	c0, err := bench.ReadCPUStat()
	if err != nil {
		return nil, desc, err
	}
	gres, gerr := RunGenerators(ctx, spec)
	c1, _ := bench.ReadCPUStat()
	if gerr != nil {
		return nil, desc, gerr
	}
	if err := ctx.Err(); err != nil {
		return nil, desc, err
	}
	// What is still in rings and socket buffers arrives within
	// microseconds; a receiver that lags gets a little longer.
	last := rx.Snapshot()
	for t0 := time.Now(); time.Since(t0) < time.Second; {
		time.Sleep(20 * time.Millisecond)
		s := rx.Snapshot()
		if s.Packets == last.Packets {
			break
		}
		last = s
	}
	final, meter, err := rx.Stop()
	rx = nil
	if err != nil {
		return nil, desc, err
	}
	d := final.Sub(s0)
	res = &RunResult{Sent: gres.Total, Received: d.Packets, Elapsed: gres.Elapsed.Seconds(), RxCPU: d.RxCPU.Seconds(),
		Drops: d.Drops, CPU: c1.Since(c0), Buffers: d.Buffers}
	if genEth != nil {
		gen1 := map[string]uint64{}
		genEth.add(gen1)
		for k, v := range gen1 {
			if v > gen0[k] {
				res.Drops["gen_"+k] = v - gen0[k]
			}
		}
	}
	if len(res.Drops) == 0 {
		res.Drops = nil
	}
	if gres.Elapsed > 0 {
		res.Mpps = float64(d.Packets) / gres.Elapsed.Seconds() / 1e6
		res.Gbps = float64(d.Bytes) * 8 / gres.Elapsed.Seconds() / 1e9
	}
	if d.Packets > 0 {
		res.BusyUsPerPkt = c1.BusySince(c0).Seconds() * 1e6 / float64(d.Packets)
	}
	res.lossFrom = "sequence"
	if meter != nil {
		l := meter.LossAgainst(gres.Sent)
		res.Lost, res.Dups, res.Unexpected = l.Missing, l.Dups, l.Unexpected
	} else {
		res.lossFrom = "counters"
		if gres.Total > d.Packets {
			res.Lost = gres.Total - d.Packets
		}
	}
	return res, desc, nil
}
