package sink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/sink/natsmsg"
)

// The Kafka sink hands records to franz-go's producer, which batches them
// per partition, retries what a retry can fix and, with acks=all, is
// idempotent: the brokers store a record once however often it is sent.
// The sink keeps its own bound on the records taken and not yet answered
// (MaxInFlight, MaxBufferBytes), as the NATS sink does, so that Write can
// wait for room for at most MaxWait, not wait at all while a broker can't be
// reached, and stop waiting on Abort; franz-go's own bound is set above it
// and never blocks. Each record's promise counts it written (acknowledged)
// or dropped with a reason.

// Header names of a record. Those the NATS sink uses too have its names
// (natsmsg); their values are text as there.
const (
	// KafkaHeaderQueue is the receive queue (AF_XDP) or worker (kernel
	// path) that delivered the datagram, decimal.
	KafkaHeaderQueue = "Xdpi-Queue"
	// KafkaHeaderPath is the receive path: "afxdp" or "kernel".
	KafkaHeaderPath = "Xdpi-Path"
)

var kafkaReasons = reasons{"broker_unreachable", "unknown_topic", "record_too_large", "backlog_full", "rejected", "produce_failed", "closed", "shutdown"}

const (
	kafkaUnreachable   = iota // retry_for ran out, or the backlog was full, while a broker could not be reached
	kafkaUnknownTopic         // the topic does not exist and the brokers did not create it
	kafkaTooLarge             // larger than the brokers or the producer take (message.max.bytes)
	kafkaBacklogFull          // backlog full for max_wait while the brokers were reachable
	kafkaRejected             // a broker refused the record (authorization, policy, invalid): no retry helps
	kafkaProduceFailed        // retry_for ran out while the brokers were reachable, or another failure
	kafkaClosed               // still unanswered when Close gave up, or written after Close
	kafkaShutdown             // backlog full after Abort: the drain at shutdown ran out of time
)

const (
	// kafkaRecOverhead is what a record costs beyond its key, value and
	// headers, for the MaxBufferBytes bound.
	kafkaRecOverhead = 128
	// kafkaBatchValueMax bounds a batch record's value, below franz-go's
	// and Kafka's default largest batch (1,000,012 bytes, max.message.bytes).
	kafkaBatchValueMax = 1_000_012 - 16<<10
	// kafkaMaxOpenBatches is how many batches (one per exporter and topic)
	// a writer fills at once; one more exporter sends them all.
	kafkaMaxOpenBatches = 256
	// kafkaOpenTimeout bounds Open's first contact with the brokers when
	// its context has no deadline.
	kafkaOpenTimeout = 10 * time.Second
)

var (
	pathAFXDP  = []byte("afxdp")
	pathKernel = []byte("kernel")
)

type kafkaSink struct {
	spec KafkaSpec
	opts Options
	log  *slog.Logger
	cl   *kgo.Client

	c        counters // shared: promises run on franz-go's goroutine
	closing  atomic.Bool
	aborting atomic.Bool

	downMu sync.Mutex
	down   map[int32]error // brokers whose last connection attempt failed
	nDown  atomic.Int32
	// connErr is the last failed connection attempt's error, seeds'
	// included, for Open to say why when it times out.
	connErr error

	mu        sync.Mutex
	held      int // records taken and not yet answered
	heldBytes int
	room      roomSignal // Writes waiting for held to shrink
	final     bool       // Close counted what was left: late promises count nothing

	recs    sync.Pool
	promise func(*kgo.Record, error)
	writers []*kafkaWriter
	lastLog [maxReasons]atomic.Int64 // unix ns of the last drop logged, per reason
}

// kafkaRec is one record and what it carries. The record's Context points
// back to it, so that the promise finds it without a map.
type kafkaRec struct {
	rec   kgo.Record
	ctx   recCtx
	hdrs  [7]kgo.RecordHeader
	value []byte // the payload, or the batch being filled
	meta  []byte // key and header values
	n     uint64 // datagrams
	bytes uint64 // their payload bytes
	size  int    // for MaxBufferBytes
}

type recCtx struct {
	context.Context
	r *kafkaRec
}

type kafkaWriter struct {
	s      *kafkaSink
	topics map[uint16]string // {dport} topics, by port
	open   map[batchKey]*kafkaRec
	// waitUntil is when the current Write stops waiting for room: one
	// max_wait per Write, not per record.
	waitUntil time.Time
}

// batchKey groups a batch: one exporter (the key, so that its datagrams
// stay in one partition) and one topic.
type batchKey struct {
	src   netip.Addr
	topic string
}

func openKafka(ctx context.Context, spec KafkaSpec, opts Options) (*kafkaSink, error) {
	s := &kafkaSink{
		spec: spec, opts: opts,
		log:  opts.Logger.With("sink", spec.name()),
		down: map[int32]error{},
	}
	s.recs.New = func() any {
		r := &kafkaRec{}
		r.ctx = recCtx{Context: context.Background(), r: r}
		return r
	}
	s.promise = s.onPromise
	kopts, err := s.clientOpts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("can't make the Kafka client for %s: %w", spec.name(), err)
	}
	s.cl = cl
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, kafkaOpenTimeout)
		defer cancel()
	}
	if err := s.check(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	if spec.SASL != nil && spec.SASL.Mechanism == SASLPlain && spec.TLS == nil {
		s.log.Warn("SASL PLAIN without TLS sends the password in the clear: add tls=true (and tls_ca=PATH)")
	}
	s.writers = make([]*kafkaWriter, opts.Workers)
	for i := range s.writers {
		s.writers[i] = &kafkaWriter{s: s, topics: map[uint16]string{}, open: map[batchKey]*kafkaRec{}}
	}
	return s, nil
}

func (s *kafkaSink) clientOpts() ([]kgo.Opt, error) {
	sp := s.spec
	o := []kgo.Opt{
		kgo.SeedBrokers(sp.Brokers...),
		kgo.ClientID("xdpingest"),
		kgo.WithHooks(kafkaHooks{s}),
		kgo.WithLogger(kafkaLogger{s.log}),
		// The brokers decide (auto.create.topics.enable): a topic they
		// don't create costs the records sent to it, counted.
		kgo.AllowAutoTopicCreation(),
		// Kafka's own hash of the key (murmur2), as the Java client's:
		// one exporter, one partition, whoever else produces.
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerLinger(sp.Linger),
		kgo.ProduceRequestTimeout(sp.AckTimeout),
		kgo.RecordDeliveryTimeout(sp.RetryFor),
		// Our bound is the real one (see above); franz-go frees its
		// count only after the promise, hence the margin.
		kgo.MaxBufferedRecords(2*sp.MaxInFlight + 1024),
		kgo.MaxBufferedBytes(2*sp.MaxBufferBytes + 16<<20),
		kgo.ProducerBatchCompression(kafkaCodec(sp.Compression)),
		// A broker that comes back is asked for metadata within a second.
		kgo.MetadataMinAge(time.Second),
	}
	switch sp.Acks {
	case 1:
		o = append(o, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	case 0:
		o = append(o, kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
	default:
		o = append(o, kgo.RequiredAcks(kgo.AllISRAcks()))
	}
	if sp.TLS != nil {
		c, err := sp.TLS.config()
		if err != nil {
			return nil, err
		}
		o = append(o, kgo.DialTLSConfig(c))
	}
	if sp.SASL != nil {
		m, err := sp.SASL.mechanism()
		if err != nil {
			return nil, err
		}
		o = append(o, kgo.SASL(m))
	}
	return o, nil
}

func kafkaCodec(name string) kgo.CompressionCodec {
	switch name {
	case "lz4":
		return kgo.Lz4Compression()
	case "zstd":
		return kgo.ZstdCompression()
	case "snappy":
		return kgo.SnappyCompression()
	case "gzip":
		return kgo.GzipCompression()
	}
	return kgo.NoCompression()
}

func (t *KafkaTLS) config() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("can't read the brokers' CA certificates (tls_ca): %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no PEM certificate in %s (tls_ca)", t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("can't load the client certificate %s and key %s (tls_cert, tls_key): %w", t.CertFile, t.KeyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

func (a *KafkaSASL) mechanism() (sasl.Mechanism, error) {
	pass, err := a.Password.Read()
	if err != nil {
		return nil, fmt.Errorf("sasl_password: %w", err)
	}
	switch a.Mechanism {
	case SASLPlain:
		return plain.Auth{User: a.User, Pass: pass}.AsMechanism(), nil
	case SASLScramSHA256:
		return scram.Auth{User: a.User, Pass: pass}.AsSha256Mechanism(), nil
	case SASLScramSHA512:
		return scram.Auth{User: a.User, Pass: pass}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("unknown SASL mechanism %q", a.Mechanism)
}

// check asks the brokers for the topic's metadata (creating it if they
// create topics on first use), so that an unreachable cluster, refused
// credentials or a missing topic fail Open rather than every record. A
// topic with {dport} can't be checked before the first datagram: only the
// brokers are.
func (s *kafkaSink) check(ctx context.Context) error {
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = []kmsg.MetadataRequestTopic{}
	templated := strings.Contains(s.spec.Topic, kafkaDportVar)
	if !templated {
		t := kmsg.NewMetadataRequestTopic()
		t.Topic = kmsg.StringPtr(s.spec.Topic)
		req.Topics = append(req.Topics, t)
		req.AllowAutoTopicCreation = true
	}
	resp, err := req.RequestWith(ctx, s.cl)
	if err != nil && ctx.Err() != nil {
		// franz-go retries a refused login until the deadline: say why
		// the attempts failed, not only that time ran out.
		s.downMu.Lock()
		if s.connErr != nil {
			err = fmt.Errorf("%w (last attempt: %w)", err, s.connErr)
		}
		s.downMu.Unlock()
	}
	if err != nil {
		hint := "is a broker running and reachable"
		if s.spec.TLS != nil || s.spec.SASL != nil {
			hint += ", and do TLS and SASL (mechanism, user, password) match the brokers' listener"
		}
		return fmt.Errorf("can't reach Kafka at %s: %w: %s?", s.spec.addrs(), err, hint)
	}
	if templated {
		return nil
	}
	for _, t := range resp.Topics {
		err := kerr.ErrorForCode(t.ErrorCode)
		switch {
		case err == nil, errors.Is(err, kerr.LeaderNotAvailable): // just created
			return nil
		case errors.Is(err, kerr.UnknownTopicOrPartition):
			return fmt.Errorf("topic %s does not exist on %s and the brokers don't create topics on first use (auto.create.topics.enable=false): create it", s.spec.Topic, s.spec.addrs())
		case errors.Is(err, kerr.TopicAuthorizationFailed):
			return fmt.Errorf("not allowed to use topic %s on %s: %w: grant the user WRITE and DESCRIBE on it", s.spec.Topic, s.spec.addrs(), err)
		default:
			return fmt.Errorf("can't use topic %s on %s: %w", s.spec.Topic, s.spec.addrs(), err)
		}
	}
	return fmt.Errorf("brokers %s did not answer for topic %s", s.spec.addrs(), s.spec.Topic)
}

func (s *kafkaSink) Name() string { return s.spec.name() }

// Connected reports whether every broker the sink has talked to is
// reachable.
func (s *kafkaSink) Connected() bool { return s.nDown.Load() == 0 && !s.closing.Load() }

var _ Connector = (*kafkaSink)(nil)

func (s *kafkaSink) Writer(worker int) Writer { return s.writers[worker] }
func (s *kafkaSink) Stats() Stats             { return stats(kafkaReasons, &s.c) }

func (w *kafkaWriter) Write(dgs []datapath.Datagram) error {
	if len(dgs) == 0 {
		return nil
	}
	s := w.s
	n := uint64(len(dgs))
	s.c.offered.Add(n)
	if s.closing.Load() {
		s.c.drop(kafkaClosed, n)
		return fmt.Errorf("can't produce to %s: %w", s.Name(), ErrClosed)
	}
	s.c.inFlight.Add(n)
	w.waitUntil = time.Time{}
	var first error
	note := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for i := range dgs {
		d := &dgs[i]
		topic := w.topic(d.Dst.Port())
		if s.spec.Batch == 0 {
			r := s.get()
			r.fill(d, topic)
			note(w.submit(r))
			continue
		}
		k := batchKey{d.Src.Addr(), topic}
		b := w.open[k]
		if b != nil && len(b.value)+natsmsg.RecordLen(d) > kafkaBatchValueMax {
			note(w.submitBatch(k, b))
			b = nil
		}
		if b == nil {
			if len(w.open) >= kafkaMaxOpenBatches {
				note(w.submitAll())
			}
			b = s.get()
			b.value = natsmsg.AppendBatchHeader(b.value[:0])
			b.n, b.bytes = 0, 0
			b.rec = kgo.Record{Topic: topic, Context: &b.ctx}
			w.open[k] = b
		}
		b.value = natsmsg.AppendRecord(b.value, d)
		b.n++
		b.bytes += uint64(len(d.Payload))
		if b.n >= uint64(s.spec.Batch) {
			note(w.submitBatch(k, b))
		}
	}
	return first
}

// Flush produces the partial batches. One-datagram records need no flush:
// the producer sends them within Linger.
func (w *kafkaWriter) Flush() error {
	w.waitUntil = time.Time{}
	return w.submitAll()
}

// topic returns the topic of datagrams to port.
func (w *kafkaWriter) topic(port uint16) string {
	t := w.s.spec.Topic
	if !strings.Contains(t, kafkaDportVar) {
		return t
	}
	if v, ok := w.topics[port]; ok {
		return v
	}
	v := strings.ReplaceAll(t, kafkaDportVar, strconv.Itoa(int(port)))
	w.topics[port] = v
	return v
}

func (s *kafkaSink) get() *kafkaRec { return s.recs.Get().(*kafkaRec) }

// fill makes r the record of d: the payload as the value, the exporter's
// address as the key, the rest in headers.
func (r *kafkaRec) fill(d *datapath.Datagram, topic string) {
	m := d.Src.Addr().AppendTo(r.meta[:0])
	ends := [7]int{len(m)}
	m = d.Src.AppendTo(m)
	ends[1] = len(m)
	m = d.Dst.AppendTo(m)
	ends[2] = len(m)
	m = strconv.AppendUint(m, uint64(d.Dst.Port()), 10)
	ends[3] = len(m)
	m = strconv.AppendInt(m, d.RxTime, 10)
	ends[4] = len(m)
	m = strconv.AppendUint(m, uint64(d.Queue), 10)
	ends[5] = len(m)
	if nv := min(d.NVLAN, 2); nv > 0 {
		m = strconv.AppendUint(m, uint64(d.VLAN[0]), 10)
		if nv == 2 {
			m = append(m, ',')
			m = strconv.AppendUint(m, uint64(d.VLAN[1]), 10)
		}
	}
	ends[6] = len(m)
	r.meta = m
	path := pathKernel
	if d.Frame != nil {
		path = pathAFXDP
	}
	h := &r.hdrs
	h[0] = kgo.RecordHeader{Key: natsmsg.HeaderSrc, Value: m[ends[0]:ends[1]]}
	h[1] = kgo.RecordHeader{Key: natsmsg.HeaderDst, Value: m[ends[1]:ends[2]]}
	h[2] = kgo.RecordHeader{Key: natsmsg.HeaderDport, Value: m[ends[2]:ends[3]]}
	h[3] = kgo.RecordHeader{Key: natsmsg.HeaderRxTime, Value: m[ends[3]:ends[4]]}
	h[4] = kgo.RecordHeader{Key: KafkaHeaderQueue, Value: m[ends[4]:ends[5]]}
	h[5] = kgo.RecordHeader{Key: KafkaHeaderPath, Value: path}
	nh := 6
	if ends[6] > ends[5] {
		h[6] = kgo.RecordHeader{Key: natsmsg.HeaderVLAN, Value: m[ends[5]:ends[6]]}
		nh = 7
	}
	r.value = append(r.value[:0], d.Payload...)
	r.rec = kgo.Record{
		Topic:   topic,
		Key:     m[:ends[0]],
		Value:   r.value,
		Headers: h[:nh],
		// No Timestamp: franz-go stamps the time it takes the record,
		// which retry_for counts from. The receive time is a header.
		Context: &r.ctx,
	}
	r.n, r.bytes = 1, uint64(len(d.Payload))
}

func (w *kafkaWriter) submitBatch(k batchKey, b *kafkaRec) error {
	delete(w.open, k)
	natsmsg.SetBatchCount(b.value, int(b.n))
	m := k.src.AppendTo(b.meta[:0])
	kl := len(m)
	m = strconv.AppendUint(m, b.n, 10)
	b.meta = m
	b.hdrs[0] = kgo.RecordHeader{Key: natsmsg.HeaderBatch, Value: m[kl:]}
	b.rec.Key, b.rec.Value, b.rec.Headers = m[:kl], b.value, b.hdrs[:1]
	return w.submit(b)
}

func (w *kafkaWriter) submitAll() error {
	var first error
	for k, b := range w.open {
		if err := w.submitBatch(k, b); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// submit takes r into the backlog and hands it to the producer, or drops
// it when the backlog stays full.
func (w *kafkaWriter) submit(r *kafkaRec) error {
	s := w.s
	r.size = len(r.rec.Key) + len(r.rec.Value) + len(r.meta) + kafkaRecOverhead
	s.mu.Lock()
	for !s.final && s.held > 0 && (s.held >= s.spec.MaxInFlight || s.heldBytes+r.size > s.spec.MaxBufferBytes) {
		reason := -1
		switch {
		case s.aborting.Load():
			reason = kafkaShutdown
		case s.nDown.Load() > 0:
			reason = kafkaUnreachable
		default:
			if w.waitUntil.IsZero() {
				w.waitUntil = time.Now().Add(s.spec.MaxWait)
			}
			if left := time.Until(w.waitUntil); left > 0 {
				room := s.room.wait()
				s.mu.Unlock()
				t := time.NewTimer(left)
				select {
				case <-room:
				case <-t.C:
				}
				t.Stop()
				s.mu.Lock()
				continue
			}
			reason = kafkaBacklogFull
		}
		s.mu.Unlock()
		s.dropRec(r, reason)
		return fmt.Errorf("can't produce to %s: backlog full (max_inflight=%d, max_buffer_mb=%d): dropped %d datagrams (%s)",
			s.Name(), s.spec.MaxInFlight, s.spec.MaxBufferBytes>>20, r.n, kafkaReasons[reason])
	}
	if s.final {
		s.mu.Unlock()
		s.dropRec(r, kafkaClosed)
		return fmt.Errorf("can't produce to %s: %w", s.Name(), ErrClosed)
	}
	s.held++
	s.heldBytes += r.size
	s.mu.Unlock()
	// The context is the record's lifetime, not Write's: franz-go fails a
	// record whose produce context ends.
	s.cl.TryProduce(context.Background(), &r.rec, s.promise)
	return nil
}

// dropRec counts r, which never reached the producer, as dropped.
func (s *kafkaSink) dropRec(r *kafkaRec, reason int) {
	s.c.drop(reason, r.n)
	s.c.inFlight.Add(-r.n)
	s.recs.Put(r)
}

// onPromise counts a record franz-go is done with. It runs on franz-go's
// promise goroutine, one record at a time.
func (s *kafkaSink) onPromise(rec *kgo.Record, err error) {
	r := rec.Context.(*recCtx).r
	reason := -1
	if err != nil {
		reason = s.reasonOf(err)
	}
	s.mu.Lock()
	if !s.final {
		// Counted under the lock: Close's final count must not race
		// with one here.
		if reason < 0 {
			s.c.written.Add(r.n)
			s.c.writtenBytes.Add(r.bytes)
		} else {
			s.c.drop(reason, r.n)
			s.c.errors.Add(1)
		}
		s.c.inFlight.Add(-r.n)
	}
	s.held--
	s.heldBytes -= r.size
	s.room.wake()
	s.mu.Unlock()
	if reason >= 0 {
		s.logDrop(reason, err, r.n)
	}
	s.recs.Put(r)
}

// reasonOf is the drop reason of a record that failed with err.
func (s *kafkaSink) reasonOf(err error) int {
	var ke *kerr.Error
	switch {
	case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
		return kafkaUnknownTopic
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		return kafkaTooLarge
	case errors.Is(err, kgo.ErrAborting), errors.Is(err, kgo.ErrClientClosed):
		return kafkaClosed
	case errors.Is(err, kgo.ErrMaxBuffered):
		return kafkaBacklogFull
	case errors.Is(err, kgo.ErrRecordTimeout), errors.Is(err, kgo.ErrRecordRetries):
		if s.nDown.Load() > 0 {
			return kafkaUnreachable
		}
		return kafkaProduceFailed
	case errors.As(err, &ke):
		return kafkaRejected
	case s.nDown.Load() > 0:
		return kafkaUnreachable
	}
	return kafkaProduceFailed
}

// logDrop logs a loss, at most once every 10 s per reason.
func (s *kafkaSink) logDrop(reason int, err error, n uint64) {
	now := time.Now().UnixNano()
	last := s.lastLog[reason].Load()
	if now-last < int64(10*time.Second) || !s.lastLog[reason].CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("Kafka records dropped", "reason", kafkaReasons[reason], "datagrams", n, "err", err,
		"dropped_total", s.c.dropped[reason].Load())
}

// Abort makes Write stop waiting for room in a full backlog: from now on
// what doesn't fit is dropped at once ("shutdown"). Records already taken
// stay for Close to wait on. Safe from any goroutine.
func (s *kafkaSink) Abort() {
	s.aborting.Store(true)
	s.mu.Lock()
	s.room.wake()
	s.mu.Unlock()
}

var _ Aborter = (*kafkaSink)(nil)

// Close produces the writers' partial batches, waits up to CloseTimeout
// for every record to be answered, gives up on the rest (counted as
// "closed") and closes the client.
func (s *kafkaSink) Close() error {
	if s.closing.Swap(true) {
		return nil
	}
	var errs []error
	for _, w := range s.writers {
		w.waitUntil = time.Time{}
		if err := w.submitAll(); err != nil {
			errs = append(errs, err)
		}
	}
	closedBefore := s.c.dropped[kafkaClosed].Load()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CloseTimeout)
	flushErr := s.cl.Flush(ctx)
	cancel()
	if flushErr != nil {
		// Fails what is buffered or unanswered with ErrAborting: the
		// promises count it as closed. A record sent and never answered
		// may still be in the topic.
		s.cl.UnsafeAbortBufferedRecords()
	}
	s.cl.Close()
	s.mu.Lock()
	s.final = true
	if left := s.c.inFlight.Load(); left > 0 { // never expected: every promise has run
		s.c.drop(kafkaClosed, left)
		s.c.inFlight.Add(-left)
	}
	s.mu.Unlock()
	if lost := s.c.dropped[kafkaClosed].Load() - closedBefore; lost > 0 {
		errs = append(errs, fmt.Errorf("%s: %d datagrams still unacknowledged after %v: counted as dropped (closed)",
			s.Name(), lost, s.opts.CloseTimeout))
	}
	return errors.Join(errs...)
}

// kafkaHooks follows the brokers' reachability: a broker whose last
// connection attempt failed (refused, timed out, TLS or SASL refused) is
// down until one succeeds.
type kafkaHooks struct{ s *kafkaSink }

var _ kgo.HookBrokerConnect = kafkaHooks{}

func (h kafkaHooks) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	s := h.s
	if err != nil {
		s.downMu.Lock()
		s.connErr = err
		s.downMu.Unlock()
	}
	if meta.NodeID < 0 {
		// A seed: the cluster's own brokers (from metadata) are what
		// records go to. Seeds are tried only for metadata.
		if err != nil {
			s.c.errors.Add(1)
		}
		return
	}
	addr := net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port)))
	s.downMu.Lock()
	_, was := s.down[meta.NodeID]
	if err != nil {
		s.down[meta.NodeID] = err
	} else {
		delete(s.down, meta.NodeID)
	}
	s.nDown.Store(int32(len(s.down)))
	s.downMu.Unlock()
	switch {
	case err != nil:
		s.c.errors.Add(1)
		if !was && !s.closing.Load() {
			s.log.Warn("Kafka broker unreachable: holding records for retry", "broker", meta.NodeID, "addr", addr, "err", err,
				"max_inflight", s.spec.MaxInFlight, "retry_for", s.spec.RetryFor)
		}
	case was:
		s.log.Info("Kafka broker reachable again", "broker", meta.NodeID, "addr", addr)
	}
}

// kafkaLogger passes franz-go's errors to the sink's logger. franz-go
// logs neither passwords nor record contents.
type kafkaLogger struct{ log *slog.Logger }

func (l kafkaLogger) Level() kgo.LogLevel { return kgo.LogLevelError }

func (l kafkaLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	if level <= kgo.LogLevelError {
		l.log.Warn("Kafka client: "+msg, keyvals...)
	}
}

// DecodeKafkaRecord appends the datagrams of a record the Kafka sink
// produced (its headers and value) to dst and returns the extended slice:
// one for a record of the default format, all of a batch (format=batch).
// Payloads point into value. Queue is set for one-datagram records (the
// batch framing has none); Frame and Handle are zero.
func DecodeKafkaRecord(headers []kgo.RecordHeader, value []byte, dst []datapath.Datagram) ([]datapath.Datagram, error) {
	var h map[string][]string
	var queue uint32
	for _, kv := range headers {
		if h == nil {
			h = make(map[string][]string, len(headers))
		}
		h[kv.Key] = []string{string(kv.Value)}
		if kv.Key == KafkaHeaderQueue {
			q, err := strconv.ParseUint(string(kv.Value), 10, 32)
			if err != nil {
				return dst, fmt.Errorf("header %s=%q: %w", KafkaHeaderQueue, kv.Value, natsmsg.ErrFormat)
			}
			queue = uint32(q)
		}
	}
	n := len(dst)
	dst, err := natsmsg.Decode(h, value, dst)
	if err == nil && len(dst) == n+1 && !natsmsg.IsBatch(h) {
		dst[n].Queue = queue
	}
	return dst, err
}
