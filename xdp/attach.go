package xdp

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Mode is the XDP attach mode.
type Mode int

const (
	// ModeNative runs the program in the driver, before any skb exists. The
	// default.
	ModeNative Mode = iota
	// ModeAuto tries native mode and falls back to generic mode when the
	// driver has no native XDP, saying why.
	ModeAuto
	// ModeGeneric runs the program on the skb, after the driver: works on
	// every device, at a fraction of native speed.
	ModeGeneric
)

func (m Mode) String() string {
	switch m {
	case ModeNative:
		return "native"
	case ModeAuto:
		return "auto"
	case ModeGeneric:
		return "generic"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// ParseMode parses "native", "generic" or "auto".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "native", "drv", "driver":
		return ModeNative, nil
	case "generic", "skb":
		return ModeGeneric, nil
	case "auto":
		return ModeAuto, nil
	}
	return 0, fmt.Errorf("unknown XDP mode %q: want native, generic or auto", s)
}

// AttachOptions say how to attach.
type AttachOptions struct {
	Mode Mode
	// Replace allows detaching an XDP program that something else attached
	// to the interface. Without it Attach refuses, naming that program.
	Replace bool
}

// Attachment describes where and how the program is attached.
type Attachment struct {
	Ifindex int
	// Mode is ModeNative or ModeGeneric: the mode in force.
	Mode Mode
	// Fallback, when not empty, says why native mode was not used.
	Fallback string
	// Replaced names the program that Replace detached, if any.
	Replaced string

	link link.Link
}

// Existing is an XDP program attached to an interface.
type Existing struct {
	ProgID ebpf.ProgramID
	Name   string // the program's name as the kernel knows it ("" if unreadable)
	Mode   string // "native", "generic" or "offload"
	// ByLink is true when a BPF link holds it: it goes away when its owner
	// closes the link or dies. False means it was attached through netlink
	// and stays until someone removes it.
	ByLink bool
	linkID link.ID
}

func (e *Existing) String() string {
	name := e.Name
	if name == "" {
		name = "(unnamed)"
	}
	how := "attached through netlink"
	if e.ByLink {
		how = fmt.Sprintf("held by BPF link %d", e.linkID)
	}
	return fmt.Sprintf("XDP program %q (id %d, %s mode, %s)", name, e.ProgID, e.Mode, how)
}

// Inspect returns the XDP program attached to the interface, or nil. It runs
// in the calling thread's network namespace.
func Inspect(ifindex int) (*Existing, error) {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return nil, fmt.Errorf("can't find interface %d: %w", ifindex, err)
	}
	x := l.Attrs().Xdp
	if x == nil || !x.Attached || x.ProgId == 0 {
		return nil, nil
	}
	e := &Existing{ProgID: ebpf.ProgramID(x.ProgId)}
	switch x.AttachMode {
	case nlXDPAttachedDrv:
		e.Mode = "native"
	case nlXDPAttachedSkb:
		e.Mode = "generic"
	case nlXDPAttachedHw:
		e.Mode = "offload"
	default:
		e.Mode = fmt.Sprintf("mode %d", x.AttachMode)
	}
	if prog, err := ebpf.NewProgramFromID(e.ProgID); err == nil {
		if info, err := prog.Info(); err == nil {
			e.Name = info.Name
		}
		prog.Close()
	}
	e.linkID, e.ByLink = findXDPLink(ifindex, e.ProgID)
	return e, nil
}

// Values of IFLA_XDP_ATTACHED.
const (
	nlXDPAttachedDrv = 1
	nlXDPAttachedSkb = 2
	nlXDPAttachedHw  = 3
)

// findXDPLink looks for the BPF link that holds prog on ifindex.
func findXDPLink(ifindex int, prog ebpf.ProgramID) (link.ID, bool) {
	var it link.Iterator
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil || info.Type != link.XDPType || info.Program != prog {
			continue
		}
		if x := info.XDP(); x != nil && int(x.Ifindex) == ifindex {
			return it.ID, true
		}
	}
	return 0, false
}

// Attach attaches the program to the interface with a BPF link: the kernel
// detaches it when the link is closed or the process dies, so a crash never
// leaves it behind. It runs in the calling thread's network namespace.
func (p *Program) Attach(ifindex int, opts AttachOptions) (*Attachment, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, os.ErrClosed
	}
	if p.att != nil {
		return nil, fmt.Errorf("can't attach: the program is already attached to interface %d", p.att.Ifindex)
	}
	ifname := ifaceName(ifindex)
	att := &Attachment{Ifindex: ifindex}
	existing, err := Inspect(ifindex)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		if !opts.Replace {
			return nil, fmt.Errorf("can't attach to %s: it already carries %s; detach it or allow replacing it (--replace)", ifname, existing)
		}
		if err := detachExisting(ifindex, existing); err != nil {
			return nil, fmt.Errorf("can't replace %s on %s: %w", existing, ifname, err)
		}
		att.Replaced = existing.String()
	}

	try := func(m Mode) error {
		flags := link.XDPDriverMode
		if m == ModeGeneric {
			flags = link.XDPGenericMode
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: p.objs.Xdpingest, Interface: ifindex, Flags: flags})
		if err != nil {
			return err
		}
		att.link, att.Mode = l, m
		return nil
	}
	switch opts.Mode {
	case ModeNative, ModeGeneric:
		err = try(opts.Mode)
	case ModeAuto:
		if err = try(ModeNative); err != nil && !errors.Is(err, os.ErrPermission) {
			att.Fallback = fmt.Sprintf("native mode refused (%v)", err)
			err = try(ModeGeneric)
		}
	default:
		return nil, fmt.Errorf("invalid attach mode %v", opts.Mode)
	}
	if err != nil {
		return nil, attachError(ifname, opts.Mode, err)
	}
	p.att = att
	return att, nil
}

func attachError(ifname string, m Mode, err error) error {
	switch {
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("can't attach XDP to %s: %w: run as root or grant CAP_BPF and CAP_NET_ADMIN", ifname, err)
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, ebpf.ErrNotSupported):
		what := fmt.Sprintf("XDP in %s mode on %s", m, ifname)
		if m == ModeNative {
			what += " (try --xdp-mode auto or generic)"
		}
		return &NotSupportedError{What: what, Err: err}
	case errors.Is(err, unix.EBUSY), errors.Is(err, unix.EEXIST):
		return fmt.Errorf("can't attach XDP to %s: another program holds the interface (%w); see `ip link show %s`", ifname, err, ifname)
	}
	return fmt.Errorf("can't attach XDP in %s mode to %s: %w", m, ifname, err)
}

// detachExisting removes another program from the interface: through its
// BPF link when one holds it, else through netlink.
func detachExisting(ifindex int, e *Existing) error {
	if e.ByLink {
		l, err := link.NewFromID(e.linkID)
		if err != nil {
			return fmt.Errorf("can't open BPF link %d: %w", e.linkID, err)
		}
		defer l.Close()
		if err := l.Detach(); err != nil {
			return fmt.Errorf("can't detach BPF link %d: %w", e.linkID, err)
		}
		return nil
	}
	nl, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return err
	}
	flags := 0
	switch e.Mode {
	case "native":
		flags = nlXDPFlagsDrvMode
	case "generic":
		flags = nlXDPFlagsSkbMode
	case "offload":
		flags = nlXDPFlagsHwMode
	}
	return netlink.LinkSetXdpFdWithFlags(nl, -1, flags)
}

// XDP_FLAGS_* of the netlink attach API.
const (
	nlXDPFlagsSkbMode = 1 << 1
	nlXDPFlagsDrvMode = 1 << 2
	nlXDPFlagsHwMode  = 1 << 3
)

// Attachment returns where the program is attached, or nil.
func (p *Program) Attachment() *Attachment {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.att
}

// Detach removes the program from its interface. The program and its maps
// stay loaded.
func (p *Program) Detach() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.att == nil {
		return nil
	}
	err := p.att.link.Close()
	p.att = nil
	if err != nil {
		return fmt.Errorf("can't detach XDP: %w", err)
	}
	return nil
}

func ifaceName(ifindex int) string {
	if l, err := netlink.LinkByIndex(ifindex); err == nil {
		return l.Attrs().Name
	}
	return fmt.Sprintf("interface %d", ifindex)
}
