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
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/xdpingest/xdpingest/datapath/afxdp"
	"github.com/xdpingest/xdpingest/sink"
	"github.com/xdpingest/xdpingest/tuning"
)

// Config is everything `xdpingest run` can be told. The YAML keys are the
// flag names with dashes turned into underscores.
type Config struct {
	Iface       string   `yaml:"iface"`
	Ports       string   `yaml:"ports"`  // "9000,9100-9199"
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
	// Nap: how long an AF_XDP receiver sleeps on a timer when its ring is
	// empty while traffic is recent, instead of waiting in poll() for the
	// kernel to wake it, adapting below it to the traffic; "0s" never naps
	// (default 100µs, at most 1ms).
	Nap time.Duration `yaml:"nap"`
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
			return errors.New(strings.Join(msgs, "; "))
		}
		return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return nil
}

// Resolved is a validated Config in the types the server uses.
type Resolved struct {
	Config
	PortList     []uint16
	AllowPfx     []netip.Prefix
	DenyPfx      []netip.Prefix
	SinkSpecs    []sink.Spec
	QueueList    []int // nil: all queues of the interface
	QueueBytes   int
	RcvBufBytes  int
	ForceAFXDP   bool
	ForceKernel  bool
	BlockOnFull  bool
	JSONLogs     bool
	XDPModeValue string        // native | generic | auto
	CPUSet       tuning.CPUSet // empty: no restriction beyond the process's own
}

// Validate checks every setting that can be checked without touching the
// interface, and returns the first problem as one clear message.
func (c Config) Validate() (*Resolved, error) {
	r := &Resolved{Config: c}
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
	if r.PortList, err = ParsePorts(c.Ports); err != nil {
		return nil, err
	}
	switch c.Path {
	case "auto":
	case "afxdp":
		r.ForceAFXDP = true
	case "kernel":
		r.ForceKernel = true
	default:
		return nil, fmt.Errorf("unknown path %q: want auto, afxdp or kernel", c.Path)
	}
	if r.QueueList, err = ParseQueues(c.Queues); err != nil {
		return nil, err
	}
	switch c.XDPMode {
	case "native", "generic", "auto":
		r.XDPModeValue = c.XDPMode
	default:
		return nil, fmt.Errorf("unknown XDP mode %q: want native, generic or auto", c.XDPMode)
	}
	for _, s := range c.Allow {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("--allow: %w", err)
		}
		r.AllowPfx = append(r.AllowPfx, p)
	}
	for _, s := range c.Deny {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("--deny: %w", err)
		}
		r.DenyPfx = append(r.DenyPfx, p)
	}
	sinks := c.Sinks
	if len(sinks) == 0 {
		sinks = []string{sink.DefaultURL}
	}
	r.Sinks = sinks
	seen := map[string]bool{}
	for _, u := range sinks {
		sp, err := sink.Parse(u)
		if err != nil {
			return nil, fmt.Errorf("--sink %s: %w", u, err)
		}
		if seen[u] {
			return nil, fmt.Errorf("--sink %s is given twice", u)
		}
		seen[u] = true
		r.SinkSpecs = append(r.SinkSpecs, sp)
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
		r.CPUSet = set
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
	if err := tuning.CheckSlice(c.SchedSlice); err != nil {
		return nil, fmt.Errorf("sched_slice: %w", err)
	}
	if err := tuning.CheckNice(c.WorkerNice); err != nil {
		return nil, fmt.Errorf("worker_nice: %w", err)
	}
	return r, nil
}

func pow2(n int) bool { return n > 0 && n&(n-1) == 0 }

// ParsePorts parses "9000,9100-9199" into a sorted list without repeats.
// Ports are 1..65535.
func ParsePorts(s string) ([]uint16, error) {
	set := map[uint16]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("invalid ports %q: empty item", s)
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := parsePort(lo)
		if err != nil {
			return nil, fmt.Errorf("invalid ports %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = parsePort(hi); err != nil {
				return nil, fmt.Errorf("invalid ports %q: %w", s, err)
			}
			if b < a {
				return nil, fmt.Errorf("invalid ports %q: range %s runs backwards", s, part)
			}
		}
		for p := int(a); p <= int(b); p++ {
			set[uint16(p)] = true
		}
	}
	out := make([]uint16, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.Sort(out)
	return out, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %d out of range 1..65535", n)
	}
	return uint16(n), nil
}

// FormatPorts writes ports back in the compact range form.
func FormatPorts(ports []uint16) string {
	var b strings.Builder
	for i := 0; i < len(ports); {
		j := i
		for j+1 < len(ports) && ports[j+1] == ports[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", ports[i], ports[j])
		} else {
			fmt.Fprintf(&b, "%d", ports[i])
		}
		i = j + 1
	}
	return b.String()
}

// ParseQueues parses "all" (nil) or a list like "0,1,4-7".
func ParseQueues(s string) ([]int, error) {
	if s == "" || s == "all" {
		return nil, nil
	}
	set := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 || a > 65535 {
			return nil, fmt.Errorf("invalid queues %q: want all or queue numbers such as 0,1 or 0-3", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b > 65535 {
				return nil, fmt.Errorf("invalid queues %q: want all or queue numbers such as 0,1 or 0-3", s)
			}
		}
		for q := a; q <= b; q++ {
			set[q] = true
		}
	}
	out := make([]int, 0, len(set))
	for q := range set {
		out = append(out, q)
	}
	sort.Ints(out)
	return out, nil
}

// ParsePrefix parses a CIDR prefix, or a bare address as a host prefix.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: zones are not allowed", s)
	}
	return p.Masked(), nil
}
