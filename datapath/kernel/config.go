package kernel

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Config describes the kernel path's sockets.
type Config struct {
	// Ports are the UDP ports to receive on. Required; 0 is refused (an
	// ephemeral port can't be shared by a SO_REUSEPORT group).
	Ports []uint16
	// Addrs are the local addresses to bind. Default: the IPv4 and the IPv6
	// wildcard (0.0.0.0 and ::), which receive IPv4 and IPv6 traffic for
	// every local address. Give 0.0.0.0 alone (or :: alone) for one family.
	// IPv6 sockets are IPV6_V6ONLY, so IPv4 always arrives on IPv4 sockets.
	Addrs []netip.Addr
	// Device, when set, binds every socket to that interface
	// (SO_BINDTODEVICE) before it binds its address: datagrams that arrive
	// on any other interface, loopback included, never reach it, whatever
	// their destination address, with one exception: what a process of
	// the host sends to the interface's own address (see the package
	// documentation). The name is looked up in the network namespace of
	// the calling thread. Without it a wildcard socket takes the port's
	// datagrams from every interface.
	Device string
	// Filter, when set, is a loaded socket filter program
	// (BPF_PROG_TYPE_SOCKET_FILTER, such as xdp.Program.SocketFilter, or
	// an *ebpf.Program) attached to every socket with SO_ATTACH_BPF before
	// the socket is bound, so that no datagram reaches a socket
	// unfiltered. The sockets hold their own reference: the caller may
	// close the program after Open. The kernel counts a datagram the
	// filter drops as a drop of the socket (sk_drops), like one a full
	// buffer drops: Stats.SocketOverflows leaves the filter's refusals
	// out only if the Filter is also a RefusalCounter (see the package
	// documentation).
	Filter Filter
	// Workers is the number of Receivers, each with its own socket for every
	// address and port (default 1).
	Workers int
	// Batch is the most datagrams one Receive returns, the vlen of its
	// recvmmsg calls (default 64, at most 1024).
	Batch int
	// MaxPayload is the size of each datagram buffer (default 65535, which
	// holds any UDP payload). A larger datagram is dropped and counted in
	// Stats.Malformed. Smaller buffers save memory: Batch*MaxPayload bytes
	// per worker.
	MaxPayload int
	// RcvBuf is the receive buffer per socket in bytes, as asked of
	// SO_RCVBUF (0 keeps net.core.rmem_default). The kernel caps the request
	// at net.core.rmem_max; Open then returns a warning.
	RcvBuf int
	// ForceRcvBuf sets RcvBuf with SO_RCVBUFFORCE, which ignores rmem_max
	// but needs CAP_NET_ADMIN. Without the capability Open falls back to
	// SO_RCVBUF and says so in a warning.
	ForceRcvBuf bool
	// ReadTimestamps stamps each datagram with the time its batch was read
	// (one clock read per recvmmsg call) instead of the kernel's receive
	// time (SO_TIMESTAMPNS, one control message per datagram). The stamp
	// then includes the time the datagram waited in the socket; in
	// exchange the worker spends 10-17% less CPU per datagram (measured on
	// the test bed, BenchmarkDrain), and, once no socket in the system
	// asks for timestamps, the kernel stops reading the clock for every
	// packet it receives.
	ReadTimestamps bool
	// Coalesce is how long Receive sleeps, after reading datagrams, before
	// it reads again, instead of sleeping until the next datagram arrives
	// (default 20µs; a negative value turns it off). Under load the next
	// read then finds a fuller batch, and the CPU that queues datagrams
	// (for a veth, the sender's) no longer wakes the worker for every few:
	// see the package documentation. It adds at most that much latency,
	// and only while datagrams flow; an idle worker sleeps in poll(2).
	Coalesce time.Duration
	// CPUs, when set, is the CPU each worker runs on (CPUs[i] for worker i;
	// distinct). Open then attaches a classic BPF program to every
	// SO_REUSEPORT group that picks the socket of the worker on the CPU
	// where the kernel processes the packet, so that a packet is read on
	// the CPU that received it; packets processed on other CPUs are spread
	// by the kernel's flow hash. Pinning the workers is the caller's job.
	CPUs []int
	// NoGRO turns off UDP GRO. By default the sockets set UDP_GRO: the
	// kernel then merges consecutive same-sized datagrams of a flow into
	// one buffer (up to 64 of them) before it queues them, and Receive
	// splits them again; the kernel's per-datagram work in the socket
	// layer (queueing, accounting, the copy's setup, the wakeup) is then
	// done once per merged buffer. It needs MaxPayload at its default
	// (65535): a merged buffer can be that large, and a shorter buffer
	// would truncate it (GRO stays off with a smaller MaxPayload). The
	// datagrams of one merged buffer share its receive timestamp and its
	// drop counter reading.
	NoGRO bool
}

// Filter is a loaded BPF program, by its file descriptor. *ebpf.Program
// and xdp.SocketFilter satisfy it; this package does not import
// cilium/ebpf.
type Filter interface {
	FD() int
}

// RefusalCounter is what a Filter may also implement (xdp.SocketFilter
// does): it counts, per socket, the buffers it refused, so that a Receiver
// can subtract them from the socket's drop counter, which counts them
// along with the buffers a full receive buffer dropped.
type RefusalCounter interface {
	// RefusedBuffers returns how many buffers the filter has refused on
	// the socket whose cookie (SO_COOKIE) is given, each counted before
	// the kernel adds it to the socket's drop counter. Safe for concurrent
	// use.
	RefusedBuffers(cookie uint64) (uint64, error)
	// ForgetSocket says that the socket is closed and its count read for
	// the last time.
	ForgetSocket(cookie uint64) error
}

const (
	defaultBatch      = 64
	maxBatch          = 1024 // UIO_MAXIOV: the kernel's limit on recvmmsg's vlen
	defaultMaxPayload = 65535
	maxCPU            = 1 << 16
	// maxSteeredWorkers keeps the steering program (two instructions per
	// worker and two more) under BPF_MAXINSNS (4096).
	maxSteeredWorkers = (4096 - 2) / 2
	defaultCoalesce   = 20 * time.Microsecond
	ifNameSize        = 16 // IFNAMSIZ, with the terminating NUL
	maxCoalesce       = time.Second
)

// withDefaults checks cfg and fills in the defaults.
func (cfg Config) withDefaults() (Config, error) {
	if len(cfg.Ports) == 0 {
		return cfg, fmt.Errorf("no UDP port to receive on: set Config.Ports")
	}
	for i, p := range cfg.Ports {
		if p == 0 {
			return cfg, fmt.Errorf("port 0: give a fixed port (an ephemeral port can't be shared by a SO_REUSEPORT group)")
		}
		if slices.Contains(cfg.Ports[:i], p) {
			return cfg, fmt.Errorf("port %d is listed twice", p)
		}
	}
	if len(cfg.Addrs) == 0 {
		cfg.Addrs = []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
	} else {
		addrs := make([]netip.Addr, 0, len(cfg.Addrs))
		for _, a := range cfg.Addrs {
			if !a.IsValid() {
				return cfg, fmt.Errorf("invalid bind address in Config.Addrs")
			}
			if a.Zone() != "" {
				return cfg, fmt.Errorf("bind address %v: zoned addresses are not supported", a)
			}
			a = a.Unmap()
			if slices.Contains(addrs, a) {
				return cfg, fmt.Errorf("bind address %v is listed twice", a)
			}
			addrs = append(addrs, a)
		}
		cfg.Addrs = addrs
	}
	if cfg.Device != "" && (len(cfg.Device) >= ifNameSize || strings.ContainsAny(cfg.Device, "/ \t\n:")) {
		return cfg, fmt.Errorf("device %q is not an interface name (at most %d bytes, no '/', ':' or spaces)", cfg.Device, ifNameSize-1)
	}
	if cfg.Filter != nil && cfg.Filter.FD() < 0 {
		return cfg, fmt.Errorf("the socket filter has no file descriptor (%d): load it before Open, and don't close it until Open returns", cfg.Filter.FD())
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.Batch <= 0 {
		cfg.Batch = defaultBatch
	}
	if cfg.Batch > maxBatch {
		return cfg, fmt.Errorf("batch %d is above the kernel's recvmmsg limit of %d", cfg.Batch, maxBatch)
	}
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = defaultMaxPayload
	}
	if cfg.MaxPayload > defaultMaxPayload {
		return cfg, fmt.Errorf("max payload %d is above the UDP maximum of %d", cfg.MaxPayload, defaultMaxPayload)
	}
	switch {
	case cfg.Coalesce == 0:
		cfg.Coalesce = defaultCoalesce
	case cfg.Coalesce < 0:
		cfg.Coalesce = 0
	case cfg.Coalesce > maxCoalesce:
		return cfg, fmt.Errorf("coalescing time %v is above %v: a worker would sit on full buffers", cfg.Coalesce, maxCoalesce)
	}
	if cfg.RcvBuf < 0 {
		return cfg, fmt.Errorf("negative receive buffer %d", cfg.RcvBuf)
	}
	if len(cfg.CPUs) > 0 {
		if len(cfg.CPUs) != cfg.Workers {
			return cfg, fmt.Errorf("%d CPUs for %d workers: give one CPU per worker", len(cfg.CPUs), cfg.Workers)
		}
		if cfg.Workers > maxSteeredWorkers {
			return cfg, fmt.Errorf("steering supports at most %d workers, not %d", maxSteeredWorkers, cfg.Workers)
		}
		for i, c := range cfg.CPUs {
			if c < 0 || c >= maxCPU {
				return cfg, fmt.Errorf("worker %d: CPU %d out of range", i, c)
			}
			if slices.Contains(cfg.CPUs[:i], c) {
				return cfg, fmt.Errorf("CPU %d is given to two workers: steering needs one worker per CPU", c)
			}
		}
	}
	return cfg, nil
}

// gro reports whether the sockets ask for UDP GRO.
func (cfg *Config) gro() bool { return !cfg.NoGRO && cfg.MaxPayload >= defaultMaxPayload }
