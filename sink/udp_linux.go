//go:build linux

package sink

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/datapath"
)

// The UDP relay sends each payload, unchanged, to one collector: a socket per
// worker, connected to the collector (the kernel looks the route up once, and
// no address travels with each datagram), and sendmmsg over preallocated
// headers whose iovecs point at the payloads in place, so nothing is copied
// before the kernel and nothing is allocated per datagram.
//
// Written counts what the kernel accepted. UDP promises no more: a collector
// that is not listening answers with ICMP port unreachable, which the kernel
// reports as ECONNREFUSED on a later send; when that send is the first of a
// sendmmsg call, its datagram is dropped ("send_failed") and counted as an
// error. When it is not the first, sendmmsg returns the count sent before it
// and the kernel forgets the error; the datagram goes out with the next call.
// So send_failed shows a refusing collector only in part: watch the
// collector, not this counter, to know it is up.

const (
	// udpBatch is the number of datagrams per sendmmsg call.
	udpBatch = 64
	// udpSendBuf is the send buffer asked for (capped by net.core.wmem_max):
	// room for bursts so that a writer rarely waits for the device.
	udpSendBuf = 4 << 20
)

var udpReasons = reasons{"send_failed", "closed"}

const (
	udpSendFailed = iota
	udpClosed
)

// mmsghdr is struct mmsghdr; x/sys/unix has no type for it. Go pads the
// struct to its alignment, as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

type udpSink struct {
	spec    UDPSpec
	log     *slog.Logger
	writers []*udpWriter
	closed  atomic.Bool
}

type udpWriter struct {
	s    *udpSink
	c    counters
	conn *net.UDPConn
	rc   syscall.RawConn

	hdrs [udpBatch]mmsghdr
	iovs [udpBatch]unix.Iovec
	// State shared with send, which runs inside rc.Write.
	n, off int
	errno  syscall.Errno
	sendFn func(fd uintptr) bool // w.send, bound once so that Write allocates nothing
}

func openUDP(spec UDPSpec, opts Options) (*udpSink, error) {
	raddr, err := net.ResolveUDPAddr("udp", spec.Addr)
	if err != nil {
		return nil, fmt.Errorf("can't resolve UDP collector %s: %w", spec.Addr, err)
	}
	s := &udpSink{spec: spec, log: opts.Logger.With("sink", "udp://"+spec.Addr)}
	for range opts.Workers {
		w, err := newUDPWriter(s, raddr)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.writers = append(s.writers, w)
	}
	return s, nil
}

func newUDPWriter(s *udpSink, raddr *net.UDPAddr) (*udpWriter, error) {
	conn, err := net.DialUDP("udp", nil, raddr)
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
	w := &udpWriter{s: s, conn: conn, rc: rc}
	for i := range w.hdrs {
		w.hdrs[i].hdr.Iov = &w.iovs[i]
		w.hdrs[i].hdr.SetIovlen(1)
	}
	w.sendFn = w.send
	return w, nil
}

func (s *udpSink) Name() string             { return "udp://" + s.spec.Addr }
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
		if err := w.conn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("can't close UDP socket to %s: %w", s.spec.Addr, err))
		}
	}
	return errors.Join(errs...)
}

func (w *udpWriter) Write(dgs []datapath.Datagram) error {
	n := uint64(len(dgs))
	w.c.offered.Add(n)
	if w.s.closed.Load() {
		w.c.drop(udpClosed, n)
		return fmt.Errorf("can't send to %s: %w", w.s.Name(), ErrClosed)
	}
	var first error
	for len(dgs) > 0 {
		k := min(len(dgs), udpBatch)
		for i := range k {
			p := dgs[i].Payload
			if len(p) > 0 {
				w.iovs[i].Base = &p[0]
			} else {
				w.iovs[i].Base = nil
			}
			w.iovs[i].SetLen(len(p))
		}
		w.n, w.off = k, 0
		for w.off < w.n {
			start := w.off
			w.errno = 0
			err := w.rc.Write(w.sendFn)
			w.c.written.Add(uint64(w.off - start))
			w.c.writtenBytes.Add(payloadBytes(dgs[start:w.off]))
			if err != nil { // the socket is gone (closed under us)
				left := uint64(len(dgs) - w.off)
				w.c.errors.Add(1)
				w.c.drop(udpSendFailed, left)
				return fmt.Errorf("can't send to %s: %w", w.s.Name(), err)
			}
			if w.errno != 0 {
				// The datagram at w.off failed; the rest are tried.
				w.c.errors.Add(1)
				w.c.drop(udpSendFailed, 1)
				if first == nil {
					first = fmt.Errorf("can't send to %s: %w", w.s.Name(), w.errno)
				}
				w.off++
			}
		}
		dgs = dgs[k:]
	}
	return first
}

// send runs sendmmsg from w.off until all is sent, the socket would block
// (false: rc.Write waits until it is writable and calls again) or a datagram
// fails (w.errno is set; the failed one is w.off).
func (w *udpWriter) send(fd uintptr) bool {
	for w.off < w.n {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.hdrs[w.off])), uintptr(w.n-w.off), 0, 0, 0)
		switch e {
		case 0:
			w.off += int(r)
		case unix.EAGAIN:
			return false
		case unix.EINTR:
		default:
			w.errno = e
			return true
		}
	}
	return true
}

// Flush has nothing to do: every Write sends before it returns.
func (w *udpWriter) Flush() error { return nil }
