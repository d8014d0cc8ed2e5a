//go:build linux

package sink

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
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
// source=original sends from a raw socket (udp_raw_linux.go) with IP and UDP
// headers of our making: the exporter's address and port as the source.
// Nothing comes back to that socket: the ICMP errors go to the exporter.

const (
	// udpBatch is the number of datagrams per sendmmsg call (a datagram
	// larger than the path MTU takes several messages on a raw lane).
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
	fam  int
	mask uint8 // bits 1<<family of the exporters' families this lane takes
	sock io.Closer
	rc   syscall.RawConn
	raw  *rawLane // nil: a UDP socket (source=relay)

	// hdrs and iovs are the messages of a sendmmsg call. Message i has
	// iovs[2i] (the IP and UDP headers of a raw lane) and iovs[2i+1] (the
	// payload, or the part of it a fragment carries).
	hdrs []mmsghdr
	iovs []unix.Iovec
	// The datagrams of the batch being sent: datagram k is dgs[idx[k]] and
	// its messages end before end[k].
	idx, end [udpBatch]int
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
	// Fragment identifiers: each worker takes every Workers-th from a
	// random start, so that two workers sending fragments of one exporter's
	// datagrams never use one identifier at the same time.
	base := rand.Uint32()
	for i := range opts.Workers {
		w, err := newUDPWriter(s, base+uint32(i), uint32(opts.Workers))
		if err != nil {
			s.Close()
			return nil, err
		}
		s.writers = append(s.writers, w)
	}
	return s, nil
}

func newUDPWriter(s *udpSink, id, idStep uint32) (*udpWriter, error) {
	w := &udpWriter{s: s}
	for f, r := range s.route {
		if r < 0 {
			w.unrouted |= 1 << f
			continue
		}
		if w.lanes[r] == nil {
			var err error
			if s.spec.KeepSource {
				w.lanes[r], err = newRawLane(w, s.addrs[r], id, idStep)
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
	l := &udpLane{w: w, fam: udpFamily(raddr.Addr()), sock: conn, rc: rc}
	l.grow(udpBatch)
	return l, nil
}

// grow makes room for n messages. Existing messages are not kept.
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
		if l.raw != nil {
			l.raw.maybeRefresh(l)
		}
		// Fill a batch: up to udpBatch datagrams, whole.
		k, slots := 0, 0
		for ; i < len(dgs) && k < udpBatch; i++ {
			d := &dgs[i]
			if l.mask&(1<<udpFamily(d.Src.Addr())) == 0 {
				continue
			}
			need := 1
			if l.raw != nil {
				need = l.raw.messages(len(d.Payload))
				if need == 0 {
					c.errors.Add(1)
					c.drop(udpSendFailed, 1)
					if first == nil {
						first = fmt.Errorf("can't send a %d-byte datagram to %s: larger than an IP packet holds", len(d.Payload), l.w.s.name)
					}
					continue
				}
				if slots+need > len(l.hdrs) {
					break
				}
				l.raw.build(l, d, slots)
			} else {
				p := d.Payload
				if len(p) > 0 {
					l.iovs[2*slots+1].Base = &p[0]
				} else {
					l.iovs[2*slots+1].Base = nil
				}
				l.iovs[2*slots+1].SetLen(len(p))
			}
			l.idx[k] = i
			slots += need
			l.end[k] = slots
			k++
		}
		if k == 0 {
			continue
		}
		l.n, l.off = slots, 0
		done := 0
		for l.off < l.n {
			l.errno = 0
			err := l.rc.Write(l.sendFn)
			done = l.account(dgs, done, k)
			if err != nil { // the socket is gone (closed under us)
				left := uint64(k - done)
				for ; i < len(dgs); i++ {
					if l.mask&(1<<udpFamily(dgs[i].Src.Addr())) != 0 {
						left++
					}
				}
				c.errors.Add(1)
				c.drop(udpSendFailed, left)
				return fmt.Errorf("can't send to %s: %w", l.w.s.name, err)
			}
			if l.errno == 0 {
				continue
			}
			// The message at l.off failed: its datagram is lost (the
			// fragments sent before it are discarded by the collector's
			// reassembly); the rest are tried.
			c.errors.Add(1)
			c.drop(udpSendFailed, 1)
			if first == nil {
				first = fmt.Errorf("can't send to %s: %w", l.w.s.name, l.errno)
			}
			l.off = l.end[done]
			done++
			if l.errno == unix.EMSGSIZE && l.raw != nil && l.raw.refresh(l) && done < k {
				// The path MTU shrank: fragment the rest again.
				i = l.idx[done]
				break
			}
		}
	}
	return first
}

// account counts as written the datagrams from done on whose messages were
// all sent, and returns the index of the first that was not.
func (l *udpLane) account(dgs []datapath.Datagram, done, k int) int {
	var n, bytes uint64
	for ; done < k && l.end[done] <= l.off; done++ {
		n++
		bytes += uint64(len(dgs[l.idx[done]].Payload))
	}
	if n > 0 {
		l.w.c.written.Add(n)
		l.w.c.writtenBytes.Add(bytes)
	}
	return done
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
