package hostile

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/internal/testbed"
)

// SendOptions pace a Send.
type SendOptions struct {
	// AfterCase, when set, runs after each case has been sent: a test can
	// wait there for its receiver to catch up. An error stops Send.
	AfterCase func(c *Case) error
}

// Send sends the mix's cases, in the mix's order, one after the other from
// one goroutine: raw frames from Gen's AF_PACKET socket, datagrams from
// UDP sockets in Gen, the peer or Rx bound to their source. It returns
// when everything is handed to the kernel (not when it has arrived), or at
// the first error, or when ctx is done.
func (m *Mix) Send(ctx context.Context, opt SendOptions) error {
	raw, err := m.Env.Bed.Gen.RawSender()
	if err != nil {
		return err
	}
	defer raw.Close()
	socks := &senders{m: m, fds: map[sockKey]int{}}
	defer socks.close()
	for _, c := range m.Cases {
		if err := ctx.Err(); err != nil {
			return err
		}
		if c.Via == ViaRaw {
			if err := raw.SendAll(c.Frames); err != nil {
				return fmt.Errorf("case %s: %w", c.Name, err)
			}
		} else {
			for _, d := range c.Datagrams {
				if err := socks.send(c.Via, d); err != nil {
					return fmt.Errorf("case %s: %w", c.Name, err)
				}
			}
		}
		if opt.AfterCase != nil {
			if err := opt.AfterCase(c); err != nil {
				return err
			}
		}
	}
	return nil
}

type sockKey struct {
	via Via
	src netip.AddrPort
}

// senders are the UDP sockets of a Send, one per namespace and source.
type senders struct {
	m   *Mix
	fds map[sockKey]int
}

func (s *senders) side(v Via) *testbed.Side {
	switch v {
	case ViaPeer:
		return s.m.Env.Peer.Side
	case ViaRx:
		return s.m.Env.Bed.Rx
	}
	return s.m.Env.Bed.Gen
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

func (s *senders) send(v Via, d *Datagram) error {
	k := sockKey{v, d.Src}
	fd, ok := s.fds[k]
	if !ok {
		side := s.side(v)
		if err := side.Do(func() (err error) {
			fam := unix.AF_INET6
			if d.Src.Addr().Is4() {
				fam = unix.AF_INET
			}
			if fd, err = unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
				return fmt.Errorf("can't open a UDP socket in %s: %w", side.Netns, err)
			}
			// Room for the largest datagram and a few more; a send that
			// can't go out in 5 s fails rather than hang the test.
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
			tv := unix.NsecToTimeval(int64(5 * time.Second))
			_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
			if err := unix.Bind(fd, sockaddr(d.Src)); err != nil {
				unix.Close(fd)
				return fmt.Errorf("can't bind a UDP socket to %s in %s: %w", d.Src, side.Netns, err)
			}
			return nil
		}); err != nil {
			return err
		}
		s.fds[k] = fd
	}
	for {
		err := unix.Sendto(fd, d.Payload, 0, sockaddr(d.Dst))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("can't send %d bytes %s -> %s: %w", len(d.Payload), d.Src, d.Dst, err)
		}
		return nil
	}
}

func (s *senders) close() {
	for _, fd := range s.fds {
		unix.Close(fd)
	}
}
