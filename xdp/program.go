package xdp

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// Action is what the program does with a matched datagram from an allowed
// source.
type Action uint32

// Keep in step with enum mode in bpf/ingest.c.
const (
	// Redirect steers it into the AF_XDP socket of its RX queue.
	Redirect Action = 0
	// Pass hands it to the kernel, for the kernel socket path: the deny and
	// allow lists still apply at XDP speed.
	Pass Action = 1
	// Drop drops it after counting: the ceiling pktbench measures.
	Drop Action = 2
)

func (a Action) String() string {
	switch a {
	case Redirect:
		return "redirect"
	case Pass:
		return "pass"
	case Drop:
		return "drop"
	}
	return fmt.Sprintf("action(%d)", uint32(a))
}

// Config is what the program matches and what it does with a match. The zero
// value matches nothing.
type Config struct {
	// Ports are the UDP destination ports to take. Any of 0..65535; the
	// server refuses 0 before it gets here.
	Ports []uint16
	// Allow, when not empty, limits matched datagrams to sources in these
	// prefixes, per family: an IPv4-only allow list leaves IPv6 sources
	// unrestricted. Deny drops matched datagrams from these sources, and
	// wins over Allow. Neither applies to traffic for other ports.
	Allow, Deny []netip.Prefix
	// Action for matched, allowed datagrams.
	Action Action
}

// LoadOptions size the program's maps. They are fixed once loaded.
type LoadOptions struct {
	// MaxQueues is the number of XSKMAP slots, i.e. the highest RX queue
	// index plus one that can have a socket (default 256).
	MaxQueues int
	// MaxPrefixes bounds each of the four prefix lists (default 65536).
	MaxPrefixes int
}

// Program is the loaded XDP program and its maps. It is safe for concurrent
// use.
type Program struct {
	objs ingestObjects

	mu       sync.Mutex
	cfg      Config
	ports    [1024]uint64
	prefixes map[string]map[netip.Prefix]bool // list name -> current entries
	flags    uint32
	xsk      map[int]bool
	att      *Attachment
	closed   bool
}

// Keep in step with the CFG_ flags in bpf/ingest.c.
const (
	cfgAllow4 = 1 << 0
	cfgAllow6 = 1 << 1
	cfgDeny4  = 1 << 2
	cfgDeny6  = 1 << 3
)

// Load loads the program into the kernel and configures it. It attaches
// nothing; see Attach.
func Load(cfg Config, opts LoadOptions) (*Program, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	if opts.MaxQueues == 0 {
		opts.MaxQueues = 256
	}
	if opts.MaxPrefixes == 0 {
		opts.MaxPrefixes = 65536
	}
	if opts.MaxQueues < 1 || opts.MaxQueues > 65536 || opts.MaxPrefixes < 1 {
		return nil, fmt.Errorf("can't load the XDP program: MaxQueues %d and MaxPrefixes %d must be positive (MaxQueues at most 65536)", opts.MaxQueues, opts.MaxPrefixes)
	}
	// A no-op on kernels with memcg accounting for BPF (5.11 on); older
	// ones charge maps to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil && !errors.Is(err, os.ErrPermission) {
		return nil, fmt.Errorf("can't raise RLIMIT_MEMLOCK for BPF maps: %w", err)
	}
	spec, err := loadIngest()
	if err != nil {
		return nil, err
	}
	spec.Maps[ingestMapXsks].MaxEntries = uint32(opts.MaxQueues)
	for _, m := range []string{ingestMapAllow4, ingestMapAllow6, ingestMapDeny4, ingestMapDeny6} {
		spec.Maps[m].MaxEntries = uint32(opts.MaxPrefixes)
	}
	p := &Program{
		prefixes: map[string]map[netip.Prefix]bool{"allow4": {}, "allow6": {}, "deny4": {}, "deny6": {}},
		xsk:      map[int]bool{},
	}
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		return nil, loadError(err)
	}
	if err := p.Update(cfg); err != nil {
		p.objs.Close()
		return nil, err
	}
	return p, nil
}

func loadError(err error) error {
	var verr *ebpf.VerifierError
	switch {
	case errors.Is(err, ebpf.ErrNotSupported):
		return &NotSupportedError{What: "loading the XDP program", Err: err}
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("can't load the XDP program: %w: run as root or grant CAP_BPF and CAP_NET_ADMIN", err)
	case errors.As(err, &verr):
		return fmt.Errorf("can't load the XDP program: the kernel's verifier refused it: %w", err)
	}
	return fmt.Errorf("can't load the XDP program: %w", err)
}

func validate(cfg Config) error {
	switch cfg.Action {
	case Redirect, Pass, Drop:
	default:
		return fmt.Errorf("invalid action %d: want redirect, pass or drop", cfg.Action)
	}
	for _, list := range [][]netip.Prefix{cfg.Allow, cfg.Deny} {
		for _, pfx := range list {
			if !pfx.IsValid() {
				return fmt.Errorf("invalid prefix %v", pfx)
			}
		}
	}
	return nil
}

// Update changes ports, prefix lists and action of the running program,
// without reattaching it. Ports and prefixes are changed one entry at a
// time, new entries before old ones are removed, so no datagram that both
// the old and the new configuration take is ever refused while it runs.
func (p *Program) Update(cfg Config) error {
	if err := validate(cfg); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return os.ErrClosed
	}

	// Ports: write the words that change.
	var bm [1024]uint64
	for _, port := range cfg.Ports {
		bm[port>>6] |= 1 << (port & 63)
	}
	for w := range bm {
		if bm[w] == p.ports[w] {
			continue
		}
		if err := p.objs.Ports.Update(uint32(w), bm[w], ebpf.UpdateAny); err != nil {
			return fmt.Errorf("can't update the port set: %w", err)
		}
		p.ports[w] = bm[w]
	}

	// Prefix lists: add new entries, switch the flags, then delete the old
	// entries.
	want := map[string]map[netip.Prefix]bool{"allow4": {}, "allow6": {}, "deny4": {}, "deny6": {}}
	for _, pfx := range cfg.Allow {
		pfx = pfx.Masked()
		want[listName("allow", pfx)][pfx] = true
	}
	for _, pfx := range cfg.Deny {
		pfx = pfx.Masked()
		want[listName("deny", pfx)][pfx] = true
	}
	for name, set := range want {
		for pfx := range set {
			if p.prefixes[name][pfx] {
				continue
			}
			if err := p.putPrefix(name, pfx); err != nil {
				return err
			}
			p.prefixes[name][pfx] = true
		}
	}
	var flags uint32
	for name, bit := range map[string]uint32{"allow4": cfgAllow4, "allow6": cfgAllow6, "deny4": cfgDeny4, "deny6": cfgDeny6} {
		if len(want[name]) > 0 {
			flags |= bit
		}
	}
	if err := p.objs.Config.Update(uint32(0), ingestConfig{Mode: uint32(cfg.Action), Flags: flags}, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("can't update the program's configuration: %w", err)
	}
	p.flags = flags
	for name, set := range p.prefixes {
		for pfx := range set {
			if want[name][pfx] {
				continue
			}
			if err := p.deletePrefix(name, pfx); err != nil {
				return err
			}
			delete(set, pfx)
		}
	}
	p.cfg = Config{Ports: sortedPorts(bm), Allow: sortedPrefixes(cfg.Allow), Deny: sortedPrefixes(cfg.Deny), Action: cfg.Action}
	return nil
}

// SetAction changes only what happens to matched datagrams.
func (p *Program) SetAction(a Action) error {
	p.mu.Lock()
	cfg := p.cfg
	p.mu.Unlock()
	cfg.Action = a
	return p.Update(cfg)
}

// Config returns the configuration in force, ports sorted, prefixes masked.
func (p *Program) Config() Config {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg
}

func listName(kind string, pfx netip.Prefix) string {
	if pfx.Addr().Is4() || pfx.Addr().Is4In6() && pfx.Bits() >= 96 {
		return kind + "4"
	}
	return kind + "6"
}

func (p *Program) listMap(name string) *ebpf.Map {
	switch name {
	case "allow4":
		return p.objs.Allow4
	case "allow6":
		return p.objs.Allow6
	case "deny4":
		return p.objs.Deny4
	}
	return p.objs.Deny6
}

func lpmKey(pfx netip.Prefix) any {
	a := pfx.Addr()
	if a.Is4In6() && pfx.Bits() >= 96 {
		return ingestLpm4Key{Prefixlen: uint32(pfx.Bits() - 96), Addr: a.Unmap().As4()}
	}
	if a.Is4() {
		return ingestLpm4Key{Prefixlen: uint32(pfx.Bits()), Addr: a.As4()}
	}
	return ingestLpm6Key{Prefixlen: uint32(pfx.Bits()), Addr: a.As16()}
}

func (p *Program) putPrefix(name string, pfx netip.Prefix) error {
	if err := p.listMap(name).Update(lpmKey(pfx), uint8(1), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("can't add %s to the %s list: %w", pfx, name, err)
	}
	return nil
}

func (p *Program) deletePrefix(name string, pfx netip.Prefix) error {
	if err := p.listMap(name).Delete(lpmKey(pfx)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("can't remove %s from the %s list: %w", pfx, name, err)
	}
	return nil
}

func sortedPorts(bm [1024]uint64) []uint16 {
	var out []uint16
	for w, bits := range bm {
		for b := 0; b < 64; b++ {
			if bits&(1<<b) != 0 {
				out = append(out, uint16(w*64+b))
			}
		}
	}
	return out
}

func sortedPrefixes(in []netip.Prefix) []netip.Prefix {
	seen := map[netip.Prefix]bool{}
	var out []netip.Prefix
	for _, p := range in {
		p = p.Masked()
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Addr().Compare(out[j].Addr()); c != 0 {
			return c < 0
		}
		return out[i].Bits() < out[j].Bits()
	})
	return out
}

// RegisterXSK puts an AF_XDP socket into the queue's XSKMAP slot: from now on
// matched datagrams arriving on that queue are redirected to it.
func (p *Program) RegisterXSK(queue int, fd int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return os.ErrClosed
	}
	if queue < 0 || queue >= int(p.objs.Xsks.MaxEntries()) {
		return fmt.Errorf("can't register an AF_XDP socket for queue %d: the program has slots for queues 0..%d (LoadOptions.MaxQueues)", queue, p.objs.Xsks.MaxEntries()-1)
	}
	if err := p.objs.Xsks.Update(uint32(queue), uint32(fd), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("can't register the AF_XDP socket of queue %d: %w", queue, err)
	}
	p.xsk[queue] = true
	return nil
}

// UnregisterXSK empties the queue's slot: matched datagrams on that queue go
// to the kernel again, counted as no_socket.
func (p *Program) UnregisterXSK(queue int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return os.ErrClosed
	}
	if err := p.objs.Xsks.Delete(uint32(queue)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("can't unregister the AF_XDP socket of queue %d: %w", queue, err)
	}
	delete(p.xsk, queue)
	return nil
}

// Close detaches the program, if attached, and releases it and its maps.
func (p *Program) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	if p.att != nil {
		errs = append(errs, p.att.link.Close())
		p.att = nil
	}
	errs = append(errs, p.objs.Close())
	return errors.Join(errs...)
}

// NotSupportedError says the kernel lacks something the program needs. It
// matches ErrNotSupported (and cilium/ebpf's ErrNotSupported) with errors.Is.
type NotSupportedError struct {
	What string
	Err  error
}

func (e *NotSupportedError) Error() string {
	return fmt.Sprintf("%s is not supported by this kernel or driver: %v", e.What, e.Err)
}

func (e *NotSupportedError) Unwrap() error { return e.Err }

// Is matches ErrNotSupported.
func (e *NotSupportedError) Is(target error) bool { return target == ErrNotSupported }

// ErrNotSupported is the sentinel for kernels and drivers that cannot run
// the program or attach it.
var ErrNotSupported = errors.New("not supported")
