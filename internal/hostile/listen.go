package hostile

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/internal/testbed"
)

// Listener receives on plain UDP sockets in one namespace: for each port an
// IPv4 and an IPv6 (IPV6_V6ONLY) socket bound to the wildcard address, with
// SO_REUSEADDR (so that a socket bound to a device and one bound to none
// can share a port) and 64 MiB receive buffers. It stands in for the
// server when checking the mix on the plain kernel, and shows where
// traffic that the server must not get went instead.
type Listener struct {
	conns []*net.UDPConn
	wg    sync.WaitGroup

	mu   sync.Mutex
	got  []Received
	errs []error
}

// Listen opens a Listener in s's namespace on ports. With dev set, every
// socket is bound to that device (SO_BINDTODEVICE), as the server binds
// its sockets to the ingest link.
func Listen(s *testbed.Side, ports []uint16, dev string) (*Listener, error) {
	l := &Listener{}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = errors.Join(
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1),
				// Root may exceed rmem_max; the mix is a few MiB.
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20))
			if dev != "" && serr == nil {
				serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, dev)
			}
		}); err != nil {
			return err
		}
		return serr
	}}
	for _, port := range ports {
		for _, network := range []string{"udp4", "udp6"} {
			var pc net.PacketConn
			if err := s.Do(func() (err error) {
				pc, err = lc.ListenPacket(context.Background(), network, ":"+strconv.Itoa(int(port)))
				return err
			}); err != nil {
				l.Close()
				return nil, fmt.Errorf("can't listen on %s port %d in %s: %w", network, port, s.Netns, err)
			}
			c := pc.(*net.UDPConn)
			l.conns = append(l.conns, c)
			l.wg.Add(1)
			go l.read(c, port)
		}
	}
	return l, nil
}

func (l *Listener) read(c *net.UDPConn, port uint16) {
	defer l.wg.Done()
	buf := make([]byte, 1<<16)
	for {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				l.mu.Lock()
				l.errs = append(l.errs, err)
				l.mu.Unlock()
			}
			return
		}
		r := Received{Src: src, DstPort: port, Payload: append([]byte(nil), buf[:n]...)}
		l.mu.Lock()
		l.got = append(l.got, r)
		l.mu.Unlock()
	}
}

// Received returns what has arrived so far.
func (l *Listener) Received() []Received {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Received(nil), l.got...)
}

// Err returns the errors the reading goroutines met.
func (l *Listener) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.errs...)
}

// Settle waits until at least n datagrams have arrived and then nothing
// more for quiet, or until limit has passed, and returns what arrived.
func (l *Listener) Settle(n int, quiet, limit time.Duration) []Received {
	deadline := time.Now().Add(limit)
	last, since := -1, time.Now()
	for {
		got := len(l.Received())
		if got != last {
			last, since = got, time.Now()
		}
		if (got >= n && time.Since(since) >= quiet) || time.Now().After(deadline) {
			return l.Received()
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Close closes the sockets and waits for the readers.
func (l *Listener) Close() error {
	for _, c := range l.conns {
		c.Close()
	}
	l.wg.Wait()
	return nil
}
