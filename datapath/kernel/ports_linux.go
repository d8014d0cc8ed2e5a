package kernel

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// retireGrace is how long a socket of a removed port is read, after the
// filter that refuses everything replaced its own, before an empty read
// closes it: a datagram that passed the old filter on another CPU just
// before the switch is queued microseconds later (in the same softirq).
const retireGrace = 10 * time.Millisecond

// group is what the Receivers of one Open share, for SetPorts.
type group struct {
	mu  sync.Mutex // serializes SetPorts
	cfg Config     // with defaults; Ports as last set
	rs  []*Receiver
}

// portSwitch is what SetPorts hands a Receiver: the sockets of its added
// ports, which the Receiver takes into its set at a point where nothing
// of its own uses the set (applySwitch), then closes done.
type portSwitch struct {
	add  []sock
	done chan struct{}
}

// setPorts changes the ports of the Receivers of one Open (rs, all of them,
// in worker order) to ports, while they receive: the same addresses,
// device, filter, options and steering as at Open. It returns warnings as
// Open does.
//
// It is all or nothing. It first opens and binds every socket of the added
// ports, for every Receiver and address (and attaches the steering program
// to each new SO_REUSEPORT group), then gives every socket of the removed
// ports a filter that refuses everything; if any of it fails, it undoes
// what it did and returns an error: the ports are as they were. Then each
// Receiver takes its new sockets at a safe point: a Receive blocked in
// poll is woken, and a Receiver that no goroutine is receiving on is
// switched by SetPorts itself. SetPorts returns once every Receiver has
// switched; datagrams for the added ports may queue from the moment their
// sockets are bound, and none is lost to the switch.
//
// The sockets of a removed port stay open until the Receiver has read
// them empty (at least retireGrace, 10 ms, after the refusing filter was
// attached), so that every datagram queued to them before SetPorts is
// delivered; what arrives later is refused (and not counted as an
// overflow). The window that remains: a datagram that passed the socket's
// own filter before the switch but reached the socket's queue more than
// 10 ms later is lost with the socket, which on a kernel without PREEMPT_RT
// can't happen (the filter and the queueing are one softirq). A removed
// port added back before its sockets closed gets the same sockets back, so
// that its SO_REUSEPORT groups never hold a socket that refuses
// everything; if some were already closed, new ones join the groups, and
// the steering program (Config.CPUs), which picks a socket by its index
// in the group, may then send a CPU's datagrams to another worker until
// the next restart.
//
// Like Open, it opens the sockets in the network namespace of the calling
// thread, which must be Open's. Calls for one set of Receivers wait for
// each other. A Receiver closed before the switch makes SetPorts fail; one
// closed during the switch closes its new sockets itself.
func setPorts(rs []*Receiver, ports []uint16) (warnings []string, err error) {
	if len(rs) == 0 || rs[0].g == nil || !slices.Equal(rs, rs[0].g.rs) {
		return nil, errors.New("kernel path: SetPorts needs all the Receivers one Open returned, in worker order")
	}
	g := rs[0].g
	g.mu.Lock()
	defer g.mu.Unlock()
	cfg := g.cfg
	cfg.Ports = ports
	if cfg, err = cfg.withDefaults(); err != nil {
		return nil, fmt.Errorf("kernel path: %w", err)
	}
	var added, removed []uint16
	for _, p := range ports {
		if !slices.Contains(g.cfg.Ports, p) {
			added = append(added, p)
		}
	}
	for _, p := range g.cfg.Ports {
		if !slices.Contains(ports, p) {
			removed = append(removed, p)
		}
	}
	for _, r := range rs {
		if r.closed.Load() {
			return nil, fmt.Errorf("kernel path: can't change the ports of worker %d: it is closed", r.queue)
		}
	}
	if len(added) == 0 && len(removed) == 0 {
		g.cfg.Ports = slices.Clone(ports)
		return nil, nil
	}

	// Every step that succeeds pushes its inverse.
	var undo []func() error
	fail := func(err error) ([]string, error) {
		var failed []error
		for i := len(undo) - 1; i >= 0; i-- {
			if uerr := undo[i](); uerr != nil {
				failed = append(failed, uerr)
			}
		}
		if len(failed) > 0 {
			return nil, fmt.Errorf("kernel path: can't change the ports from %v to %v: %w; AND undoing it failed (%w): some sockets of removed ports may refuse everything: restart", g.cfg.Ports, ports, err, errors.Join(failed...))
		}
		return nil, fmt.Errorf("kernel path: can't change the ports from %v to %v, they are unchanged: %w", g.cfg.Ports, ports, err)
	}
	warn := func(ws []string) {
		for _, w := range ws {
			if !slices.Contains(warnings, w) {
				warnings = append(warnings, w)
			}
		}
	}
	adds := make([][]sock, len(rs))
	for _, addr := range cfg.Addrs {
		for _, port := range added {
			local := netip.AddrPortFrom(addr, port)
			first := -1 // a new socket of the group, for the steering program
			// Worker 0 first, then 1...: in a new group, socket w is
			// index w, as the steering program expects.
			for w, r := range rs {
				back, err := r.unretire(local, &cfg)
				if err != nil {
					return fail(fmt.Errorf("worker %d: %w", w, err))
				}
				if back {
					undo = append(undo, func() error { return r.retire(local, time.Now().UnixNano()) })
					continue
				}
				fd, opts, err := openSocket(addr, port, &cfg, w)
				if err != nil {
					return fail(fmt.Errorf("worker %d: %w", w, err))
				}
				undo = append(undo, func() error { return unix.Close(fd) })
				warn(opts.warnings)
				adds[w] = append(adds[w], newSock(fd, local, opts.cookie))
				if first < 0 {
					first = fd
				}
			}
			if len(cfg.CPUs) > 0 && first >= 0 {
				if err := attachSteering(first, cfg.CPUs); err != nil {
					return fail(fmt.Errorf("%v: %w", local, err))
				}
			}
		}
	}
	until := time.Now().Add(retireGrace).UnixNano()
	for _, r := range rs {
		for _, addr := range cfg.Addrs {
			for _, port := range removed {
				local := netip.AddrPortFrom(addr, port)
				if err := r.retire(local, until); err != nil {
					return fail(fmt.Errorf("worker %d: %w", r.queue, err))
				}
				undo = append(undo, func() error {
					_, err := r.unretire(local, &cfg)
					return err
				})
			}
		}
	}

	g.cfg.Ports = slices.Clone(cfg.Ports)
	switches := make([]*portSwitch, len(rs))
	for w, r := range rs {
		switches[w] = r.handOver(adds[w])
	}
	for w, r := range rs {
		r.awaitSwitch(switches[w])
	}
	return warnings, nil
}

// dropAll is a classic BPF socket filter that refuses every datagram.
var dropAll = []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}

// retire makes the Receiver's socket bound to local (if it has one that
// is not retiring already) refuse every datagram from now on, and marks
// it for closing once read empty after until (Unix nanoseconds). The
// socket's drop counter stops counting for Stats at this point: what the
// refusing filter drops are no overflows.
func (r *Receiver) retire(local netip.AddrPort, until int64) error {
	r.sockMu.Lock()
	defer r.sockMu.Unlock()
	if r.closed.Load() {
		return errors.New("the receiver is closed")
	}
	s := r.findSock(local)
	if s == nil || s.st.retireAt.Load() != 0 {
		return nil
	}
	d, err := sockDrops(s.fd)
	if err != nil {
		return fmt.Errorf("can't retire socket %v: %w", local, err)
	}
	r.statsMu.Lock()
	s.st.frozen = s.st.extend(d)
	r.statsMu.Unlock()
	fprog := unix.SockFprog{Len: uint16(len(dropAll)), Filter: &dropAll[0]}
	if err := unix.SetsockoptSockFprog(s.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		r.statsMu.Lock()
		s.st.frozen = math.MaxUint64
		r.statsMu.Unlock()
		return fmt.Errorf("can't close socket %v to new datagrams (SO_ATTACH_FILTER): %w", local, err)
	}
	s.st.retireAt.Store(until)
	return nil
}

// unretire gives the Receiver's retiring socket bound to local, if it has
// one still open, its filter back (Config.Filter, or none) and reports
// whether it did. The drops the refusing filter caused stay out of Stats.
func (r *Receiver) unretire(local netip.AddrPort, cfg *Config) (bool, error) {
	r.sockMu.Lock()
	defer r.sockMu.Unlock()
	if r.closed.Load() {
		return false, errors.New("the receiver is closed")
	}
	s := r.findSock(local)
	if s == nil || s.st.retireAt.Load() == 0 {
		return false, nil
	}
	var err error
	if cfg.Filter != nil {
		err = unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_ATTACH_BPF, cfg.Filter.FD())
	} else if err = unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0); errors.Is(err, unix.ENOENT) {
		err = nil // no filter: nothing to take off
	}
	if err != nil {
		return false, fmt.Errorf("can't give socket %v of a port added back its filter again: %w", local, err)
	}
	// Read after the filter is back: a real overflow in between is lost
	// to the count rather than a refusal counted as one.
	d, derr := sockDrops(s.fd)
	r.statsMu.Lock()
	if derr == nil {
		if now := s.st.extend(d); now > s.st.frozen {
			s.st.ignored += now - s.st.frozen
		}
	}
	s.st.frozen = math.MaxUint64
	r.statsMu.Unlock()
	s.st.retireAt.Store(0)
	return true, nil
}

// findSock returns the Receiver's socket bound to local, or nil; sockMu
// held (or on the receiving goroutine).
func (r *Receiver) findSock(local netip.AddrPort) *sock {
	for i := range r.socks {
		if r.socks[i].local == local {
			return &r.socks[i]
		}
	}
	return nil
}

// sockDrops reads a socket's 32-bit drop counter (SO_MEMINFO).
func sockDrops(fd int) (uint32, error) {
	var info [unix.SK_MEMINFO_VARS]uint32
	n := uint32(unsafe.Sizeof(info))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 {
		return 0, fmt.Errorf("can't read the drop counter (SO_MEMINFO): %w", errno)
	}
	if n < (unix.SK_MEMINFO_DROPS+1)*4 {
		return 0, fmt.Errorf("can't read the drop counter: SO_MEMINFO returned %d bytes", n)
	}
	return info[unix.SK_MEMINFO_DROPS], nil
}

// extend turns a fresh 32-bit reading of the socket's drop counter into
// the 64-bit count drops keeps (which counts from 0 at the socket's
// opening, as the kernel's counter does).
func (st *sockStat) extend(v uint32) uint64 {
	base := st.drops.Load()
	if d := v - uint32(base); d < 1<<31 {
		return base + uint64(d)
	}
	return base
}

// handOver gives the Receiver the sockets SetPorts opened for it and wakes
// it; it takes them (and learns which of its sockets retire) at its next
// safe point.
func (r *Receiver) handOver(add []sock) *portSwitch {
	ps := &portSwitch{add: add, done: make(chan struct{})}
	r.sockMu.Lock()
	if r.closed.Load() {
		// Close ran (it closes a pending switch's sockets itself).
		r.sockMu.Unlock()
		for _, s := range add {
			unix.Close(s.fd)
		}
		close(ps.done)
		return ps
	}
	r.pending = ps
	r.switching.Store(true)
	r.sockMu.Unlock()
	r.wake()
	return ps
}

// awaitSwitch waits until the Receiver took ps: the receiving goroutine
// does it within a loop of Receive; when no Receive holds the Receiver,
// this goroutine does it.
func (r *Receiver) awaitSwitch(ps *portSwitch) {
	t := time.NewTimer(time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ps.done:
			return
		case <-t.C:
		}
		if r.mu.TryLock() {
			r.applySwitch()
			r.mu.Unlock()
		}
		t.Reset(time.Millisecond)
	}
}

// applySwitch takes a pending switch's sockets into the set; mu held.
func (r *Receiver) applySwitch() {
	r.sockMu.Lock()
	ps := r.pending
	r.pending = nil
	r.switching.Store(false)
	if ps != nil && len(ps.add) > 0 {
		r.socks = append(r.socks, ps.add...)
		r.statsMu.Lock()
		for _, s := range ps.add {
			r.tracked = append(r.tracked, s.st)
		}
		r.statsMu.Unlock()
	}
	r.resetPoll()
	r.sockMu.Unlock()
	if ps != nil {
		close(ps.done)
	}
}

// resetPoll rebuilds what the receive loop keeps per socket after the set
// changed, and counts the retiring sockets; sockMu held (or at Open).
func (r *Receiver) resetPoll() {
	r.pfds = r.pfds[:0]
	for _, s := range r.socks {
		r.pfds = append(r.pfds, unix.PollFd{Fd: int32(s.fd), Events: unix.POLLIN})
	}
	r.pfds = append(r.pfds, unix.PollFd{Fd: int32(r.efd), Events: unix.POLLIN})
	r.ready = slices.Grow(r.ready[:0], len(r.socks))[:len(r.socks)]
	for i := range r.ready {
		r.ready[i] = true // unknown: try each once before sleeping
	}
	if r.cursor >= len(r.socks) {
		r.cursor = 0
	}
	r.retiring = 0
	for _, s := range r.socks {
		if s.st.retireAt.Load() != 0 {
			r.retiring++
		}
	}
}

// noteEmpty is called when a read found socket i empty: a retiring socket
// past its grace time is then done.
func (r *Receiver) noteEmpty(i int) {
	s := &r.socks[i]
	if at := s.st.retireAt.Load(); at != 0 && time.Now().UnixNano() >= at {
		s.drained = true
		r.anyDrained = true
	}
}

// retireDue makes retiring sockets past their grace time ready, so that the
// next read tries each once more (due), and returns how long until the
// next grace time ends (0: none pending).
func (r *Receiver) retireDue() (next time.Duration, due bool) {
	now := time.Now().UnixNano()
	for i := range r.socks {
		s := &r.socks[i]
		at := s.st.retireAt.Load()
		if at == 0 || s.drained {
			continue
		}
		if now >= at {
			r.ready[i] = true
			due = true
			continue
		}
		if next == 0 || time.Duration(at-now) < next {
			next = time.Duration(at - now)
		}
	}
	return next, due
}

// closeDrained closes the retiring sockets found empty after their grace
// time; mu held and no slots pending (slots name sockets by index).
func (r *Receiver) closeDrained() {
	r.anyDrained = false
	r.sockMu.Lock()
	defer r.sockMu.Unlock()
	var gone []*sockStat
	var errs []error
	keep := r.socks[:0]
	for _, s := range r.socks {
		// SetPorts may have taken it back (unretire) meanwhile.
		if !s.drained || s.st.retireAt.Load() == 0 {
			s.drained = false
			keep = append(keep, s)
			continue
		}
		r.readDrops(&s)
		if err := unix.Close(s.fd); err != nil {
			errs = append(errs, fmt.Errorf("can't close socket %v of a removed port: %w", s.local, err))
		}
		gone = append(gone, s.st)
	}
	clear(r.socks[len(keep):])
	r.socks = keep
	if len(gone) == 0 {
		return
	}
	if err := r.untrack(gone); err != nil {
		errs = append(errs, err)
	}
	r.resetPoll()
	if len(errs) > 0 {
		r.lateMu.Lock()
		r.lateErr = errors.Join(r.lateErr, errors.Join(errs...))
		r.lateMu.Unlock()
	}
}

// resetWake empties the eventfd after a SetPorts wake-up, so that the next
// poll sleeps again. Drain and Close leave it readable for good.
func (r *Receiver) resetWake() {
	var buf [8]byte
	r.fdMu.RLock()
	defer r.fdMu.RUnlock()
	if r.efd >= 0 {
		unix.Read(r.efd, buf[:])
	}
}
