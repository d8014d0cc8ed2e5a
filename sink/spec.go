package sink

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xdpingest/xdpingest/internal/portset"
)

// Kind is the type of a sink, the scheme of its URL.
type Kind string

// The sink kinds.
const (
	KindPcap    Kind = "pcap"
	KindNATS    Kind = "nats"
	KindUDP     Kind = "udp"
	KindKafka   Kind = "kafka"
	KindDiscard Kind = "discard"
)

// DefaultURL is the sink the server writes to when none is configured.
const DefaultURL = "pcap:./capture"

// Spec is a parsed, validated sink URL. Exactly the part named by Kind is
// set.
type Spec struct {
	Kind  Kind
	Pcap  PcapSpec
	NATS  NATSSpec
	UDP   UDPSpec
	Kafka KafkaSpec
	// Ports, when set (?ports=2055,4739 on any sink URL), are the only
	// destination ports whose datagrams go to this sink: one server sends
	// NetFlow to one collector and syslog to another. Nil: every port.
	Ports []uint16
}

// PcapSpec describes pcap:DIR[?max_mb=N&max_age=D].
type PcapSpec struct {
	// Dir is the directory the files go to, created if missing.
	Dir string
	// MaxBytes is the size a file may reach before the next record goes to
	// a new file (max_mb, in MiB; default 256; 0 means no limit).
	MaxBytes int64
	// MaxAge is how long a file stays open after its first record before
	// it is finished (max_age, a Go duration; default 10m; 0 means no limit).
	MaxAge time.Duration
}

// NATSSpec describes
// {nats|tls}://[USER:PASS@|TOKEN@]HOST[:PORT][,HOST[:PORT]...]/SUBJECT[?PARAMS].
// Every server of the list gets the same TLS settings and credentials.
type NATSSpec struct {
	// Servers are the seed servers, HOST:PORT each (IPv6 in brackets), in
	// the order given: nats.go connects to one of them and learns the rest
	// of the cluster from it.
	Servers []string
	// User is the user name, of USER:PASS@ or user=. Password (USER:PASS@),
	// or Token (TOKEN@, a user without a password), are secrets given in the
	// URL itself, kept for compatibility: the sink logs a warning when it
	// opens with one. No name or message shows them.
	User, Password, Token string
	// PasswordRef (password=, with user=) and TokenRef (token=) say where
	// the secret is read when the sink opens: file:PATH or env:NAME.
	PasswordRef, TokenRef SecretRef
	// Creds is a NATS credentials file (creds=: a user JWT and its nkey
	// seed, as nsc writes them), Nkey a file holding a user nkey seed
	// (nkey=). Both are read at open and again at each reconnect. At most
	// one way to authenticate is set.
	Creds, Nkey string
	// TLS requires TLS of every server: the tls:// scheme, or any tls_
	// parameter, sets it. Without it nats.go still upgrades to TLS when a
	// server requires it, verifying with the system's CAs.
	TLS bool
	// TLSCA is a PEM file of the CAs to verify the servers with (tls_ca;
	// default the system's), TLSCert and TLSKey the client certificate and
	// key for servers that require one (tls_cert, tls_key, PEM files), and
	// TLSServerName the name to verify the servers' certificates for
	// (tls_server_name; default the host the sink dials).
	TLSCA, TLSCert, TLSKey, TLSServerName string
	// Subject is where messages are published. It may be a template with
	// {dport} as one token (flows.{dport}): each datagram then goes to the
	// subject with its destination port (SubjectFor).
	Subject string
	// Stream, when set, is the JetStream stream to use, created (file
	// storage, subjects = StreamSubject) if it doesn't exist. When empty,
	// some existing stream must capture StreamSubject.
	Stream string
	// Batch is the number of datagrams per message (batch, default 1). 1
	// publishes one message per datagram with its metadata in headers;
	// more packs up to Batch datagrams per message in the batch framing
	// (docs/SINKS.md); with a subject template, the datagrams of one
	// message have one destination port.
	Batch int
	// MaxInFlight bounds the messages published and not yet acknowledged,
	// together with those waiting to be retried (max_inflight, default 4096).
	MaxInFlight int
	// MaxBufferBytes bounds the bytes of those messages (max_buffer_mb, in
	// MiB, default 64).
	MaxBufferBytes int
	// AckTimeout is how long to wait for an acknowledgement before the
	// publish counts as failed and is retried (ack_timeout, default 5s).
	AckTimeout time.Duration
	// RetryFor is how long a message is retried, from its first publish,
	// before its datagrams are dropped (retry_for, default 30s).
	RetryFor time.Duration
	// MaxWait is how long Write waits for room when MaxInFlight or
	// MaxBufferBytes is reached while connected, before dropping
	// ("backlog_full") (max_wait, default 1s). While disconnected it does not
	// wait.
	MaxWait time.Duration
}

// UDPSpec describes udp://HOST:PORT[,HOST:PORT][?source=relay|original].
type UDPSpec struct {
	// Addr is HOST:PORT of the collector, or two of them separated by a
	// comma: the collector's address in each family. A datagram goes to
	// the address of its exporter's family when there is one.
	Addr string
	// KeepSource (source=original) sends each datagram with its exporter's
	// address and port as the source, from a raw socket, as samplicator's -S
	// does. False (source=relay, the default) sends it from the relay's own
	// UDP socket. docs/SINKS.md says why relay is the default.
	KeepSource bool
}

// Defaults of the URL parameters.
const (
	defaultPcapMaxMB     = 256
	defaultPcapMaxAge    = 10 * time.Minute
	defaultNATSPort      = "4222"
	defaultMaxInFlight   = 4096
	defaultMaxBufferMB   = 64
	defaultAckTimeout    = 5 * time.Second
	defaultRetryFor      = 30 * time.Second
	defaultMaxWait       = time.Second
	maxNATSBatch         = 4096
	maxPcapMB            = 1 << 20 // 1 TiB: a typo guard, not a policy
	maxNATSBufferMB      = 1 << 16
	maxNATSMaxInFlight   = 1 << 20
	natsParamStream      = "stream"
	natsParamBatch       = "batch"
	natsParamMaxInFlight = "max_inflight"
	natsParamMaxBuffer   = "max_buffer_mb"
	natsParamAckTimeout  = "ack_timeout"
	natsParamRetryFor    = "retry_for"
	natsParamMaxWait     = "max_wait"
	pcapParamMaxMB       = "max_mb"
	pcapParamMaxAge      = "max_age"
)

// ErrBadURL is returned (wrapped) by Parse for every URL it refuses.
var ErrBadURL = errors.New("bad sink URL")

// Parse validates a sink URL and returns its Spec. It has no side effects:
// it neither resolves names nor touches the file system, so `xdpingest check`
// can use it. The forms:
//
//	pcap:DIR[?max_mb=N&max_age=DURATION]
//	nats://[USER:PASS@|TOKEN@]HOST[:PORT][,HOST[:PORT]...]/SUBJECT[?stream=NAME&batch=N&max_inflight=N&max_buffer_mb=N&ack_timeout=D&retry_for=D&max_wait=D
//	       &user=NAME&password=REF|token=REF|creds=PATH|nkey=PATH&tls_ca=PATH&tls_cert=PATH&tls_key=PATH&tls_server_name=NAME]
//	tls://... (as nats://, TLS required)
//	kafka://HOST[:PORT][,HOST[:PORT]...]/TOPIC[?format=batch&batch=N&acks=all|1|0&compression=C&...&tls_ca=PATH&sasl=MECH&sasl_user=NAME&sasl_password=REF]
//	udp://HOST:PORT
//	discard
//
// Its errors show the URL with the credentials hidden (Redact).
func Parse(rawURL string) (Spec, error) {
	s, err := parse(rawURL)
	if err != nil {
		return Spec{}, fmt.Errorf("%w %q: %w", ErrBadURL, Redact(rawURL), err)
	}
	return s, nil
}

func parse(raw string) (Spec, error) {
	if raw == "" {
		return Spec{}, errors.New("empty: use " + usage)
	}
	raw, ports, err := splitPorts(raw)
	if err != nil {
		return Spec{}, err
	}
	s, err := parseKind(raw)
	s.Ports = ports
	return s, err
}

// splitPorts takes the ports parameter, which every kind of sink accepts,
// out of raw's query.
func splitPorts(raw string) (string, []uint16, error) {
	base, query, ok := strings.Cut(raw, "?")
	if !ok {
		return raw, nil, nil
	}
	vals, err := url.ParseQuery(query)
	if err != nil {
		return raw, nil, nil // the kind's parser says what is wrong
	}
	v, ok := vals["ports"]
	if !ok {
		return raw, nil, nil
	}
	if len(v) != 1 {
		return "", nil, fmt.Errorf("parameter \"ports\" given %d times", len(v))
	}
	ports, err := portset.Parse(v[0])
	if err != nil {
		return "", nil, fmt.Errorf("ports: %w", err)
	}
	delete(vals, "ports")
	if len(vals) == 0 {
		return base, ports, nil
	}
	return base + "?" + vals.Encode(), ports, nil
}

func parseKind(raw string) (Spec, error) {
	if raw == string(KindDiscard) || raw == string(KindDiscard)+":" {
		return Spec{Kind: KindDiscard}, nil
	}
	scheme, rest, ok := strings.Cut(raw, ":")
	if !ok {
		return Spec{}, errors.New("no scheme: use " + usage)
	}
	switch Kind(scheme) {
	case KindPcap:
		p, err := parsePcap(rest)
		return Spec{Kind: KindPcap, Pcap: p}, err
	case KindNATS, natsSchemeTLS: // tls://, as nats.go takes it
		n, err := parseNATS(raw)
		return Spec{Kind: KindNATS, NATS: n}, err
	case KindUDP:
		u, err := parseUDP(raw)
		return Spec{Kind: KindUDP, UDP: u}, err
	case KindKafka:
		k, err := parseKafka(raw)
		return Spec{Kind: KindKafka, Kafka: k}, err
	case KindDiscard:
		return Spec{}, errors.New("discard takes no path or parameters: write just discard")
	}
	return Spec{}, fmt.Errorf("unknown scheme %q: use %s", scheme, usage)
}

const usage = "pcap:DIR, nats://HOST:PORT/SUBJECT, kafka://HOST:PORT/TOPIC, udp://HOST:PORT or discard"

func parsePcap(rest string) (PcapSpec, error) {
	dir, query, _ := strings.Cut(rest, "?")
	if dir == "" {
		return PcapSpec{}, errors.New("no directory: write pcap:DIR, e.g. pcap:./capture")
	}
	if strings.HasPrefix(dir, "//") {
		return PcapSpec{}, errors.New("pcap takes a path, not a host: write pcap:/abs/dir or pcap:./rel/dir")
	}
	p := PcapSpec{Dir: dir, MaxBytes: defaultPcapMaxMB << 20, MaxAge: defaultPcapMaxAge}
	q, err := parseQuery(query, pcapParamMaxMB, pcapParamMaxAge)
	if err != nil {
		return p, err
	}
	if v, ok := q[pcapParamMaxMB]; ok {
		mb, err := parseInt(pcapParamMaxMB, v, 0, maxPcapMB)
		if err != nil {
			return p, err
		}
		p.MaxBytes = int64(mb) << 20
	}
	if v, ok := q[pcapParamMaxAge]; ok {
		if p.MaxAge, err = parseDuration(pcapParamMaxAge, v, true); err != nil {
			return p, err
		}
	}
	return p, nil
}

func parseNATS(raw string) (NATSSpec, error) {
	// Parsed here rather than by net/url, which takes a seed list
	// "a:4222,b:4222" for one host "a:4222,b" with port 4222.
	scheme, rest, _ := strings.Cut(raw, ":")
	rest, ok := strings.CutPrefix(rest, "//")
	if !ok {
		return NATSSpec{}, fmt.Errorf("no host: write %s://HOST:PORT/SUBJECT", scheme)
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	if strings.Contains(tail, "@") {
		// Most likely a password with a raw / ? or #: refuse it without
		// quoting any part, which could be the password's.
		return NATSSpec{}, errors.New("an @ after the host: percent-encode / ? # in a user name or password (%2F %3F %23) and @ in a subject or parameter (%40)")
	}
	if strings.Contains(tail, "#") {
		return NATSSpec{}, errors.New("a fragment (#...) means nothing here")
	}
	var n NATSSpec
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		var err error
		if n.User, n.Password, n.Token, err = parseUserinfo(authority[:at]); err != nil {
			return NATSSpec{}, err
		}
		authority = authority[at+1:]
	}
	if misplacedSecretParam(authority + tail) {
		return NATSSpec{}, errors.New("password= or token= where a parameter can't start: begin the parameters with one ? and separate them with &")
	}
	if authority == "" {
		return NATSSpec{}, errors.New("no host: write nats://HOST:PORT/SUBJECT")
	}
	seen := map[string]bool{}
	for entry := range strings.SplitSeq(authority, ",") {
		addr, err := parseServer(entry)
		if err != nil {
			return NATSSpec{}, err
		}
		if seen[addr] {
			return NATSSpec{}, fmt.Errorf("server %s is listed twice", addr)
		}
		seen[addr] = true
		n.Servers = append(n.Servers, addr)
	}
	path, query, _ := strings.Cut(tail, "?")
	subject, err := url.PathUnescape(strings.TrimPrefix(path, "/"))
	if err != nil {
		return NATSSpec{}, errors.New("the subject has an invalid %-escape")
	}
	if err := checkNATSSubject(subject); err != nil {
		return NATSSpec{}, err
	}
	n.Subject, n.Batch = subject, 1
	n.MaxInFlight, n.MaxBufferBytes = defaultMaxInFlight, defaultMaxBufferMB<<20
	n.AckTimeout, n.RetryFor, n.MaxWait = defaultAckTimeout, defaultRetryFor, defaultMaxWait
	q, err := parseQuery(query, append([]string{natsParamStream, natsParamBatch, natsParamMaxInFlight,
		natsParamMaxBuffer, natsParamAckTimeout, natsParamRetryFor, natsParamMaxWait}, natsSecurityParams...)...)
	if err != nil {
		return n, err
	}
	if err := parseNATSSecurity(&n, scheme, q); err != nil {
		return n, err
	}
	if v, ok := q[natsParamStream]; ok {
		if err := checkStreamName(v); err != nil {
			return n, err
		}
		n.Stream = v
	}
	for _, p := range []struct {
		name     string
		dst      *int
		min, max int
		unit     int
	}{
		{natsParamBatch, &n.Batch, 1, maxNATSBatch, 1},
		{natsParamMaxInFlight, &n.MaxInFlight, 1, maxNATSMaxInFlight, 1},
		{natsParamMaxBuffer, &n.MaxBufferBytes, 1, maxNATSBufferMB, 1 << 20},
	} {
		if v, ok := q[p.name]; ok {
			i, err := parseInt(p.name, v, p.min, p.max)
			if err != nil {
				return n, err
			}
			*p.dst = i * p.unit
		}
	}
	for _, p := range []struct {
		name string
		dst  *time.Duration
		zero bool
	}{
		{natsParamAckTimeout, &n.AckTimeout, false},
		{natsParamRetryFor, &n.RetryFor, true},
		{natsParamMaxWait, &n.MaxWait, true},
	} {
		if v, ok := q[p.name]; ok {
			if *p.dst, err = parseDuration(p.name, v, p.zero); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// parseUserinfo splits USER:PASS or TOKEN, percent-decoded as net/url does.
// Its errors never quote it.
func parseUserinfo(s string) (user, pass, token string, err error) {
	user, pass, hasPass := strings.Cut(s, ":")
	if user, err = url.PathUnescape(user); err == nil {
		pass, err = url.PathUnescape(pass)
	}
	if err != nil {
		return "", "", "", errors.New("the user or password has an invalid %-escape")
	}
	if !hasPass {
		return "", "", user, nil // what nats.go makes of a user without a password
	}
	return user, pass, "", nil
}

// parseServer parses one HOST[:PORT] of a seed list.
func parseServer(s string) (string, error) {
	if s == "" {
		return "", errors.New("an empty server in the list: write nats://HOST:PORT[,HOST:PORT...]/SUBJECT")
	}
	addr, err := parseHostPort(s, defaultNATSPort, false)
	if err != nil {
		return "", fmt.Errorf("server %q: %w", s, err)
	}
	return addr, nil
}

var errNoPort = errors.New("no port")

// parseHostPort parses HOST[:PORT] into HOST:PORT: the host a DNS name, an
// IPv4 address or an IPv6 address in brackets (canonical form; with a zone,
// written %25ZONE, if zoneOK), the port defPort when missing (required if
// defPort is empty: errNoPort). net/url takes "::1" for host ":" and port 1,
// and "a:1,b:2" for host "a:1,b": hence our own.
func parseHostPort(s, defPort string, zoneOK bool) (string, error) {
	var host, port string
	hasPort := false
	if inner, ok := strings.CutPrefix(s, "["); ok {
		h, after, ok := strings.Cut(inner, "]")
		if ok && zoneOK {
			h, _ = url.PathUnescape(h) // %25eth0; a bad escape fails ParseAddr below
		}
		a, err := netip.ParseAddr(h)
		if !ok || err != nil || !a.Is6() || (a.Zone() != "" && !zoneOK) {
			zone := "without a zone "
			if zoneOK {
				zone = ""
			}
			return "", fmt.Errorf("want an IPv6 address %sin brackets, e.g. [2001:db8::1]:4222", zone)
		}
		host = a.String()
		if after != "" {
			if port, hasPort = strings.CutPrefix(after, ":"); !hasPort {
				return "", errors.New("want [IPV6]:PORT")
			}
		}
	} else {
		host, port, hasPort = strings.Cut(s, ":")
		if strings.Contains(port, ":") {
			return "", errors.New("write an IPv6 address in brackets, e.g. [2001:db8::1]:4222")
		}
		if !validHost(host) {
			return "", errors.New("want a host name or IP address")
		}
	}
	if !hasPort {
		if defPort == "" {
			return "", errNoPort
		}
		port = defPort
	}
	p, err := parseInt("port", port, 1, 65535)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

// validHost accepts a DNS name or an IPv4 address.
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, c := range []byte(h) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

func parseUDP(raw string) (UDPSpec, error) {
	if strings.Contains(raw, "@") {
		return UDPSpec{}, errors.New("udp takes no user or password")
	}
	rest, ok := strings.CutPrefix(raw, "udp://")
	if !ok {
		return UDPSpec{}, errors.New("no host: write udp://HOST:PORT")
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	hosts, tail := rest[:end], rest[end:]
	if strings.Contains(tail, "#") {
		return UDPSpec{}, errors.New("a fragment (#...) means nothing here: udp takes no parameters but source (and ports): write udp://HOST:PORT[?source=original]")
	}
	path, query, _ := strings.Cut(tail, "?")
	if path != "" && path != "/" {
		return UDPSpec{}, fmt.Errorf("udp takes no path (%q): write udp://HOST:PORT", path)
	}
	entries := strings.Split(hosts, ",")
	if len(entries) > 2 {
		return UDPSpec{}, errors.New("more than two collector addresses: a udp sink sends to one collector, at most one address per family (udp://IPV4:PORT,[IPV6]:PORT); write a sink per collector")
	}
	var addrs []string
	var family [2]string // the literal address given for IPv4, IPv6
	for _, hp := range entries {
		if h, p, _ := strings.Cut(hp, ":"); h == "" && !strings.Contains(p, ":") { // "" or ":PORT"
			return UDPSpec{}, errors.New("no host: write udp://HOST:PORT")
		}
		addr, err := parseHostPort(hp, "", true)
		if errors.Is(err, errNoPort) {
			return UDPSpec{}, errors.New("no port: write udp://HOST:PORT")
		}
		if err != nil {
			return UDPSpec{}, fmt.Errorf("collector %q: %w", hp, err)
		}
		if slices.Contains(addrs, addr) {
			return UDPSpec{}, fmt.Errorf("collector %s is listed twice", addr)
		}
		if ap, err := netip.ParseAddrPort(addr); err == nil {
			f := udpFamily(ap.Addr())
			if family[f] != "" {
				return UDPSpec{}, fmt.Errorf("collector %s and %s are of one family: give one address per family, or write a sink per collector", family[f], addr)
			}
			family[f] = addr
		}
		addrs = append(addrs, addr)
	}
	u := UDPSpec{Addr: strings.Join(addrs, ",")}
	q, err := parseQuery(query, udpParamSource)
	if err != nil {
		return UDPSpec{}, fmt.Errorf("udp takes no parameters but source (and ports): %w", err)
	}
	switch v, ok := q[udpParamSource]; {
	case !ok || v == udpSourceRelay:
	case v == udpSourceOriginal:
		u.KeepSource = true
	default:
		return UDPSpec{}, fmt.Errorf("source=%q: want %s (each datagram keeps its exporter's address and port; needs CAP_NET_RAW) or %s (sent from this server's own socket, the default)",
			v, udpSourceOriginal, udpSourceRelay)
	}
	return u, nil
}

// parseQuery parses a query and refuses unknown and repeated parameters.
func parseQuery(query string, known ...string) (map[string]string, error) {
	vals, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("can't parse the parameters: %w", err)
	}
	out := make(map[string]string, len(vals))
	for k, v := range vals {
		if !slices.Contains(known, k) {
			if len(known) == 0 {
				return nil, fmt.Errorf("unknown parameter %q: this sink takes none", k)
			}
			return nil, fmt.Errorf("unknown parameter %q: known are %s", k, strings.Join(known, ", "))
		}
		if len(v) != 1 {
			return nil, fmt.Errorf("parameter %q given %d times", k, len(v))
		}
		out[k] = v[0]
	}
	return out, nil
}

func parseInt(name, v string, lo, hi int) (int, error) {
	i, err := strconv.Atoi(v)
	if err != nil || i < lo || i > hi {
		return 0, fmt.Errorf("%s=%q: want an integer from %d to %d", name, v, lo, hi)
	}
	return i, nil
}

func parseDuration(name, v string, zeroOK bool) (time.Duration, error) {
	if zeroOK && v == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%s=%q: want a duration such as 500ms, 60s or 10m", name, v)
	case d < 0 || (d == 0 && !zeroOK):
		return 0, fmt.Errorf("%s=%q: want a positive duration", name, v)
	}
	return d, nil
}

// checkSubject accepts a NATS subject one can publish to: dot-separated
// non-empty tokens, no wildcards, no white space.
func checkSubject(s string) error {
	if s == "" {
		return errors.New("no subject: write nats://HOST:PORT/SUBJECT")
	}
	for tok := range strings.SplitSeq(s, ".") {
		switch {
		case tok == "":
			return fmt.Errorf("subject %q has an empty token", s)
		case tok == "*" || tok == ">":
			return fmt.Errorf("subject %q has a wildcard: publish to a literal subject", s)
		case strings.ContainsAny(tok, " \t\r\n"):
			return fmt.Errorf("subject %q contains white space", s)
		}
	}
	return nil
}

// checkStreamName accepts what nats-server accepts as a stream name.
func checkStreamName(s string) error {
	if s == "" {
		return errors.New("stream= is empty: name a stream or leave the parameter out")
	}
	if len(s) > 255 || strings.ContainsAny(s, " \t\r\n.*>/\\") {
		return fmt.Errorf("stream name %q: must be at most 255 characters without white space, '.', '*', '>', '/' or '\\'", s)
	}
	return nil
}

// Redact returns a sink URL fit for messages and logs: whatever sits
// between the scheme and the last @ (user, password, token) is hidden, the
// user name kept when a password follows it, and so is the value of a
// parameter such as password= or token= unless it is a file: or env:
// reference. It hides too much rather than too little when the URL is
// malformed.
func Redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, ":")
	if !ok {
		return raw
	}
	sep := ":"
	if r, ok := strings.CutPrefix(rest, "//"); ok {
		sep, rest = "://", r
	} else if Kind(scheme) == KindPcap {
		return raw // a path: no credentials, and an @ may be part of it
	}
	if i := strings.IndexAny(rest, "?#&;"); i >= 0 { // & ; for a mistyped ?
		q, whole := redactParams(rest[i+1:])
		if whole {
			return scheme + sep + "xxxxx"
		}
		rest = rest[:i+1] + q
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return scheme + sep + rest
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if hasPass && !strings.ContainsAny(user, "/?#@") {
		return scheme + sep + user + ":xxxxx" + rest[at:]
	}
	return scheme + sep + "xxxxx" + rest[at:]
}

// String returns the sink's name, the one its Sink's Name returns: its URL
// without credentials or parameters.
func (s Spec) String() string {
	name := s.dest()
	if s.Ports != nil {
		name += "?ports=" + portset.Format(s.Ports)
	}
	return name
}

// dest names the destination, as the opened sink's Name does.
func (s Spec) dest() string {
	switch s.Kind {
	case KindPcap:
		return "pcap:" + s.Pcap.Dir
	case KindNATS:
		return s.NATS.name()
	case KindUDP:
		return "udp://" + s.UDP.Addr
	case KindKafka:
		return s.Kafka.name()
	case KindDiscard:
		return "discard"
	}
	return "invalid sink spec"
}

// String and LogValue keep the credentials out of what prints or logs a
// spec whole (fmt's %v, slog's JSON handler).
func (n NATSSpec) String() string { return n.name() }

// LogValue is the name, for slog.
func (n NATSSpec) LogValue() slog.Value { return slog.StringValue(n.name()) }

// LogValue is the name, for slog.
func (s Spec) LogValue() slog.Value { return slog.StringValue(s.String()) }

func (n NATSSpec) name() string { return n.scheme() + "://" + n.addrs() + "/" + n.Subject }

// addrs lists the servers for messages (never the credentials).
func (n NATSSpec) addrs() string { return strings.Join(n.Servers, ",") }

// Destinations names the places the sink writes to, such that two sinks
// sharing one would write the same datagrams twice there (or, for pcap, race
// for its files): the pcap directory made absolute, each NATS server with
// the subject, the UDP collector. Like Parse it resolves no name, so two
// names of one host are not seen as one.
func (s Spec) Destinations() []string {
	switch s.Kind {
	case KindPcap:
		dir, err := filepath.Abs(s.Pcap.Dir)
		if err != nil {
			dir = filepath.Clean(s.Pcap.Dir)
		}
		return []string{"pcap:" + dir}
	case KindNATS:
		out := make([]string, len(s.NATS.Servers))
		for i, srv := range s.NATS.Servers {
			out[i] = "nats://" + canonHostPort(srv) + "/" + s.NATS.Subject
		}
		return out
	case KindUDP:
		return []string{"udp://" + canonHostPort(s.UDP.Addr)}
	case KindKafka:
		return s.Kafka.destinations()
	case KindDiscard:
		return []string{"discard"}
	}
	return nil
}

// canonHostPort writes an address one way: IP addresses in their canonical
// form, host names in lower case.
func canonHostPort(hp string) string {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return strings.ToLower(hp)
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return net.JoinHostPort(a.Unmap().String(), p)
	}
	return net.JoinHostPort(strings.ToLower(h), p)
}
