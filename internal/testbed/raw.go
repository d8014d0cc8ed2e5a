package testbed

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// RawSender sends hand-made Ethernet frames out of one veth end through an
// AF_PACKET socket: fragments in any order, bad lengths, VLAN stacks, all
// exactly as built. Not safe for concurrent use.
type RawSender struct {
	fd   int
	link string
	// Patience is how long Send keeps retrying a full queue (ENOBUFS,
	// EAGAIN) before it gives up (default 5 s).
	Patience time.Duration
}

// RawSender opens a raw sender on the side's link. The caller closes it.
func (s *Side) RawSender() (*RawSender, error) {
	r := &RawSender{fd: -1, link: s.Link, Patience: 5 * time.Second}
	if err := s.Do(func() (err error) {
		// Protocol 0: the socket sends only and receives nothing.
		r.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("can't open an AF_PACKET socket in %s: %w (needs CAP_NET_RAW)", s.Netns, err)
		}
		if err := unix.Bind(r.fd, &unix.SockaddrLinklayer{Ifindex: s.Index}); err != nil {
			unix.Close(r.fd)
			r.fd = -1
			return fmt.Errorf("can't bind an AF_PACKET socket to %s in %s: %w", s.Link, s.Netns, err)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return r, nil
}

// Send sends one frame. A full queue is retried for up to Patience; a frame
// longer than the link's MTU allows (plus the Ethernet header and one VLAN
// tag) fails with EMSGSIZE.
func (r *RawSender) Send(frame []byte) error {
	var deadline time.Time
	for {
		_, err := unix.Write(r.fd, frame)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.ENOBUFS) && !errors.Is(err, unix.EAGAIN) {
			return fmt.Errorf("can't send a %d-byte frame on %s: %w", len(frame), r.link, err)
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(r.Patience)
		} else if time.Now().After(deadline) {
			return fmt.Errorf("can't send a %d-byte frame on %s: the queue stayed full for %v: %w", len(frame), r.link, r.Patience, err)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// SendAll sends the frames in order and stops at the first error.
func (r *RawSender) SendAll(frames [][]byte) error {
	for _, f := range frames {
		if err := r.Send(f); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the socket.
func (r *RawSender) Close() error {
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}
