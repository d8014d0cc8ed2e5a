package xdp

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
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
	// MaxRedirect is the largest frame, in bytes from the Ethernet header
	// on, that the Redirect action steers into an AF_XDP socket; a larger
	// matched, allowed frame is passed to the kernel (OutcomeOversize),
	// whose sockets on the ingest ports take it. 0 means no limit. Set it
	// to what an AF_XDP frame holds, MaxRedirectFor(frame size, UMEM
	// headroom): the kernel drops a larger frame after the redirect
	// (counted only in the socket's rx_dropped) unless the socket was bound
	// with XDP_USE_SG. The whole frame counts, a trailer after the
	// datagram included; the program reads the whole length of a frame
	// whose first buffer is 1523 bytes or more (a driver that puts less in
	// the first buffer of a longer frame, such as one that splits headers
	// from data, may see a frame with a long trailer redirected and
	// dropped).
	MaxRedirect int
	// SocketIfindex is the index of the interface the kernel sockets on
	// the ingest ports are bound to (kernel.Config.Device): the socket
	// filter refuses a datagram that came in over any other interface
	// (SocketOtherIface), loopback included. Binding alone lets through
	// what a process of the host sends to the interface's own address:
	// the kernel routes it over loopback but gives it that interface as
	// its input interface. 0: no check, for sockets bound to no
	// interface. For an interface enslaved to a VRF leave it 0: the
	// kernel then makes the VRF device the input interface.
	SocketIfindex int
}

// XDPPacketHeadroom is the kernel's XDP_PACKET_HEADROOM: what it keeps in
// front of a frame in every AF_XDP chunk.
const XDPPacketHeadroom = 256

// MaxRedirectFor is the largest frame an AF_XDP socket takes in one
// descriptor, for its UMEM's chunk (frame) size and the headroom it was
// registered with (XDP_UMEM_REG): the kernel's xsk_pool_get_rx_frame_size,
// chunk size - XDP_PACKET_HEADROOM - headroom, in copy mode and in
// zero-copy mode alike. A larger frame is dropped by the kernel
// (xsk_rcv_check, rx_dropped) unless the socket uses XDP_USE_SG.
func MaxRedirectFor(frameSize, umemHeadroom int) int {
	return frameSize - XDPPacketHeadroom - umemHeadroom
}

// LoadOptions size the program's maps. They are fixed once loaded.
type LoadOptions struct {
	// MaxQueues is the number of XSKMAP slots, i.e. the highest RX queue
	// index plus one that can have a socket (default 256).
	MaxQueues int
	// MaxPrefixes bounds each of the four prefix lists (default 65536).
	MaxPrefixes int
	// MaxSockets bounds how many sockets the socket filter counts its
	// refusals for at once ([SocketFilter.RefusedBuffers]; default
	// 65536). A socket beyond it has its refusals counted as losses of a
	// full receive buffer by the kernel path.
	MaxSockets int
	// MaxPortSlots is the number of per-port counter slots
	// ([Program.PortCounters]; default 256): the first MaxPortSlots-1
	// ports configured get one each, for the life of the program, and
	// any port after them counts in the overflow slot with the others
	// (PortCounters.Other). Each slot takes 112 bytes per possible CPU.
	MaxPortSlots int
	// SingleBuffer loads the program without multi-buffer support
	// (BPF_F_XDP_HAS_FRAGS), as Load does by itself on kernels before 5.18.
	// Such a program can't be attached where frames may outgrow one
	// buffer (a veth whose peer has an MTU above ~3.5K, some drivers with
	// jumbo frames). For tests, and for drivers that mishandle it.
	SingleBuffer bool
}

// Program is the loaded XDP program, its socket filter and their maps. It
// is safe for concurrent use.
type Program struct {
	objs objects
	mb   bool // the XDP program is the multi-buffer variant

	mu  sync.Mutex
	cfg Config
	// Mirrors of what the maps hold, so that Update writes only changes.
	ports    portWords
	prefixes map[string]map[netip.Prefix]bool // list name -> current entries
	conf     ingestConfig
	// mixed: a rollback failed, and the mirrors may be wrong.
	mixed       bool
	maxPrefixes int
	xsk         map[int]bool
	att         *Attachment
	closed      bool

	// Counter slots: a port keeps the slot it was first given for the
	// life of the program, so that its counts never go back nor move to
	// another port. Slot 0 is the overflow slot.
	slots    map[uint16]uint16
	maxSlots int
	// usedSlots is the number of slots given out (slot 0 included),
	// read by Counters without mu.
	usedSlots atomic.Uint32
	// view is the configured ports and their slots, for PortCounters,
	// which doesn't wait for Update.
	view atomic.Pointer[[]portSlot]

	// fault, set only by tests, runs before every map write of Update and
	// its rollback; an error it returns stands for the write's.
	fault func() error

	// objsMu keeps Close from closing the maps under the socket filter's
	// readers (SocketFilter.RefusedBuffers), which don't take mu: a
	// receiver's Stats should not wait for a long Update.
	objsMu     sync.RWMutex
	objsClosed bool
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
	if opts.MaxSockets == 0 {
		opts.MaxSockets = 65536
	}
	if opts.MaxPortSlots == 0 {
		opts.MaxPortSlots = 256
	}
	if opts.MaxQueues < 1 || opts.MaxQueues > 65536 || opts.MaxPrefixes < 1 || opts.MaxSockets < 1 || opts.MaxPortSlots < 1 || opts.MaxPortSlots > 65535 {
		return nil, fmt.Errorf("can't load the XDP program: MaxQueues %d, MaxPrefixes %d, MaxSockets %d and MaxPortSlots %d must be positive (MaxQueues at most 65536, MaxPortSlots at most 65535)", opts.MaxQueues, opts.MaxPrefixes, opts.MaxSockets, opts.MaxPortSlots)
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
	spec.Maps[ingestMapSockRefused].MaxEntries = uint32(opts.MaxSockets)
	spec.Maps[ingestMapPortCounters].MaxEntries = uint32(opts.MaxPortSlots)
	for _, m := range []string{ingestMapAllow4, ingestMapAllow6, ingestMapDeny4, ingestMapDeny6} {
		spec.Maps[m].MaxEntries = uint32(opts.MaxPrefixes)
	}
	p := &Program{
		prefixes:    map[string]map[netip.Prefix]bool{"allow4": {}, "allow6": {}, "deny4": {}, "deny6": {}},
		xsk:         map[int]bool{},
		maxPrefixes: opts.MaxPrefixes,
		slots:       map[uint16]uint16{},
		maxSlots:    opts.MaxPortSlots,
	}
	p.usedSlots.Store(1) // the overflow slot
	p.view.Store(&[]portSlot{})
	// Frags support and bpf_xdp_get_buff_len came together in 5.18; the
	// probe loads a tiny program calling the helper. Any answer but "not
	// supported" (a missing privilege, say) leaves the error to the load.
	p.mb = !opts.SingleBuffer && !errors.Is(features.HaveProgramHelper(ebpf.XDP, asm.FnXdpGetBuffLen), ebpf.ErrNotSupported)
	if p.objs, err = loadObjects(spec, p.mb); err != nil {
		return nil, loadError(err)
	}
	if p.objs.ports, err = mapPortTable(p.objs.Bss, spec.Variables[ingestVarPortSlots]); err != nil {
		p.objs.Close()
		return nil, err
	}
	if err := p.Update(cfg); err != nil {
		p.objs.Close()
		return nil, err
	}
	return p, nil
}

// objects are what Load loads: the maps, one of the two variants of the XDP
// program, the baseline program of the benchmarks and the socket filter.
type objects struct {
	ingestMaps
	// Config holds the global config (section .data.config, a map of
	// its own): one entry, an ingestConfig.
	Config *ebpf.Map
	// Bss holds the global port_slots, which ports maps into memory.
	Bss           *ebpf.Map
	ports         *portTable
	Xdpingest     *ebpf.Program
	XdpPassOnly   *ebpf.Program
	XdpingestSock *ebpf.Program
}

func (o *objects) Close() error {
	var errs []error
	if o.ports != nil {
		errs = append(errs, o.ports.close())
	}
	errs = append(errs, o.ingestMaps.Close())
	for _, m := range []*ebpf.Map{o.Config, o.Bss} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	for _, p := range []*ebpf.Program{o.Xdpingest, o.XdpPassOnly, o.XdpingestSock} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	return errors.Join(errs...)
}

// loadObjects loads the maps and the programs, with the multi-buffer
// variant of the XDP program (mb) or the single-buffer one. Only the
// programs named in the struct are loaded: a kernel that can't load the
// other variant never sees it.
func loadObjects(spec *ebpf.CollectionSpec, mb bool) (objects, error) {
	if mb {
		var o struct {
			ingestMaps
			Config   *ebpf.Map     `ebpf:".data.config"`
			Bss      *ebpf.Map     `ebpf:".bss"`
			Xdp      *ebpf.Program `ebpf:"xdpingest"`
			PassOnly *ebpf.Program `ebpf:"xdp_pass_only"`
			Sock     *ebpf.Program `ebpf:"xdpingest_sock"`
		}
		err := spec.LoadAndAssign(&o, nil)
		return objects{ingestMaps: o.ingestMaps, Config: o.Config, Bss: o.Bss, Xdpingest: o.Xdp, XdpPassOnly: o.PassOnly, XdpingestSock: o.Sock}, err
	}
	var o struct {
		ingestMaps
		Config   *ebpf.Map     `ebpf:".data.config"`
		Bss      *ebpf.Map     `ebpf:".bss"`
		Xdp      *ebpf.Program `ebpf:"xdpingest_sb"`
		PassOnly *ebpf.Program `ebpf:"xdp_pass_only"`
		Sock     *ebpf.Program `ebpf:"xdpingest_sock"`
	}
	err := spec.LoadAndAssign(&o, nil)
	return objects{ingestMaps: o.ingestMaps, Config: o.Config, Bss: o.Bss, Xdpingest: o.Xdp, XdpPassOnly: o.PassOnly, XdpingestSock: o.Sock}, err
}

// MultiBuffer reports whether the XDP program was loaded with multi-buffer
// (frags) support; see LoadOptions.SingleBuffer.
func (p *Program) MultiBuffer() bool { return p.mb }

// SocketFilter is the socket filter for the kernel UDP sockets on the
// ingest ports, to attach with SO_ATTACH_BPF (the kernel path's
// Config.Filter takes it). It applies the deny and allow lists of the
// running configuration, from the same maps as the XDP program, and
// Config.SocketIfindex, to every datagram the kernel delivers to the
// socket, after reassembly; [Program.SocketCounters] counts what it did,
// [SocketFilter.RefusedBuffers] what it refused per socket. It works
// whether or not the XDP program is attached. It is valid until Close; a
// socket that attached it keeps it (and the lists as they were last
// updated) after Close.
func (p *Program) SocketFilter() *SocketFilter { return &SocketFilter{p: p} }

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
	if cfg.SocketIfindex < 0 || cfg.SocketIfindex > 1<<31-1 {
		return fmt.Errorf("invalid SocketIfindex %d: want 0 (no check) or an interface index", cfg.SocketIfindex)
	}
	if cfg.MaxRedirect < 0 || cfg.MaxRedirect > 1<<20 {
		return fmt.Errorf("invalid MaxRedirect %d: want 0 (no limit) or a frame size in bytes", cfg.MaxRedirect)
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

// listNames are the four prefix lists, in the order Update writes them.
var listNames = [...]string{"allow4", "allow6", "deny4", "deny6"}

// Update changes ports, prefix lists, action and MaxRedirect of the
// running program (and its socket filter's lists and SocketIfindex),
// without reattaching it.
//
// It is all or nothing. It checks the new configuration against the maps'
// sizes before it writes anything; if a write still fails midway, it undoes
// the writes it made, in reverse order, and returns an error saying that the
// running configuration is unchanged. Only if the undo fails too does the
// program run a mix of both, and the error says so.
//
// Entries change one at a time: new prefixes are added, then the flags and
// action switch, then the port set, then old prefixes are removed. So no
// datagram that both the old and the new configuration take is ever
// refused while it runs, and new ports never run with the old flags. A list
// needs room for its old and new prefixes together while it switches.
//
// A port seen for the first time gets its counter slot
// ([LoadOptions.MaxPortSlots]) here and keeps it, even if this update
// fails and the port is removed and added again later.
func (p *Program) Update(cfg Config) error {
	if err := validate(cfg); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return os.ErrClosed
	}
	if p.mixed {
		// A rollback failed: the mirrors may not describe the maps.
		if err := p.readBack(); err != nil {
			return fmt.Errorf("can't update the XDP program: %w", err)
		}
	}

	ports := slices.Clone(cfg.Ports)
	slices.Sort(ports)
	if ports = slices.Compact(ports); len(ports) == 0 {
		ports = nil
	}
	want := map[string]map[netip.Prefix]bool{"allow4": {}, "allow6": {}, "deny4": {}, "deny6": {}}
	for _, pfx := range cfg.Allow {
		pfx = pfx.Masked()
		want[listName("allow", pfx)][pfx] = true
	}
	for _, pfx := range cfg.Deny {
		pfx = pfx.Masked()
		want[listName("deny", pfx)][pfx] = true
	}
	var flags uint32
	for name, bit := range map[string]uint32{"allow4": cfgAllow4, "allow6": cfgAllow6, "deny4": cfgDeny4, "deny6": cfgDeny6} {
		if len(want[name]) > 0 {
			flags |= bit
		}
	}
	conf := ingestConfig{Mode: uint32(cfg.Action), Flags: flags, MaxRedirect: uint32(cfg.MaxRedirect), Ifindex: uint32(cfg.SocketIfindex)}

	// Check before touching a map. A list holds its old and its new entries
	// together between the two phases.
	for _, name := range listNames {
		both := len(want[name])
		for pfx := range p.prefixes[name] {
			if !want[name][pfx] {
				both++
			}
		}
		switch {
		case len(want[name]) > p.maxPrefixes:
			return fmt.Errorf("can't apply the new configuration: the %s list has %d prefixes, more than the %d its map holds (LoadOptions.MaxPrefixes); the running configuration is unchanged", name, len(want[name]), p.maxPrefixes)
		case both > p.maxPrefixes:
			return fmt.Errorf("can't apply the new configuration: the %s list needs room for its %d old and %d new prefixes (%d together) while it switches, more than the %d its map holds (LoadOptions.MaxPrefixes); the running configuration is unchanged: remove prefixes in one update and add them in the next, or load with a larger MaxPrefixes",
				name, len(p.prefixes[name]), len(want[name]), both, p.maxPrefixes)
		}
	}

	// Slots are given before the first write and never taken back: a
	// write that succeeded before a rollback may have let frames count
	// in them.
	p.assignSlots(ports)
	bm := new(portWords)
	for _, port := range ports {
		bm.set(port, p.slots[port]+1)
	}

	// Every write that succeeds pushes its inverse.
	var undo []func() error
	apply := func() error {
		for _, name := range listNames {
			for _, pfx := range sortedSet(want[name]) {
				if p.prefixes[name][pfx] {
					continue
				}
				if err := p.putPrefix(name, pfx); err != nil {
					return err
				}
				undo = append(undo, func() error { return p.deletePrefix(name, pfx) })
			}
		}
		if conf != p.conf {
			if err := p.write(p.objs.Config, uint32(0), conf); err != nil {
				return fmt.Errorf("can't update the program's configuration: %w", err)
			}
			old := p.conf
			undo = append(undo, func() error {
				if err := p.write(p.objs.Config, uint32(0), old); err != nil {
					return fmt.Errorf("can't restore the program's configuration: %w", err)
				}
				return nil
			})
		}
		for w := range bm {
			if bm[w] == p.ports[w] {
				continue
			}
			if err := p.writePorts(w, bm[w]); err != nil {
				return fmt.Errorf("can't update the port set: %w", err)
			}
			old := p.ports[w]
			undo = append(undo, func() error {
				if err := p.writePorts(w, old); err != nil {
					return fmt.Errorf("can't restore the port set: %w", err)
				}
				return nil
			})
		}
		for _, name := range listNames {
			for _, pfx := range sortedSet(p.prefixes[name]) {
				if want[name][pfx] {
					continue
				}
				if err := p.deletePrefix(name, pfx); err != nil {
					return err
				}
				undo = append(undo, func() error { return p.putPrefix(name, pfx) })
			}
		}
		return nil
	}
	if err := apply(); err != nil {
		var failed []error
		for i := len(undo) - 1; i >= 0; i-- {
			if uerr := undo[i](); uerr != nil {
				failed = append(failed, uerr)
			}
		}
		if len(failed) > 0 {
			p.mixed = true
			return fmt.Errorf("can't apply the new configuration: %w; AND rolling it back failed (%w): the XDP program now runs a MIX of the old and the new ports and prefix lists: apply a configuration again, or restart", err, errors.Join(failed...))
		}
		return fmt.Errorf("can't apply the new configuration, the running configuration is unchanged: %w", err)
	}
	p.ports, p.prefixes, p.conf = *bm, want, conf
	view := make([]portSlot, len(ports))
	for i, port := range ports {
		view[i] = portSlot{port, p.slots[port]}
	}
	p.view.Store(&view)
	p.cfg = Config{Ports: ports, Allow: sortedPrefixes(cfg.Allow), Deny: sortedPrefixes(cfg.Deny), Action: cfg.Action, MaxRedirect: cfg.MaxRedirect, SocketIfindex: cfg.SocketIfindex}
	return nil
}

// readBack rebuilds the mirrors of the port set, the prefix lists and the
// configuration from the maps themselves, after a rollback failed.
func (p *Program) readBack() error {
	ports := p.objs.ports.read()
	var conf ingestConfig
	if err := p.objs.Config.Lookup(uint32(0), &conf); err != nil {
		return fmt.Errorf("can't read the program's configuration back: %w", err)
	}
	prefixes := map[string]map[netip.Prefix]bool{}
	for _, name := range listNames {
		prefixes[name] = map[netip.Prefix]bool{}
		var v uint8
		if name == "allow4" || name == "deny4" {
			var k ingestLpm4Key
			it := p.listMap(name).Iterate()
			for it.Next(&k, &v) {
				prefixes[name][netip.PrefixFrom(netip.AddrFrom4(k.Addr), int(k.Prefixlen))] = true
			}
			if err := it.Err(); err != nil {
				return fmt.Errorf("can't read the %s list back: %w", name, err)
			}
			continue
		}
		var k ingestLpm6Key
		it := p.listMap(name).Iterate()
		for it.Next(&k, &v) {
			prefixes[name][netip.PrefixFrom(netip.AddrFrom16(k.Addr), int(k.Prefixlen))] = true
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("can't read the %s list back: %w", name, err)
		}
	}
	p.ports, p.conf, p.prefixes, p.mixed = *ports, conf, prefixes, false
	return nil
}

// write updates one map entry. Every map write of Update and of its
// rollback goes through it or writePorts, so that tests can make any of
// them fail.
func (p *Program) write(m *ebpf.Map, key, value any) error {
	if p.fault != nil {
		if err := p.fault(); err != nil {
			return err
		}
	}
	return m.Update(key, value, ebpf.UpdateAny)
}

// writePorts stores word w of the port table. The store itself can't
// fail; a test's fault stands for a failed write.
func (p *Program) writePorts(w int, v uint64) error {
	if p.fault != nil {
		if err := p.fault(); err != nil {
			return err
		}
	}
	p.objs.ports.store(w, v)
	return nil
}

func sortedSet(set map[netip.Prefix]bool) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(set))
	for pfx := range set {
		out = append(out, pfx)
	}
	return sortedPrefixes(out)
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
	if err := p.write(p.listMap(name), lpmKey(pfx), uint8(1)); err != nil {
		return fmt.Errorf("can't add %s to the %s list: %w", pfx, name, err)
	}
	return nil
}

func (p *Program) deletePrefix(name string, pfx netip.Prefix) error {
	if p.fault != nil {
		if err := p.fault(); err != nil {
			return fmt.Errorf("can't remove %s from the %s list: %w", pfx, name, err)
		}
	}
	if err := p.listMap(name).Delete(lpmKey(pfx)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("can't remove %s from the %s list: %w", pfx, name, err)
	}
	return nil
}

// portWords is what the port table (the program's global port_slots)
// holds: for each port, 0 if it is not in the set, else its counter slot
// + 1, four 16-bit entries to a word, entry p in bits (p%4)*16 of word p/4
// (the program reads the entries as 16-bit halves, little-endian, as bpf2go
// builds it).
type portWords [65536 / 4]uint64

func (w *portWords) set(port, v uint16) {
	shift := (port & 3) * 16
	w[port>>2] = w[port>>2]&^(0xffff<<shift) | uint64(v)<<shift
}

func (w *portWords) get(port uint16) uint16 {
	return uint16(w[port>>2] >> ((port & 3) * 16))
}

// portTable is the program's port table in memory: the map of its section
// (.bss), memory-mapped. The program reads an entry with one load, so a
// store of a word must be one store: atomic, which a map update (a copy
// of the whole section) is not.
type portTable struct {
	mem   []byte
	words *portWords // mem, as words
}

// mapPortTable maps the port table, the variable v of the section m holds.
func mapPortTable(m *ebpf.Map, v *ebpf.VariableSpec) (*portTable, error) {
	size := uint32(unsafe.Sizeof(portWords{}))
	if v == nil || v.SectionName != ".bss" || v.Offset != 0 || v.Size() != size || m.ValueSize() < size {
		return nil, fmt.Errorf("can't load the XDP program: its port table is not the first %d bytes of .bss: the object and the loader disagree, rebuild it with go generate", size)
	}
	mem, err := unix.Mmap(m.FD(), 0, int(m.ValueSize()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("can't map the XDP program's port table into memory (BPF_F_MMAPABLE, Linux 5.5): %w", err)
	}
	return &portTable{mem: mem, words: (*portWords)(unsafe.Pointer(&mem[0]))}, nil
}

func (t *portTable) store(w int, v uint64) { atomic.StoreUint64(&t.words[w], v) }

// read copies the table.
func (t *portTable) read() *portWords {
	w := new(portWords)
	for i := range w {
		w[i] = atomic.LoadUint64(&t.words[i])
	}
	return w
}

func (t *portTable) close() error {
	if err := unix.Munmap(t.mem); err != nil {
		return fmt.Errorf("can't unmap the XDP program's port table: %w", err)
	}
	return nil
}

// portSlot is a configured port and its counter slot.
type portSlot struct{ port, slot uint16 }

// assignSlots gives each port without a slot the next free one, in
// order, or the overflow slot (0) once they run out. mu is held.
func (p *Program) assignSlots(ports []uint16) {
	for _, port := range ports {
		if _, ok := p.slots[port]; ok {
			continue
		}
		next := p.usedSlots.Load()
		if int(next) >= p.maxSlots {
			p.slots[port] = 0
			continue
		}
		p.slots[port] = uint16(next)
		p.usedSlots.Store(next + 1)
	}
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
	p.objsMu.Lock()
	p.objsClosed = true
	errs = append(errs, p.objs.Close())
	p.objsMu.Unlock()
	return errors.Join(errs...)
}

// NotSupportedError says the kernel lacks something the program needs. It
// matches errors.ErrUnsupported (and cilium/ebpf's ErrNotSupported, which
// it wraps) with errors.Is.
type NotSupportedError struct {
	What string
	Err  error
}

func (e *NotSupportedError) Error() string {
	return fmt.Sprintf("%s is not supported by this kernel or driver: %v", e.What, e.Err)
}

func (e *NotSupportedError) Unwrap() error { return e.Err }

// Is matches errors.ErrUnsupported.
func (e *NotSupportedError) Is(target error) bool { return target == errors.ErrUnsupported }
