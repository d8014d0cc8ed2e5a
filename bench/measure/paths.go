package measure

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/safchain/ethtool"
	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/datapath/afxdp"
	"github.com/xdpingest/xdpingest/datapath/kernel"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/tuning"
	"github.com/xdpingest/xdpingest/xdp"
)

// PathOptions say where and how to receive.
type PathOptions struct {
	Side   *testbed.Side // nil: this namespace
	Iface  string
	Port   uint16
	Queues []int // RX queues (AF_XDP sockets; kernel workers: one per queue); empty: all
	// CPUs pins receiving thread i to CPUs[i%len(CPUs)]; empty: unpinned.
	CPUs []int
	// FrameSize is the AF_XDP UMEM frame size, 2048 or 4096 (0:
	// datapath/afxdp's, 2048): frames above 1792 bytes need 4096. The
	// afxdp-c path takes 2048 only.
	FrameSize int
	XDPMode   xdp.Mode
	// NoXDP leaves the kernel and stdnet paths without the XDP program
	// (in Pass mode) on the interface. A veth then drops live frames
	// unless GRO is on.
	NoXDP bool
	// Xdpingest is the server binary (server paths).
	Xdpingest string
	// Xskdrop is bench/cref/xskdrop's binary (afxdp-c paths).
	Xskdrop string
	// PcapDir is where the server-pcap path writes ("": /dev/shm when it
	// exists, so that the run measures the pipeline and the sink rather
	// than the disk; else the temporary directory).
	PcapDir string
	// Spin is the AF_XDP receivers' run of empty checks before they sleep
	// (0: datapath/afxdp's default).
	Spin int
	// Nap is how long the AF_XDP receivers nap while traffic is recent
	// (0: datapath/afxdp's default; negative: never).
	Nap time.Duration
	// LowLatency runs the server with --latency low (its AF_XDP workers
	// spin while traffic is recent).
	LowLatency bool
	// SchedSlice is the scheduler slice of every receiving thread (0: the
	// kernel's); see tuning.SetThreadSlice.
	SchedSlice time.Duration
	// Frames and RingSize are the AF_XDP receivers' UMEM frames and RX and
	// fill ring entries (0: datapath/afxdp's defaults).
	Frames, RingSize int
	// WorkerNice is the nice value of every receiving thread (0: the
	// process's).
	WorkerNice int
	// Meter keeps a sequence meter on the paths that see payloads.
	Meter bool
}

// Snapshot is a receiver's counters at one moment; every field only grows.
type Snapshot struct {
	Packets uint64
	// Bytes are whole frames, Ethernet header included, FCS excluded
	// (the kernel paths see payloads: their headers are added back).
	Bytes uint64
	// RxCPU is the CPU time of the receiving threads (the server
	// process's, for the server path); zero for xdp-drop, which has none.
	RxCPU time.Duration
	// Buffers are the kernel path's recvmmsg buffers (fewer than Packets
	// when UDP GRO merged datagrams); 0 on the other paths.
	Buffers uint64
	// Drops by reason: the interface's drop and error counters, the XDP
	// program's outcomes other than the measured one, AF_XDP's and the
	// kernel socket's loss counters, the server's sink drops.
	Drops map[string]uint64
}

// Sub returns the counters' growth since o.
func (s Snapshot) Sub(o Snapshot) Snapshot {
	d := Snapshot{Packets: s.Packets - o.Packets, Bytes: s.Bytes - o.Bytes, RxCPU: s.RxCPU - o.RxCPU, Buffers: s.Buffers - o.Buffers, Drops: map[string]uint64{}}
	for k, v := range s.Drops {
		if v > o.Drops[k] {
			d.Drops[k] = v - o.Drops[k]
		}
	}
	return d
}

// Receiver is a running receive path.
type Receiver interface {
	// Describe says what runs, e.g. "AF_XDP copy mode, 2 sockets".
	Describe() string
	Snapshot() Snapshot
	// Stop stops receiving, releases everything and returns the final
	// counters and the merged sequence meter (nil on paths that see no
	// payloads, or without PathOptions.Meter).
	Stop() (Snapshot, *bench.SeqMeter, error)
}

// StartPath starts the receive path name (one of KnownPaths) on o.Iface.
// The caller must Stop it.
func StartPath(name string, o PathOptions) (Receiver, error) {
	if len(o.Queues) == 0 {
		var n int
		err := nsDo(o.Side, func() (err error) { n, err = afxdp.RxQueues(o.Iface); return err })
		if err != nil {
			n = 1
		}
		for q := range n {
			o.Queues = append(o.Queues, q)
		}
	}
	switch name {
	case PathDrop:
		return startDrop(o)
	case PathAFXDP:
		return startAFXDP(o)
	case PathKernel, PathStdnet:
		return startKernel(name, o)
	case PathServer:
		return startServer(o, "")
	case PathServerPcap:
		return startServer(o, "pcap")
	case PathCref, PathCrefWalk:
		return startCref(o, name == PathCrefWalk)
	}
	return nil, fmt.Errorf("unknown path %q: want one of %s", name, strings.Join(KnownPaths(), ", "))
}

// --- the XDP program and the interface's counters, shared by the paths ---

// attached is the XDP program on the interface, and the interface's
// counters.
type attached struct {
	prog *xdp.Program
	att  *xdp.Attachment
	eth  *ethStats
	// measured is the outcome the path counts as delivered: its drops
	// leave it out.
	measured xdp.Outcome
}

func attach(o PathOptions, action xdp.Action, measured xdp.Outcome) (*attached, error) {
	a := &attached{measured: measured}
	var err error
	a.prog, err = xdp.Load(xdp.Config{Ports: []uint16{o.Port}, Action: action}, xdp.LoadOptions{})
	if err != nil {
		return nil, err
	}
	err = nsDo(o.Side, func() error {
		ifi, err := net.InterfaceByName(o.Iface)
		if err != nil {
			return fmt.Errorf("can't find interface %s%s: %w", o.Iface, where(o.Side), err)
		}
		a.att, err = a.prog.Attach(ifi.Index, xdp.AttachOptions{Mode: o.XDPMode})
		return err
	})
	if err != nil {
		a.prog.Close()
		return nil, err
	}
	a.eth = newEthStats(o.Side, o.Iface)
	return a, nil
}

// lossOutcomes are the program's outcomes that mean a frame of ours was not
// taken (the rest are other traffic: ICMPv6, ARP...).
var lossOutcomes = []xdp.Outcome{xdp.OutcomeNoSocket, xdp.OutcomeOtherPort, xdp.OutcomeMalformed,
	xdp.OutcomeTruncated, xdp.OutcomeFragment, xdp.OutcomeDeny, xdp.OutcomeNotAllowed, xdp.OutcomeOversize}

func (a *attached) drops(into map[string]uint64) (xdp.Counters, error) {
	if a.eth != nil {
		a.eth.add(into)
	}
	if a.prog == nil {
		return xdp.Counters{}, nil
	}
	c, err := a.prog.Counters()
	if err != nil {
		return c, err
	}
	for _, o := range lossOutcomes {
		if o != a.measured && c[o].Packets > 0 {
			into["xdp_"+o.String()] = c[o].Packets
		}
	}
	return c, nil
}

func (a *attached) close() error {
	if a == nil {
		return nil
	}
	if a.eth != nil {
		a.eth.close()
	}
	if a.prog != nil {
		return a.prog.Close()
	}
	return nil
}

// ethStats reads an interface's ethtool statistics and keeps the counters
// that count loss.
type ethStats struct {
	e      *ethtool.Ethtool
	ifname string
}

// newEthStats returns nil when the interface has no ethtool statistics: the
// drops then come from the other counters only.
func newEthStats(side *testbed.Side, ifname string) *ethStats {
	var s *ethStats
	nsDo(side, func() error {
		e, err := ethtool.NewEthtool()
		if err != nil {
			return err
		}
		if _, err := e.Stats(ifname); err != nil {
			e.Close()
			return err
		}
		s = &ethStats{e: e, ifname: ifname}
		return nil
	})
	return s
}

var (
	perQueueStat = regexp.MustCompile(`^(rx|tx)_queue_\d+_(.+)$`)
	lossStat     = regexp.MustCompile(`drop|err|miss|full|discard|fifo|no_?buf`)
)

func (s *ethStats) add(into map[string]uint64) {
	st, err := s.e.Stats(s.ifname)
	if err != nil {
		return
	}
	for k, v := range st {
		k = perQueueStat.ReplaceAllString(k, "${1}_$2")
		// XDP_DROP verdicts are the program's own, counted by outcome.
		if v == 0 || !lossStat.MatchString(k) || k == "rx_xdp_drops" {
			continue
		}
		into["if_"+k] += v
	}
}

func (s *ethStats) close() { s.e.Close() }

// --- xdp-drop ---

type dropRx struct{ a *attached }

func startDrop(o PathOptions) (Receiver, error) {
	a, err := attach(o, xdp.Drop, xdp.OutcomeDropMode)
	if err != nil {
		return nil, err
	}
	return &dropRx{a: a}, nil
}

func (r *dropRx) Describe() string {
	return fmt.Sprintf("XDP_DROP in the program, %s mode", r.a.att.Mode)
}

func (r *dropRx) Snapshot() Snapshot {
	s := Snapshot{Drops: map[string]uint64{}}
	c, _ := r.a.drops(s.Drops)
	s.Packets, s.Bytes = c[xdp.OutcomeDropMode].Packets, c[xdp.OutcomeDropMode].Bytes
	return s
}

func (r *dropRx) Stop() (Snapshot, *bench.SeqMeter, error) {
	s := r.Snapshot()
	return s, nil, r.a.close()
}

// --- receive loops on threads of their own ---

// loop is one receiving thread: it counts what it delivers and, for
// RxCPU, its thread's CPU time.
type loop struct {
	packets, bytes atomic.Uint64
	meter          *bench.SeqMeter

	mu       sync.Mutex
	tid      int
	done     bool
	finalCPU time.Duration
	err      error
}

func (l *loop) cpu() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done || l.tid == 0 {
		return l.finalCPU
	}
	// The goroutine can't exit (and its thread go away) while we hold mu.
	d, _ := bench.ThreadCPU(l.tid)
	return d
}

// loops runs n receive loops. body runs on a locked thread, pinned to its
// CPU, and returns when its receiver is closed.
type loops struct {
	ls []*loop
	wg sync.WaitGroup
}

func startLoops(n int, o PathOptions, body func(i int, l *loop) error) *loops {
	cpus, meter := o.CPUs, o.Meter
	g := &loops{}
	started := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		l := &loop{}
		if meter {
			l.meter = bench.NewSeqMeter(0)
		}
		g.ls = append(g.ls, l)
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			// Never unlocked: a pinned thread is discarded with its
			// goroutine.
			nsEnter(nil)
			var err error
			if len(cpus) > 0 {
				err = tuning.PinThread(cpus[i%len(cpus)])
			}
			if err == nil {
				_, err = tuning.SetThreadSlice(o.SchedSlice)
			}
			if err == nil && o.WorkerNice != 0 {
				err = tuning.SetThreadNice(o.WorkerNice)
			}
			l.mu.Lock()
			l.tid = unix.Gettid()
			l.mu.Unlock()
			started <- struct{}{}
			if err == nil {
				err = body(i, l)
			}
			l.mu.Lock()
			l.finalCPU, _ = bench.ThreadCPU(l.tid)
			l.done, l.err = true, err
			l.mu.Unlock()
		}()
	}
	for i := 0; i < n; i++ {
		<-started
	}
	return g
}

func (g *loops) snapshot() Snapshot {
	s := Snapshot{Drops: map[string]uint64{}}
	for _, l := range g.ls {
		s.Packets += l.packets.Load()
		s.Bytes += l.bytes.Load()
		s.RxCPU += l.cpu()
	}
	return s
}

// wait waits for every loop and merges their meters.
func (g *loops) wait() (*bench.SeqMeter, error) {
	g.wg.Wait()
	var m *bench.SeqMeter
	var errs []error
	for _, l := range g.ls {
		if l.err != nil {
			errs = append(errs, l.err)
		}
		if l.meter == nil {
			continue
		}
		if m == nil {
			m = bench.NewSeqMeter(0)
		}
		m.Merge(l.meter)
	}
	return m, errors.Join(errs...)
}

// --- afxdp ---

type afxdpRx struct {
	a     *attached
	p     *afxdp.Path
	loops *loops
}

func startAFXDP(o PathOptions) (Receiver, error) {
	a, err := attach(o, xdp.Redirect, xdp.OutcomeRedirect)
	if err != nil {
		return nil, err
	}
	cfg := afxdp.Config{Iface: o.Iface, Queues: o.Queues, SpinChecks: o.Spin, Nap: o.Nap,
		NumFrames: o.Frames, FillRingSize: o.RingSize, RxRingSize: o.RingSize}
	cfg.FrameSize = o.FrameSize
	var p *afxdp.Path
	if err := nsDo(o.Side, func() (err error) { p, err = afxdp.Open(cfg, a.prog); return err }); err != nil {
		a.close()
		return nil, err
	}
	socks := p.Sockets()
	r := &afxdpRx{a: a, p: p}
	r.loops = startLoops(len(socks), o, func(i int, l *loop) error { return receiveLoop(socks[i], l) })
	return r, nil
}

// receiveLoop drains rx into l until rx is closed. Bytes are whole frames:
// the frame where the path has one (AF_XDP), else the payload and the
// headers in front of it (the kernel path).
func receiveLoop(rx datapath.Receiver, l *loop) error {
	batch := make([]datapath.Datagram, 64)
	for {
		n, err := rx.Receive(batch)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		var bytes uint64
		if l.meter != nil {
			bytes = l.meter.AddBatch(batch[:n])
		} else {
			for j := range batch[:n] {
				bytes += bench.WireBytes(&batch[j])
			}
		}
		l.packets.Add(uint64(n))
		l.bytes.Add(bytes)
	}
}

func (r *afxdpRx) Describe() string {
	return fmt.Sprintf("AF_XDP %s mode, %d socket(s), XDP %s mode", r.p.Mode(), len(r.p.Sockets()), r.a.att.Mode)
}

func (r *afxdpRx) Snapshot() Snapshot {
	s := r.loops.snapshot()
	r.a.drops(s.Drops)
	addXSKDrops(s.Drops, r.p.Stats())
	return s
}

func addXSKDrops(into map[string]uint64, st datapath.Stats) {
	for k, v := range map[string]uint64{
		"afxdp_rx_dropped": st.XDP.RxDropped, "afxdp_rx_ring_full": st.XDP.RxRingFull,
		"afxdp_fill_ring_empty": st.XDP.RxFillRingEmptyDescs, "afxdp_rx_invalid_descs": st.XDP.RxInvalidDescs,
		"malformed": st.Malformed,
	} {
		if v > 0 {
			into[k] = v
		}
	}
}

func (r *afxdpRx) Stop() (Snapshot, *bench.SeqMeter, error) {
	cerr := r.p.Close()
	m, lerr := r.loops.wait()
	s := r.loops.snapshot()
	r.a.drops(s.Drops)
	addXSKDrops(s.Drops, r.p.Stats())
	return s, m, errors.Join(lerr, cerr, r.a.close())
}

// --- kernel and stdnet ---

type kernelRx struct {
	name  string
	a     *attached // nil with NoXDP
	rs    []*kernel.Receiver
	conn  *net.UDPConn // stdnet
	loops *loops
}

// kernelRcvBuf is the receive buffer of the kernel and stdnet paths' sockets
// (SO_RCVBUFFORCE): the same for both, so that the loops are compared, not
// the buffers.
const kernelRcvBuf = 4 << 20

// open opens, in the receiving namespace, the kernel path's SO_REUSEPORT
// workers (reuseport) or stdnet's one socket, with the same buffers.
func (r *kernelRx) open(o PathOptions, reuseport bool) error {
	return nsDo(o.Side, func() (err error) {
		if reuseport {
			var kp *kernel.Path
			if kp, err = kernel.Open(kernel.Config{Ports: []uint16{o.Port}, Workers: len(o.Queues),
				RcvBuf: kernelRcvBuf, ForceRcvBuf: true}); err == nil {
				r.rs = kp.Workers()
			}
			return err
		}
		if r.conn, err = net.ListenUDP("udp", &net.UDPAddr{Port: int(o.Port)}); err != nil {
			return fmt.Errorf("can't listen on UDP port %d: %w", o.Port, err)
		}
		if err = setRcvBufForce(r.conn, kernelRcvBuf); err != nil {
			r.conn.Close()
			r.conn = nil
		}
		return err
	})
}

func startKernel(name string, o PathOptions) (Receiver, error) {
	r := &kernelRx{name: name}
	if !o.NoXDP {
		var err error
		if r.a, err = attach(o, xdp.Pass, xdp.OutcomePassMatch); err != nil {
			return nil, err
		}
	}
	fail := func(err error) (Receiver, error) {
		r.a.close()
		return nil, err
	}
	if err := r.open(o, name == PathKernel); err != nil {
		return fail(err)
	}
	if name == PathKernel {
		r.loops = startLoops(len(r.rs), o, func(i int, l *loop) error { return receiveLoop(r.rs[i], l) })
		return r, nil
	}
	// stdnet: what most programs do. One socket (both families), one loop.
	r.loops = startLoops(1, o, func(i int, l *loop) error {
		buf := make([]byte, 9216)
		for {
			n, from, err := r.conn.ReadFromUDP(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return nil
				}
				return err
			}
			if l.meter != nil {
				l.meter.Add(buf[:n])
			}
			l.packets.Add(1)
			l.bytes.Add(uint64(n + bench.HeaderLen(from.IP.To4() == nil)))
		}
	})
	return r, nil
}

func setRcvBufForce(c *net.UDPConn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	}); err != nil {
		return err
	}
	if serr != nil {
		// Without CAP_NET_ADMIN: what rmem_max allows.
		return c.SetReadBuffer(n)
	}
	return nil
}

// socketDrops reads the kernel's drop counter of a socket (SO_MEMINFO).
func socketDrops(c *net.UDPConn) uint64 {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var mem [unix.SK_MEMINFO_VARS]uint32
	var drops uint64
	rc.Control(func(fd uintptr) {
		l := uint32(unsafe.Sizeof(mem))
		_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&l)), 0)
		if e == 0 {
			drops = uint64(mem[unix.SK_MEMINFO_DROPS])
		}
	})
	return drops
}

func (r *kernelRx) Describe() string {
	x := ", XDP program passing"
	if r.a == nil {
		x = ", no XDP program"
	}
	if r.name == PathStdnet {
		return "net.UDPConn.ReadFromUDP, 1 socket, 1 goroutine" + x
	}
	return fmt.Sprintf("SO_REUSEPORT + recvmmsg, %d worker(s)%s", len(r.rs), x)
}

func (r *kernelRx) Snapshot() Snapshot {
	s := r.loops.snapshot()
	s.Buffers = r.buffers()
	r.addDrops(s.Drops)
	return s
}

// buffers sums the Receivers' Buffers (they stay readable after Close).
func (r *kernelRx) buffers() (n uint64) {
	for _, rx := range r.rs {
		n += rx.Buffers()
	}
	return n
}

func (r *kernelRx) addDrops(into map[string]uint64) {
	if r.a != nil {
		r.a.drops(into)
	}
	var ovf uint64
	for _, rx := range r.rs {
		ovf += rx.Stats().SocketOverflows
	}
	if r.conn != nil {
		ovf = socketDrops(r.conn)
	}
	if ovf > 0 {
		into["socket_overflows"] = ovf
	}
}

func (r *kernelRx) Stop() (Snapshot, *bench.SeqMeter, error) {
	// The counters of a socket are gone once it is closed: read them first.
	drops := map[string]uint64{}
	r.addDrops(drops)
	var errs []error
	for _, rx := range r.rs {
		errs = append(errs, rx.Close())
	}
	if r.conn != nil {
		errs = append(errs, r.conn.Close())
	}
	m, lerr := r.loops.wait()
	s := r.loops.snapshot()
	s.Buffers = r.buffers()
	r.addDrops(s.Drops)
	for k, v := range drops {
		s.Drops[k] = max(s.Drops[k], v)
	}
	errs = append(errs, lerr, r.a.close())
	return s, m, errors.Join(errs...)
}
