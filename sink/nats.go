package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/sink/natsmsg"
)

// The NATS sink publishes to JetStream asynchronously and keeps every
// message it published until JetStream acknowledges it. What fails in a way
// a retry can fix (connection lost, acknowledgement timed out, no stream
// responding during a server restart) is published again, with the same
// Nats-Msg-Id so that the stream stores it once, until RetryFor has passed
// since its first publish. The messages held (published and unacknowledged,
// or waiting for a retry) are bounded by MaxInFlight and MaxBufferBytes: when
// the bound is reached, Write waits up to MaxWait for room while connected,
// and drops at once while disconnected. nats.go's own reconnect buffer is
// off, so that there is one buffer and one bound, and every message in it is
// counted.

var natsReasons = reasons{"not_connected", "backlog_full", "ack_timeout", "publish_failed", "rejected", "closed", "shutdown"}

const (
	natsNotConnected  = iota // backlog full while disconnected, or still disconnected at the end of RetryFor
	natsBacklogFull          // backlog full for MaxWait while connected
	natsAckTimeout           // RetryFor ran out; the last attempt's acknowledgement timed out
	natsPublishFailed        // RetryFor ran out; the last attempt failed otherwise
	natsRejected             // JetStream refused the message (limits, payload size): no retry helps
	natsClosed               // still unacknowledged when Close gave up, or written after Close
	natsShutdown             // backlog full after Abort: the drain at shutdown ran out of time
)

const (
	// natsMsgOverhead is what a message's headers and bookkeeping cost
	// beyond its data, for the MaxBufferBytes bound.
	natsMsgOverhead = 256
	// natsRetryTick is how often the retrier looks at its queue without
	// being woken: expiry and backoff run on it.
	natsRetryTick = 100 * time.Millisecond
	// natsRetryRound is the most messages one retry round publishes before
	// it yields to writers.
	natsRetryRound = 1024
	natsFreeBufs   = 256
)

type natsSink struct {
	spec NATSSpec
	opts Options
	log  *slog.Logger
	nc   *nats.Conn
	js   jetstream.JetStream
	// maxData bounds a batch's data, below the server's max_payload.
	maxData int
	// template: the subject holds {dport}.
	template bool

	c         counters // shared: acknowledgements arrive on nats.go's goroutines
	connected atomic.Bool
	closing   atomic.Bool
	aborting  atomic.Bool // Write no longer waits for room: see Abort

	mu        sync.Mutex
	pending   map[*nats.Msg]*natsOut // published, waiting for the acknowledgement
	retryQ    []*natsOut             // waiting to be published again, oldest first
	held      int                    // messages in pending and retryQ
	heldBytes int
	room      roomSignal // Writes and Close waiting for held to shrink
	closed    bool

	kick     chan struct{} // wakes the retrier
	stop     chan struct{} // stops the retrier
	stopped  chan struct{}
	freeBufs chan []byte

	writers []*natsWriter
}

// natsOut is one message and what it carries.
type natsOut struct {
	msg       *nats.Msg
	n         uint64 // datagrams
	bytes     uint64 // their payload bytes
	size      int    // for MaxBufferBytes
	deadline  time.Time
	notBefore time.Time
	attempts  int
	lastErr   error
}

type natsWriter struct {
	s        *natsSink
	idPrefix string
	seq      uint64
	// The batches being filled (batch mode), oldest first: one at most, or
	// with a subject template one per destination port, at most
	// natsMaxOpenBatches. ports[i] is the port of open[i] (0 without a
	// template), apart so that the search per datagram reads one array.
	open  []*natsBatch
	ports []uint16
	free  []*natsBatch
	// subjects holds the subject of each port seen (template only).
	subjects map[uint16]string
}

// natsBatch is a message being filled with datagrams.
type natsBatch struct {
	subject string
	buf     []byte
	count   int
	bytes   uint64
}

// natsMaxOpenBatches bounds the batches a writer fills at once with a
// subject template (one per port): past it, the oldest is published as it
// is, so that datagrams to many ports cost at most this many buffers.
const natsMaxOpenBatches = 64

func openNATS(ctx context.Context, spec NATSSpec, opts Options) (*natsSink, error) {
	s := &natsSink{
		spec: spec, opts: opts, template: spec.IsTemplate(),
		log:      opts.Logger.With("sink", spec.name()),
		pending:  make(map[*nats.Msg]*natsOut),
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
		freeBufs: make(chan []byte, natsFreeBufs),
	}
	connectTimeout := nats.GetDefaultOptions().Timeout
	if dl, ok := ctx.Deadline(); ok {
		connectTimeout = max(time.Until(dl), time.Millisecond)
	}
	security, err := spec.securityOptions()
	if err != nil {
		return nil, fmt.Errorf("can't set up the connection to NATS at %s: %w", spec.addrs(), err)
	}
	if what := spec.InlineSecret(); what != "" {
		s.log.Warn("the sink URL holds a "+what+", which ps, shell history and unit files show: give it as "+what+"=file:PATH or "+what+"=env:NAME instead",
			"sink", spec.name())
	}
	nc, err := nats.Connect(spec.serverURLs(), append(security,
		nats.Name("xdpingest"),
		nats.Timeout(connectTimeout),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(reconnectDelay),
		// Off: a second, uncounted buffer. Publishes while disconnected
		// fail at once and wait in our queue instead.
		nats.ReconnectBufSize(-1),
		nats.PingInterval(5*time.Second),
		nats.MaxPingsOutstanding(3),
		nats.FlusherTimeout(2*time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			s.connected.Store(false)
			if s.closing.Load() {
				return // our own Close
			}
			s.log.Warn("NATS connection lost: holding messages for retry", "err", err, "max_inflight", spec.MaxInFlight)
		}),
		// nats.go prints asynchronous errors (a write to a dead
		// connection, a slow consumer) to stderr unless told otherwise.
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			s.log.Warn("NATS asynchronous error", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			s.connected.Store(true)
			s.log.Info("NATS reconnected", "server", nc.ConnectedUrlRedacted())
			s.wake()
		}),
	)...)
	if err != nil {
		return nil, spec.connectError(err)
	}
	s.nc = nc
	s.connected.Store(true)
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncAckHandler(s.onAck),
		jetstream.WithPublishAsyncErrHandler(s.onErr),
		// Our own bound is the real one; nats.go's must never stall us.
		jetstream.WithPublishAsyncMaxPending(spec.MaxInFlight+1),
		jetstream.WithPublishAsyncTimeout(spec.AckTimeout),
	)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("can't use JetStream on %s: %w", spec.addrs(), err)
	}
	s.js = js
	if err := s.setupStream(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	s.maxData = max(int(nc.MaxPayload())-1024, 1024) // room for the headers
	prefix := nuid.Next()
	s.writers = make([]*natsWriter, opts.Workers)
	for i := range s.writers {
		s.writers[i] = &natsWriter{s: s, idPrefix: prefix + "." + strconv.Itoa(i) + "."}
	}
	go s.retrier()
	return s, nil
}

// serverURLs is the seed list as nats.Connect takes it. The credentials and
// the TLS settings go in options instead (securityOptions), so that every
// seed and every server the cluster announces gets them: nats.go gives
// those of a URL to that URL only.
func (n NATSSpec) serverURLs() string {
	urls := make([]string, len(n.Servers))
	for i, s := range n.Servers {
		urls[i] = n.scheme() + "://" + s
	}
	return strings.Join(urls, ",")
}

// reconnectDelay backs off from 100 ms to 2 s, with up to 25% jitter so that
// a fleet of ingest hosts does not reconnect in step.
func reconnectDelay(attempts int) time.Duration {
	d := min(100*time.Millisecond<<min(max(attempts-1, 0), 5), 2*time.Second)
	return d + rand.N(d/4+1)
}

// setupStream finds the stream that will store the subject, creating the
// named one if needed, so that a misconfiguration fails Open rather than
// every publish.
func (s *natsSink) setupStream(ctx context.Context) error {
	subj := s.spec.StreamSubject() // flows.* for flows.{dport}
	if s.spec.Stream == "" {
		if s.spec.IsTemplate() {
			return s.findTemplateStream(ctx, subj)
		}
		_, err := s.js.StreamNameBySubject(ctx, subj)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("no JetStream stream on %s captures subject %s: create one, or add ?stream=NAME to the sink URL to have it created", s.spec.addrs(), subj)
		}
		if err != nil {
			return fmt.Errorf("can't look up the stream of subject %s on %s: %w", subj, s.spec.addrs(), err)
		}
		return nil
	}
	name := s.spec.Stream
	st, err := s.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = s.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:     name,
			Subjects: []string{subj},
			Storage:  jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // another host was first
			st, err = s.js.Stream(ctx, name)
		}
		if err == nil {
			s.log.Info("created JetStream stream", "stream", name, "subject", subj)
		}
	}
	if err != nil {
		return fmt.Errorf("can't find or create JetStream stream %s on %s: %w", name, s.spec.addrs(), err)
	}
	if subs := st.CachedInfo().Config.Subjects; !subjectsCover(subs, subj) {
		return fmt.Errorf("JetStream stream %s captures %v, not %s: add the subject to the stream, or publish to one it captures", name, subs, subj)
	}
	return nil
}

// findTemplateStream checks that one stream captures every subject of the
// template, subj with * for {dport}. JetStream's lookup by subject also
// names the streams that capture only some of them (flows.2055 for
// flows.*), where the other ports' messages would find no stream.
func (s *natsSink) findTemplateStream(ctx context.Context, subj string) error {
	names := s.js.StreamNames(ctx, jetstream.WithStreamListSubject(subj))
	var partial []string
	for name := range names.Name() {
		st, err := s.js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("can't look up JetStream stream %s on %s: %w", name, s.spec.addrs(), err)
		}
		if subjectsCover(st.CachedInfo().Config.Subjects, subj) {
			return nil
		}
		partial = append(partial, name)
	}
	if err := names.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return fmt.Errorf("can't look up the streams of subject %s on %s: %w", subj, s.spec.addrs(), err)
	}
	if len(partial) > 0 {
		verb := "captures"
		if len(partial) > 1 {
			verb = "capture"
		}
		return fmt.Errorf("no JetStream stream on %s captures every subject of %s (%s): %s %s only some; make one capture %s, or add ?stream=NAME to have one created",
			s.spec.addrs(), s.spec.Subject, subj, strings.Join(partial, ", "), verb, subj)
	}
	return fmt.Errorf("no JetStream stream on %s captures the subjects of %s (%s): create one, or add ?stream=NAME to the sink URL to have it created", s.spec.addrs(), s.spec.Subject, subj)
}

// subjectsCover says whether one of the patterns (with * and > wildcards)
// matches subject.
func subjectsCover(patterns []string, subject string) bool {
	toks := strings.Split(subject, ".")
	for _, p := range patterns {
		pt := strings.Split(p, ".")
		for i, t := range pt {
			if t == ">" {
				if i < len(toks) {
					return true
				}
				break
			}
			if i >= len(toks) || (t != "*" && t != toks[i]) {
				break
			}
			if i == len(pt)-1 && len(pt) == len(toks) {
				return true
			}
		}
	}
	return false
}

func (s *natsSink) Name() string             { return s.spec.name() }
func (s *natsSink) Writer(worker int) Writer { return s.writers[worker] }
func (s *natsSink) Stats() Stats             { return stats(natsReasons, &s.c) }

func (w *natsWriter) Write(dgs []datapath.Datagram) error {
	if len(dgs) == 0 {
		return nil
	}
	s := w.s
	n := uint64(len(dgs))
	s.c.offered.Add(n)
	if s.closing.Load() {
		s.c.drop(natsClosed, n)
		return fmt.Errorf("can't publish to %s: %w", s.Name(), ErrClosed)
	}
	s.c.inFlight.Add(n)
	var first error
	note := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	if s.spec.Batch <= 1 {
		for i := range dgs {
			note(w.publishOne(&dgs[i]))
		}
		return first
	}
	for i := range dgs {
		d := &dgs[i]
		port := d.Dst.Port()
		k := w.batchFor(port, note)
		b := w.open[k]
		if b.count > 0 && len(b.buf)+natsmsg.RecordLen(d) > s.maxData {
			note(w.publishBatch(k))
			k = w.batchFor(port, note)
			b = w.open[k]
		}
		b.buf = natsmsg.AppendRecord(b.buf, d)
		b.count++
		b.bytes += uint64(len(d.Payload))
		if b.count >= s.spec.Batch {
			note(w.publishBatch(k))
		}
	}
	return first
}

// batchFor returns the index in w.open of the batch for datagrams to port,
// opening one if needed; the error of publishing the oldest to make room
// goes to note.
func (w *natsWriter) batchFor(port uint16, note func(error)) int {
	if !w.s.template {
		port = 0
	}
	for k, p := range w.ports {
		if p == port {
			return k
		}
	}
	if len(w.open) >= natsMaxOpenBatches {
		note(w.publishBatch(0))
	}
	var b *natsBatch
	if n := len(w.free); n > 0 {
		b, w.free = w.free[n-1], w.free[:n-1]
	} else {
		b = new(natsBatch)
	}
	b.subject = w.subject(port)
	b.buf = natsmsg.AppendBatchHeader(w.s.getBuf())
	w.open = append(w.open, b)
	w.ports = append(w.ports, port)
	return len(w.open) - 1
}

// subject returns the subject of datagrams to port.
func (w *natsWriter) subject(port uint16) string {
	if !w.s.template {
		return w.s.spec.Subject
	}
	subj, ok := w.subjects[port]
	if !ok {
		if w.subjects == nil {
			w.subjects = make(map[uint16]string)
		}
		subj = w.s.spec.SubjectFor(port)
		w.subjects[port] = subj
	}
	return subj
}

// Flush publishes the partial batches, oldest first.
func (w *natsWriter) Flush() error {
	var first error
	for len(w.open) > 0 {
		if err := w.publishBatch(0); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (w *natsWriter) nextID() string {
	w.seq++
	return w.idPrefix + strconv.FormatUint(w.seq, 10)
}

func (w *natsWriter) publishOne(d *datapath.Datagram) error {
	s := w.s
	data := append(s.getBuf(), d.Payload...)
	h := make(nats.Header, 6)
	natsmsg.SetHeaders(h, d)
	h[natsmsg.HeaderMsgID] = []string{w.nextID()}
	return s.submit(&natsOut{
		msg:  &nats.Msg{Subject: w.subject(d.Dst.Port()), Header: h, Data: data},
		n:    1,
		size: len(data) + natsMsgOverhead, bytes: uint64(len(d.Payload)),
	})
}

// publishBatch publishes w.open[k] and takes it out of w.open.
func (w *natsWriter) publishBatch(k int) error {
	b := w.open[k]
	w.open = slices.Delete(w.open, k, k+1)
	w.ports = slices.Delete(w.ports, k, k+1)
	defer func() {
		*b = natsBatch{}
		w.free = append(w.free, b)
	}()
	s := w.s
	if b.count == 0 {
		s.putBuf(b.buf)
		return nil
	}
	natsmsg.SetBatchCount(b.buf, b.count)
	h := nats.Header{
		natsmsg.HeaderBatch: []string{strconv.Itoa(b.count)},
		natsmsg.HeaderMsgID: []string{w.nextID()},
	}
	return s.submit(&natsOut{
		msg:  &nats.Msg{Subject: b.subject, Header: h, Data: b.buf},
		n:    uint64(b.count),
		size: len(b.buf) + natsMsgOverhead, bytes: b.bytes,
	})
}

func (s *natsSink) getBuf() []byte {
	select {
	case b := <-s.freeBufs:
		return b[:0]
	default:
		if s.spec.Batch > 1 {
			return make([]byte, 0, min(s.maxData, s.spec.Batch*256))
		}
		return nil
	}
}

func (s *natsSink) putBuf(b []byte) {
	select {
	case s.freeBufs <- b:
	default:
	}
}

// submit takes a message into the backlog and publishes it, or drops it
// when the backlog stays full.
func (s *natsSink) submit(out *natsOut) error {
	s.mu.Lock()
	var timer *time.Timer
	for !s.closed && s.held > 0 && (s.held >= s.spec.MaxInFlight || s.heldBytes+out.size > s.spec.MaxBufferBytes) {
		reason := natsBacklogFull
		if s.aborting.Load() {
			reason = natsShutdown
		} else if !s.connected.Load() {
			reason = natsNotConnected
		} else if s.spec.MaxWait > 0 && timer == nil {
			timer = time.NewTimer(s.spec.MaxWait)
			defer timer.Stop()
		}
		if reason == natsBacklogFull && timer != nil {
			room := s.room.wait()
			s.mu.Unlock()
			select {
			case <-room:
				s.mu.Lock()
				continue
			case <-timer.C:
			}
		} else {
			s.mu.Unlock()
		}
		s.dropOut(out, reason)
		return fmt.Errorf("can't publish to %s: backlog full (max_inflight=%d, max_buffer_mb=%d): dropped %d datagrams (%s)",
			s.Name(), s.spec.MaxInFlight, s.spec.MaxBufferBytes>>20, out.n, natsReasons[reason])
	}
	if s.closed {
		s.mu.Unlock()
		s.dropOut(out, natsClosed)
		return fmt.Errorf("can't publish to %s: %w", s.Name(), ErrClosed)
	}
	s.held++
	s.heldBytes += out.size
	out.deadline = time.Now().Add(s.spec.RetryFor)
	if !s.connected.Load() || len(s.retryQ) > 0 {
		// Behind the backlog, to keep the order.
		s.retryQ = append(s.retryQ, out)
		s.mu.Unlock()
		s.wake()
		return nil
	}
	s.pending[out.msg] = out // before publishing: the ack may come first
	s.mu.Unlock()
	s.publish(out)
	return nil
}

func (s *natsSink) publish(out *natsOut) {
	if _, err := s.js.PublishMsgAsync(out.msg); err != nil {
		s.onErr(s.js, out.msg, err)
	}
}

func (s *natsSink) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// release takes out out of the backlog's bounds. s.mu is held.
func (s *natsSink) release(out *natsOut) {
	s.held--
	s.heldBytes -= out.size
	s.room.wake()
}

func (s *natsSink) onAck(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) {
	s.mu.Lock()
	out := s.pending[m]
	if out == nil {
		s.mu.Unlock()
		return
	}
	delete(s.pending, m)
	// A duplicate ack (the stream had it from an attempt whose ack was
	// lost) is a success like any other: the stream holds the message once.
	// Count before release, under the lock: Close returns once nothing is
	// held, and the counters must be final by then.
	s.c.written.Add(out.n)
	s.c.writtenBytes.Add(out.bytes)
	s.c.inFlight.Add(-out.n)
	s.release(out)
	s.mu.Unlock()
	s.putBuf(m.Data)
}

// onErr handles a failed publish, from nats.go's goroutines (ack timeout,
// connection lost, error reply) or from publish. It may run with nats.go's
// publisher lock held, so it only queues: the retrier publishes.
func (s *natsSink) onErr(_ jetstream.JetStream, m *nats.Msg, err error) {
	s.mu.Lock()
	out := s.pending[m]
	if out == nil {
		s.mu.Unlock()
		return
	}
	delete(s.pending, m)
	s.c.errors.Add(1)
	out.lastErr = err
	if retriable(err) && !s.closed && time.Now().Before(out.deadline) {
		out.notBefore = time.Now().Add(retryBackoff(out.attempts))
		s.retryQ = append(s.retryQ, out)
		s.mu.Unlock()
		s.wake()
		return
	}
	reason := natsRejected
	if retriable(err) {
		reason = expiredReason(err)
	}
	s.dropOut(out, reason)
	s.release(out)
	s.mu.Unlock()
	s.log.Debug("NATS publish failed", "err", err, "datagrams", out.n, "reason", natsReasons[reason])
}

func retryBackoff(attempts int) time.Duration {
	return min(50*time.Millisecond<<min(attempts, 6), 2*time.Second)
}

// retriable says whether publishing again may succeed: the connection, the
// server or the stream leader may be back by then. An error reply from
// JetStream (limits, size) is final, except "temporarily unavailable".
func retriable(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		return api.Code == 503
	}
	return !errors.Is(err, nats.ErrMaxPayload) && !errors.Is(err, nats.ErrBadSubject) &&
		!errors.Is(err, nats.ErrHeadersNotSupported) && !errors.Is(err, jetstream.ErrInvalidJSAck)
}

// expiredReason is the drop reason of a message whose retries ran out.
func expiredReason(last error) int {
	switch {
	case last == nil, errors.Is(last, nats.ErrDisconnected), errors.Is(last, nats.ErrReconnectBufExceeded),
		errors.Is(last, nats.ErrConnectionReconnecting), errors.Is(last, nats.ErrConnectionClosed),
		errors.Is(last, nats.ErrNoServers):
		return natsNotConnected
	case errors.Is(last, jetstream.ErrAsyncPublishTimeout):
		return natsAckTimeout
	}
	return natsPublishFailed
}

func (s *natsSink) dropOut(out *natsOut, reason int) {
	s.c.drop(reason, out.n)
	s.c.inFlight.Add(-out.n)
}

// retrier publishes the retry queue while connected, and expires what waited
// longer than RetryFor.
func (s *natsSink) retrier() {
	defer close(s.stopped)
	t := time.NewTicker(natsRetryTick)
	defer t.Stop()
	var batch, expired []*natsOut
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		case <-t.C:
		}
		now := time.Now()
		batch, expired = batch[:0], expired[:0]
		s.mu.Lock()
		keep := s.retryQ[:0]
		connected := s.connected.Load()
		for _, o := range s.retryQ {
			switch {
			case now.After(o.deadline):
				expired = append(expired, o)
				s.release(o)
			case connected && len(batch) < natsRetryRound && !now.Before(o.notBefore):
				batch = append(batch, o)
				o.attempts++
				s.pending[o.msg] = o
			default:
				keep = append(keep, o)
			}
		}
		clear(s.retryQ[len(keep):])
		s.retryQ = keep
		more := connected && len(batch) == natsRetryRound
		s.mu.Unlock()
		for _, o := range expired {
			s.dropOut(o, expiredReason(o.lastErr))
		}
		if len(expired) > 0 {
			s.log.Warn("NATS messages dropped after retrying", "messages", len(expired), "retry_for", s.spec.RetryFor)
		}
		for _, o := range batch {
			s.publish(o)
		}
		if more {
			s.wake()
		}
	}
}

// Connected reports whether the connection to NATS is up.
func (s *natsSink) Connected() bool { return s.connected.Load() && !s.closing.Load() }

var _ Connector = (*natsSink)(nil)

// Abort makes Write stop waiting for room in a full backlog: from now on
// what doesn't fit is dropped at once ("shutdown"). Messages already held
// stay for Close to wait on. Safe from any goroutine.
func (s *natsSink) Abort() {
	s.aborting.Store(true)
	s.mu.Lock()
	s.room.wake()
	s.mu.Unlock()
}

var _ Aborter = (*natsSink)(nil)

// Close publishes the writers' partial batches, waits up to CloseTimeout for
// the backlog to be acknowledged, counts the rest as dropped ("closed") and
// closes the connection.
func (s *natsSink) Close() error {
	if s.closing.Swap(true) {
		return nil
	}
	var errs []error
	for _, w := range s.writers {
		if err := w.Flush(); err != nil {
			errs = append(errs, err)
		}
	}
	deadline := time.NewTimer(s.opts.CloseTimeout)
	defer deadline.Stop()
	s.mu.Lock()
	for s.held > 0 {
		room := s.room.wait()
		s.mu.Unlock()
		timedOut := false
		select {
		case <-room:
		case <-deadline.C:
			timedOut = true
		}
		s.mu.Lock()
		if timedOut {
			break
		}
	}
	s.mu.Unlock()
	// Stop the retrier first, so that it publishes nothing we are about to
	// count as lost.
	close(s.stop)
	<-s.stopped
	s.mu.Lock()
	s.closed = true
	lost := s.retryQ
	for _, o := range s.pending {
		lost = append(lost, o)
	}
	s.retryQ, s.pending, s.held, s.heldBytes = nil, map[*nats.Msg]*natsOut{}, 0, 0
	s.mu.Unlock()
	var msgs, dgs uint64
	for _, o := range lost {
		s.dropOut(o, natsClosed)
		msgs++
		dgs += o.n
	}
	s.js.CleanupPublisher()
	s.nc.Close()
	if msgs > 0 {
		errs = append(errs, fmt.Errorf("%s: %d messages (%d datagrams) still unacknowledged after %v: counted as dropped (closed)",
			s.Name(), msgs, dgs, s.opts.CloseTimeout))
	}
	return errors.Join(errs...)
}
