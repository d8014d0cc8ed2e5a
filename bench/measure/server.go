package measure

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/internal/promtext"
	"github.com/xdpingest/xdpingest/internal/testbed"
)

// The server path runs `xdpingest run` with the discard sink in the
// receiving namespace and reads its Prometheus metrics.

const (
	serverReadyTimeout = 20 * time.Second
	serverStopTimeout  = 10 * time.Second
)

// nsCommand runs bin in the side's namespace (nil: this one) with `ip
// netns exec`, which execs in place (no fork): the pid is bin's, and /sys
// is the namespace's.
func nsCommand(side *testbed.Side, bin string, args ...string) *exec.Cmd {
	if side == nil {
		return exec.Command(bin, args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", side.Netns, bin}, args...)...)
}

// startChild starts cmd from a goroutine whose thread stays locked until
// the child exits: cmd's Pdeathsig fires when the thread that forked it
// exits, not the process. While the child runs, the goroutine calls
// running (may be nil); then it stores Wait's error in *waitErr and closes
// done.
func startChild(cmd *exec.Cmd, running func(), done chan struct{}, waitErr *error) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		if running != nil {
			running()
		}
		*waitErr = cmd.Wait()
		close(done)
	}()
	return <-started
}

// tailBuffer keeps the last bytes a process wrote, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 8 << 10

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > tailMax {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-tailMax:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.TrimSpace(string(b.buf))
}

type serverRx struct {
	o       PathOptions
	dir     string // the pcap sink's directory, removed at Stop
	cmd     *exec.Cmd
	out     *tailBuffer
	done    chan struct{}
	waitErr error
	client  *http.Client
	url     string
	sink    string // the --sink URL

	mu      sync.Mutex
	last    Snapshot
	lastCPU time.Duration
}

// startServer runs xdpingest with the discard sink, with sink "pcap" the
// pcap sink into a temporary directory that Stop removes, or with a sink
// URL (udp://...: pktbench latency's relay to its collector) that sink.
func startServer(o PathOptions, sinkKind string) (rcv Receiver, err error) {
	if o.Xdpingest == "" {
		return nil, errors.New("the server path needs the xdpingest binary (`make build` puts it in bin/): set PathOptions.Xdpingest")
	}
	// A free port for the metrics, in the receiving namespace.
	var port int
	if err := nsDo(o.Side, func() error {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("can't find a free port for the server's metrics: %w", err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		return l.Close()
	}); err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	sinkURL, dir := "discard", ""
	if strings.HasPrefix(sinkKind, "udp://") {
		sinkURL = sinkKind
	}
	if sinkKind == "pcap" {
		base := o.PcapDir
		if base == "" {
			if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
				base = "/dev/shm"
			}
		}
		if dir, err = os.MkdirTemp(base, "pktbench-pcap"); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				os.RemoveAll(dir)
			}
		}()
		sinkURL = "pcap:" + dir
	}
	args := []string{"run", "--iface", o.Iface, "--ports", strconv.Itoa(int(o.Port)), "--sink", sinkURL,
		"--metrics-addr", addr, "--path", "afxdp", "--log-format", "json", "--xdp-mode", o.XDPMode.String(),
		// Stopped after the traffic: nothing is left to drain, but the
		// drain waits out its timeout when idle (4 s by default), which
		// would add as much to every run.
		"--drain-timeout", "1s"}
	if len(o.Queues) > 0 {
		qs := make([]string, len(o.Queues))
		for i, q := range o.Queues {
			qs[i] = strconv.Itoa(q)
		}
		args = append(args, "--queues", strings.Join(qs, ","))
	}
	if len(o.CPUs) > 0 {
		// The CPUs the generators leave: on the bed, every queue's traffic
		// is processed on its generator's CPU.
		cs := make([]string, len(o.CPUs))
		for i, c := range o.CPUs {
			cs[i] = strconv.Itoa(c)
		}
		args = append(args, "--cpus", strings.Join(cs, ","))
	}
	if o.FrameSize > 0 {
		args = append(args, "--frame-size", strconv.Itoa(o.FrameSize))
	}
	if o.Nap != 0 {
		args = append(args, "--nap", max(o.Nap, 0).String())
	}
	if o.LowLatency {
		args = append(args, "--latency", "low")
	}
	args = append(args, "--sched-slice", o.SchedSlice.String(), "--worker-nice", strconv.Itoa(o.WorkerNice))
	if o.Frames > 0 {
		args = append(args, "--frames", strconv.Itoa(o.Frames))
	}
	if o.RingSize > 0 {
		args = append(args, "--ring-size", strconv.Itoa(o.RingSize))
	}
	r := &serverRx{o: o, out: &tailBuffer{}, done: make(chan struct{}), url: "http://" + addr, dir: dir, sink: sinkURL}
	r.cmd = nsCommand(o.Side, o.Xdpingest, args...)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	// The server dies with pktbench, even on SIGKILL: the bed can then go.
	err = startChild(r.cmd, nil, r.done, &r.waitErr)
	if err != nil {
		return nil, fmt.Errorf("can't start %s: %w", o.Xdpingest, err)
	}
	r.client = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, a string) (c net.Conn, err error) {
			err = nsDo(o.Side, func() error { c, err = (&net.Dialer{}).DialContext(ctx, network, a); return err })
			return c, err
		}}}
	deadline := time.Now().Add(serverReadyTimeout)
	for {
		select {
		case <-r.done:
			return nil, fmt.Errorf("xdpingest exited before it was ready (%v): %s", r.waitErr, r.out.String())
		default:
		}
		if resp, err := r.client.Get(r.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		if time.Now().After(deadline) {
			r.kill()
			return nil, fmt.Errorf("xdpingest not ready after %v: %s", serverReadyTimeout, r.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *serverRx) kill() {
	r.cmd.Process.Kill()
	<-r.done
	if r.dir != "" {
		os.RemoveAll(r.dir)
	}
}

func (r *serverRx) Describe() string {
	low := ""
	if r.o.LowLatency {
		low = " --latency low"
	}
	return fmt.Sprintf("xdpingest run --path afxdp%s --sink %s (%s)", low, r.sink, r.o.Xdpingest)
}

// Snapshot scrapes the metrics; when that fails (the server is gone) it
// returns the last counters read.
func (r *serverRx) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, err := r.scrape()
	if err != nil {
		return r.last
	}
	if cpu, err := bench.ProcessCPU(r.cmd.Process.Pid); err == nil {
		select {
		case <-r.done: // the pid may be another process's by now
		default:
			r.lastCPU = cpu
		}
	}
	s.RxCPU = r.lastCPU
	r.last = s
	return s
}

func (r *serverRx) scrape() (Snapshot, error) {
	s := Snapshot{Drops: map[string]uint64{}}
	m, err := promtext.Get(r.client, r.url+"/metrics")
	if err != nil {
		return s, err
	}
	// Frame bytes of what was delivered: the program counts the bytes of
	// every frame it redirected, some of which AF_XDP then dropped, so
	// the delivered packets are scaled by the redirected frames' mean size.
	// What the server delivered is what its sink wrote: datagrams received
	// but dropped on the way to the sink (a full queue, a full disk) are
	// not delivered, and sink_dropped counts them.
	var redirPackets, redirBytes, written uint64
	sawSink := false
	for key, v := range m {
		if strings.HasPrefix(key, "xdpingest_sink_written_total") {
			sawSink = true
		}
		if v <= 0 {
			continue
		}
		n := uint64(v)
		name, labels, _ := strings.Cut(key, "{")
		switch name {
		case "xdpingest_rx_packets_total":
			s.Packets += n
		case "xdpingest_sink_written_total":
			written += n
		case "xdpingest_xdp_bytes_total":
			if strings.Contains(labels, `outcome="redirect"`) {
				redirBytes += n
			}
		case "xdpingest_xdp_packets_total":
			if strings.Contains(labels, `outcome="redirect"`) {
				redirPackets += n
			}
			for _, o := range lossOutcomes {
				if strings.Contains(labels, `outcome="`+o.String()+`"`) {
					s.Drops["xdp_"+o.String()] += n
				}
			}
		case "xdpingest_afxdp_rx_dropped_total":
			s.Drops["afxdp_dropped"] += n
		case "xdpingest_afxdp_rx_ring_full_total":
			s.Drops["afxdp_ring_full"] += n
		case "xdpingest_afxdp_fill_ring_empty_total":
			s.Drops["afxdp_fill_ring_empty"] += n
		case "xdpingest_afxdp_rx_invalid_descs_total":
			s.Drops["afxdp_invalid"] += n
		case "xdpingest_kernel_socket_overflows_total":
			s.Drops["socket_overflows"] += n
		case "xdpingest_rx_malformed_total":
			s.Drops["malformed"] += n
		case "xdpingest_sink_dropped_total":
			s.Drops["sink_dropped"] += n
		}
	}
	if sawSink {
		s.Packets = written
	}
	if redirPackets > 0 {
		s.Bytes = uint64(float64(s.Packets) * float64(redirBytes) / float64(redirPackets))
	}
	return s, nil
}

// Stop reads the last counters, then stops the server with SIGTERM (it
// drains and detaches) and waits for it.
func (r *serverRx) Stop() (Snapshot, *bench.SeqMeter, error) {
	if r.dir != "" {
		defer os.RemoveAll(r.dir)
	}
	s := r.Snapshot()
	select {
	case <-r.done:
		return s, nil, fmt.Errorf("xdpingest exited while measured (%v): %s", r.waitErr, r.out.String())
	default:
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(serverStopTimeout):
		r.kill()
		return s, nil, fmt.Errorf("xdpingest did not stop within %v of SIGTERM; killed it", serverStopTimeout)
	}
	if r.waitErr != nil {
		return s, nil, fmt.Errorf("xdpingest exited with %v: %s", r.waitErr, r.out.String())
	}
	return s, nil, nil
}
