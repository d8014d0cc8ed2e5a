//go:build linux

package main

import (
	"flag"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/xdpingest/xdpingest/bench/measure"
	"github.com/xdpingest/xdpingest/datapath/afxdp"
	"github.com/xdpingest/xdpingest/tuning"
)

// rxFlags are the receivers' settings compare and rx share. Those that
// xdpingest run has too take its names and meanings, so that a setting
// measured here is written the same way on the server.
type rxFlags struct {
	spin          *int
	nap, slice    *time.Duration
	frames, rings *int
	nice          *int
}

func addRxFlags(fs *flag.FlagSet) rxFlags {
	return rxFlags{
		spin:   fs.Int("spin", 0, "afxdp, afxdp-c: empty ring checks before a receiver sleeps (default: datapath/afxdp's)"),
		nap:    fs.Duration("nap", afxdp.DefaultNap, "afxdp, afxdp-c, server: how long an AF_XDP receiver sleeps on a timer when its ring is empty while traffic is recent, as xdpingest's --nap (0: never, poll() at once; at most 1ms)"),
		slice:  fs.Duration("sched-slice", tuning.DefaultWorkerSlice, fmt.Sprintf("every path's receiving threads (the server's workers, xskdrop) run with this scheduler slice, as xdpingest's workers do (0: the kernel's; %v to %v)", tuning.MinSlice, tuning.MaxSlice)),
		frames: fs.Int("frames", afxdp.DefaultNumFrames, "afxdp, server: UMEM frames per socket, a power of two"),
		nice:   fs.Int("worker-nice", tuning.DefaultWorkerNice, "every path's receiving threads (the server's workers, xskdrop) run at this nice value, as xdpingest's workers do (0: pktbench's; below it needs CAP_SYS_NICE)"),
		rings:  fs.Int("ring-size", afxdp.DefaultRingSize, "afxdp, server: RX and fill ring entries, a power of two, at most --frames"),
	}
}

// renamedFlags are pktbench's old names for xdpingest's knobs: the new
// name, and what to say. They are refused, naming the new flag, rather
// than kept as aliases: a flag means one thing in every tool, and
// --max-frame took a frame length where --frame-size takes the UMEM frame
// size.
var renamedFlags = map[string][2]string{
	"slice":     {"sched-slice", ""},
	"nice":      {"worker-nice", ""},
	"max-frame": {"frame-size", ": the AF_XDP UMEM frame size, 2048 or 4096 (frames above 1792 bytes need 4096)"},
}

// refuseRenamed returns an error naming the new flag when args use an old
// name whose new one fs has.
func refuseRenamed(fs *flag.FlagSet, args []string) error {
	for _, a := range args {
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if to, ok := renamedFlags[name]; ok && fs.Lookup(to[0]) != nil {
			return fmt.Errorf("--%s is now --%s, as xdpingest names it%s", name, to[0], to[1])
		}
	}
	return nil
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
		fmt.Fprintf(stderr, "pktbench: this kernel ignores --sched-slice %v (custom scheduler slices came in Linux 6.12); the receivers keep the kernel's\n", d)
	}
}

// apply checks the flags and sets them in o.
func (f rxFlags) apply(o *measure.PathOptions) error {
	if *f.spin < 0 {
		return fmt.Errorf("--spin %d: want 0 or more", *f.spin)
	}
	if *f.nap < 0 || *f.nap > time.Millisecond {
		return fmt.Errorf("--nap %v: want 0 (never nap) to 1ms", *f.nap)
	}
	if err := tuning.CheckSlice(*f.slice); err != nil {
		return fmt.Errorf("--sched-slice: %w", err)
	}
	frames, rings := *f.frames, *f.rings
	if frames < 64 || frames > 1<<20 || frames&(frames-1) != 0 {
		return fmt.Errorf("--frames %d: want a power of two from 64 to 1048576", frames)
	}
	if rings < 64 || rings > frames || rings&(rings-1) != 0 {
		return fmt.Errorf("--ring-size %d: want a power of two from 64 up to the frames (%d)", rings, frames)
	}
	if err := tuning.CheckNice(*f.nice); err != nil {
		return fmt.Errorf("--worker-nice: %w", err)
	}
	o.Spin, o.Nap, o.SchedSlice, o.Frames, o.RingSize, o.WorkerNice = *f.spin, *f.nap, *f.slice, *f.frames, *f.rings, *f.nice
	if o.Nap == 0 {
		o.Nap = -1 // PathOptions: never (0 is datapath/afxdp's default)
	}
	return nil
}
