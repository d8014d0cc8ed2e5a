//go:build linux

package sink

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/datapath"
)

// The UDP sink sends each payload, unchanged, to one collector, which has
// one or two addresses (one per family). Each worker has a lane per
// collector address: a socket connected to it (the kernel looks the route up
// once, and no address travels with each datagram) and sendmmsg over
// preallocated headers whose iovecs point at the payloads in place, so
// nothing is copied before the kernel and nothing is allocated per datagram.
// A datagram goes to the lane of its exporter's family, else (source=relay)
// to the other one.
//
// source=relay (the default) sends from a UDP socket: the collector sees
// this server as the sender. Written counts what the kernel accepted. A
// collector that is not listening answers with ICMP port unreachable, which
// the kernel reports as ECONNREFUSED on a later send; when that send is the
// first of a sendmmsg call, its datagram is dropped ("send_failed") and
// counted as an error. When it is not the first, sendmmsg returns the count
// sent before it and the kernel forgets the error; the datagram goes out with
// the next call. So send_failed shows a refusing collector only in part.
//
// source=original sends from a raw socket (udp_raw_linux.go) with UDP
// headers of our making and the exporter's address and port as the source.
// Nothing comes back to that socket: the collector's ICMP errors go to the
// exporter.

const (
	// udpBatch is the number of datagrams per sendmmsg call.
	udpBatch = 64
	// udpSendBuf is the send buffer asked for (capped by net.core.wmem_max):
	// room for bursts so that a writer rarely waits for the device.
	udpSendBuf = 4 << 20
)

var udpReasons = reasons{"send_failed", "wrong_family", "closed"}

const (
	udpSendFailed = iota
	udpWrongFamily
	udpClosed
)

// mmsghdr is struct mmsghdr; x/sys/unix has no type for it. Go pads the
// struct to its alignment, as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

type udpSink struct {
	spec UDPSpec
	name string
	log  *slog.Logger
	// addrs is the collector's address in each family (invalid if none).
	addrs [2]netip.AddrPort
	// route is the lane (by family) of the datagrams of IPv4 and IPv6
	// exporters; -1: none, they are dropped as wrong_family.
	route   [2]int
	writers []*udpWriter
	closed  atomic.Bool
}

type udpWriter struct {
	s     *udpSink
	c     counters
	lanes [2]*udpLane // by the family of the collector address
	// unrouted has the bit 1<<family of the exporters' families no lane
	// takes.
	unrouted uint8
}

// udpLane is one worker's socket to one collector address.
type udpLane struct {
	w    *udpWriter
	mask uint8 // bits 1<<family of the exporters' families this lane takes
	sock io.Closer
	rc   syscall.RawConn
	raw  *rawLane // nil: a UDP socket (source=relay)

	// hdrs and iovs are the messages of a sendmmsg call. Message i has
	// iovs[2i] (the UDP header, on a raw lane) and iovs[2i+1] (the
	// payload); it carries dgs[idx[i]].
	hdrs []mmsghdr
	iovs []unix.Iovec
	idx  [udpBatch]int
	// State shared with send, which runs inside rc.Write.
	n, off int
	errno  syscall.Errno
	sendFn func(fd uintptr) bool // l.send, bound once so that Write allocates nothing
}

func openUDP(spec UDPSpec, opts Options) (*udpSink, error) {
	s := &udpSink{spec: spec, name: "udp://" + spec.Addr, log: opts.Logger.With("sink", "udp://"+spec.Addr)}
	for i, hp := range spec.collectors() {
		network := "udp"
		if i == 1 {
			// The second address is the collector's in the other family.
			if s.addrs[famIPv4].IsValid() {
				network = "udp6"
			} else {
				network = "udp4"
			}
		}
		ra, err := net.ResolveUDPAddr(network, hp)
		if err != nil {
			return nil, fmt.Errorf("can't resolve UDP collector %s: %w", hp, err)
		}
		ap := ra.AddrPort()
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		f := udpFamily(ap.Addr())
		if s.addrs[f].IsValid() {
			return nil, fmt.Errorf("UDP collector %s and %s are of one family: give one address per family", s.addrs[f], ap)
		}
		s.addrs[f] = ap
	}
	for f := range s.route {
		switch {
		case s.addrs[f].IsValid():
			s.route[f] = f
		case !spec.KeepSource:
			s.route[f] = f ^ 1 // the relay's own socket reaches the other family
		default:
			s.route[f] = -1
		}
	}
	for range opts.Workers {
		w, err := newUDPWriter(s)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.writers = append(s.writers, w)
	}
	return s, nil
}

func newUDPWriter(s *udpSink) (*udpWriter, error) {
	w := &udpWriter{s: s}
	for f, r := range s.route {
		if r < 0 {
			w.unrouted |= 1 << f
			continue
		}
		if w.lanes[r] == nil {
			var err error
			if s.spec.KeepSource {
				w.lanes[r], err = newRawLane(w, s.addrs[r])
			} else {
				w.lanes[r], err = newRelayLane(w, s.addrs[r])
			}
			if err != nil {
				w.close()
				return nil, err
			}
		}
		w.lanes[r].mask |= 1 << f
	}
	return w, nil
}

func newRelayLane(w *udpWriter, raddr netip.AddrPort) (*udpLane, error) {
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(raddr))
	if err != nil {
		return nil, fmt.Errorf("can't open a UDP socket to %s: %w: is there a route to the collector?", raddr, err)
	}
	// Best effort: wmem_max caps it, and the default still works.
	_ = conn.SetWriteBuffer(udpSendBuf)
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("can't get the UDP socket's descriptor: %w", err)
	}
	l := &udpLane{w: w, sock: conn, rc: rc}
	l.grow(udpBatch)
	return l, nil
}

// grow allocates n messages.
func (l *udpLane) grow(n int) {
	l.hdrs = make([]mmsghdr, n)
	l.iovs = make([]unix.Iovec, 2*n)
	for i := range l.hdrs {
		if l.raw != nil {
			l.hdrs[i].hdr.Iov = &l.iovs[2*i]
			l.hdrs[i].hdr.SetIovlen(2)
		} else {
			l.hdrs[i].hdr.Iov = &l.iovs[2*i+1]
			l.hdrs[i].hdr.SetIovlen(1)
		}
	}
	l.sendFn = l.send
}

func (s *udpSink) Name() string             { return s.name }
func (s *udpSink) Writer(worker int) Writer { return s.writers[worker] }

func (s *udpSink) Stats() Stats {
	cs := make([]*counters, len(s.writers))
	for i, w := range s.writers {
		cs[i] = &w.c
	}
	return stats(udpReasons, cs...)
}

func (s *udpSink) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	var errs []error
	for _, w := range s.writers {
		if err := w.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (w *udpWriter) close() error {
	var errs []error
	for _, l := range w.lanes {
		if l != nil {
			if err := l.sock.Close(); err != nil {
				errs = append(errs, fmt.Errorf("can't close the socket of %s: %w", w.s.name, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (w *udpWriter) Write(dgs []datapath.Datagram) error {
	n := uint64(len(dgs))
	w.c.offered.Add(n)
	if w.s.closed.Load() {
		w.c.drop(udpClosed, n)
		return fmt.Errorf("can't send to %s: %w", w.s.name, ErrClosed)
	}
	var first error
	if w.unrouted != 0 {
		var k uint64
		for i := range dgs {
			if w.unrouted&(1<<udpFamily(dgs[i].Src.Addr())) != 0 {
				k++
			}
		}
		if k > 0 {
			w.c.drop(udpWrongFamily, k)
			first = fmt.Errorf("can't send %d datagrams to %s with their exporters' addresses: the collector has no address of their family: add one (udp://IPV4:PORT,[IPV6]:PORT)", k, w.s.name)
		}
	}
	for _, l := range w.lanes {
		if l == nil {
			continue
		}
		if err := l.write(dgs); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// write sends the datagrams of dgs this lane takes and accounts for them.
func (l *udpLane) write(dgs []datapath.Datagram) error {
	c := &l.w.c
	var first error
	for i := 0; i < len(dgs); {
		// Fill a batch: up to udpBatch datagrams.
		k := 0
		for ; i < len(dgs) && k < udpBatch; i++ {
			d := &dgs[i]
			if l.mask&(1<<udpFamily(d.Src.Addr())) == 0 {
				continue
			}
			if l.raw != nil {
				if !l.raw.fits(len(d.Payload)) {
					c.errors.Add(1)
					c.drop(udpSendFailed, 1)
					if first == nil {
						first = fmt.Errorf("can't send a %d-byte datagram to %s: larger than a UDP datagram holds", len(d.Payload), l.w.s.name)
					}
					continue
				}
				l.raw.build(l, d, k)
			} else {
				p := d.Payload
				if len(p) > 0 {
					l.iovs[2*k+1].Base = &p[0]
				} else {
					l.iovs[2*k+1].Base = nil
				}
				l.iovs[2*k+1].SetLen(len(p))
			}
			l.idx[k] = i
			k++
		}
		l.n, l.off = k, 0
		for l.off < l.n {
			start := l.off
			l.errno = 0
			err := l.rc.Write(l.sendFn)
			l.account(dgs, start, l.off)
			if err != nil { // the socket is gone (closed under us)
				left := uint64(l.n - l.off)
				for ; i < len(dgs); i++ {
					if l.mask&(1<<udpFamily(dgs[i].Src.Addr())) != 0 {
						left++
					}
				}
				c.errors.Add(1)
				c.drop(udpSendFailed, left)
				return fmt.Errorf("can't send to %s: %w", l.w.s.name, err)
			}
			if l.errno != 0 {
				// The datagram at l.off failed; the rest are tried.
				c.errors.Add(1)
				c.drop(udpSendFailed, 1)
				if first == nil {
					first = fmt.Errorf("can't send to %s: %w", l.w.s.name, l.errno)
				}
				l.off++
			}
		}
	}
	return first
}

// account counts messages [from, to) as written.
func (l *udpLane) account(dgs []datapath.Datagram, from, to int) {
	if to <= from {
		return
	}
	var bytes uint64
	for m := from; m < to; m++ {
		bytes += uint64(len(dgs[l.idx[m]].Payload))
	}
	l.w.c.written.Add(uint64(to - from))
	l.w.c.writtenBytes.Add(bytes)
}

// send runs sendmmsg from l.off until all is sent, the socket would block
// (false: rc.Write waits until it is writable and calls again) or a message
// fails (l.errno is set; the failed one is l.off).
func (l *udpLane) send(fd uintptr) bool {
	for l.off < l.n {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&l.hdrs[l.off])), uintptr(l.n-l.off), 0, 0, 0)
		switch e {
		case 0:
			l.off += int(r)
		case unix.EAGAIN:
			return false
		case unix.EINTR:
		default:
			l.errno = e
			return true
		}
	}
	return true
}

// Flush has nothing to do: every Write sends before it returns.
func (w *udpWriter) Flush() error { return nil }
