package afxdp

import (
	"errors"
	"fmt"
	"time"
)

// Config describes the sockets of an AF_XDP path. The zero value, with an
// interface named, opens one receive socket per RX queue of the interface
// with the defaults below.
type Config struct {
	// Iface or Ifindex names the interface (Ifindex wins when both are set).
	// It is looked up in the network namespace of the calling thread, which
	// is also where the sockets are made.
	Iface   string
	Ifindex int
	// Queues are the RX queues to open a socket on; empty means all of the
	// interface's RX queues (ethtool's rx + combined channel count).
	Queues []int

	// FrameSize is the UMEM chunk size: 2048 (default) or 4096. In copy mode
	// the kernel puts a frame 256 bytes into its chunk (XDP_PACKET_HEADROOM),
	// so 2048 takes frames up to 1792 bytes.
	FrameSize int
	// NumFrames is the number of UMEM frames of each socket (default 4096),
	// a power of two. Receiving needs a few more than the fill ring holds
	// plus the largest batch the consumer keeps.
	NumFrames int
	// Ring sizes in descriptors, each a power of two. Defaults: fill,
	// completion and RX 2048; TX 0 (no TX ring) unless TxOnly.
	FillRingSize       int
	CompletionRingSize int
	RxRingSize         int
	TxRingSize         int
	// TxFrames is how many of the NumFrames frames are set aside for
	// sending. Default: 0 without a TX ring, NumFrames/2 with one, all of
	// them with TxOnly.
	TxFrames int
	// TxOnly opens sockets without an RX ring, for generators. They need no
	// XDP program and are not registered.
	TxOnly bool

	// ForceCopy binds in copy mode (XDP_COPY) without trying zero-copy;
	// ForceZeroCopy fails instead of falling back to copy mode. Without
	// either, zero-copy is tried first.
	ForceCopy     bool
	ForceZeroCopy bool

	// BusyPoll turns on preferred busy polling on each socket
	// (SO_PREFER_BUSY_POLL, SO_BUSY_POLL = BusyPollTimeout,
	// SO_BUSY_POLL_BUDGET = BusyPollBudget), and makes an idle receiver
	// drive the device's NAPI with recvfrom on every empty check instead of
	// only when the kernel asks. It pays off with zero-copy drivers whose
	// NAPI the socket can own (with napi_defer_hard_irqs and
	// gro_flush_timeout set on the device); veth in copy mode gives the
	// socket no NAPI id and ignores it.
	BusyPoll        bool
	BusyPollTimeout time.Duration // default 20µs
	BusyPollBudget  int           // default 64

	// SpinChecks is how many times in a row Receive finds the RX ring
	// empty before it sleeps in poll() (default 8). Spinning longer steals
	// the core from the kernel, which in copy mode does the copying on a
	// core of its own choosing: a receiver that spins while the kernel needs
	// the core loses (see the guide).
	SpinChecks int

	// Nap is the longest Receive sleeps on a timer, after SpinChecks empty
	// checks, before it looks at the ring again, while the traffic is
	// dense; otherwise it sleeps in poll() (default 100µs; negative: never
	// nap, poll() at once). Dense means fast enough that a nap of Nap
	// collects 128 datagrams (1.28 Mpps with the default), or a sixteenth
	// of a smaller RX ring; once dense, traffic stays dense until its rate
	// falls under a quarter of that. The rate is measured over the sleeps
	// (the backlog found after each, over the time slept), in samples of
	// at least four Naps of sleep, smoothed over four samples. Naps
	// that find nothing for a whole Nap give way to poll() (a pause, or
	// the end of the traffic). Within it the nap adapts to the backlog: it
	// shrinks by a quarter whenever the RX ring was more than three
	// quarters full at the end of one (down to 5µs), and grows back by an
	// eighth while the ring stayed under half full; it starts again from
	// Nap after a sleep in poll().
	//
	// Why: a receiver in poll() is woken by the kernel once per batch the
	// kernel hands over, from the core that processes the packets. Across
	// cores that wakeup costs the kernel's core more than the receiver's
	// own timer costs it (on the veth bed, a quarter of the generator's
	// core at full rate); on the same core, the kernel's wakeup is a
	// "sync" one that lets the receiver wait until the waker's time slice
	// ends, while the ring overflows. Napping keeps the receiver off the
	// socket's wait queue while traffic floods in, and longer naps mean
	// fewer wakeups (each a pair of context switches and, in a VM, a timer
	// reprogrammed through the hypervisor). The price is latency: up to
	// one Nap (plus the timer slack, 50µs by default) for a datagram that
	// arrives during a nap. Below the dense rate a nap would collect few
	// datagrams, so it would save few wakeups and only add that latency:
	// there poll(), which wakes the receiver as soon as a datagram comes,
	// costs the kernel's core little. SpinFor gives lower latency still.
	Nap time.Duration

	// SpinFor is the low-latency setting: Receive keeps checking the RX
	// ring, without sleeping, until SpinFor has passed since the last
	// datagram, and sleeps in poll() after that (it never naps). No
	// datagram then waits for a wakeup while traffic flows: on the test
	// bed a sleeping receiver, in poll() or a nap, takes 35-100µs to run
	// again, a spinning one takes none. The price is a core per queue, all
	// of it, while traffic is recent (LowLatencySpin covers gaps of up to
	// 10ms, so a stream of 100 datagrams/s or more keeps it spinning). It
	// wants a core of its own: a spinning receiver that shares its core
	// with other tasks gets only its share of it and waits out their
	// slices (milliseconds), which is worse than a wakeup; and in copy mode
	// it takes the core from the kernel's work for the queue if it shares
	// that one (see SpinChecks). 0 (default): off.
	SpinFor time.Duration
}

// Defaults.
const (
	DefaultFrameSize  = 2048
	DefaultNumFrames  = 4096
	DefaultRingSize   = 2048
	defaultBusyPoll   = 20 * time.Microsecond
	defaultBudget     = 64
	defaultSpinChecks = 8
	// DefaultNap is Config.Nap's default.
	DefaultNap = 100 * time.Microsecond
	// LowLatencySpin is the Config.SpinFor of the low-latency setting
	// (xdpingest run --latency low).
	LowLatencySpin = 10 * time.Millisecond
	// maxSpinFor bounds Config.SpinFor: beyond a second, spinning is
	// spinning forever.
	maxSpinFor   = time.Second
	maxRingSize  = 1 << 20
	maxNumFrames = 1 << 22
)

// ErrConfig is wrapped by every error about an invalid Config.
var ErrConfig = errors.New("invalid AF_XDP configuration")

func isPow2(n int) bool { return n > 0 && n&(n-1) == 0 }

// withDefaults fills in the defaults and checks the result.
func (c Config) withDefaults() (Config, error) {
	if c.FrameSize == 0 {
		c.FrameSize = DefaultFrameSize
	}
	if c.NumFrames == 0 {
		c.NumFrames = DefaultNumFrames
	}
	for _, r := range []*int{&c.FillRingSize, &c.CompletionRingSize} {
		if *r == 0 {
			*r = DefaultRingSize
		}
	}
	if c.TxOnly {
		if c.RxRingSize != 0 {
			return c, fmt.Errorf("%w: TxOnly with RxRingSize %d: a TX-only socket has no RX ring", ErrConfig, c.RxRingSize)
		}
		if c.TxRingSize == 0 {
			c.TxRingSize = DefaultRingSize
		}
		if c.TxFrames == 0 {
			c.TxFrames = c.NumFrames
		}
	} else if c.RxRingSize == 0 {
		c.RxRingSize = DefaultRingSize
	}
	if c.TxRingSize > 0 && c.TxFrames == 0 {
		c.TxFrames = c.NumFrames / 2
	}
	if c.BusyPoll {
		if c.BusyPollTimeout == 0 {
			c.BusyPollTimeout = defaultBusyPoll
		}
		if c.BusyPollBudget == 0 {
			c.BusyPollBudget = defaultBudget
		}
	}
	if c.SpinChecks == 0 {
		c.SpinChecks = defaultSpinChecks
	}
	if c.Nap == 0 {
		c.Nap = DefaultNap
	}

	switch {
	case c.FrameSize != 2048 && c.FrameSize != 4096:
		return c, fmt.Errorf("%w: frame size %d: must be 2048 or 4096", ErrConfig, c.FrameSize)
	case !isPow2(c.NumFrames) || c.NumFrames > maxNumFrames:
		return c, fmt.Errorf("%w: UMEM frame count %d: must be a power of two up to %d (4096, say)", ErrConfig, c.NumFrames, maxNumFrames)
	case c.TxFrames < 0 || c.TxFrames > c.NumFrames || (!c.TxOnly && c.TxFrames == c.NumFrames):
		return c, fmt.Errorf("%w: TxFrames %d of %d UMEM frames leaves none for receiving", ErrConfig, c.TxFrames, c.NumFrames)
	case c.TxFrames > 0 && c.TxRingSize == 0:
		return c, fmt.Errorf("%w: TxFrames %d without a TX ring: set TxRingSize", ErrConfig, c.TxFrames)
	case c.ForceCopy && c.ForceZeroCopy:
		return c, fmt.Errorf("%w: ForceCopy and ForceZeroCopy both set", ErrConfig)
	case c.BusyPollTimeout < 0 || c.BusyPollBudget < 0 || c.SpinChecks < 0:
		return c, fmt.Errorf("%w: negative busy-poll timeout, budget or spin count", ErrConfig)
	case c.SpinFor < 0 || c.SpinFor > maxSpinFor:
		return c, fmt.Errorf("%w: SpinFor %v: want 0 (off) up to %v (%v, say)", ErrConfig, c.SpinFor, maxSpinFor, LowLatencySpin)
	case c.Nap > time.Millisecond:
		return c, fmt.Errorf("%w: nap %v: at most 1ms (a longer nap only adds latency: poll() takes over after it)", ErrConfig, c.Nap)
	}
	for _, r := range []struct {
		name string
		n    int
		zero bool // may be 0
	}{
		{"fill", c.FillRingSize, false},
		{"completion", c.CompletionRingSize, false},
		{"RX", c.RxRingSize, c.TxOnly},
		{"TX", c.TxRingSize, true},
	} {
		if r.n == 0 && r.zero {
			continue
		}
		if !isPow2(r.n) || r.n > maxRingSize {
			return c, fmt.Errorf("%w: %s ring size %d: must be a power of two up to %d", ErrConfig, r.name, r.n, maxRingSize)
		}
	}
	for _, q := range c.Queues {
		if q < 0 {
			return c, fmt.Errorf("%w: negative queue %d", ErrConfig, q)
		}
	}
	return c, nil
}

// rxFrames is how many UMEM frames receive.
func (c Config) rxFrames() int { return c.NumFrames - c.TxFrames }
