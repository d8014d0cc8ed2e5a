package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// listFlag collects a repeatable flag.
type listFlag struct{ vals *[]string }

func (l listFlag) String() string {
	if l.vals == nil {
		return ""
	}
	return strings.Join(*l.vals, ",")
}

func (l listFlag) Set(s string) error {
	*l.vals = append(*l.vals, s)
	return nil
}

// FlagSet is the flags of `xdpingest run` and `xdpingest check`, bound to a
// Config.
type FlagSet struct {
	*flag.FlagSet
	cfg        Config
	out        io.Writer
	ConfigFile string
}

// NewFlagSet makes the flag set. Parse errors are returned, not fatal; out
// gets the usage when -h asks for it.
func NewFlagSet(name string, out io.Writer) *FlagSet {
	fs := &FlagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), out: out}
	// The flag package would print a bad flag's error and then the whole
	// usage: Parse returns the error alone, in one line.
	fs.SetOutput(io.Discard)
	d := Defaults()
	c := &fs.cfg
	fs.StringVar(&fs.ConfigFile, "config", "", "YAML config `file`; flags given on the command line override it")
	fs.StringVar(&c.Iface, "iface", "", "the `interface` to receive on (required)")
	fs.StringVar((*string)(&c.Ports), "ports", "", "UDP destination `ports` to take, e.g. 9000,9100-9199 (required)")
	fs.StringVar(&c.Path, "path", d.Path, "receive path: auto (AF_XDP, else the kernel socket path), afxdp or kernel")
	fs.StringVar(&c.Queues, "queues", d.Queues, "RX `queues` to serve: all, or a list such as 0,1")
	fs.StringVar(&c.XDPMode, "xdp-mode", d.XDPMode, "XDP attach `mode`: native, generic, or auto (native, else generic)")
	fs.Var(listFlag{&c.Allow}, "allow", "take only sources in this `CIDR` (repeatable; per family)")
	fs.Var(listFlag{&c.Deny}, "deny", "drop sources in this `CIDR` (repeatable; wins over --allow)")
	fs.Var(listFlag{&c.Sinks}, "sink", "where datagrams go (repeatable): pcap:DIR[?max_mb=N&max_age=D], nats://[USER:PASS@]HOST:PORT[,HOST:PORT...]/SUBJECT[?stream=S&batch=N], udp://HOST:PORT, discard (default pcap:./capture)")
	fs.StringVar(&c.OnFull, "on-full", d.OnFull, "when a sink queue is full: drop (and count), or block (the rings back up and the kernel counts the loss)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", d.MetricsAddr, "`address` of /metrics, /healthz and /readyz, or off")
	fs.StringVar(&c.LogFormat, "log-format", d.LogFormat, "log `format`: text or json")
	fs.BoolVar(&c.Replace, "replace", false, "replace an XDP program another tool attached to the interface")
	fs.StringVar(&c.Tune, "tune", "", "apply this nictune `profile` at start, revert it at exit")
	fs.StringVar(&c.CPUs, "cpus", "", "`CPUs` the workers may run on, e.g. 2-7 (default: every CPU the process may use)")
	fs.IntVar(&c.QueueMB, "queue-mb", d.QueueMB, "memory of each worker's queue to each sink, in `MiB`")
	fs.IntVar(&c.BatchSize, "batch-size", d.BatchSize, "datagrams per receive call")
	fs.IntVar(&c.FrameSize, "frame-size", d.FrameSize, "AF_XDP UMEM frame size: 2048 or 4096")
	fs.IntVar(&c.Frames, "frames", d.Frames, "AF_XDP UMEM frames per socket (a power of two)")
	fs.IntVar(&c.RingSize, "ring-size", d.RingSize, "AF_XDP RX and fill ring entries (a power of two)")
	fs.BoolVar(&c.BusyPoll, "busy-poll", false, "AF_XDP: busy-poll the sockets (SO_PREFER_BUSY_POLL, SO_BUSY_POLL); costs a core per queue")
	fs.IntVar(&c.Workers, "workers", 0, "kernel path: workers (sockets per port and family); 0 means one per queue, at most one per CPU")
	fs.IntVar(&c.RcvBufMB, "rcvbuf-mb", d.RcvBufMB, "kernel path: SO_RCVBUF per socket, in `MiB`")
	fs.DurationVar(&c.Nap, "nap", d.Nap, "AF_XDP: the longest a worker sleeps on a timer when its ring is empty while traffic is dense (about 1 Mpps or more), instead of in poll(); sparse traffic waits in poll() (0: never nap)")
	fs.StringVar(&c.Latency, "latency", d.Latency, "AF_XDP wait between datagrams: default (nap only under millions of datagrams/s, else poll()) or low (check the ring without sleeping until 10ms after the last datagram: lowest latency, a core per queue while traffic flows)")
	fs.DurationVar(&c.SchedSlice, "sched-slice", d.SchedSlice, "scheduler slice of each worker thread (Linux 6.12+), so that a worker waking from a nap preempts what shares its core at once (0: the kernel's; 100µs to 100ms)")
	fs.IntVar(&c.WorkerNice, "worker-nice", d.WorkerNice, "nice value of each worker thread, so that a worker waking from a nap gets its core back at once (0: the process's; below it needs CAP_SYS_NICE)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", d.DrainTimeout, "how long shutdown may spend draining rings, queues and sinks")
	return fs
}

// Parse parses the command line. A bad flag or value comes back as one
// line naming the flag and the problem; -h prints the usage to out and
// returns flag.ErrHelp.
func (fs *FlagSet) Parse(args []string) error {
	err := fs.FlagSet.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(fs.out, "usage: xdpingest %s [flags]\n", fs.Name())
		fs.SetOutput(fs.out)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		return err
	}
	return fmt.Errorf("%w (xdpingest %s -h lists the flags)", err, fs.Name())
}

// Config merges: defaults, then the config file if --config was given, then
// the flags given on the command line.
func (fs *FlagSet) Config() (Config, error) {
	cfg := Defaults()
	if fs.ConfigFile != "" {
		var err error
		if cfg, err = Load(fs.ConfigFile); err != nil {
			return cfg, err
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	c := fs.cfg
	over := func(name string, apply func()) {
		if set[name] {
			apply()
		}
	}
	over("iface", func() { cfg.Iface = c.Iface })
	over("ports", func() { cfg.Ports = c.Ports })
	over("path", func() { cfg.Path = c.Path })
	over("queues", func() { cfg.Queues = c.Queues })
	over("xdp-mode", func() { cfg.XDPMode = c.XDPMode })
	over("allow", func() { cfg.Allow = c.Allow })
	over("deny", func() { cfg.Deny = c.Deny })
	over("sink", func() { cfg.Sinks = c.Sinks })
	over("on-full", func() { cfg.OnFull = c.OnFull })
	over("metrics-addr", func() { cfg.MetricsAddr = c.MetricsAddr })
	over("log-format", func() { cfg.LogFormat = c.LogFormat })
	over("replace", func() { cfg.Replace = c.Replace })
	over("tune", func() { cfg.Tune = c.Tune })
	over("cpus", func() { cfg.CPUs = c.CPUs })
	over("queue-mb", func() { cfg.QueueMB = c.QueueMB })
	over("batch-size", func() { cfg.BatchSize = c.BatchSize })
	over("frame-size", func() { cfg.FrameSize = c.FrameSize })
	over("frames", func() { cfg.Frames = c.Frames })
	over("ring-size", func() { cfg.RingSize = c.RingSize })
	over("busy-poll", func() { cfg.BusyPoll = c.BusyPoll })
	over("workers", func() { cfg.Workers = c.Workers })
	over("rcvbuf-mb", func() { cfg.RcvBufMB = c.RcvBufMB })
	over("drain-timeout", func() { cfg.DrainTimeout = c.DrainTimeout })
	over("nap", func() { cfg.Nap = c.Nap })
	over("latency", func() { cfg.Latency = c.Latency })
	over("sched-slice", func() { cfg.SchedSlice = c.SchedSlice })
	over("worker-nice", func() { cfg.WorkerNice = c.WorkerNice })
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q: every setting is a flag", fs.Args())
	}
	return cfg, nil
}
