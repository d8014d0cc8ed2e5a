package afxdp

import (
	"errors"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/datapath"
)

// Path is the AF_XDP receive path of one interface: a Socket per RX queue,
// each registered with the XDP program.
type Path struct {
	ifindex int
	ifname  string
	socks   []*Socket
}

var _ datapath.Path = (*Path)(nil)

// Name is "afxdp".
func (p *Path) Name() string { return "afxdp" }

// PathOf is "afxdp" for every receiver.
func (p *Path) PathOf(int) string { return "afxdp" }

// Drain drains every socket.
func (p *Path) Drain() {
	for _, s := range p.socks {
		s.Drain()
	}
}

// Notes says the mode the sockets run in.
func (p *Path) Notes() []string {
	return []string{fmt.Sprintf("AF_XDP on %s: %d socket(s), %s mode", p.ifname, len(p.socks), p.Mode())}
}

// Open opens and binds a socket on each queue cfg names (every RX queue of
// the interface by default), in the network namespace of the calling
// thread, and registers each with reg (the XDP program, which must already
// be attached for traffic to flow; nil registers nothing). On any failure
// it closes what it opened and says which queue failed.
func Open(cfg Config, reg datapath.XSKRegistrar) (*Path, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ifindex, ifname, err := lookupIface(cfg)
	if err != nil {
		return nil, err
	}
	queues := cfg.Queues
	if len(queues) == 0 {
		n, err := RxQueues(ifname)
		if err != nil {
			return nil, err
		}
		for q := range n {
			queues = append(queues, q)
		}
	}
	seen := map[int]bool{}
	p := &Path{ifindex: ifindex, ifname: ifname}
	for _, q := range queues {
		if seen[q] {
			p.Close()
			return nil, fmt.Errorf("%w: queue %d named twice", ErrConfig, q)
		}
		seen[q] = true
		s, err := newSocket(cfg, ifindex, ifname, q)
		if err != nil {
			p.Close()
			return nil, err
		}
		p.socks = append(p.socks, s)
		if reg != nil && !cfg.TxOnly {
			if err := s.Register(reg); err != nil {
				p.Close()
				return nil, err
			}
		}
	}
	return p, nil
}

// Sockets returns the path's sockets, one per queue, in the order opened.
func (p *Path) Sockets() []*Socket { return p.socks }

// Receivers returns the sockets as datapath.Receivers, one per worker.
func (p *Path) Receivers() []datapath.Receiver {
	rs := make([]datapath.Receiver, len(p.socks))
	for i, s := range p.socks {
		rs[i] = s
	}
	return rs
}

// ZeroCopy reports whether every socket is in zero-copy mode.
func (p *Path) ZeroCopy() bool {
	for _, s := range p.socks {
		if !s.zeroCopy {
			return false
		}
	}
	return len(p.socks) > 0
}

// Mode is "zero-copy", "copy", or "mixed" when the driver gave some queues
// zero-copy and not others.
func (p *Path) Mode() string {
	zc := 0
	for _, s := range p.socks {
		if s.zeroCopy {
			zc++
		}
	}
	switch zc {
	case len(p.socks):
		return "zero-copy"
	case 0:
		return "copy"
	}
	return "mixed"
}

// Iface returns the interface's name and index.
func (p *Path) Iface() (string, int) { return p.ifname, p.ifindex }

// Stats sums the sockets' counters.
func (p *Path) Stats() datapath.Stats {
	var st datapath.Stats
	for _, s := range p.socks {
		st = st.Add(s.Stats())
	}
	return st
}

// Close closes every socket (each unregisters itself from the program).
// Every receiver is woken first, so that none waits for the others'
// teardown (closing an AF_XDP socket waits for an RCU grace period).
func (p *Path) Close() error {
	var errs []error
	for _, s := range p.socks {
		s.shutdown()
	}
	for _, s := range p.socks {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// lookupIface resolves cfg's interface in the calling thread's namespace.
func lookupIface(cfg Config) (int, string, error) {
	var (
		ifi *net.Interface
		err error
	)
	switch {
	case cfg.Ifindex > 0:
		ifi, err = net.InterfaceByIndex(cfg.Ifindex)
	case cfg.Iface != "":
		ifi, err = net.InterfaceByName(cfg.Iface)
	default:
		return 0, "", fmt.Errorf("%w: no interface named (set Iface or Ifindex)", ErrConfig)
	}
	if err != nil {
		name := cfg.Iface
		if cfg.Ifindex > 0 {
			name = fmt.Sprintf("ifindex %d", cfg.Ifindex)
		}
		return 0, "", fmt.Errorf("can't find interface %s in this network namespace: %w", name, err)
	}
	return ifi.Index, ifi.Name, nil
}

// ethtoolChannels is struct ethtool_channels.
type ethtoolChannels struct {
	Cmd           uint32
	MaxRx         uint32
	MaxTx         uint32
	MaxOther      uint32
	MaxCombined   uint32
	RxCount       uint32
	TxCount       uint32
	OtherCount    uint32
	CombinedCount uint32
}

// ifreqData is struct ifreq with its union as a pointer (ifr_data).
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte
}

// RxQueues returns the number of RX queues of the interface, as ethtool
// counts them (rx + combined channels), in the calling thread's network
// namespace.
func RxQueues(ifname string) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("can't count the RX queues of %s: %w", ifname, err)
	}
	defer unix.Close(fd)
	ch := ethtoolChannels{Cmd: unix.ETHTOOL_GCHANNELS}
	var ifr ifreqData
	copy(ifr.name[:unix.IFNAMSIZ-1], ifname)
	ifr.data = unsafe.Pointer(&ch)
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	if e != 0 {
		return 0, fmt.Errorf("can't count the RX queues of %s (ethtool -l): %w: name the queues in the configuration", ifname, e)
	}
	n := int(ch.RxCount + ch.CombinedCount)
	if n == 0 {
		return 0, fmt.Errorf("can't count the RX queues of %s: ethtool reports no RX or combined channels: name the queues in the configuration", ifname)
	}
	return n, nil
}
