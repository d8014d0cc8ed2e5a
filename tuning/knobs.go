package tuning

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/safchain/ethtool"
	"golang.org/x/sys/unix"
)

// Groups of settings, in the order Apply changes them. Features go first
// (XDP refuses to attach while LRO is on), channels before anything per
// queue, IRQ affinity last because a channel change replaces the IRQs.
const (
	GroupFeatures = "features"
	GroupChannels = "channels"
	GroupRings    = "rings"
	GroupCoalesce = "coalesce"
	GroupNAPI     = "napi"
	GroupSysctl   = "sysctl"
	GroupIRQ      = "irq"
)

// knob is one setting that can be read and written as a string. Values are
// canonical (what read returns), so "already set" is string equality and
// the state file can restore any knob from its key and a string.
type knob struct {
	key   string
	group string
	read  func() (string, error)
	write func(string) error
}

// device is what knobs act on.
type device struct {
	iface string
	roots Roots
	et    Ethtool
}

// knob returns the setting named by key:
//
//	channels                      all channel counts at once
//	rings.rx, rings.tx
//	coalesce.<field>              adaptive-rx, rx-usecs, ...
//	feature.<ethtool name>        feature.rx-gro
//	sysctl.<dotted name>          sysctl.net.core.busy_poll
//	napi.<file>                   napi.gro_flush_timeout
//	irq.<N>                       smp_affinity_list of IRQ N
func (d *device) knob(key string) (knob, error) {
	group, name, _ := strings.Cut(key, ".")
	switch group {
	case "channels":
		if name == "" {
			return d.channelsKnob(), nil
		}
	case "rings":
		if name == "rx" || name == "tx" {
			return d.ringKnob(name), nil
		}
	case "coalesce":
		if f := coalesceField(name); f != nil {
			return d.coalesceKnob(*f), nil
		}
	case "feature":
		if name != "" {
			return d.featureKnob(name), nil
		}
	case "sysctl":
		for _, s := range sysctlNames {
			if s.name == name {
				return d.sysctlKnob(name), nil
			}
		}
	case "napi":
		for _, s := range napiNames {
			if s.name == name {
				return d.napiKnob(name), nil
			}
		}
	case "irq":
		if n, err := strconv.Atoi(name); err == nil && n >= 0 {
			return d.irqKnob(n), nil
		}
	}
	return knob{}, fmt.Errorf("unknown setting %q", key)
}

// ethtoolErr turns an ioctl error into one that says what failed and what to
// do.
func ethtoolErr(op, iface string, err error) error {
	switch {
	case errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("the driver of %s can't %s (%w)", iface, op, errors.ErrUnsupported)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("can't %s on %s: %w: run as root or grant CAP_NET_ADMIN", op, iface, err)
	case errors.Is(err, unix.ENODEV):
		return badInput("can't %s on %s: %w: no such interface in this network namespace", op, iface, err)
	}
	return fmt.Errorf("can't %s on %s: %w", op, iface, err)
}

// channels values are "combined=N rx=N tx=N other=N", leaving out counts the
// driver can't have (max 0) and that are 0.
func formatChannels(c ethtool.Channels) string {
	var parts []string
	for _, f := range []struct {
		name     string
		cur, max uint32
	}{{"combined", c.CombinedCount, c.MaxCombined}, {"rx", c.RxCount, c.MaxRx}, {"tx", c.TxCount, c.MaxTx}, {"other", c.OtherCount, c.MaxOther}} {
		if f.max > 0 || f.cur > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", f.name, f.cur))
		}
	}
	return strings.Join(parts, " ")
}

func parseChannels(v string) (ethtool.Channels, error) {
	var c ethtool.Channels
	for f := range strings.FieldsSeq(v) {
		k, s, ok := strings.Cut(f, "=")
		n, err := strconv.ParseUint(s, 10, 32)
		if !ok || err != nil {
			return c, fmt.Errorf("can't parse channel counts %q", v)
		}
		switch k {
		case "combined":
			c.CombinedCount = uint32(n)
		case "rx":
			c.RxCount = uint32(n)
		case "tx":
			c.TxCount = uint32(n)
		case "other":
			c.OtherCount = uint32(n)
		default:
			return c, fmt.Errorf("can't parse channel counts %q: unknown %q", v, k)
		}
	}
	return c, nil
}

func (d *device) channelsKnob() knob {
	return knob{key: "channels", group: GroupChannels,
		read: func() (string, error) {
			c, err := d.et.GetChannels(d.iface)
			if err != nil {
				return "", ethtoolErr("read channels", d.iface, err)
			}
			return formatChannels(c), nil
		},
		write: func(v string) error {
			c, err := parseChannels(v)
			if err != nil {
				return err
			}
			if _, err := d.et.SetChannels(d.iface, c); err != nil {
				return ethtoolErr("set channels to "+v, d.iface, err)
			}
			return nil
		}}
}

func ringField(r *ethtool.Ring, name string) (cur, max *uint32) {
	if name == "rx" {
		return &r.RxPending, &r.RxMaxPending
	}
	return &r.TxPending, &r.TxMaxPending
}

func (d *device) ringKnob(name string) knob {
	return knob{key: "rings." + name, group: GroupRings,
		read: func() (string, error) {
			r, err := d.et.GetRing(d.iface)
			if err != nil {
				return "", ethtoolErr("read ring sizes", d.iface, err)
			}
			cur, _ := ringField(&r, name)
			return strconv.FormatUint(uint64(*cur), 10), nil
		},
		write: func(v string) error {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return fmt.Errorf("can't parse ring size %q", v)
			}
			r, err := d.et.GetRing(d.iface)
			if err != nil {
				return ethtoolErr("read ring sizes", d.iface, err)
			}
			cur, _ := ringField(&r, name)
			*cur = uint32(n)
			if _, err := d.et.SetRing(d.iface, r); err != nil {
				return ethtoolErr(fmt.Sprintf("set the %s ring to %s", name, v), d.iface, err)
			}
			return nil
		}}
}

// coalesceFieldDef names one field of struct ethtool_coalesce.
type coalesceFieldDef struct {
	name   string
	isBool bool
	get    func(*ethtool.Coalesce) *uint32
}

// coalesceFields are the coalescing fields profiles set, in the order
// written: adaptive modes first, since some drivers ignore or refuse fixed
// values while adaptive moderation is on.
var coalesceFields = []coalesceFieldDef{
	{"adaptive-rx", true, func(c *ethtool.Coalesce) *uint32 { return &c.UseAdaptiveRxCoalesce }},
	{"adaptive-tx", true, func(c *ethtool.Coalesce) *uint32 { return &c.UseAdaptiveTxCoalesce }},
	{"rx-usecs", false, func(c *ethtool.Coalesce) *uint32 { return &c.RxCoalesceUsecs }},
	{"rx-frames", false, func(c *ethtool.Coalesce) *uint32 { return &c.RxMaxCoalescedFrames }},
	{"tx-usecs", false, func(c *ethtool.Coalesce) *uint32 { return &c.TxCoalesceUsecs }},
	{"tx-frames", false, func(c *ethtool.Coalesce) *uint32 { return &c.TxMaxCoalescedFrames }},
}

func coalesceField(name string) *coalesceFieldDef {
	for i := range coalesceFields {
		if coalesceFields[i].name == name {
			return &coalesceFields[i]
		}
	}
	return nil
}

func (f coalesceFieldDef) format(c *ethtool.Coalesce) string {
	v := *f.get(c)
	if f.isBool {
		return onOff(v != 0)
	}
	return strconv.FormatUint(uint64(v), 10)
}

func (f coalesceFieldDef) parse(v string) (uint32, error) {
	if f.isBool {
		switch v {
		case "on":
			return 1, nil
		case "off":
			return 0, nil
		}
		return 0, fmt.Errorf("can't parse %s %q: want on or off", f.name, v)
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("can't parse %s %q", f.name, v)
	}
	return uint32(n), nil
}

func (d *device) coalesceKnob(f coalesceFieldDef) knob {
	return knob{key: "coalesce." + f.name, group: GroupCoalesce,
		read: func() (string, error) {
			c, err := d.et.GetCoalesce(d.iface)
			if err != nil {
				return "", ethtoolErr("read coalescing", d.iface, err)
			}
			return f.format(&c), nil
		},
		write: func(v string) error {
			n, err := f.parse(v)
			if err != nil {
				return err
			}
			c, err := d.et.GetCoalesce(d.iface)
			if err != nil {
				return ethtoolErr("read coalescing", d.iface, err)
			}
			*f.get(&c) = n
			if _, err := d.et.SetCoalesce(d.iface, c); err != nil {
				return ethtoolErr(fmt.Sprintf("set coalescing %s to %s", f.name, v), d.iface, err)
			}
			return nil
		}}
}

func (d *device) featureKnob(name string) knob {
	return knob{key: "feature." + name, group: GroupFeatures,
		read: func() (string, error) {
			fs, err := d.et.FeaturesWithState(d.iface)
			if err != nil {
				return "", ethtoolErr("read features", d.iface, err)
			}
			st, ok := fs[name]
			if !ok {
				return "", fmt.Errorf("%s has no feature %s: %w", d.iface, name, errors.ErrUnsupported)
			}
			return onOff(st.Active), nil
		},
		write: func(v string) error {
			if v != "on" && v != "off" {
				return fmt.Errorf("can't parse feature %s %q: want on or off", name, v)
			}
			if err := d.et.Change(d.iface, map[string]bool{name: v == "on"}); err != nil {
				return ethtoolErr(fmt.Sprintf("turn %s %s", name, v), d.iface, err)
			}
			return nil
		}}
}

// fileKnob reads and writes one integer-ish kernel file.
func fileKnob(key, group, path string, normalize func(string) (string, error)) knob {
	return knob{key: key, group: group,
		read: func() (string, error) {
			s, err := readTrim(path)
			if err != nil {
				return "", fileErr("read", path, err)
			}
			if normalize != nil {
				return normalize(s)
			}
			return s, nil
		},
		write: func(v string) error {
			if err := writeKernelFile(path, v); err != nil {
				return fileErr("write "+v+" to", path, err)
			}
			return nil
		}}
}

func fileErr(op, path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("no %s: %w", path, errors.ErrUnsupported)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, unix.EPERM), errors.Is(err, unix.EROFS):
		return fmt.Errorf("can't %s %s: %w: run as root (writable /proc/sys and /sys)", op, path, err)
	}
	return fmt.Errorf("can't %s %s: %w", op, path, err)
}

func (d *device) sysctlKnob(name string) knob {
	path := d.roots.proc(append([]string{"sys"}, strings.Split(name, ".")...)...)
	return fileKnob("sysctl."+name, GroupSysctl, path, nil)
}

func (d *device) napiKnob(name string) knob {
	return fileKnob("napi."+name, GroupNAPI, d.roots.sys("class/net", d.iface, name), nil)
}

func (d *device) irqKnob(n int) knob {
	path := d.roots.proc("irq", strconv.Itoa(n), "smp_affinity_list")
	k := fileKnob("irq."+strconv.Itoa(n), GroupIRQ, path, func(s string) (string, error) {
		set, err := ParseCPUList(s)
		if err != nil {
			return "", fmt.Errorf("can't parse %s: %w", path, err)
		}
		return set.String(), nil
	})
	write := k.write
	k.write = func(v string) error {
		err := write(v)
		if errors.Is(err, unix.EIO) {
			// Kernel-managed vectors (NVMe, virtio-blk, drivers that let
			// pci_alloc_irq_vectors_affinity spread them) refuse user
			// affinity with EIO.
			return fmt.Errorf("%w: IRQ %d has kernel-managed affinity and can't be moved", err, n)
		}
		return err
	}
	return k
}
