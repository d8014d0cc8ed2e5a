package measure

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/internal/testbed"
)

// Paths and generators work in the namespace they run in, or in a side's
// (a test bed's, or one made by `ip netns add`): a nil side stands for the
// current one.

// nsDo runs fn on a thread in the side's namespace (nil: this one).
func nsDo(side *testbed.Side, fn func() error) error {
	if side == nil {
		return fn()
	}
	return side.Do(fn)
}

// nsEnter locks the calling goroutine to its thread and moves the thread
// into the side's namespace (nil: leaves it where it is). The thread must
// stay locked until the goroutine exits, after which the runtime discards
// it: callers pin such threads to CPUs too.
func nsEnter(side *testbed.Side) error {
	runtime.LockOSThread()
	if side == nil {
		return nil
	}
	return side.Enter()
}

// Iface is what the generators need of an interface, read in its
// namespace.
type Iface struct {
	Name  string
	Index int
	MAC   net.HardwareAddr
	Addrs []netip.Addr
}

// LookupIface reads the interface's index, MAC and addresses in the side's
// namespace (nil: this one).
func LookupIface(side *testbed.Side, name string) (Iface, error) {
	var info Iface
	err := nsDo(side, func() error {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return fmt.Errorf("can't find interface %s%s: %w", name, where(side), err)
		}
		info = Iface{Name: ifi.Name, Index: ifi.Index, MAC: ifi.HardwareAddr}
		addrs, err := ifi.Addrs()
		if err != nil {
			return fmt.Errorf("can't read the addresses of %s: %w", name, err)
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP); ok && !ip.IsLinkLocalUnicast() {
					info.Addrs = append(info.Addrs, ip.Unmap())
				}
			}
		}
		return nil
	})
	return info, err
}

// FirstAddr returns the interface's first address of the family.
func (i Iface) FirstAddr(v4 bool) (netip.Addr, bool) {
	for _, a := range i.Addrs {
		if a.Is4() == v4 {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// NeighbourMAC looks dst up in the interface's neighbour table, in the
// side's namespace.
func NeighbourMAC(side *testbed.Side, ifindex int, ifname string, dst netip.Addr) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := nsDo(side, func() error {
		family := unix.AF_INET6
		if dst.Is4() {
			family = unix.AF_INET
		}
		neighs, err := netlink.NeighList(ifindex, family)
		if err != nil {
			return fmt.Errorf("can't read the neighbour table of %s: %w", ifname, err)
		}
		for _, n := range neighs {
			ip, ok := netip.AddrFromSlice(n.IP)
			if ok && ip.Unmap() == dst && len(n.HardwareAddr) == 6 && n.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE) == 0 {
				mac = n.HardwareAddr
				return nil
			}
		}
		return errors.New("not found")
	})
	if err != nil {
		return nil, fmt.Errorf("no neighbour entry for %s on %s (%v): let the kernel resolve it first (ping %s)", dst, ifname, err, dst)
	}
	return mac, nil
}

func where(side *testbed.Side) string {
	if side == nil {
		return ""
	}
	return " in network namespace " + side.Netns
}
