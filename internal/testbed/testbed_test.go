package testbed_test

import (
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

func TestBedUDPBothFamilies(t *testing.T) {
	b := testutil.NewBed(t, testbed.Config{Queues: 2})
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
	}{{"ipv4", testbed.GenIPv4, testbed.RxIPv4}, {"ipv6", testbed.GenIPv6, testbed.RxIPv6}} {
		t.Run(tc.name, func(t *testing.T) {
			var ln *net.UDPConn
			if err := b.Rx.Do(func() (err error) {
				ln, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(tc.dst, 0)))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			var c *net.UDPConn
			if err := b.Gen.Do(func() (err error) {
				c, err = net.DialUDP("udp", nil, ln.LocalAddr().(*net.UDPAddr))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			ln.SetReadDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 64)
			n, from, err := ln.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatal(err)
			}
			if string(buf[:n]) != "hello" || from.Addr().Unmap() != tc.src {
				t.Fatalf("got %q from %v", buf[:n], from)
			}
		})
	}
}

func TestBedRemovedOnClose(t *testing.T) {
	testutil.RequireRoot(t)
	b, err := testbed.New(testbed.Config{})
	if err != nil {
		t.Fatal(err)
	}
	names := []string{b.Gen.Netns, b.Rx.Netns}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if _, err := os.Stat("/var/run/netns/" + n); !os.IsNotExist(err) {
			t.Errorf("namespace %s still exists after Close (stat: %v)", n, err)
		}
	}
}
