package tuning

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Profile is a set of wanted settings. Every field is optional: a profile
// changes only what it names. The YAML keys are those of user profiles
// (`nictune plan --profile ./mine.yaml`); see docs/TUNING.md.
type Profile struct {
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`

	Channels    *ChannelsSpec  `yaml:"channels,omitempty" json:"channels,omitempty"`
	Rings       *RingsSpec     `yaml:"rings,omitempty" json:"rings,omitempty"`
	Coalesce    *CoalesceSpec  `yaml:"coalesce,omitempty" json:"coalesce,omitempty"`
	Features    *FeaturesSpec  `yaml:"features,omitempty" json:"features,omitempty"`
	Sysctl      *SysctlSpec    `yaml:"sysctl,omitempty" json:"sysctl,omitempty"`
	NAPI        *NAPISpec      `yaml:"napi,omitempty" json:"napi,omitempty"`
	IRQAffinity *IRQSpec       `yaml:"irq-affinity,omitempty" json:"irq_affinity,omitempty"`
	Isolation   *IsolationSpec `yaml:"isolation,omitempty" json:"isolation,omitempty"`
}

// Count is a number, or a word resolved against the device and host at plan
// time: "cores" (the number of CPUs in the spread set) for channels, "max"
// (the driver's maximum) for channels and rings.
type Count struct {
	N    int
	Word string
}

// Words a Count accepts.
const (
	CountCores = "cores"
	CountMax   = "max"
)

func (c Count) String() string {
	if c.Word != "" {
		return c.Word
	}
	return strconv.Itoa(c.N)
}

// UnmarshalYAML reads an integer, "cores" or "max".
func (c *Count) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a number, %q or %q", n.Line, CountCores, CountMax)
	}
	switch n.Value {
	case CountCores, CountMax:
		*c = Count{Word: n.Value}
		return nil
	}
	v, err := strconv.Atoi(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a number, %q or %q", n.Line, n.Value, CountCores, CountMax)
	}
	*c = Count{N: v}
	return nil
}

// MarshalYAML writes the number or the word.
func (c Count) MarshalYAML() (any, error) {
	if c.Word != "" {
		return c.Word, nil
	}
	return c.N, nil
}

// MarshalText makes a Count a string in JSON.
func (c Count) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// Switch is a feature or mode that is on or off. YAML accepts true/false and
// on/off (YAML 1.2 reads "on" as a string; ethtool users write it).
type Switch bool

// UnmarshalYAML reads true/false/on/off.
func (s *Switch) UnmarshalYAML(n *yaml.Node) error {
	switch strings.ToLower(n.Value) {
	case "on", "true", "yes":
		*s = true
	case "off", "false", "no":
		*s = false
	default:
		return fmt.Errorf("line %d: %q is not on or off", n.Line, n.Value)
	}
	return nil
}

// MarshalYAML writes on or off.
func (s Switch) MarshalYAML() (any, error) { return onOff(bool(s)), nil }

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// ChannelsSpec sets the number of queues (`ethtool -L`).
type ChannelsSpec struct {
	// Queues is the device-independent form: combined channels when the
	// driver has them, else equal RX and TX counts (veth).
	Queues   *Count `yaml:"queues,omitempty" json:"queues,omitempty"`
	Combined *Count `yaml:"combined,omitempty" json:"combined,omitempty"`
	Rx       *Count `yaml:"rx,omitempty" json:"rx,omitempty"`
	Tx       *Count `yaml:"tx,omitempty" json:"tx,omitempty"`
}

// RingsSpec sets ring sizes in descriptors (`ethtool -G`).
type RingsSpec struct {
	Rx *Count `yaml:"rx,omitempty" json:"rx,omitempty"`
	Tx *Count `yaml:"tx,omitempty" json:"tx,omitempty"`
}

// CoalesceSpec sets interrupt coalescing (`ethtool -C`).
type CoalesceSpec struct {
	AdaptiveRx *Switch `yaml:"adaptive-rx,omitempty" json:"adaptive_rx,omitempty"`
	AdaptiveTx *Switch `yaml:"adaptive-tx,omitempty" json:"adaptive_tx,omitempty"`
	RxUsecs    *uint32 `yaml:"rx-usecs,omitempty" json:"rx_usecs,omitempty"`
	RxFrames   *uint32 `yaml:"rx-frames,omitempty" json:"rx_frames,omitempty"`
	TxUsecs    *uint32 `yaml:"tx-usecs,omitempty" json:"tx_usecs,omitempty"`
	TxFrames   *uint32 `yaml:"tx-frames,omitempty" json:"tx_frames,omitempty"`
}

// FeaturesSpec sets offloads (`ethtool -K`).
type FeaturesSpec struct {
	GRO                *Switch `yaml:"gro,omitempty" json:"gro,omitempty"`
	LRO                *Switch `yaml:"lro,omitempty" json:"lro,omitempty"`
	RxUDPGROForwarding *Switch `yaml:"rx-udp-gro-forwarding,omitempty" json:"rx_udp_gro_forwarding,omitempty"`
}

// SysctlSpec sets host-wide net.core sysctls. They are global: they affect
// every device and socket, and reverting one device's profile restores them
// for all.
type SysctlSpec struct {
	BusyPoll          *int64 `yaml:"net.core.busy_poll,omitempty" json:"net.core.busy_poll,omitempty"`
	BusyRead          *int64 `yaml:"net.core.busy_read,omitempty" json:"net.core.busy_read,omitempty"`
	NetdevBudget      *int64 `yaml:"net.core.netdev_budget,omitempty" json:"net.core.netdev_budget,omitempty"`
	NetdevBudgetUsecs *int64 `yaml:"net.core.netdev_budget_usecs,omitempty" json:"net.core.netdev_budget_usecs,omitempty"`
	NetdevMaxBacklog  *int64 `yaml:"net.core.netdev_max_backlog,omitempty" json:"net.core.netdev_max_backlog,omitempty"`
	RmemMax           *int64 `yaml:"net.core.rmem_max,omitempty" json:"net.core.rmem_max,omitempty"`
	RmemDefault       *int64 `yaml:"net.core.rmem_default,omitempty" json:"net.core.rmem_default,omitempty"`
}

// NAPISpec sets the per-device NAPI knobs in /sys/class/net/IFACE.
type NAPISpec struct {
	// DeferHardIRQs is how many empty polls keep the device's IRQ masked
	// (napi_defer_hard_irqs).
	DeferHardIRQs *int64 `yaml:"napi_defer_hard_irqs,omitempty" json:"napi_defer_hard_irqs,omitempty"`
	// GROFlushTimeout in nanoseconds (gro_flush_timeout): the timer that
	// stands in for the masked IRQ.
	GROFlushTimeout *int64 `yaml:"gro_flush_timeout,omitempty" json:"gro_flush_timeout,omitempty"`
}

// IRQSpec spreads the device's queue IRQs one per core.
type IRQSpec struct {
	Spread bool `yaml:"spread" json:"spread"`
	// CPUs to spread over; empty means every online CPU. --cpus overrides.
	CPUs string `yaml:"cpus,omitempty" json:"cpus,omitempty"`
}

// IsolationSpec names the kernel command line a profile wants. It can't be
// applied (boot parameters); plan prints it and apply says which parts are in
// effect.
type IsolationSpec struct {
	IsolCPUs bool `yaml:"isolcpus,omitempty" json:"isolcpus,omitempty"`
	NohzFull bool `yaml:"nohz_full,omitempty" json:"nohz_full,omitempty"`
	RCUNoCBs bool `yaml:"rcu_nocbs,omitempty" json:"rcu_nocbs,omitempty"`
	// CPUs to isolate; empty means the --cpus list, else every online CPU
	// but the first (left for housekeeping).
	CPUs string `yaml:"cpus,omitempty" json:"cpus,omitempty"`
}

// sysctlNames lists the managed sysctls with their valid ranges, in the
// order plans show them.
var sysctlNames = []struct {
	name     string
	min, max int64
	field    func(*SysctlSpec) *int64
}{
	{"net.core.busy_poll", 0, 1_000_000, func(s *SysctlSpec) *int64 { return s.BusyPoll }},
	{"net.core.busy_read", 0, 1_000_000, func(s *SysctlSpec) *int64 { return s.BusyRead }},
	{"net.core.netdev_budget", 1, 1_000_000, func(s *SysctlSpec) *int64 { return s.NetdevBudget }},
	{"net.core.netdev_budget_usecs", 0, 10_000_000, func(s *SysctlSpec) *int64 { return s.NetdevBudgetUsecs }},
	{"net.core.netdev_max_backlog", 1, 1<<31 - 1, func(s *SysctlSpec) *int64 { return s.NetdevMaxBacklog }},
	{"net.core.rmem_max", 4096, 1<<31 - 1, func(s *SysctlSpec) *int64 { return s.RmemMax }},
	{"net.core.rmem_default", 4096, 1<<31 - 1, func(s *SysctlSpec) *int64 { return s.RmemDefault }},
}

// napiNames lists the per-device knobs and their ranges.
var napiNames = []struct {
	name     string
	min, max int64
	field    func(*NAPISpec) *int64
}{
	{"napi_defer_hard_irqs", 0, 1<<31 - 1, func(s *NAPISpec) *int64 { return s.DeferHardIRQs }},
	// gro_flush_timeout is in ns; a second of deferral is already absurd.
	{"gro_flush_timeout", 0, 1_000_000_000, func(s *NAPISpec) *int64 { return s.GROFlushTimeout }},
}

// featureNames maps profile keys to ethtool feature strings.
var featureNames = []struct {
	key, ethtool string
	field        func(*FeaturesSpec) *Switch
}{
	{"gro", "rx-gro", func(s *FeaturesSpec) *Switch { return s.GRO }},
	{"lro", "rx-lro", func(s *FeaturesSpec) *Switch { return s.LRO }},
	{"rx-udp-gro-forwarding", "rx-udp-gro-forwarding", func(s *FeaturesSpec) *Switch { return s.RxUDPGROForwarding }},
}

const (
	maxChannels = 4096
	maxRing     = 1 << 16
	maxUsecs    = 100_000 // 100 ms of coalescing is a misconfiguration
	maxFrames   = 1 << 16
)

// Validate checks ranges that don't depend on the device (those that do are
// checked by [Plan]). Errors match ErrBadInput.
func (p *Profile) Validate() error {
	if p == nil {
		return badInput("no profile")
	}
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	count := func(key string, c *Count, max int, words ...string) {
		if c == nil {
			return
		}
		if c.Word != "" {
			if !slices.Contains(words, c.Word) {
				bad("%s: %q is not allowed here (want a number or %s)", key, c.Word, strings.Join(words, ", "))
			}
			return
		}
		if c.N < 1 || c.N > max {
			bad("%s: %d out of range 1-%d", key, c.N, max)
		}
	}
	if c := p.Channels; c != nil {
		count("channels.queues", c.Queues, maxChannels, CountCores, CountMax)
		count("channels.combined", c.Combined, maxChannels, CountCores, CountMax)
		count("channels.rx", c.Rx, maxChannels, CountCores, CountMax)
		count("channels.tx", c.Tx, maxChannels, CountCores, CountMax)
		if c.Queues != nil && (c.Combined != nil || c.Rx != nil || c.Tx != nil) {
			bad("channels: queues can't be combined with combined, rx or tx")
		}
	}
	if r := p.Rings; r != nil {
		count("rings.rx", r.Rx, maxRing, CountMax)
		count("rings.tx", r.Tx, maxRing, CountMax)
	}
	if c := p.Coalesce; c != nil {
		for _, f := range []struct {
			key string
			v   *uint32
			max uint32
		}{{"rx-usecs", c.RxUsecs, maxUsecs}, {"tx-usecs", c.TxUsecs, maxUsecs}, {"rx-frames", c.RxFrames, maxFrames}, {"tx-frames", c.TxFrames, maxFrames}} {
			if f.v != nil && *f.v > f.max {
				bad("coalesce.%s: %d out of range 0-%d", f.key, *f.v, f.max)
			}
		}
	}
	if s := p.Sysctl; s != nil {
		for _, n := range sysctlNames {
			if v := n.field(s); v != nil && (*v < n.min || *v > n.max) {
				bad("sysctl.%s: %d out of range %d-%d", n.name, *v, n.min, n.max)
			}
		}
	}
	if s := p.NAPI; s != nil {
		for _, n := range napiNames {
			if v := n.field(s); v != nil && (*v < n.min || *v > n.max) {
				bad("napi.%s: %d out of range %d-%d", n.name, *v, n.min, n.max)
			}
		}
	}
	if s := p.IRQAffinity; s != nil && s.CPUs != "" {
		if _, err := ParseCPUList(s.CPUs); err != nil {
			bad("irq-affinity.cpus: %v", err)
		}
	}
	if s := p.Isolation; s != nil && s.CPUs != "" {
		if _, err := ParseCPUList(s.CPUs); err != nil {
			bad("isolation.cpus: %v", err)
		}
	}
	if len(errs) > 0 {
		return badInput("profile %s: %s", p.Name, strings.Join(errs, "; "))
	}
	return nil
}

// ParseProfile reads a YAML profile. Unknown keys are refused, so that a typo
// ("rx-usec") is an error rather than a setting silently left alone.
func ParseProfile(r io.Reader, name string) (*Profile, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	p := &Profile{}
	if err := dec.Decode(p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, badInput("profile %s is empty", name)
		}
		return nil, badInput("can't parse profile %s: %w", name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, badInput("profile %s: more than one YAML document", name)
	}
	if p.Name == "" {
		p.Name = name
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// LoadProfile returns the built-in profile of that name, or reads a YAML file
// when nameOrPath contains a slash or ends in .yaml/.yml.
func LoadProfile(nameOrPath string) (*Profile, error) {
	if strings.ContainsRune(nameOrPath, '/') || strings.HasSuffix(nameOrPath, ".yaml") || strings.HasSuffix(nameOrPath, ".yml") {
		b, err := os.ReadFile(nameOrPath)
		if err != nil {
			return nil, badInput("can't read profile %s: %w", nameOrPath, err)
		}
		return ParseProfile(bytes.NewReader(b), nameOrPath)
	}
	if p := BuiltinProfile(nameOrPath); p != nil {
		return p, nil
	}
	return nil, badInput("unknown profile %q: built in are %s; or give a YAML file (./mine.yaml)", nameOrPath, strings.Join(BuiltinProfiles(), ", "))
}

// MarshalProfile renders a profile as the YAML a user profile would hold.
func MarshalProfile(p *Profile) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}
