package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/datapath"
)

var _ datapath.Receiver = (*Receiver)(nil)

const (
	// refreshEvery: with several sockets, a Receiver that keeps finding
	// full batches on one socket would never look at the others (it polls
	// only when everything it knows of is drained). Every refreshEvery
	// reads it asks poll(2), without waiting, which other sockets have data.
	refreshEvery = 8
	// dropsRefresh is the longest an idle Receiver leaves its drop counters
	// stale; see refreshDrops.
	dropsRefresh = 50 * time.Millisecond
)

// Receiver is one worker's set of sockets: one per configured address and
// port, each a member of that address and port's SO_REUSEPORT group.
//
// Receive reads with recvmmsg(2) (MSG_DONTWAIT) into preallocated headers,
// buffers, address and control areas, and when every socket is drained it
// sleeps (Config.Coalesce in nanosleep(2), then in poll(2) on the sockets
// and an eventfd) on the calling OS thread; Close and Drain write the
// eventfd to wake it. See the package documentation for why.
type Receiver struct {
	queue int
	g     *group // the Receivers of its Open, for SetPorts

	// mu is held by Receive for its whole call, including the sleep in
	// poll; Close takes it (after waking the sleeper) before it closes the
	// descriptors, so that no descriptor is closed, and its number reused,
	// under a running recvmmsg or poll.
	mu        sync.Mutex
	closed    atomic.Bool
	draining  atomic.Bool
	closeOnce sync.Once
	closeErr  error
	// fdMu guards efd (-1 once closed) between Drain, which writes it from
	// any goroutine, and Close.
	fdMu sync.RWMutex
	efd  int

	// sockMu guards socks, the slice and each socket's descriptor,
	// against other goroutines: SetPorts reads it and sets options on
	// sockets, Close closes them. The receiving goroutine (holding mu),
	// the only one that changes socks, reads it without sockMu and takes
	// it to change it. pending is a switch SetPorts handed over, which
	// switching announces to the receive loop.
	sockMu    sync.Mutex
	pending   *portSwitch
	switching atomic.Bool
	// retiring counts the sockets of removed ports still open;
	// anyDrained says some were read empty after their grace time.
	retiring   int
	anyDrained bool
	// lateErr is what closing removed ports' sockets failed with, for
	// Close to report.
	lateMu  sync.Mutex
	lateErr error

	socks []sock
	// pfds holds one entry per socket, then the eventfd.
	pfds         []unix.PollFd
	ready        []bool // sockets believed to hold datagrams
	cursor       int    // next socket to read, for fairness
	sinceRefresh int

	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	// slotSock is the socket index each slot was read from; pend..pendEnd
	// are the slots a full batch left over (see read), the first from
	// byte pendOff, read at pendNow.
	slotSock               []int
	pend, pendEnd, pendOff int
	pendNow                int64
	names                  []byte // nameSize per slot
	ctrl                   []byte // ctrlSize per slot
	bufs                   []byte // stride per slot
	stride                 int

	// SO_MEMINFO read-back of the drop counters (see refreshDrops).
	dropsDirty bool
	dropsLast  time.Time
	meminfo    [unix.SK_MEMINFO_VARS]uint32
	meminfoLen uint32
	noReadback bool // tests: count drops from SO_RXQ_OVFL messages alone

	coalesce time.Duration // Config.Coalesce, 0 when off
	recent   bool          // the last read found datagrams
	readTime bool          // Config.ReadTimestamps

	packets, bytes, batches, malformed atomic.Uint64
	buffers, copies                    atomic.Uint64

	// statsMu guards the overflow accounting that Stats does (see
	// socketOverflows): tracked, the drop counts of the open sockets, and
	// closedOverflows, those of sockets closed since.
	statsMu         sync.Mutex
	tracked         []*sockStat
	closedOverflows uint64
	refusals        RefusalCounter // Config.Filter, when it counts refusals
}

// sock is one socket of a Receiver.
type sock struct {
	fd    int
	local netip.AddrPort // the bound address and port
	// drops is the socket's drop counter (sk_drops, 32 bits) as last seen in
	// a SO_RXQ_OVFL message or SO_MEMINFO.
	drops uint32
	st    *sockStat
	// drained: a retiring socket read empty after its grace time
	// (receiving goroutine only).
	drained bool
}

// sockStat is what Stats needs of one socket; it outlives the socket's
// place in the Receiver's slices.
type sockStat struct {
	// drops is the growth of the socket's drop counter since it was
	// opened, as the receiving goroutine saw it: full-buffer drops and
	// the filter's refusals together.
	drops atomic.Uint64
	// cookie is the socket's SO_COOKIE when the filter counts its
	// refusals, else 0.
	cookie uint64
	// retireAt is when (Unix nanoseconds) the socket of a removed port may
	// be closed once read empty; 0 while its port is in the set.
	retireAt atomic.Int64
	// Under the Receiver's statsMu: the drops count the last overflow
	// computation used, and its result; frozen, the drop count when the
	// socket began to refuse everything (its port removed; MaxUint64
	// before), beyond which drops are no overflows; ignored, the drops
	// of such a time that ended (the port was added back).
	lastDrops, overflows, frozen, ignored uint64
}

func newSock(fd int, local netip.AddrPort, cookie uint64) sock {
	return sock{fd: fd, local: local, st: &sockStat{cookie: cookie, frozen: math.MaxUint64}}
}

// openReceivers opens cfg.Workers Receivers (Receiver i is worker i) and
// returns warnings the caller should log: a receive buffer the kernel
// capped, a capability that was missing. The sockets belong to the network
// namespace of the calling thread.
//
// SO_REUSEPORT groups are per address and port, and the steering program
// (Config.CPUs) picks a socket by its index in the group, which is the
// order of bind: the groups must hold only this call's sockets. A socket of
// another process (of the same user) bound with SO_REUSEPORT to the same
// address and port would join the group and shift the indices.
func openReceivers(cfg Config) (rs []*Receiver, warnings []string, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, nil, fmt.Errorf("kernel path: %w", err)
	}
	defer func() {
		if err != nil {
			for _, r := range rs {
				r.Close()
			}
			rs = nil
		}
	}()
	if !cfg.NoGRO && !cfg.gro() {
		warnings = append(warnings, fmt.Sprintf("UDP GRO off: a %d-byte MaxPayload can't hold a merged buffer (up to %d bytes); set NoGRO to turn it off on purpose", cfg.MaxPayload, defaultMaxPayload))
	}
	g := &group{cfg: cfg}
	for w := 0; w < cfg.Workers; w++ {
		r, err := newReceiver(w, &cfg)
		if err != nil {
			return rs, nil, err
		}
		r.g = g
		rs = append(rs, r)
	}
	g.rs = rs
	warn := func(ws []string) {
		for _, w := range ws {
			if !slices.Contains(warnings, w) {
				warnings = append(warnings, w)
			}
		}
	}
	for _, addr := range cfg.Addrs {
		for _, port := range cfg.Ports {
			local := netip.AddrPortFrom(addr, port)
			// Bind worker 0's socket first, then 1's...: socket w is index
			// w of the group, as the steering program expects.
			for w, r := range rs {
				fd, opts, err := openSocket(addr, port, &cfg, w)
				if err != nil {
					return rs, nil, fmt.Errorf("kernel path, worker %d: %w", w, err)
				}
				warn(opts.warnings)
				r.socks = append(r.socks, newSock(fd, local, opts.cookie))
			}
			if len(cfg.CPUs) > 0 {
				if err := attachSteering(rs[0].socks[len(rs[0].socks)-1].fd, cfg.CPUs); err != nil {
					return rs, nil, fmt.Errorf("kernel path, %v: %w", local, err)
				}
			}
		}
	}
	for _, r := range rs {
		for _, s := range r.socks {
			r.tracked = append(r.tracked, s.st)
		}
		r.resetPoll()
	}
	return rs, warnings, nil
}

// newReceiver allocates worker w's batch memory and its eventfd.
func newReceiver(w int, cfg *Config) (*Receiver, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("kernel path, worker %d: can't create an eventfd: %w", w, err)
	}
	// Buffers are a cache line apart beyond their size: with a stride that
	// is a multiple of 4 KiB (the default 64 KiB), the first line of every
	// buffer would map to the same cache set.
	stride := (cfg.MaxPayload+63)&^63 + 64
	n := cfg.Batch
	r := &Receiver{queue: w, efd: efd, stride: stride, coalesce: cfg.Coalesce, readTime: cfg.ReadTimestamps,
		hdrs:     make([]unix.Mmsghdr, n),
		iovs:     make([]unix.Iovec, n),
		slotSock: make([]int, n),
		names:    make([]byte, n*nameSize),
		ctrl:     make([]byte, n*ctrlSize),
		bufs:     make([]byte, n*stride),
	}
	r.refusals, _ = cfg.Filter.(RefusalCounter)
	for i := range r.hdrs {
		r.iovs[i].Base = &r.bufs[i*stride]
		r.iovs[i].SetLen(cfg.MaxPayload)
		h := &r.hdrs[i].Hdr
		h.Name = &r.names[i*nameSize]
		h.Namelen = nameSize
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
		h.Control = &r.ctrl[i*ctrlSize]
		h.SetControllen(ctrlSize)
	}
	return r, nil
}

// Buffers counts the buffers recvmmsg filled that held datagrams: fewer
// than Stats().Packets when UDP GRO merged datagrams. Safe from any
// goroutine.
func (r *Receiver) Buffers() uint64 { return r.buffers.Load() }

// Copies counts the broadcast and multicast datagrams this Receiver read
// and did not deliver because the kernel gives each to every socket of its
// port, one per worker, and worker 0 delivers it: a datagram to an IPv4
// broadcast or multicast address or an IPv6 multicast address counts
// Workers-1 times in all, whether worker 0 delivered it or lost it to a
// full buffer (then counted in its SocketOverflows). Always 0 for worker 0.
// Safe from any goroutine.
func (r *Receiver) Copies() uint64 { return r.copies.Load() }

// Queue returns the worker index.
func (r *Receiver) Queue() int { return r.queue }

// Stats returns the Receiver's counters; safe from any goroutine.
func (r *Receiver) Stats() datapath.Stats {
	return datapath.Stats{
		Packets:         r.packets.Load(),
		Bytes:           r.bytes.Load(),
		Batches:         r.batches.Load(),
		Malformed:       r.malformed.Load(),
		SocketOverflows: r.socketOverflows(),
	}
}

// socketOverflows is what full receive buffers dropped on the Receiver's
// sockets: the growth of each socket's drop counter, minus, with a filter
// that counts them (a RefusalCounter), the buffers the filter refused.
//
// The filter counts a refusal before the kernel adds it to the drop
// counter, and the drop count used here was read (by the receiving
// goroutine) before the refusals are: so the difference never exceeds the
// overflows, though it may fall short of them while refusals are under
// way. The result is kept as a running maximum, which reaches the exact
// count once the receiving goroutine has seen the drop counter again
// (with the next datagram, or when it goes idle: see refreshDrops). The
// refusals are read only for a socket whose drop count moved since the
// last time: the same drop count with more refusals can't give more.
func (r *Receiver) socketOverflows() uint64 {
	r.statsMu.Lock()
	defer r.statsMu.Unlock()
	total := r.closedOverflows
	for _, st := range r.tracked {
		total += r.overflowsOf(st)
	}
	return total
}

// overflowsOf updates and returns one socket's overflows; statsMu held.
func (r *Receiver) overflowsOf(st *sockStat) uint64 {
	d := min(st.drops.Load(), st.frozen)
	if d > st.ignored {
		d -= st.ignored
	} else {
		d = 0
	}
	if r.refusals == nil || st.cookie == 0 {
		st.overflows = d
		return d
	}
	if d != st.lastDrops {
		refused, err := r.refusals.RefusedBuffers(st.cookie)
		if err == nil {
			st.lastDrops = d
			if d > refused && d-refused > st.overflows {
				st.overflows = d - refused
			}
		}
	}
	return st.overflows
}

// untrack takes closed sockets' stats out of Stats' list, keeping their
// last overflow counts, and has the filter forget them. Their last drop
// count must have been read (refreshDrops) before they were closed.
func (r *Receiver) untrack(gone []*sockStat) error {
	r.statsMu.Lock()
	defer r.statsMu.Unlock()
	var errs []error
	for _, st := range gone {
		r.closedOverflows += r.overflowsOf(st)
		r.tracked = slices.DeleteFunc(r.tracked, func(x *sockStat) bool { return x == st })
		if r.refusals != nil && st.cookie != 0 {
			if err := r.refusals.ForgetSocket(st.cookie); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Release does nothing: a datagram's buffer is only written again by the
// next Receive.
func (r *Receiver) Release([]datapath.Datagram) {}

// Receive fills batch with up to min(len(batch), Config.Batch) datagrams,
// blocking until there is at least one. It blocks the calling OS thread in
// poll(2) while every socket is empty. After Drain it does not block: it
// returns io.EOF once every socket is empty.
func (r *Receiver) Receive(batch []datapath.Datagram) (int, error) {
	if len(batch) == 0 {
		return 0, errors.New("kernel path: Receive needs a batch of at least one datagram")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	batch = batch[:min(len(batch), len(r.hdrs))]
	for {
		if r.closed.Load() {
			return 0, net.ErrClosed
		}
		// Safe points for SetPorts: slots name sockets by index, so
		// sockets are only taken out of the set when none is pending.
		if r.switching.Load() {
			r.applySwitch()
		}
		if r.anyDrained && r.pend == r.pendEnd {
			r.closeDrained()
		}
		n, err := r.read(batch)
		if n > 0 {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
		if r.draining.Load() {
			// Look at every socket, not only those believed ready,
			// before saying nothing is left.
			for i := range r.ready {
				r.ready[i] = true
			}
			if n, err := r.read(batch); n > 0 || err != nil {
				return n, err
			}
			if r.closed.Load() {
				return 0, net.ErrClosed
			}
			return 0, io.EOF
		}
		if err := r.wait(); err != nil {
			return 0, err
		}
	}
}

// Drain makes Receive stop blocking: it returns what the sockets still hold,
// then io.EOF. It wakes a Receive blocked in poll. Safe from any goroutine.
func (r *Receiver) Drain() {
	if r.draining.Swap(true) {
		return
	}
	r.wake()
}

// wake makes the eventfd readable, which ends a poll in wait; it stays
// readable for good (nobody reads it), so every later poll returns at once.
func (r *Receiver) wake() error {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	r.fdMu.RLock()
	defer r.fdMu.RUnlock()
	if r.efd < 0 {
		return nil
	}
	if _, err := unix.Write(r.efd, one[:]); err != nil && !errors.Is(err, unix.EAGAIN) {
		return fmt.Errorf("kernel path: can't wake worker %d: %w", r.queue, err)
	}
	return nil
}

// readCounts are what one read adds to the Receiver's counters.
type readCounts struct {
	bytes, malformed, buffers, copies uint64
}

// read reads the sockets believed ready, from the cursor on, until batch is
// full or none is left. It does not block.
//
// With GRO a slot (one buffer recvmmsg filled) holds several datagrams.
// When the batch fills in the middle of the slots a recvmmsg filled, the
// rest stays pending: the next read delivers it, and only it, since a new
// recvmmsg would overwrite buffers the batch it returns points into.
func (r *Receiver) read(batch []datapath.Datagram) (int, error) {
	var c readCounts
	n := 0
	if r.pend < r.pendEnd {
		n = r.emitPending(batch, &c)
		r.account(n, &c)
		return n, nil
	}
	nsock := len(r.socks)
	if nsock > 1 {
		if r.sinceRefresh++; r.sinceRefresh >= refreshEvery {
			r.refreshReady()
		}
	}
	want := len(batch)
	used := 0 // slots the kernel filled
	var err error
	for tries := 0; tries < nsock && used < want && n < want; tries++ {
		i := r.cursor
		if r.cursor++; r.cursor == nsock {
			r.cursor = 0
		}
		if !r.ready[i] {
			continue
		}
		s := &r.socks[i]
		vlen := min(want-used, want-n)
		ret, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(s.fd),
			uintptr(unsafe.Pointer(&r.hdrs[used])), uintptr(vlen), unix.MSG_DONTWAIT, 0, 0)
		if errno != 0 {
			switch errno {
			case unix.EAGAIN:
				r.ready[i] = false
				if r.retiring > 0 {
					r.noteEmpty(i)
				}
			case unix.EINTR:
			default:
				err = fmt.Errorf("kernel path: can't receive on %v (worker %d): %w", s.local, r.queue, errno)
			}
			continue
		}
		k := int(ret)
		if k < vlen {
			r.ready[i] = false // recvmmsg stopped short: the socket is drained
			if r.retiring > 0 {
				r.noteEmpty(i)
			}
		}
		var now int64
		if r.readTime {
			now = time.Now().UnixNano()
		}
		for slot := used; slot < used+k; slot++ {
			r.slotSock[slot] = i
		}
		for slot := used; slot < used+k; slot++ {
			d, off, done := r.emit(slot, 0, batch[n:], now, &c)
			n += d
			if !done {
				r.pend, r.pendEnd, r.pendOff, r.pendNow = slot, used+k, off, now
				break
			}
		}
		used += k
	}
	if used > 0 {
		r.dropsDirty = true
		r.recent = true
	}
	r.account(n, &c)
	return n, err
}

// emitPending delivers the slots a full batch left over.
func (r *Receiver) emitPending(batch []datapath.Datagram, c *readCounts) int {
	n := 0
	for r.pend < r.pendEnd && n < len(batch) {
		d, off, done := r.emit(r.pend, r.pendOff, batch[n:], r.pendNow, c)
		n += d
		if !done {
			r.pendOff = off
			return n
		}
		r.pend++
		r.pendOff = 0
	}
	if r.pend == r.pendEnd {
		r.pend, r.pendEnd = 0, 0
	}
	return n
}

// emit delivers the datagrams of one filled slot, from byte off of its
// buffer, into out (len(out) > 0 unless the slot is done). It returns how
// many it delivered, the offset to resume from, and whether the slot is
// done (then its header is reset for the next recvmmsg).
func (r *Receiver) emit(slot, off int, out []datapath.Datagram, now int64, c *readCounts) (n, next int, done bool) {
	h := &r.hdrs[slot]
	s := &r.socks[r.slotSock[slot]]
	ln := int(h.Len)
	if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
		// Larger than MaxPayload: the tail is lost, so the datagram
		// is not delivered. (GRO is off unless MaxPayload is the UDP
		// maximum, so this is one datagram.)
		c.malformed++
		r.resetSlot(h)
		return 0, 0, true
	}
	if len(out) == 0 {
		return 0, off, false
	}
	tmpl := datapath.Datagram{
		Src:    parseSockaddr(r.names[slot*nameSize:(slot+1)*nameSize], h.Hdr.Namelen),
		Dst:    s.local,
		RxTime: now,
		Queue:  uint32(r.queue),
	}
	var m cmsgMeta
	seg := parseCmsgs(r.ctrl[slot*ctrlSize:slot*ctrlSize+int(h.Hdr.Controllen)], &tmpl, &m)
	if m.hasDrops && off == 0 {
		s.noteDrops(m.drops)
	}
	if seg <= 0 || seg > ln {
		seg = ln
	}
	if m.shared && r.queue != 0 {
		// Every socket of the port got this broadcast or multicast
		// datagram: worker 0 delivers it, the others count their copy.
		n := 1
		if seg > 0 {
			n = (ln + seg - 1) / seg
		}
		c.copies += uint64(n)
		r.resetSlot(h)
		return 0, 0, true
	}
	if off == 0 {
		c.buffers++
	}
	base := slot * r.stride
	if ln == 0 {
		out[0] = tmpl
		out[0].Payload = r.bufs[base:base:base]
		r.resetSlot(h)
		return 1, 0, true
	}
	for off < ln && n < len(out) {
		end := min(off+seg, ln)
		d := &out[n]
		*d = tmpl
		d.Payload = r.bufs[base+off : base+end : base+end]
		c.bytes += uint64(end - off)
		n++
		off = end
	}
	if off < ln {
		return n, off, false
	}
	r.resetSlot(h)
	return n, off, true
}

// resetSlot restores the lengths the kernel wrote back, for the next call.
func (r *Receiver) resetSlot(h *unix.Mmsghdr) {
	h.Hdr.Namelen = nameSize
	h.Hdr.SetControllen(ctrlSize)
}

// account adds one read's counts to the Receiver's counters.
func (r *Receiver) account(n int, c *readCounts) {
	if n > 0 {
		r.packets.Add(uint64(n))
		r.bytes.Add(c.bytes)
		r.batches.Add(1)
	}
	if c.buffers > 0 {
		r.buffers.Add(c.buffers)
	}
	if c.malformed > 0 {
		r.malformed.Add(c.malformed)
	}
	if c.copies > 0 {
		r.copies.Add(c.copies)
	}
}

// noteDrops takes a reading v of the socket's 32-bit drop counter, adds
// how much it grew to the socket's stats and returns it. Readings can
// arrive out of order (a datagram queued before a SO_MEMINFO read-back is
// read after it), so a reading behind the last one is ignored; the 32-bit
// difference handles wraparound.
func (s *sock) noteDrops(v uint32) uint64 {
	d := v - s.drops
	if d == 0 || d >= 1<<31 {
		return 0
	}
	s.drops = v
	s.st.drops.Add(uint64(d))
	return uint64(d)
}

// refreshReady asks poll(2), without waiting, which sockets have datagrams.
func (r *Receiver) refreshReady() {
	r.sinceRefresh = 0
	nsock := len(r.socks)
	if n, err := unix.Poll(r.pfds[:nsock], 0); err != nil || n == 0 {
		return
	}
	for i := range nsock {
		if r.pfds[i].Revents != 0 {
			r.ready[i] = true
		}
	}
}

// wait sleeps until a socket may be readable: for Config.Coalesce right
// after datagrams were read, else in poll(2) until a socket is readable or
// Close writes the eventfd.
func (r *Receiver) wait() error {
	if r.coalesce > 0 && r.recent && !r.draining.Load() {
		// Datagrams were flowing: sleep a fixed short time, registered on
		// no socket's wait queue, so that the CPU queueing datagrams wakes
		// no one; then read everything again. If that read finds nothing,
		// recent is false and the next wait sleeps in poll.
		r.recent = false
		ts := unix.NsecToTimespec(int64(r.coalesce))
		if err := unix.Nanosleep(&ts, nil); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("kernel path: can't sleep (worker %d): %w", r.queue, err)
		}
		if r.closed.Load() {
			return net.ErrClosed
		}
		for i := range r.ready {
			r.ready[i] = true
		}
		return nil
	}
	timeout := -1
	if r.dropsDirty && !r.noReadback {
		if since := time.Since(r.dropsLast); since >= dropsRefresh {
			r.refreshDrops()
		} else {
			timeout = int((dropsRefresh-since+time.Millisecond-1)/time.Millisecond) + 1
		}
	}
	if r.retiring > 0 {
		// Sockets of removed ports are closed once read empty after
		// their grace time (at the top of Receive's loop): wake for it.
		if r.anyDrained {
			return nil
		}
		next, due := r.retireDue()
		if due {
			return nil
		}
		if next > 0 {
			ms := int((next+time.Millisecond-1)/time.Millisecond) + 1
			if timeout < 0 || ms < timeout {
				timeout = ms
			}
		}
	}
	var n int
	for {
		var err error
		n, err = unix.Poll(r.pfds, timeout)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("kernel path: can't wait for datagrams (worker %d): %w", r.queue, err)
		}
	}
	if r.closed.Load() {
		return net.ErrClosed
	}
	if r.pfds[len(r.socks)].Revents != 0 {
		// Drain: Receive reads everything once more, then says io.EOF.
		// SetPorts: Receive takes the new sockets.
		if !r.draining.Load() && !r.closed.Load() {
			r.resetWake()
		}
		return nil
	}
	if n == 0 {
		// A timeout above: the drop counters' read-back or a grace time.
		if r.dropsDirty && !r.noReadback && time.Since(r.dropsLast) >= dropsRefresh {
			r.refreshDrops()
		}
		return nil
	}
	for i := range r.socks {
		if r.pfds[i].Revents != 0 {
			r.ready[i] = true
		}
	}
	return nil
}

// refreshDrops reads every socket's drop counter with SO_MEMINFO. SO_RXQ_OVFL
// reports the counter only on datagrams queued after the drops, so drops at
// the end of a burst would stay unseen until the next datagram; a Receiver
// that has read datagrams reads the counters back when it goes idle, at most
// every dropsRefresh.
func (r *Receiver) refreshDrops() {
	r.dropsDirty = false
	r.dropsLast = time.Now()
	for i := range r.socks {
		r.readDrops(&r.socks[i])
	}
}

// readDrops reads one socket's drop counter with SO_MEMINFO.
func (r *Receiver) readDrops(s *sock) {
	r.meminfoLen = uint32(unsafe.Sizeof(r.meminfo))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&r.meminfo)), uintptr(unsafe.Pointer(&r.meminfoLen)), 0)
	if errno != 0 || r.meminfoLen < (unix.SK_MEMINFO_DROPS+1)*4 {
		return
	}
	s.noteDrops(r.meminfo[unix.SK_MEMINFO_DROPS])
}

// Close wakes a blocked Receive, waits for it to return, and closes the
// sockets and the eventfd. A Receive after Close returns net.ErrClosed.
func (r *Receiver) Close() error {
	r.closeOnce.Do(func() {
		r.closed.Store(true)
		r.closeErr = r.wake()
		r.mu.Lock()
		defer r.mu.Unlock()
		r.sockMu.Lock()
		defer r.sockMu.Unlock()
		r.fdMu.Lock()
		defer r.fdMu.Unlock()
		var errs []error
		if ps := r.pending; ps != nil {
			// SetPorts's new sockets, never used.
			for _, s := range ps.add {
				unix.Close(s.fd)
			}
			r.pending = nil
			close(ps.done)
		}
		r.lateMu.Lock()
		if r.lateErr != nil {
			errs = append(errs, r.lateErr)
		}
		r.lateMu.Unlock()
		gone := make([]*sockStat, 0, len(r.socks))
		for i := range r.socks {
			s := &r.socks[i]
			// The last drops, for Stats after Close.
			r.readDrops(s)
			if err := unix.Close(s.fd); err != nil {
				errs = append(errs, fmt.Errorf("can't close socket %v: %w", s.local, err))
			}
			gone = append(gone, s.st)
		}
		if err := r.untrack(gone); err != nil {
			errs = append(errs, err)
		}
		if err := unix.Close(r.efd); err != nil {
			errs = append(errs, fmt.Errorf("can't close eventfd: %w", err))
		}
		r.efd = -1
		if err := errors.Join(errs...); err != nil {
			r.closeErr = errors.Join(r.closeErr, fmt.Errorf("kernel path, worker %d: %w", r.queue, err))
		}
	})
	return r.closeErr
}
