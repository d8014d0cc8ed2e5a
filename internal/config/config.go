// Package config holds the server's settings: the YAML file, the command-line
// flags that override it, and the validation that refuses a bad setting
// before anything touches an interface.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/xdpingest/xdpingest/datapath/afxdp"
	"github.com/xdpingest/xdpingest/internal/portset"
	"github.com/xdpingest/xdpingest/sink"
	"github.com/xdpingest/xdpingest/tuning"
	"github.com/xdpingest/xdpingest/xdp"
)

// Config is everything `xdpingest run` can be told. The YAML keys are the
// flag names with dashes turned into underscores.
type Config struct {
	Iface       string   `yaml:"iface"`
	Ports       PortSpec `yaml:"ports"`  // "9000,9100-9199"
	Path        string   `yaml:"path"`   // auto | afxdp | kernel
	Queues      string   `yaml:"queues"` // all | 0,1
	XDPMode     string   `yaml:"xdp_mode"`
	Allow       []string `yaml:"allow"`
	Deny        []string `yaml:"deny"`
	Sinks       []string `yaml:"sinks"`
	OnFull      string   `yaml:"on_full"` // drop | block
	MetricsAddr string   `yaml:"metrics_addr"`
	LogFormat   string   `yaml:"log_format"` // text | json
	Replace     bool     `yaml:"replace"`
	Tune        string   `yaml:"tune"`
	CPUs        string   `yaml:"cpus"` // CPUs the workers may use, e.g. 2-7 (default: every CPU the process may use)

	// Tuning of the pipeline; the defaults suit most hosts.
	QueueMB   int `yaml:"queue_mb"`   // memory of each worker's queue to each sink, MiB
	BatchSize int `yaml:"batch_size"` // datagrams per receive call
	// AF_XDP.
	FrameSize int  `yaml:"frame_size"` // 2048 | 4096
	Frames    int  `yaml:"frames"`     // UMEM frames per socket, a power of two
	RingSize  int  `yaml:"ring_size"`  // RX and fill ring entries, a power of two
	BusyPoll  bool `yaml:"busy_poll"`
	// Nap: the longest an AF_XDP receiver sleeps on a timer when its ring
	// is empty while traffic is dense, instead of waiting in poll() for
	// the kernel to wake it, adapting below it to the backlog; sparse
	// traffic waits in poll(). "0s" never naps (default 100µs, at most 1ms).
	Nap time.Duration `yaml:"nap"`
	// Latency: "default" naps only while traffic is dense (millions of
	// datagrams a second) and waits in poll() otherwise; "low" keeps each
	// AF_XDP worker checking its ring, without sleeping, until 10ms after
	// the last datagram (no wakeup to wait for; a core per queue while
	// traffic flows). See docs/OPERATIONS.md.
	Latency string `yaml:"latency"`
	// SchedSlice: the scheduler slice of each worker thread (EEVDF custom
	// slice, Linux 6.12+), so that a worker waking from a nap preempts
	// what shares its core without waiting out that task's slice; "0s"
	// keeps the kernel's (default 100µs, else 100µs to 100ms).
	SchedSlice time.Duration `yaml:"sched_slice"`
	// WorkerNice: the nice value of each worker thread, so that a worker
	// waking from a nap gets its core back from what shares it at once
	// (default -10; 0 leaves the workers at the process's; needs
	// CAP_SYS_NICE below the process's value).
	WorkerNice int `yaml:"worker_nice"`
	// Kernel path.
	Workers  int `yaml:"workers"`   // sockets per port and family (default: one per queue, at most one per CPU)
	RcvBufMB int `yaml:"rcvbuf_mb"` // SO_RCVBUF per socket

	// DrainTimeout bounds the drain at shutdown (default 4s: the whole
	// shutdown stays within 5 s).
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// Defaults returns the settings used where neither the file nor a flag says
// otherwise.
func Defaults() Config {
	return Config{
		Path:         "auto",
		Queues:       "all",
		XDPMode:      "native",
		Sinks:        nil, // sink.DefaultURL when empty after merging
		OnFull:       "drop",
		MetricsAddr:  "127.0.0.1:9109",
		LogFormat:    "text",
		QueueMB:      16,
		BatchSize:    64,
		FrameSize:    2048,
		Frames:       4096,
		RingSize:     2048,
		RcvBufMB:     8,
		DrainTimeout: 4 * time.Second,
		Nap:          afxdp.DefaultNap,
		Latency:      "default",
		SchedSlice:   tuning.DefaultWorkerSlice,
		WorkerNice:   tuning.DefaultWorkerNice,
	}
}

// Load reads a YAML config file on top of the defaults. Unknown keys are
// refused, naming the key and line.
func Load(path string) (Config, error) {
	cfg := Defaults()
	f, err := os.Open(path)
	if err != nil {
		return cfg, fmt.Errorf("can't read config: %w", err)
	}
	defer f.Close()
	if err := decode(f, &cfg); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

func decode(r io.Reader, cfg *Config) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // comments only
		}
		return yamlError(err)
	}
	// A second document would be ignored, with whatever it sets: refuse it,
	// as nictune does its profiles.
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return yamlError(err)
	}
	return fmt.Errorf("line %d: a second YAML document: xdpingest reads one; put every setting in the first, without ---", next.Line)
}

// yamlError rewrites the decoder's errors in our words: "line 3: unknown key
// "port"" on one line.
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			// "line 3: field port not found in type config.Config"
			if line, rest, ok := strings.Cut(m, ": field "); ok {
				if key, _, ok := strings.Cut(rest, " not found"); ok {
					m = fmt.Sprintf("%s: unknown key %q", line, key)
				}
			}
			msgs[i] = m
		}
		return errors.New(oneLine.Replace(strings.Join(msgs, "; ")))
	}
	return errors.New(oneLine.Replace(strings.TrimPrefix(err.Error(), "yaml: ")))
}

// oneLine escapes the line breaks the decoder quotes from values.
var oneLine = strings.NewReplacer("\n", `\n`, "\r", `\r`)

// PortSpec is a list of ports and ranges, "9000,9100-9199" (ParsePorts). In
// YAML it may also be a number (9000) or a list of numbers and ranges
// ([9000, "9100-9199"]), like the other lists.
type PortSpec string

// UnmarshalYAML accepts a string, a number or a list of either.
func (p *PortSpec) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.AliasNode:
		return p.UnmarshalYAML(n.Alias)
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			*p = ""
			return nil
		}
		*p = PortSpec(n.Value)
		return nil
	case yaml.SequenceNode:
		items := make([]string, len(n.Content))
		for i, c := range n.Content {
			if c.Kind != yaml.ScalarNode || c.Value == "" {
				return fmt.Errorf("line %d: ports: want a port or a range such as 9100-9199 in each item", c.Line)
			}
			items[i] = c.Value
		}
		if len(items) == 0 {
			return fmt.Errorf("line %d: ports: an empty list", n.Line)
		}
		*p = PortSpec(strings.Join(items, ","))
		return nil
	}
	return fmt.Errorf("line %d: ports: want a list such as \"9000,9100-9199\" or [9000, 9100-9199]", n.Line)
}

// Path is the receive path asked for.
type Path string

// The paths.
const (
	PathAuto   Path = "auto"  // AF_XDP, else the kernel path
	PathAFXDP  Path = "afxdp" // AF_XDP or nothing
	PathKernel Path = "kernel"
)

// Resolved is a validated Config in the types the server uses: every value
// parsed once, here. Raw keeps the settings as given, for comparing a reload
// and for display; its Sinks hold credentials, so log Sinks instead.
type Resolved struct {
	Raw Config

	Iface   string
	Ports   []uint16 // sorted, no repeats
	Path    Path
	Queues  []int // nil: every queue of the interface
	XDPMode xdp.Mode
	Allow   []netip.Prefix
	Deny    []netip.Prefix
	Sinks   []sink.Spec
	// BlockOnFull: --on-full block.
	BlockOnFull bool
	// MetricsAddr is "" when the endpoint is off.
	MetricsAddr string
	JSONLogs    bool
	Replace     bool
	// Tune is the loaded --tune profile, nil without one (its name is
	// Raw.Tune).
	Tune *tuning.Profile
	// CPUs the workers may use; empty: every CPU the process may use.
	CPUs tuning.CPUSet

	QueueBytes   int
	BatchSize    int
	FrameSize    int
	Frames       int
	RingSize     int
	BusyPoll     bool
	Nap          time.Duration // 0: never
	LowLatency   bool          // --latency low: AF_XDP workers spin while traffic is recent
	SchedSlice   time.Duration // 0: the kernel's
	WorkerNice   int           // 0: the process's
	Workers      int           // kernel path; 0: one per queue, at most one per CPU
	RcvBufBytes  int
	DrainTimeout time.Duration
}

// Validate checks every setting that can be checked without touching the
// interface, loads the --tune profile, and returns the first problem as one
// clear message.
func (c Config) Validate() (*Resolved, error) {
	r := &Resolved{Raw: c, Iface: c.Iface, Replace: c.Replace, BatchSize: c.BatchSize, FrameSize: c.FrameSize,
		Frames: c.Frames, RingSize: c.RingSize, BusyPoll: c.BusyPoll, Nap: c.Nap, SchedSlice: c.SchedSlice,
		WorkerNice: c.WorkerNice, Workers: c.Workers, DrainTimeout: c.DrainTimeout}
	if c.Iface == "" {
		return nil, errors.New("no interface: give --iface IFACE (or iface: in the config)")
	}
	if strings.ContainsAny(c.Iface, "/ \t") || len(c.Iface) > 15 {
		return nil, fmt.Errorf("invalid interface name %q", c.Iface)
	}
	if c.Ports == "" {
		return nil, errors.New("no ports: give --ports, e.g. --ports 9000,9100-9199")
	}
	var err error
	if r.Ports, err = ParsePorts(string(c.Ports)); err != nil {
		return nil, err
	}
	switch Path(c.Path) {
	case PathAuto, PathAFXDP, PathKernel:
		r.Path = Path(c.Path)
	default:
		return nil, fmt.Errorf("unknown path %q: want auto, afxdp or kernel", c.Path)
	}
	if r.Queues, err = ParseQueues(c.Queues); err != nil {
		return nil, err
	}
	switch c.XDPMode {
	case "native", "generic", "auto":
		if r.XDPMode, err = xdp.ParseMode(c.XDPMode); err != nil {
			return nil, fmt.Errorf("xdp_mode: %w", err)
		}
	default:
		return nil, fmt.Errorf("unknown XDP mode %q: want native, generic or auto", c.XDPMode)
	}
	if r.Allow, err = parsePrefixes("--allow", c.Allow); err != nil {
		return nil, err
	}
	if r.Deny, err = parsePrefixes("--deny", c.Deny); err != nil {
		return nil, err
	}
	sinks := c.Sinks
	if len(sinks) == 0 {
		sinks = []string{sink.DefaultURL}
	}
	r.Raw.Sinks = sinks
	if r.Sinks, err = parseSinks(sinks); err != nil {
		return nil, err
	}
	switch c.OnFull {
	case "drop":
	case "block":
		r.BlockOnFull = true
	default:
		return nil, fmt.Errorf("unknown --on-full %q: want drop or block", c.OnFull)
	}
	if c.MetricsAddr != "" && c.MetricsAddr != "off" {
		if _, err := netip.ParseAddrPort(c.MetricsAddr); err != nil {
			return nil, fmt.Errorf("invalid --metrics-addr %q: want IP:PORT such as 127.0.0.1:9109, or off", c.MetricsAddr)
		}
		r.MetricsAddr = c.MetricsAddr
	}
	switch c.LogFormat {
	case "text":
	case "json":
		r.JSONLogs = true
	default:
		return nil, fmt.Errorf("unknown --log-format %q: want text or json", c.LogFormat)
	}
	if c.CPUs != "" {
		set, err := tuning.ParseCPUList(c.CPUs)
		if err != nil || set.IsEmpty() {
			return nil, fmt.Errorf("invalid --cpus %q: want a CPU list such as 2-7 or 1,3", c.CPUs)
		}
		r.CPUs = set
	}
	if c.QueueMB < 1 || c.QueueMB > 4096 {
		return nil, fmt.Errorf("queue_mb %d out of range 1..4096", c.QueueMB)
	}
	r.QueueBytes = c.QueueMB << 20
	if c.BatchSize < 1 || c.BatchSize > 1024 {
		return nil, fmt.Errorf("batch_size %d out of range 1..1024", c.BatchSize)
	}
	if c.FrameSize != 2048 && c.FrameSize != 4096 {
		return nil, fmt.Errorf("frame_size %d: want 2048 or 4096", c.FrameSize)
	}
	if !pow2(c.Frames) || c.Frames < 64 || c.Frames > 1<<20 {
		return nil, fmt.Errorf("frames %d: want a power of two from 64 to 1048576", c.Frames)
	}
	if !pow2(c.RingSize) || c.RingSize < 64 || c.RingSize > c.Frames {
		return nil, fmt.Errorf("ring_size %d: want a power of two from 64 up to frames (%d)", c.RingSize, c.Frames)
	}
	if c.Workers < 0 || c.Workers > 1024 {
		return nil, fmt.Errorf("workers %d out of range 0..1024", c.Workers)
	}
	if c.RcvBufMB < 0 || c.RcvBufMB > 2048 {
		return nil, fmt.Errorf("rcvbuf_mb %d out of range 0..2048", c.RcvBufMB)
	}
	r.RcvBufBytes = c.RcvBufMB << 20
	if c.DrainTimeout <= 0 || c.DrainTimeout > time.Minute {
		return nil, fmt.Errorf("drain_timeout %v out of range (0, 1m]", c.DrainTimeout)
	}
	if c.Nap < 0 || c.Nap > time.Millisecond {
		return nil, fmt.Errorf("nap %v out of range [0, 1ms]", c.Nap)
	}
	switch c.Latency {
	case "default":
	case "low":
		r.LowLatency = true
	default:
		return nil, fmt.Errorf("unknown --latency %q: want default or low", c.Latency)
	}
	if err := tuning.CheckSlice(c.SchedSlice); err != nil {
		return nil, fmt.Errorf("sched_slice: %w", err)
	}
	if err := tuning.CheckNice(c.WorkerNice); err != nil {
		return nil, fmt.Errorf("worker_nice: %w", err)
	}
	if c.Tune != "" {
		p, err := tuning.LoadProfile(c.Tune)
		if err != nil {
			return nil, fmt.Errorf("--tune: %w", err)
		}
		r.Tune = p
	}
	return r, nil
}

func pow2(n int) bool { return n > 0 && n&(n-1) == 0 }

// MaxPrefixes is the most prefixes each list (allow, deny) may hold per
// address family: the entries of the XDP program's LPM maps.
const MaxPrefixes = 65536

// parsePrefixes parses a prefix list and refuses more distinct prefixes of a
// family than the program's maps hold.
func parsePrefixes(flag string, list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	distinct := map[netip.Prefix]bool{}
	n4, n6 := 0, 0
	for _, s := range list {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		out = append(out, p)
		if distinct[p] {
			continue
		}
		distinct[p] = true
		fam, n := "IPv4", &n4
		if p.Addr().Is6() {
			fam, n = "IPv6", &n6
		}
		if *n++; *n > MaxPrefixes {
			return nil, fmt.Errorf("%s: more than %d %s prefixes, the most the XDP program's maps hold: merge them into shorter prefixes", flag, MaxPrefixes, fam)
		}
	}
	return out, nil
}

// parseSinks parses the sink URLs and refuses two sinks with one name (the
// sink label of the metrics, which must be unique) or one destination
// (the same data written twice to one place). No message shows a
// password.
func parseSinks(urls []string) ([]sink.Spec, error) {
	specs := make([]sink.Spec, 0, len(urls))
	names := map[string]string{} // name -> URL
	dests := map[string]string{} // destination -> URL
	for _, u := range urls {
		sp, err := sink.Parse(u)
		if err != nil {
			return nil, fmt.Errorf("--sink: %w", err)
		}
		if prev, ok := names[sp.String()]; ok {
			return nil, fmt.Errorf("--sink %q and --sink %q both name the sink %q (its metrics label): give each destination once", sink.Redact(prev), sink.Redact(u), sp)
		}
		names[sp.String()] = u
		for _, d := range sp.Destinations() {
			if prev, ok := dests[d]; ok {
				return nil, fmt.Errorf("--sink %q and --sink %q both write to %q: give each destination once", sink.Redact(prev), sink.Redact(u), d)
			}
		}
		for _, d := range sp.Destinations() {
			dests[d] = u
		}
		specs = append(specs, sp)
	}
	return specs, nil
}

// ParsePorts parses "9000,9100-9199" into a sorted list without repeats
// (portset.Parse).
func ParsePorts(s string) ([]uint16, error) { return portset.Parse(s) }

// FormatPorts writes ports back in the compact range form.
func FormatPorts(ports []uint16) string { return portset.Format(ports) }

// ParseQueues parses "all" (nil) or a list like "0,1,4-7" of queues 0..65535.
func ParseQueues(s string) ([]int, error) {
	if s == "" || s == "all" {
		return nil, nil
	}
	var set portset.Set
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, ok := portset.Atoi(strings.TrimSpace(lo))
		b := a
		if isRange && ok {
			b, ok = portset.Atoi(strings.TrimSpace(hi))
		}
		if !ok || b < a || b > 65535 {
			return nil, fmt.Errorf("invalid queues %q: want all or queue numbers such as 0,1 or 0-3", s)
		}
		set.AddRange(a, b)
	}
	out := make([]int, 0, set.Count())
	for q := range set.All() {
		out = append(out, q)
	}
	return out, nil
}

// ParsePrefix parses a CIDR prefix, or a bare address as a host prefix. An
// IPv4-mapped IPv6 address or prefix (::ffff:198.18.0.0/111) becomes the
// IPv4 one it means: IPv4 packets carry IPv4 sources. Zones are refused: the
// program matches addresses, not interfaces.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "%") {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: an IPv6 zone (%%...) is not allowed: the lists match addresses on every interface", s)
	}
	addr, bitsStr, isPrefix := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: want an address or ADDRESS/BITS such as 198.18.0.0/15 or 2001:db8::/32", s)
	}
	n := a.BitLen()
	if isPrefix {
		var ok bool
		if n, ok = portset.Atoi(bitsStr); !ok || n > a.BitLen() {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: want a prefix length from 0 to %d", s, a.BitLen())
		}
	}
	if a.Is4In6() && n >= 96 {
		a, n = a.Unmap(), n-96
	}
	return netip.PrefixFrom(a, n).Masked(), nil
}
