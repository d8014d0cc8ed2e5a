package sink

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"
)

// KafkaSpec describes
// kafka://HOST[:PORT][,HOST[:PORT]...]/TOPIC[?PARAMS].
type KafkaSpec struct {
	// Brokers are the seed brokers, HOST:PORT each (IPv6 in brackets), in
	// the order given: the client asks them for the cluster's metadata and
	// then talks to the brokers it advertises.
	Brokers []string
	// Topic is where records go. It may contain {dport}, replaced by each
	// datagram's destination port ("flows.{dport}" -> "flows.2055").
	Topic string
	// Batch is the number of datagrams per record (format=batch&batch=N); 0
	// in the default format, one record per datagram with its metadata in
	// headers. A batch record carries up to Batch datagrams of one
	// exporter in the batch framing of the NATS sink (docs/SINKS.md).
	Batch int
	// Acks is what the leader waits for before it answers a produce
	// request: -1 (acks=all, the default, with the idempotent producer), 1
	// (the leader's own write) or 0 (no answer at all). Only acks=all is
	// idempotent: franz-go's idempotent producer requires it.
	Acks int
	// Compression is the codec of record batches: none (the default),
	// lz4, zstd, snappy or gzip.
	Compression string
	// MaxInFlight bounds the records taken and not yet acknowledged or
	// given up on (max_inflight, default 65536).
	MaxInFlight int
	// MaxBufferBytes bounds their bytes (max_buffer_mb, in MiB, default 64).
	MaxBufferBytes int
	// Linger is how long a partition's records wait for more before a
	// produce request goes (linger, default 10ms, 0 for none).
	Linger time.Duration
	// AckTimeout is how long a broker may take to answer a produce
	// request (ack_timeout, default 10s).
	AckTimeout time.Duration
	// RetryFor is how long a record is retried from the time it was taken
	// before it is dropped (retry_for, default 30s). Records already sent
	// whose answer never came are the exception: see docs/SINKS.md.
	RetryFor time.Duration
	// MaxWait is how long Write waits for room when MaxInFlight or
	// MaxBufferBytes is reached while the brokers are reachable, before it
	// drops ("backlog_full") (max_wait, default 1s). While a broker can't
	// be reached it does not wait.
	MaxWait time.Duration
	// TLS, when set, encrypts every connection and checks the brokers'
	// certificates.
	TLS *KafkaTLS
	// SASL, when set, authenticates every connection.
	SASL *KafkaSASL
}

// KafkaTLS is the TLS of a Kafka sink (tls=true, or any tls_ parameter).
type KafkaTLS struct {
	// CAFile is a PEM file of the certificates that sign the brokers'
	// (tls_ca); empty: the system's roots.
	CAFile string
	// CertFile and KeyFile are the client's certificate and private key,
	// PEM (tls_cert, tls_key), for brokers that ask for one. Both or
	// neither.
	CertFile, KeyFile string
	// ServerName is the name the brokers' certificates must carry
	// (tls_server_name); empty: each broker's host as dialled.
	ServerName string
}

// KafkaSASL is the SASL authentication of a Kafka sink.
type KafkaSASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (sasl=plain,
	// scram-sha-256, scram-sha-512).
	Mechanism string
	// User is the user name (sasl_user).
	User string
	// Password says where the password is read from when the sink opens
	// (sasl_password=file:PATH or env:NAME).
	Password SecretRef
}

// The SASL mechanisms.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// The topic template's one placeholder.
const kafkaDportVar = "{dport}"

const (
	defaultKafkaPort        = "9092"
	defaultKafkaBatch       = 64
	defaultKafkaMaxInFlight = 65536
	defaultKafkaLinger      = 10 * time.Millisecond
	defaultKafkaAckTimeout  = 10 * time.Second
	maxKafkaBatch           = 4096
	maxKafkaMaxInFlight     = 1 << 22
	maxKafkaBufferMB        = 1 << 16
	maxKafkaTopicLen        = 249 // Kafka's own limit

	kafkaParamFormat        = "format"
	kafkaParamBatch         = "batch"
	kafkaParamAcks          = "acks"
	kafkaParamCompression   = "compression"
	kafkaParamMaxInFlight   = "max_inflight"
	kafkaParamMaxBuffer     = "max_buffer_mb"
	kafkaParamLinger        = "linger"
	kafkaParamAckTimeout    = "ack_timeout"
	kafkaParamRetryFor      = "retry_for"
	kafkaParamMaxWait       = "max_wait"
	kafkaParamTLS           = "tls"
	kafkaParamTLSCA         = "tls_ca"
	kafkaParamTLSCert       = "tls_cert"
	kafkaParamTLSKey        = "tls_key"
	kafkaParamTLSServerName = "tls_server_name"
	kafkaParamSASL          = "sasl"
	kafkaParamSASLUser      = "sasl_user"
	kafkaParamSASLPassword  = "sasl_password"
)

var kafkaParams = []string{
	kafkaParamFormat, kafkaParamBatch, kafkaParamAcks, kafkaParamCompression,
	kafkaParamMaxInFlight, kafkaParamMaxBuffer, kafkaParamLinger, kafkaParamAckTimeout,
	kafkaParamRetryFor, kafkaParamMaxWait,
	kafkaParamTLS, kafkaParamTLSCA, kafkaParamTLSCert, kafkaParamTLSKey, kafkaParamTLSServerName,
	kafkaParamSASL, kafkaParamSASLUser, kafkaParamSASLPassword,
}

var kafkaCompressions = []string{"none", "lz4", "zstd", "snappy", "gzip"}

func parseKafka(raw string) (KafkaSpec, error) {
	rest, ok := strings.CutPrefix(raw, "kafka://")
	if !ok {
		return KafkaSpec{}, errors.New("no broker: write kafka://HOST:PORT/TOPIC")
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	path, query, _ := strings.Cut(tail, "?")
	if strings.Contains(rest, "@") {
		// Never quoted: what sits before the @ may be a password, with a
		// / ? or # in it that moves the @ past the host.
		return KafkaSpec{}, errors.New("kafka takes no user or password in the URL: use sasl=MECHANISM&sasl_user=NAME&sasl_password=file:PATH (or env:NAME); percent-encode an @ in a parameter as %40")
	}
	if strings.Contains(tail, "#") {
		return KafkaSpec{}, errors.New("a fragment (#...) means nothing here")
	}
	if authority == "" {
		return KafkaSpec{}, errors.New("no broker: write kafka://HOST:PORT/TOPIC")
	}
	var k KafkaSpec
	seen := map[string]bool{}
	for entry := range strings.SplitSeq(authority, ",") {
		if entry == "" {
			return KafkaSpec{}, errors.New("an empty broker in the list: write kafka://HOST:PORT[,HOST:PORT...]/TOPIC")
		}
		addr, err := parseHostPort(entry, defaultKafkaPort, false)
		if err != nil {
			return KafkaSpec{}, fmt.Errorf("broker %q: %w", entry, err)
		}
		if seen[addr] {
			return KafkaSpec{}, fmt.Errorf("broker %s is listed twice", addr)
		}
		seen[addr] = true
		k.Brokers = append(k.Brokers, addr)
	}
	topic, err := url.PathUnescape(strings.TrimPrefix(path, "/"))
	if err != nil {
		return KafkaSpec{}, errors.New("the topic has an invalid %-escape")
	}
	if err := checkKafkaTopic(topic); err != nil {
		return KafkaSpec{}, err
	}
	k.Topic = topic
	k.Acks, k.Compression = -1, "none"
	k.MaxInFlight, k.MaxBufferBytes = defaultKafkaMaxInFlight, defaultMaxBufferMB<<20
	k.Linger, k.AckTimeout, k.RetryFor, k.MaxWait = defaultKafkaLinger, defaultKafkaAckTimeout, defaultRetryFor, defaultMaxWait
	q, err := parseQuery(query, kafkaParams...)
	if err != nil {
		return k, err
	}
	if err := k.parseFormat(q); err != nil {
		return k, err
	}
	if v, ok := q[kafkaParamAcks]; ok {
		switch v {
		case "all", "-1":
			k.Acks = -1
		case "1":
			k.Acks = 1
		case "0":
			k.Acks = 0
		default:
			return k, fmt.Errorf("acks=%q: want all, 1 or 0", v)
		}
	}
	if v, ok := q[kafkaParamCompression]; ok {
		if !slices.Contains(kafkaCompressions, v) {
			return k, fmt.Errorf("compression=%q: want one of %s", v, strings.Join(kafkaCompressions, ", "))
		}
		k.Compression = v
	}
	for _, p := range []struct {
		name     string
		dst      *int
		min, max int
		unit     int
	}{
		{kafkaParamMaxInFlight, &k.MaxInFlight, 1, maxKafkaMaxInFlight, 1},
		{kafkaParamMaxBuffer, &k.MaxBufferBytes, 1, maxKafkaBufferMB, 1 << 20},
	} {
		if v, ok := q[p.name]; ok {
			i, err := parseInt(p.name, v, p.min, p.max)
			if err != nil {
				return k, err
			}
			*p.dst = i * p.unit
		}
	}
	for _, p := range []struct {
		name     string
		dst      *time.Duration
		zero     bool
		min, max time.Duration // what franz-go accepts; 0: no bound
	}{
		{kafkaParamLinger, &k.Linger, true, 0, time.Minute},
		{kafkaParamAckTimeout, &k.AckTimeout, false, 100 * time.Millisecond, 10 * time.Minute},
		{kafkaParamRetryFor, &k.RetryFor, false, time.Second, 0},
		{kafkaParamMaxWait, &k.MaxWait, true, 0, 0},
	} {
		v, ok := q[p.name]
		if !ok {
			continue
		}
		if *p.dst, err = parseDuration(p.name, v, p.zero); err != nil {
			return k, err
		}
		if *p.dst < p.min || (p.max > 0 && *p.dst > p.max) {
			bound := fmt.Sprintf("at least %v", p.min)
			if p.max > 0 {
				bound = fmt.Sprintf("from %v to %v", p.min, p.max)
			}
			return k, fmt.Errorf("%s=%q: want %s", p.name, v, bound)
		}
	}
	if k.TLS, err = parseKafkaTLS(q); err != nil {
		return k, err
	}
	if k.SASL, err = parseKafkaSASL(q); err != nil {
		return k, err
	}
	return k, nil
}

func (k *KafkaSpec) parseFormat(q map[string]string) error {
	format, ok := q[kafkaParamFormat]
	if !ok {
		format = "record"
	}
	switch format {
	case "record":
		if _, ok := q[kafkaParamBatch]; ok {
			return errors.New("batch=N packs datagrams in the batch framing: add format=batch")
		}
	case "batch":
		k.Batch = defaultKafkaBatch
		if v, ok := q[kafkaParamBatch]; ok {
			n, err := parseInt(kafkaParamBatch, v, 1, maxKafkaBatch)
			if err != nil {
				return err
			}
			k.Batch = n
		}
	default:
		return fmt.Errorf("format=%q: want record (one record per datagram) or batch", format)
	}
	return nil
}

// checkKafkaTopic accepts what Kafka accepts as a topic name (letters,
// digits, '.', '_', '-', at most 249 characters, not "." or ".."), with
// {dport} standing for up to five digits.
func checkKafkaTopic(t string) error {
	if t == "" {
		return errors.New("no topic: write kafka://HOST:PORT/TOPIC")
	}
	longest := strings.ReplaceAll(t, kafkaDportVar, "65535")
	if strings.ContainsAny(longest, "{}") {
		return fmt.Errorf("topic %q: the only placeholder is %s (the destination port), as in flows.%s", t, kafkaDportVar, kafkaDportVar)
	}
	if len(longest) > maxKafkaTopicLen {
		return fmt.Errorf("topic %q: longer than Kafka's %d characters", t, maxKafkaTopicLen)
	}
	if t == "." || t == ".." {
		return fmt.Errorf("topic %q is not allowed by Kafka", t)
	}
	for _, c := range []byte(longest) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("topic %q: Kafka allows only letters, digits, '.', '_' and '-'", t)
		}
	}
	return nil
}

func parseKafkaTLS(q map[string]string) (*KafkaTLS, error) {
	var t KafkaTLS
	on, set := false, false
	for _, p := range []struct {
		name string
		dst  *string
	}{
		{kafkaParamTLSCA, &t.CAFile}, {kafkaParamTLSCert, &t.CertFile},
		{kafkaParamTLSKey, &t.KeyFile}, {kafkaParamTLSServerName, &t.ServerName},
	} {
		if v, ok := q[p.name]; ok {
			if v == "" {
				return nil, fmt.Errorf("%s= is empty: give a value or leave the parameter out", p.name)
			}
			*p.dst, set = v, true
		}
	}
	if v, ok := q[kafkaParamTLS]; ok {
		switch v {
		case "true", "1":
			on = true
		case "false", "0":
			if set {
				return nil, errors.New("tls=false with tls_ parameters: drop tls=false, or the tls_ parameters")
			}
		default:
			return nil, fmt.Errorf("tls=%q: want true or false", v)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("a client certificate needs both tls_cert=PATH and tls_key=PATH")
	}
	if t.ServerName != "" && !validHost(t.ServerName) {
		return nil, fmt.Errorf("tls_server_name=%q: want a host name", t.ServerName)
	}
	if !on && !set {
		return nil, nil
	}
	return &t, nil
}

func parseKafkaSASL(q map[string]string) (*KafkaSASL, error) {
	mech, ok := q[kafkaParamSASL]
	user, hasUser := q[kafkaParamSASLUser]
	pass, hasPass := q[kafkaParamSASLPassword]
	if !ok {
		if hasUser || hasPass {
			return nil, errors.New("sasl_user and sasl_password need sasl=plain, scram-sha-256 or scram-sha-512")
		}
		return nil, nil
	}
	s := &KafkaSASL{Mechanism: strings.ToUpper(mech)}
	switch s.Mechanism {
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
	default:
		return nil, fmt.Errorf("sasl=%q: want plain, scram-sha-256 or scram-sha-512", mech)
	}
	if !hasUser || user == "" {
		return nil, errors.New("sasl needs sasl_user=NAME")
	}
	if !hasPass {
		return nil, errors.New("sasl needs sasl_password=file:PATH or env:NAME")
	}
	ref, err := ParseSecretRef(kafkaParamSASLPassword, pass)
	if err != nil {
		return nil, err
	}
	s.User, s.Password = user, ref
	return s, nil
}

// name is the sink's name: brokers and topic, no parameters.
func (k KafkaSpec) name() string { return "kafka://" + k.addrs() + "/" + k.Topic }

func (k KafkaSpec) addrs() string { return strings.Join(k.Brokers, ",") }

// String is the name: a spec printed whole shows no parameter.
func (k KafkaSpec) String() string { return k.name() }

// LogValue is the name, for slog.
func (k KafkaSpec) LogValue() slog.Value { return slog.StringValue(k.name()) }

// destinations are the places two sinks must not share: each broker with
// the topic.
func (k KafkaSpec) destinations() []string {
	out := make([]string, len(k.Brokers))
	for i, b := range k.Brokers {
		out[i] = "kafka://" + canonHostPort(b) + "/" + k.Topic
	}
	return out
}
