// Package testbed builds the network every privileged test, benchmark and demo
// runs on: two network namespaces joined by a veth pair, with addresses from
// 198.18.0.0/15 (RFC 2544) and 2001:db8::/32 (documentation), and removes it
// again, also after a failure.
//
// The generating side is Gen, the receiving side (where XDP programs and
// receivers attach) is Rx. [Bed.AddPeer] joins more namespaces to Rx, each
// by its own link and routed through Rx: another interface of the
// receiving host, and another host behind it. [Bed.AddGenAddrs] gives Gen
// more source addresses; [Side.RawSender] sends hand-made frames. Names are
// unique per bed and carry the creating process's pid, so that [Sweep] can
// remove beds (peers included) left by a killed process without touching
// those of a process still running.
package testbed

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Addresses of the two sides. Each bed has its own namespaces, so every bed
// uses the same ones.
var (
	GenIPv4 = netip.MustParseAddr("198.18.0.1")
	RxIPv4  = netip.MustParseAddr("198.18.0.2")
	GenIPv6 = netip.MustParseAddr("2001:db8::1")
	RxIPv6  = netip.MustParseAddr("2001:db8::2")
)

const (
	v4Bits = 24
	v6Bits = 64
	// namePrefix starts every namespace this package makes.
	namePrefix = "xitb-"
)

// Config describes a bed. The zero value is a single-queue pair.
type Config struct {
	// Queues is the number of RX and TX queues on each veth end (default 1).
	Queues int
	// MTU of both ends (default 1500).
	MTU int
	// GROOnGen turns GRO on at the generating end, so that frames sent back
	// to it by XDP_TX or redirect are accepted (see the guide).
	GROOnGen bool
}

// Side is one end of the bed.
type Side struct {
	// Netns is the name of the namespace (visible to `ip netns`).
	Netns string
	// Link is the name of the veth end in that namespace.
	Link string
	// Index is its ifindex inside the namespace.
	Index int
	MAC   net.HardwareAddr
	IPv4  netip.Addr
	IPv6  netip.Addr

	ns netns.NsHandle
}

// Bed is a pair of namespaces joined by a veth pair, and the peers added
// to it (see AddPeer).
type Bed struct {
	Gen, Rx *Side
	Queues  int
	// MTU of the Gen-Rx link.
	MTU int

	tag   string
	peers []*Peer
}

// New makes a bed. The caller must Close it; tests use testutil.NewBed,
// which does.
func New(cfg Config) (b *Bed, err error) {
	if cfg.Queues <= 0 {
		cfg.Queues = 1
	}
	if cfg.MTU <= 0 {
		cfg.MTU = 1500
	}
	if err := checkPrivilege(); err != nil {
		return nil, err
	}
	var rb [3]byte
	if _, err := rand.Read(rb[:]); err != nil {
		return nil, err
	}
	tag := hex.EncodeToString(rb[:])
	b = &Bed{Queues: cfg.Queues, MTU: cfg.MTU, tag: tag,
		Gen: &Side{Netns: fmt.Sprintf("%s%d-%s-gen", namePrefix, os.Getpid(), tag), Link: "xg" + tag, IPv4: GenIPv4, IPv6: GenIPv6},
		Rx:  &Side{Netns: fmt.Sprintf("%s%d-%s-rx", namePrefix, os.Getpid(), tag), Link: "xr" + tag, IPv4: RxIPv4, IPv6: RxIPv6},
	}
	defer func() {
		if err != nil {
			b.Close()
			b = nil
		}
	}()
	for _, s := range []*Side{b.Gen, b.Rx} {
		if s.ns, err = newNamedNS(s.Netns); err != nil {
			return b, fmt.Errorf("can't create network namespace %s: %w", s.Netns, err)
		}
	}
	if err := b.makeVeth(cfg); err != nil {
		return b, err
	}
	return b, nil
}

// newNamedNS creates a named namespace without leaving the calling thread in it.
func newNamedNS(name string) (netns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return -1, err
	}
	defer orig.Close()
	ns, err := netns.NewNamed(name)
	if rerr := netns.Set(orig); rerr != nil {
		// The thread is stuck in the wrong namespace: leave it locked so the
		// runtime throws it away when this goroutine exits.
		return -1, fmt.Errorf("can't return to the original namespace: %w", rerr)
	}
	runtime.UnlockOSThread()
	return ns, err
}

func (b *Bed) makeVeth(cfg Config) error {
	hg, err := netlink.NewHandleAt(b.Gen.ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", b.Gen.Netns, err)
	}
	defer hg.Close()
	hr, err := netlink.NewHandleAt(b.Rx.ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", b.Rx.Netns, err)
	}
	defer hr.Close()

	la := netlink.NewLinkAttrs()
	la.Name = b.Gen.Link
	la.MTU = cfg.MTU
	la.NumRxQueues, la.NumTxQueues = cfg.Queues, cfg.Queues
	veth := &netlink.Veth{LinkAttrs: la, PeerName: b.Rx.Link,
		PeerNumRxQueues: uint32(cfg.Queues), PeerNumTxQueues: uint32(cfg.Queues),
		PeerNamespace: netlink.NsFd(int(b.Rx.ns))}
	if err := hg.LinkAdd(veth); err != nil {
		return fmt.Errorf("can't add veth pair %s/%s: %w", b.Gen.Link, b.Rx.Link, err)
	}
	ends := []struct {
		h *netlink.Handle
		s *Side
	}{{hg, b.Gen}, {hr, b.Rx}}
	for _, x := range ends {
		if err := setUpEnd(x.h, x.s, cfg.MTU); err != nil {
			return err
		}
	}
	if err := permanentNeighbours(hg, b.Gen, b.Rx); err != nil {
		return err
	}
	if err := permanentNeighbours(hr, b.Rx, b.Gen); err != nil {
		return err
	}
	for _, x := range ends {
		if err := waitUp(x.h, x.s); err != nil {
			return err
		}
	}
	if cfg.GROOnGen {
		if err := b.Gen.Run("ethtool", "-K", b.Gen.Link, "gro", "on"); err != nil {
			return err
		}
	}
	return nil
}

// Close removes the peers' namespaces and both of the bed's (and with them
// every veth pair). It reports every error but always tries all of them.
func (b *Bed) Close() error {
	var errs []error
	sides := make([]*Side, 0, 2+len(b.peers))
	for _, p := range b.peers {
		sides = append(sides, p.Side)
	}
	b.peers = nil
	for _, s := range append(sides, b.Gen, b.Rx) {
		if s == nil {
			continue
		}
		if s.ns > 0 {
			s.ns.Close()
			s.ns = -1
		}
		if err := removeNamed(s.Netns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Do runs fn on a thread switched into the side's namespace. Sockets, XDP
// attachments and BPF_PROG_RUN calls made inside fn belong to that namespace;
// the file descriptors stay usable from any goroutine afterwards.
func (s *Side) Do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("can't get current namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(s.ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("can't enter namespace %s: %w", s.Netns, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: the runtime discards it with the goroutine.
		return errors.Join(ferr, fmt.Errorf("can't leave namespace %s: %w", s.Netns, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// Enter switches the calling goroutine's thread into the side's namespace
// for good: the thread stays locked and is discarded when the goroutine
// exits. For long-lived goroutines (generators, receivers) that must live in
// the namespace.
func (s *Side) Enter() error {
	runtime.LockOSThread()
	if err := netns.Set(s.ns); err != nil {
		return fmt.Errorf("can't enter namespace %s: %w", s.Netns, err)
	}
	return nil
}

// Command returns a command that runs in the side's namespace.
func (s *Side) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", s.Netns, name}, args...)...)
}

// Run runs a command in the side's namespace and returns its output in the
// error when it fails.
func (s *Side) Run(name string, args ...string) error {
	out, err := s.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), s.Netns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Sweep removes the namespaces of beds whose creating process is gone (for
// example killed with SIGKILL). Beds of running processes are left alone.
// It returns the names it removed.
func Sweep() ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, namePrefix) {
			continue
		}
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(name, namePrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil {
			continue
		}
		if pid != os.Getpid() && unix.Kill(pid, 0) == unix.ESRCH {
			if err := removeNamed(name); err != nil {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, name)
		}
	}
	return removed, errors.Join(errs...)
}

// netnsDir is where `ip netns` and netns.NewNamed keep the files that name
// namespaces (/var/run/netns links to it).
const netnsDir = "/run/netns"

// removeNamed removes a named namespace: it unmounts the namespace from its
// file and deletes the file. A file that is no mount point, left by a
// process killed between creating it and mounting the namespace on it, is
// deleted all the same; a name that does not exist is no error.
func removeNamed(name string) error {
	p := filepath.Join(netnsDir, name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("can't unmount namespace %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("can't remove namespace %s: %w", p, err)
	}
	return nil
}

func checkPrivilege() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the test bed needs root (CAP_SYS_ADMIN for network namespaces, CAP_NET_ADMIN for veth): %w", ErrNoPrivilege)
	}
	return nil
}

// ErrNoPrivilege says the process lacks the capabilities to build a bed.
var ErrNoPrivilege = errors.New("missing privilege")

// Lookup returns a Side for an existing named namespace (made by another
// process, e.g. a parent test), enough for Do, Enter and Command. The handle
// is closed when the process exits.
func Lookup(netnsName string) *Side {
	s := &Side{Netns: netnsName, ns: -1}
	if h, err := netns.GetFromName(netnsName); err == nil {
		s.ns = h
	}
	return s
}

// noopQdisc reports whether the link still has the noop qdisc, which drops
// everything: the state between "up" and the link watch activating it.
func noopQdisc(h *netlink.Handle, l netlink.Link) bool {
	qs, err := h.QdiscList(l)
	if err != nil {
		return false
	}
	for _, q := range qs {
		if q.Type() == "noop" {
			return true
		}
	}
	return false
}
