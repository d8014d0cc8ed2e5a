package main

import (
	"cmp"
	"flag"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/xdpingest/xdpingest/bench/measure"
	"github.com/xdpingest/xdpingest/datapath/afxdp"
	"github.com/xdpingest/xdpingest/tuning"
)

// rxFlags are the receivers' settings compare and rx share.
type rxFlags struct {
	spin          *int
	nap, slice    *time.Duration
	frames, rings *int
	nice          *int
}

func addRxFlags(fs *flag.FlagSet) rxFlags {
	return rxFlags{
		spin:   fs.Int("spin", 0, "afxdp, afxdp-c: empty ring checks before a receiver sleeps (default: datapath/afxdp's)"),
		nap:    fs.Duration("nap", 0, fmt.Sprintf("afxdp, afxdp-c, server: how long an AF_XDP receiver sleeps on a timer when its ring is empty while traffic is recent (default: datapath/afxdp's, %v; negative: poll() at once)", afxdp.DefaultNap)),
		slice:  fs.Duration("slice", tuning.DefaultWorkerSlice, fmt.Sprintf("every path's receiving threads (the server's workers, xskdrop) run with this scheduler slice, as xdpingest's workers do (0: the kernel's; %v to %v)", tuning.MinSlice, tuning.MaxSlice)),
		frames: fs.Int("frames", 0, fmt.Sprintf("afxdp, server: UMEM frames per socket, a power of two (default %d)", afxdp.DefaultNumFrames)),
		nice:   fs.Int("nice", tuning.DefaultWorkerNice, "every path's receiving threads (the server's workers, xskdrop) run at this nice value, as xdpingest's workers do (0: pktbench's; below it needs CAP_SYS_NICE)"),
		rings:  fs.Int("ring-size", 0, fmt.Sprintf("afxdp, server: RX and fill ring entries, a power of two (default %d)", afxdp.DefaultRingSize)),
	}
}

// noteSlice says on stderr when the receivers can't have the scheduler
// slice d: the kernel has no custom slices (before 6.12), or refuses. It
// tries on a thread of its own, discarded afterwards.
func noteSlice(d time.Duration, stderr io.Writer) {
	if d == 0 {
		return
	}
	var ok bool
	res := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with its slice
		var err error
		ok, err = tuning.SetThreadSlice(d)
		res <- err
	}()
	switch err := <-res; {
	case err != nil:
		fmt.Fprintf(stderr, "pktbench: the receivers keep the kernel's scheduler slice: %v\n", err)
	case !ok:
		fmt.Fprintf(stderr, "pktbench: this kernel ignores --slice %v (custom scheduler slices came in Linux 6.12); the receivers keep the kernel's\n", d)
	}
}

// apply checks the flags and sets them in o.
func (f rxFlags) apply(o *measure.PathOptions) error {
	if *f.spin < 0 {
		return fmt.Errorf("--spin %d: want 0 or more", *f.spin)
	}
	if *f.nap > time.Millisecond {
		return fmt.Errorf("--nap %v: at most 1ms", *f.nap)
	}
	if err := tuning.CheckSlice(*f.slice); err != nil {
		return fmt.Errorf("--slice: %w", err)
	}
	frames, rings := cmp.Or(*f.frames, afxdp.DefaultNumFrames), cmp.Or(*f.rings, afxdp.DefaultRingSize)
	if frames < 64 || frames > 1<<20 || frames&(frames-1) != 0 {
		return fmt.Errorf("--frames %d: want a power of two from 64 to 1048576", frames)
	}
	if rings < 64 || rings > frames || rings&(rings-1) != 0 {
		return fmt.Errorf("--ring-size %d: want a power of two from 64 up to the frames (%d)", rings, frames)
	}
	if err := tuning.CheckNice(*f.nice); err != nil {
		return fmt.Errorf("--nice: %w", err)
	}
	o.Spin, o.Nap, o.SchedSlice, o.Frames, o.RingSize, o.WorkerNice = *f.spin, *f.nap, *f.slice, *f.frames, *f.rings, *f.nice
	return nil
}
