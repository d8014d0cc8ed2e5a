package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync/atomic"
	"time"

	"github.com/xdpingest/xdpingest/datapath"
)

// Sink is one destination for datagrams, with one Writer per worker.
//
// The contract, which every implementation keeps:
//
//   - Writer(i) for i in [0, Options.Workers) returns worker i's Writer
//     (calls with the same i return Writers sharing one state). Each Writer
//     is used by one goroutine at a time.
//   - Stats and Name may be called from any goroutine at any time.
//   - Close is called once, after the last Write and Flush returned (the
//     caller stops its sink goroutines first). It flushes every Writer,
//     makes written data durable (fsync, acknowledgements) within
//     Options.CloseTimeout, counts what it could not deliver as dropped with a
//     reason, and releases every resource. A non-nil error says something was
//     lost or could not be made durable; the counters say how much.
//   - Every datagram passed to Write is accounted for: at any time
//     Offered = Written + InFlight + the sum of Dropped, and after Close
//     InFlight is 0. (The counters are read one after another, so a reading
//     taken while writers run may be off by the datagrams of one batch.)
type Sink interface {
	// Name identifies the sink in logs and metric labels, without
	// credentials: "pcap:./capture", "nats://host:4222/ingest", ...
	Name() string
	Writer(worker int) Writer
	Stats() Stats
	Close() error
}

// Writer is one worker's handle on a Sink.
type Writer interface {
	// Write takes a batch of datagrams. The datagrams and the memory behind
	// them are valid only during the call: a Writer copies what it keeps.
	// Write accounts for every datagram whatever it returns; a non-nil error
	// reports a failure worth logging (a file that could not be written, a
	// sink that is closed), and the datagrams it concerns are already
	// counted as dropped. The caller logs it (rate-limited) and goes on.
	Write(dgs []datapath.Datagram) error
	// Flush hands what the Writer buffers to its destination (a write(2)
	// for pcap, a publish for a partial NATS batch). The caller calls it
	// when its input runs dry, and at least every second or so while idle:
	// that is also when an idle pcap file is closed on max_age.
	Flush() error
}

// Aborter is implemented by sinks whose Write can wait: for room in a
// backlog, for a broker's acknowledgements. Abort, called from any goroutine
// when the drain at shutdown has run out of time, makes every Write and Flush
// in progress or to come return promptly, counting what they did not deliver
// as dropped. Close is still called afterwards, once every Write returned.
type Aborter interface {
	Abort()
}

// Connector is implemented by sinks whose destination can be up or down
// (a broker, a disk): Connected reports whether the sink can deliver now.
// Safe from any goroutine. A sink without it is always up.
type Connector interface {
	Connected() bool
}

// Stats are a sink's counters since Open. Every field but InFlight only
// grows.
type Stats struct {
	// Offered counts datagrams passed to Write.
	Offered uint64
	// Written counts datagrams the destination took: written to the file
	// (write(2) returned; fsync follows on rotation and Close),
	// acknowledged by JetStream, accepted by sendmmsg, or counted by discard.
	Written uint64
	// WrittenBytes counts the UDP payload bytes of the Written datagrams.
	WrittenBytes uint64
	// InFlight counts datagrams taken but not yet written or dropped: in a
	// write buffer, in a NATS batch being filled, or published and waiting
	// for an acknowledgement or a retry.
	InFlight uint64
	// Dropped counts datagrams given up on, by reason. Every reason the sink
	// can report is present, with zero until it happens, so that metrics
	// exist before the first loss. The reasons of each sink are listed in
	// docs/SINKS.md.
	Dropped map[string]uint64
	// Errors counts failed operations (a write, an open, a publish, a
	// send). One error may drop many datagrams (a failed write of a buffer)
	// or none (a publish that a retry later delivers).
	Errors uint64
}

// DroppedTotal returns the sum of s.Dropped.
func (s Stats) DroppedTotal() uint64 {
	var n uint64
	for _, v := range s.Dropped {
		n += v
	}
	return n
}

// Add returns the field-wise sum of s and o.
func (s Stats) Add(o Stats) Stats {
	d := make(map[string]uint64, len(s.Dropped)+len(o.Dropped))
	maps.Copy(d, s.Dropped)
	for k, v := range o.Dropped {
		d[k] += v
	}
	s.Dropped = d
	s.Offered += o.Offered
	s.Written += o.Written
	s.WrittenBytes += o.WrittenBytes
	s.InFlight += o.InFlight
	s.Errors += o.Errors
	return s
}

// Options are the settings of Open that are not part of a sink's URL.
type Options struct {
	// Workers is the number of Writers (default 1).
	Workers int
	// Logger receives the sinks' state changes: files finished, connection
	// lost and back, the first error of a run. Nothing per datagram. Nil
	// discards.
	Logger *slog.Logger
	// CloseTimeout bounds how long Close waits for outstanding NATS
	// acknowledgements (default 3s). Whatever is unacknowledged then is
	// counted as dropped ("closed").
	CloseTimeout time.Duration
}

const defaultCloseTimeout = 3 * time.Second

func (o Options) withDefaults() Options {
	if o.Workers <= 0 {
		o.Workers = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = defaultCloseTimeout
	}
	return o
}

// ErrClosed is returned (wrapped) by Write and Flush after Close.
var ErrClosed = errors.New("sink closed")

// Open makes the sink spec describes, ready to write: the pcap directory
// exists and is writable, the NATS connection is up and the stream found or
// created, the UDP sockets are connected (in the network namespace of the
// calling thread). ctx bounds the setup only.
func Open(ctx context.Context, spec Spec, opts Options) (Sink, error) {
	opts = opts.withDefaults()
	switch spec.Kind {
	case KindDiscard:
		return newDiscard(opts), nil
	case KindPcap:
		return openPcap(spec.Pcap, opts)
	case KindNATS:
		return openNATS(ctx, spec.NATS, opts)
	case KindUDP:
		return openUDP(spec.UDP, opts)
	case KindKafka:
		return openKafka(ctx, spec.Kafka, opts)
	}
	return nil, fmt.Errorf("can't open sink of kind %q: %w", spec.Kind, errUnknownKind)
}

var errUnknownKind = errors.New("unknown sink kind: use Parse to make a Spec")

// OpenAll opens every spec in order. When one fails it closes those already
// open and returns the error.
func OpenAll(ctx context.Context, specs []Spec, opts Options) ([]Sink, error) {
	var out []Sink
	for _, sp := range specs {
		s, err := Open(ctx, sp, opts)
		if err != nil {
			for _, o := range out {
				_ = o.Close()
			}
			return nil, fmt.Errorf("can't open sink %s: %w", sp, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// counters are one accounting unit: a Writer's (pcap, udp, discard) or a
// whole sink's (nats, where acknowledgements arrive on other goroutines).
// The padding keeps two workers' counters off one cache line.
type counters struct {
	_            [64]byte
	offered      atomic.Uint64
	written      atomic.Uint64
	writtenBytes atomic.Uint64
	inFlight     atomic.Uint64
	errors       atomic.Uint64
	dropped      [maxReasons]atomic.Uint64
	_            [64]byte
}

const maxReasons = 8

// reasons names a sink's drop reasons; the index into it is the index into
// counters.dropped.
type reasons []string

func (c *counters) drop(r int, n uint64) { c.dropped[r].Add(n) }

// stats sums cs into a Stats naming the reasons rs.
func stats(rs reasons, cs ...*counters) Stats {
	s := Stats{Dropped: make(map[string]uint64, len(rs))}
	for _, r := range rs {
		s.Dropped[r] = 0
	}
	for _, c := range cs {
		// Read the outcomes before Offered, so that a concurrent writer
		// can only make Offered look larger than the rest, never smaller.
		s.Written += c.written.Load()
		s.WrittenBytes += c.writtenBytes.Load()
		s.InFlight += c.inFlight.Load()
		s.Errors += c.errors.Load()
		for i, r := range rs {
			s.Dropped[r] += c.dropped[i].Load()
		}
		s.Offered += c.offered.Load()
	}
	return s
}

// payloadBytes returns the total payload length of dgs.
func payloadBytes(dgs []datapath.Datagram) uint64 {
	var n uint64
	for i := range dgs {
		n += uint64(len(dgs[i].Payload))
	}
	return n
}

// MultiSink fans every datagram out to several sinks. Each part keeps its own
// counters (Parts); Stats returns their sum, in which a datagram is offered
// once per part.
type MultiSink struct {
	parts []Sink
	name  string
}

// Multi returns a Sink that writes to every one of sinks, which must have
// been opened with the same number of workers.
func Multi(sinks ...Sink) *MultiSink {
	m := &MultiSink{parts: sinks}
	names := make([]string, len(sinks))
	for i, s := range sinks {
		names[i] = s.Name()
	}
	m.name = strings.Join(names, ",")
	return m
}

// Parts returns the sinks m writes to.
func (m *MultiSink) Parts() []Sink { return m.parts }

// Name joins the parts' names with commas.
func (m *MultiSink) Name() string { return m.name }

// Writer returns worker's writer, which writes to each part in turn. It is
// stateless: the parts' writers hold the state.
func (m *MultiSink) Writer(worker int) Writer {
	ws := make(multiWriter, len(m.parts))
	for i, p := range m.parts {
		ws[i] = p.Writer(worker)
	}
	return ws
}

// Stats returns the sum of the parts' counters.
func (m *MultiSink) Stats() Stats {
	var s Stats
	for _, p := range m.parts {
		s = s.Add(p.Stats())
	}
	return s
}

// Close closes every part and joins their errors.
func (m *MultiSink) Close() error {
	var errs []error
	for _, p := range m.parts {
		if err := p.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.Name(), err))
		}
	}
	return errors.Join(errs...)
}

type multiWriter []Writer

func (ws multiWriter) Write(dgs []datapath.Datagram) error {
	var first error
	for _, w := range ws {
		if err := w.Write(dgs); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (ws multiWriter) Flush() error {
	var first error
	for _, w := range ws {
		if err := w.Flush(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

var _ Sink = (*MultiSink)(nil)
