package testutil

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/internal/testbed"
)

// ListenUDP opens a UDP socket in the side's namespace bound to addr (port
// 0 picks one), closed when the test ends.
func ListenUDP(tb testing.TB, side *testbed.Side, addr netip.AddrPort) *net.UDPConn {
	tb.Helper()
	var c *net.UDPConn
	if err := side.Do(func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	}); err != nil {
		tb.Fatalf("listen on %v in %s: %v", addr, side.Netns, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// SendUDP sends one datagram with payload to dst from the side's
// namespace.
func SendUDP(tb testing.TB, side *testbed.Side, dst netip.AddrPort, payload string) {
	tb.Helper()
	SendUDPFrom(tb, side, netip.Addr{}, dst, payload)
}

// SendUDPFrom is SendUDP from src, an address of the side (the zero Addr:
// the one the route picks).
func SendUDPFrom(tb testing.TB, side *testbed.Side, src netip.Addr, dst netip.AddrPort, payload string) {
	tb.Helper()
	var laddr *net.UDPAddr
	if src.IsValid() {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	if err := side.Do(func() error {
		c, err := net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(payload))
		return err
	}); err != nil {
		tb.Fatalf("send %d bytes from %v to %v in %s: %v", len(payload), src, dst, side.Netns, err)
	}
}

// WriteUDP writes one datagram on c, again while the device's queue is
// full (ENOBUFS, EAGAIN): a sender on the bed that outruns the veth.
func WriteUDP(c *net.UDPConn, p []byte) error {
	for {
		_, err := c.Write(p)
		if err == nil || !errors.Is(err, unix.ENOBUFS) && !errors.Is(err, unix.EAGAIN) {
			return err
		}
		time.Sleep(50 * time.Microsecond)
	}
}
