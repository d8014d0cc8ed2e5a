package measure

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/internal/testutil"
)

// A short sweep over every default path and two sizes measures every
// path at every size, and the books balance: whatever was sent was
// received or counted lost, exactly once where sequence numbers tell.
// Progress sees every run start and end, in order.
func TestCompareEveryPath(t *testing.T) {
	testutil.RequireBPF(t)
	var steps []Step
	o := Options{Sizes: []int{64, 512}, Queues: []int{1}, Paths: DefaultPaths(), Gen: GenLive, Flows: 1,
		Duration: 300 * time.Millisecond, Reps: 1, Rx: PathOptions{Xdpingest: filepath.Join(testutil.BuildT(t, "../../cmd/xdpingest"), "xdpingest")},
		Progress: func(s Step) { steps = append(steps, s) }}
	r, err := Compare(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Complete || r.Reps != 1 || !slices.Equal(r.Sizes, o.Sizes) || !slices.Equal(r.Paths, DefaultPaths()) || len(r.Results) != 2*len(DefaultPaths()) {
		t.Fatalf("report header: %+v", r)
	}
	if n := 2 * len(DefaultPaths()); len(steps) != 2*n || steps[0].Result != nil || steps[2*n-1].Result == nil || steps[2*n-1].N != n || steps[2*n-1].Total != n {
		t.Errorf("%d progress steps for %d runs; last %+v", len(steps), n, steps[len(steps)-1])
	}
	for _, size := range o.Sizes {
		for _, p := range DefaultPaths() {
			g := r.Group(1, size, p)
			if len(g.Runs) != 1 {
				t.Errorf("%s at %d bytes: %d runs", p, size, len(g.Runs))
				continue
			}
			run := g.Runs[0]
			// Behaviour, not speed: every path received something of
			// what was sent, and the books balance.
			if run.Sent == 0 || run.Received == 0 || run.Received > run.Sent || g.MedianMpps <= 0 || run.Lost > run.Sent {
				t.Errorf("%s at %d bytes: sent %d received %d lost %d, %v Mpps", p, size, run.Sent, run.Received, run.Lost, g.MedianMpps)
			}
			if p == PathAFXDP || p == PathKernel || p == PathStdnet {
				// Sequence numbers: lost counts numbers never seen,
				// so received + lost = sent (no duplicates here).
				if run.Received+run.Lost != run.Sent || run.Dups != 0 || run.Unexpected != 0 {
					t.Errorf("%s at %d bytes: received %d + lost %d != sent %d (dups %d, unexpected %d)", p, size, run.Received, run.Lost, run.Sent, run.Dups, run.Unexpected)
				}
			}
			if g.VsDrop == nil || g.VsKernel == nil || len(run.CPU) == 0 || g.Describe == "" {
				t.Errorf("%s at %d bytes: ratios %v %v, cpu %v, describe %q", p, size, g.VsDrop, g.VsKernel, run.CPU, g.Describe)
			}
			if (p == PathDrop) != (g.RxCPUUsPerPkt == nil) {
				t.Errorf("%s: rx CPU per packet %v", p, g.RxCPUUsPerPkt)
			}
			if want := map[bool]string{true: "sequence", false: "counters"}[p == PathAFXDP || p == PathKernel || p == PathStdnet]; g.LossFrom != want {
				t.Errorf("%s: loss from %q, want %q", p, g.LossFrom, want)
			}
		}
	}
}

// Options that would fail only once a bed is built are refused first.
func TestCompareOptionErrors(t *testing.T) {
	base := Options{Sizes: []int{64}, Queues: []int{1}, Paths: []string{PathDrop}, Gen: GenLive, Duration: time.Second, Reps: 1}
	for _, c := range []struct {
		mod  func(*Options)
		want string
	}{
		{func(o *Options) { o.Paths = nil }, "at least one frame size, queue count and path"},
		{func(o *Options) { o.Reps = 0 }, "at least one repetition"},
		{func(o *Options) { o.Queues = []int{0} }, "queue count 0"},
		{func(o *Options) { o.Paths = []string{"dpdk"} }, `unknown path "dpdk"`},
		{func(o *Options) { o.Paths = []string{PathServer} }, "needs the xdpingest binary"},
		{func(o *Options) { o.Paths = []string{PathCrefWalk} }, "needs the xskdrop binary"},
	} {
		o := base
		c.mod(&o)
		if r, err := Compare(context.Background(), o); r != nil || err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", o, err, c.want)
		}
	}
}

// The afxdp-c paths run bench/cref/xskdrop, compiled here, beside the Go
// receiver on one and two queues: both receive, the books balance, and no
// xskdrop process is left behind.
func TestCompareCReference(t *testing.T) {
	testutil.RequireBPF(t)
	bin := xskdropBinary(t)
	r, err := Compare(context.Background(), Options{Sizes: []int{64}, Queues: []int{1, 2}, Paths: []string{PathAFXDP, PathCref, PathCrefWalk},
		Gen: GenLive, Flows: 1, Duration: 300 * time.Millisecond, Reps: 1, Rx: PathOptions{Xskdrop: bin}})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("pgrep", "-f", bin).Output(); err == nil {
		t.Errorf("xskdrop still running: %s", out)
	}
	if !r.Complete || len(r.Results) != 6 {
		t.Fatalf("report: %+v", r)
	}
	for _, g := range r.Results {
		run := g.Runs[0]
		if run.Sent == 0 || run.Received == 0 || run.Received > run.Sent || g.RxCPUUsPerPkt == nil {
			t.Errorf("%s on %d queue(s): sent %d received %d, rx cpu %v", g.Path, g.Queues, run.Sent, run.Received, g.RxCPUUsPerPkt)
		}
		if g.Path != PathAFXDP && !strings.Contains(g.Describe, "xskdrop") {
			t.Errorf("describe %q", g.Describe)
		}
	}
}

// The afxdp-c path takes 2048-byte UMEM frames only.
func TestCReferenceFrameSize(t *testing.T) {
	_, err := StartPath(PathCref, PathOptions{Iface: "lo", Queues: []int{0}, Xskdrop: "/bin/true", FrameSize: 4096})
	if err == nil || !strings.Contains(err.Error(), "2048-byte UMEM frames") {
		t.Fatalf("err %v, want one about 2048-byte frames", err)
	}
}

// With GRO on on the receiving veth the kernel path gets merged buffers
// (UDP GRO) that it splits back, and the books balance (sequence numbers:
// every datagram exactly once or lost).
func TestCompareGRO(t *testing.T) {
	testutil.RequireBPF(t)
	r, err := Compare(context.Background(), Options{GRO: true, Sizes: []int{64}, Queues: []int{1}, Paths: []string{PathKernel},
		Gen: GenLive, Flows: 1, Duration: 300 * time.Millisecond, Reps: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Complete || len(r.Results) != 1 {
		t.Fatalf("report: %+v", r)
	}
	run := r.Results[0].Runs[0]
	if run.Received == 0 || run.Received+run.Lost != run.Sent || run.Dups != 0 || run.Unexpected != 0 {
		t.Errorf("kernel with GRO: sent %d received %d lost %d, %d duplicates, %d unexpected", run.Sent, run.Received, run.Lost, run.Dups, run.Unexpected)
	}
	// Live frames come in NAPI batches: the kernel merges them.
	if run.Buffers == 0 || run.Buffers*2 > run.Received {
		t.Errorf("kernel with GRO: %d datagrams in %d buffers, want at least 2 per buffer", run.Received, run.Buffers)
	}
	t.Logf("%d datagrams in %d buffers; drops %v", run.Received, run.Buffers, run.Drops)
}
