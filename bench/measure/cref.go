package measure

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/datapath/afxdp"
	"github.com/xdpingest/xdpingest/xdp"
)

// The afxdp-c path runs bench/cref/xskdrop, a reference AF_XDP receiver in
// C (one process per queue), against the same XDP program: how close the Go
// receiver comes to what C gets in the same run.

// crefSpin is xskdrop's default run of empty checks before it sleeps in
// poll(): datapath/afxdp's.
const crefSpin = 8

type crefProc struct {
	queue   int
	cmd     *exec.Cmd
	stderr  *tailBuffer
	done    chan struct{}
	waitErr error
	packets atomic.Uint64
	mu      sync.Mutex
	stats   map[string]uint64 // XDP_STATISTICS, printed at exit
	// The latency mode's histogram and counters, printed at exit.
	lat    bench.Histogram
	latErr error
}

// xskdrop's modes (its WALK argument).
const (
	crefDrop    = 0 // reads no frame
	crefWalk    = 1 // reads each frame's headers and sequence number
	crefLatency = 2 // reads each frame's send time into a histogram
)

type crefRx struct {
	a     *attached
	procs []*crefProc
	spin  int
	mode  int
}

func startCref(o PathOptions, walk bool) (Receiver, error) {
	if walk {
		return startCrefMode(o, crefWalk)
	}
	return startCrefMode(o, crefDrop)
}

func startCrefMode(o PathOptions, mode int) (_ *crefRx, err error) {
	bin := o.Xskdrop
	if bin == "" {
		return nil, errors.New("the afxdp-c path needs the xskdrop binary (`make build` compiles it from bench/cref/xskdrop.c): set PathOptions.Xskdrop")
	}
	if o.FrameSize > 2048 {
		return nil, fmt.Errorf("the afxdp-c path uses 2048-byte UMEM frames, not %d: frames up to %d bytes", o.FrameSize, 2048-256)
	}
	a, err := attach(o, xdp.Redirect, xdp.OutcomeRedirect)
	if err != nil {
		return nil, err
	}
	r := &crefRx{a: a, spin: cmp.Or(o.Spin, crefSpin), mode: mode}
	defer func() {
		if err != nil {
			r.Stop()
		}
	}()
	for i, q := range o.Queues {
		cpu := -1
		if len(o.CPUs) > 0 {
			cpu = o.CPUs[i%len(o.CPUs)]
		}
		p, err := startXskdrop(bin, o, a.prog, q, cpu, mode)
		if p != nil {
			r.procs = append(r.procs, p)
		}
		if err != nil {
			return nil, err
		}
	}
	return r, nil
}

// startXskdrop runs one xskdrop for queue and puts the socket it sends back
// into the program's XSKMAP.
func startXskdrop(bin string, o PathOptions, prog *xdp.Program, queue, cpu, mode int) (*crefProc, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("can't make a socket pair for xskdrop: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "xskdrop-ctl"), os.NewFile(uintptr(fds[1]), "xskdrop-ctl-child")
	defer ours.Close()
	args := []string{o.Iface, strconv.Itoa(queue), strconv.Itoa(cpu), strconv.Itoa(cmp.Or(o.Spin, crefSpin))}
	// The same nap as the Go receiver's: datapath/afxdp's default unless
	// --nap says otherwise (negative: none).
	args = append(args, strconv.Itoa(int(max(cmp.Or(o.Nap, afxdp.DefaultNap), 0)/time.Microsecond)))
	args = append(args, strconv.Itoa(mode), strconv.Itoa(int(o.SchedSlice/time.Microsecond)), strconv.Itoa(o.WorkerNice))
	p := &crefProc{queue: queue, stderr: &tailBuffer{}, done: make(chan struct{}), stats: map[string]uint64{}}
	p.cmd = nsCommand(o.Side, bin, args...)
	p.cmd.ExtraFiles = []*os.File{theirs}
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		theirs.Close()
		return nil, err
	}
	err = startChild(p.cmd, func() { p.read(out) }, p.done, &p.waitErr)
	theirs.Close()
	if err != nil {
		return nil, fmt.Errorf("can't start %s: %w", bin, err)
	}
	fd, err := recvFD(ours, 10*time.Second)
	if err != nil {
		p.cmd.Process.Kill()
		<-p.done
		return p, fmt.Errorf("xskdrop on queue %d: %w: %s", queue, err, p.stderr.String())
	}
	defer unix.Close(fd)
	if err := prog.RegisterXSK(queue, fd); err != nil {
		return p, err
	}
	return p, nil
}

// read parses xskdrop's stdout: "packets N" lines, and the statistics
// (and in the latency mode the histogram) at exit.
func (p *crefProc) read(out io.Reader) {
	sc := bufio.NewScanner(out)
	var latMin, latMax int64
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if k == "lat_bucket" {
			p.readBucket(v, latMin, latMax)
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			continue
		}
		if k == "walked" {
			continue
		}
		switch k {
		case "packets":
			p.packets.Store(n)
			continue
		case "lat_min":
			latMin = int64(n)
		case "lat_max":
			latMax = int64(n)
		case "lat_negative":
			p.mu.Lock()
			p.lat.Negative = n
			p.mu.Unlock()
		}
		p.mu.Lock()
		p.stats[k] = n
		p.mu.Unlock()
	}
}

// readBucket adds xskdrop's "lat_bucket INDEX COUNT" line (v is what
// follows the key) to the histogram; min and max came before the buckets.
func (p *crefProc) readBucket(v string, latMin, latMax int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	is, cs, _ := strings.Cut(v, " ")
	i, err1 := strconv.Atoi(is)
	c, err2 := strconv.ParseUint(cs, 10, 64)
	err := errors.Join(err1, err2)
	if err == nil {
		err = p.lat.AddBucket(i, c, latMin, latMax)
	}
	if err != nil && p.latErr == nil {
		p.latErr = fmt.Errorf("xskdrop on queue %d printed a bad histogram line %q: %w", p.queue, v, err)
	}
}

// recvFD reads one file descriptor sent with SCM_RIGHTS on f.
func recvFD(f *os.File, timeout time.Duration) (int, error) {
	f.SetReadDeadline(time.Now().Add(timeout))
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	var n, oobn int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
		return rerr != unix.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil || n == 0 {
		return -1, fmt.Errorf("no socket came back: %v", errors.Join(err, errors.New("xskdrop exited")))
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, fmt.Errorf("no socket came back: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return -1, fmt.Errorf("no socket came back: %v", err)
	}
	return fds[0], nil
}

func (r *crefRx) Describe() string {
	what := "reads no frame"
	switch r.mode {
	case crefWalk:
		what = "reads headers and payload"
	case crefLatency:
		what = "reads each frame's send time"
	}
	return fmt.Sprintf("bench/cref/xskdrop (C, %s), %d process(es), spin %d, XDP %s mode", what, len(r.procs), r.spin, r.a.att.Mode)
}

func (r *crefRx) Snapshot() Snapshot {
	s := Snapshot{Drops: map[string]uint64{}}
	c, _ := r.a.drops(s.Drops)
	var st datapath.Stats // the sockets' XDP_STATISTICS, known once they exit
	for _, p := range r.procs {
		s.Packets += p.packets.Load()
		select {
		case <-p.done:
		default:
			if cpu, err := bench.ProcessCPU(p.cmd.Process.Pid); err == nil {
				s.RxCPU += cpu
			}
		}
		p.mu.Lock()
		st.XDP.RxDropped += p.stats["rx_dropped"]
		st.XDP.RxInvalidDescs += p.stats["rx_invalid_descs"]
		st.XDP.RxRingFull += p.stats["rx_ring_full"]
		st.XDP.RxFillRingEmptyDescs += p.stats["rx_fill_ring_empty_descs"]
		p.mu.Unlock()
	}
	addXSKDrops(s.Drops, st)
	if red := c[xdp.OutcomeRedirect]; red.Packets > 0 {
		s.Bytes = uint64(float64(s.Packets) * float64(red.Bytes) / float64(red.Packets))
	}
	return s
}

func (r *crefRx) Stop() (Snapshot, *bench.SeqMeter, error) {
	var errs []error
	last := r.Snapshot()
	for _, p := range r.procs {
		select {
		case <-p.done:
			errs = append(errs, fmt.Errorf("xskdrop on queue %d exited while measured (%v): %s", p.queue, p.waitErr, p.stderr.String()))
			continue
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range r.procs {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
			errs = append(errs, fmt.Errorf("xskdrop on queue %d did not stop within 5s of SIGTERM; killed it", p.queue))
		}
	}
	s := r.Snapshot()
	s.RxCPU = last.RxCPU
	errs = append(errs, r.a.close())
	return s, nil, errors.Join(errs...)
}
