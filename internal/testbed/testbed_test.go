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
			ln := testutil.ListenUDP(t, b.Rx, netip.AddrPortFrom(tc.dst, 0))
			testutil.SendUDP(t, b.Gen, ln.LocalAddr().(*net.UDPAddr).AddrPort(), "hello")
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
