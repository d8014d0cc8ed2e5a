package sink

import (
	"errors"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseKafka(t *testing.T) {
	def := KafkaSpec{
		Brokers: []string{"b1:9092"}, Topic: "flows", Acks: -1, Compression: "none",
		MaxInFlight: 65536, MaxBufferBytes: 64 << 20, Linger: 10 * time.Millisecond,
		AckTimeout: 10 * time.Second, RetryFor: 30 * time.Second, MaxWait: time.Second,
	}
	with := func(f func(*KafkaSpec)) KafkaSpec {
		k := def
		f(&k)
		return k
	}
	for _, c := range []struct {
		url  string
		want KafkaSpec
		name string
		dest []string
	}{
		{"kafka://b1/flows", def, "kafka://b1:9092/flows", []string{"kafka://b1:9092/flows"}},
		{"kafka://b1:9092,10.0.0.2:9093,[2001:db8::1]/flows", with(func(k *KafkaSpec) {
			k.Brokers = []string{"b1:9092", "10.0.0.2:9093", "[2001:db8::1]:9092"}
		}), "kafka://b1:9092,10.0.0.2:9093,[2001:db8::1]:9092/flows",
			[]string{"kafka://b1:9092/flows", "kafka://10.0.0.2:9093/flows", "kafka://[2001:db8::1]:9092/flows"}},
		{"kafka://B1/flows.{dport}", with(func(k *KafkaSpec) { k.Brokers, k.Topic = []string{"B1:9092"}, "flows.{dport}" }),
			"kafka://B1:9092/flows.{dport}", []string{"kafka://b1:9092/flows.{dport}"}},
		{"kafka://b1/flows?format=batch", with(func(k *KafkaSpec) { k.Batch = 64 }), "kafka://b1:9092/flows", nil},
		{"kafka://b1/flows?format=batch&batch=500&compression=zstd&acks=1", with(func(k *KafkaSpec) {
			k.Batch, k.Compression, k.Acks = 500, "zstd", 1
		}), "", nil},
		{"kafka://b1/flows?acks=0&compression=lz4&max_inflight=100&max_buffer_mb=8&linger=0&ack_timeout=2s&retry_for=1m&max_wait=0", with(func(k *KafkaSpec) {
			k.Acks, k.Compression, k.MaxInFlight, k.MaxBufferBytes = 0, "lz4", 100, 8<<20
			k.Linger, k.AckTimeout, k.RetryFor, k.MaxWait = 0, 2*time.Second, time.Minute, 0
		}), "", nil},
		{"kafka://b1/flows?tls=true", with(func(k *KafkaSpec) { k.TLS = &KafkaTLS{} }), "", nil},
		{"kafka://b1/flows?tls_ca=/etc/ca.pem&tls_cert=/c.pem&tls_key=/c.key&tls_server_name=kafka.example", with(func(k *KafkaSpec) {
			k.TLS = &KafkaTLS{CAFile: "/etc/ca.pem", CertFile: "/c.pem", KeyFile: "/c.key", ServerName: "kafka.example"}
		}), "kafka://b1:9092/flows", nil},
		{"kafka://b1/flows?sasl=SCRAM-SHA-512&sasl_user=ingest&sasl_password=file:/run/secrets/kafka", with(func(k *KafkaSpec) {
			k.SASL = &KafkaSASL{Mechanism: SASLScramSHA512, User: "ingest", Password: SecretRef{File: "/run/secrets/kafka"}}
		}), "kafka://b1:9092/flows", nil},
		{"kafka://b1/flows?sasl=plain&sasl_user=ingest&sasl_password=env:KAFKA_PW&tls=1", with(func(k *KafkaSpec) {
			k.SASL = &KafkaSASL{Mechanism: SASLPlain, User: "ingest", Password: SecretRef{Env: "KAFKA_PW"}}
			k.TLS = &KafkaTLS{}
		}), "", nil},
	} {
		spec, err := Parse(c.url)
		if err != nil {
			t.Errorf("%s: %v", c.url, err)
			continue
		}
		if spec.Kind != KindKafka || !reflect.DeepEqual(spec.Kafka, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.url, spec.Kafka, c.want)
		}
		if c.name != "" && spec.String() != c.name {
			t.Errorf("%s: name %q, want %q", c.url, spec.String(), c.name)
		}
		if c.dest != nil && !reflect.DeepEqual(spec.Destinations(), c.dest) {
			t.Errorf("%s: destinations %q, want %q", c.url, spec.Destinations(), c.dest)
		}
	}
}

func TestParseKafkaRefuses(t *testing.T) {
	for _, c := range []struct{ url, want string }{
		{"kafka://", "no broker"},
		{"kafka:b1/flows", "no broker"},
		{"kafka://b1", "no topic"},
		{"kafka://b1/", "no topic"},
		{"kafka://b1,,b2/t", "empty broker"},
		{"kafka://b1,b1:9092/t", "listed twice"},
		{"kafka://b1:0/t", "port"},
		{"kafka://2001:db8::1/t", "brackets"},
		{"kafka://user:Zq9secret@b1/t", "no user or password in the URL"},
		{"kafka://user:Zq9se/cret@b1/t", "no user or password in the URL"},
		{"kafka://user:Zq9se?cret@b1/t", "no user or password in the URL"},
		{"kafka://b1/t?sasl=plain&sasl_user=u@x&sasl_password=env:P", "no user or password in the URL"},
		{"kafka://b1/t#frag", "fragment"},
		{"kafka://b1/flows.{port}", "the only placeholder is {dport}"},
		{"kafka://b1/flows.{dport", "the only placeholder"},
		{"kafka://b1/fl ows", "only letters"},
		{"kafka://b1/a%2Fb", "only letters"},
		{"kafka://b1/..", "not allowed"},
		{"kafka://b1/" + strings.Repeat("x", 250), "longer than"},
		{"kafka://b1/" + strings.Repeat("x", 245) + "{dport}", "longer than"},
		{"kafka://b1/t?batch=10", "add format=batch"},
		{"kafka://b1/t?format=json", "format"},
		{"kafka://b1/t?format=batch&batch=0", "batch"},
		{"kafka://b1/t?format=batch&batch=5000", "batch"},
		{"kafka://b1/t?acks=2", "acks"},
		{"kafka://b1/t?compression=brotli", "compression"},
		{"kafka://b1/t?max_inflight=0", "max_inflight"},
		{"kafka://b1/t?max_buffer_mb=0", "max_buffer_mb"},
		{"kafka://b1/t?linger=2m", "linger"},
		{"kafka://b1/t?ack_timeout=10ms", "ack_timeout"},
		{"kafka://b1/t?ack_timeout=0", "ack_timeout"},
		{"kafka://b1/t?retry_for=100ms", "retry_for"},
		{"kafka://b1/t?retry_for=0", "retry_for"},
		{"kafka://b1/t?max_wait=-1s", "max_wait"},
		{"kafka://b1/t?tls=maybe", "tls"},
		{"kafka://b1/t?tls=false&tls_ca=/ca", "tls=false"},
		{"kafka://b1/t?tls_cert=/c.pem", "both tls_cert"},
		{"kafka://b1/t?tls_ca=", "empty"},
		{"kafka://b1/t?tls_server_name=a/b", "tls_server_name"},
		{"kafka://b1/t?sasl=gssapi&sasl_user=u&sasl_password=env:P", "sasl"},
		{"kafka://b1/t?sasl=plain&sasl_password=env:P", "sasl_user"},
		{"kafka://b1/t?sasl=plain&sasl_user=u", "sasl_password"},
		{"kafka://b1/t?sasl_user=u&sasl_password=env:P", "need sasl="},
		{"kafka://b1/t?sasl=plain&sasl_user=u&sasl_password=Zq9secret", "file:PATH or env:NAME"},
		{"kafka://b1/t?sasl=plain&sasl_user=u&sasl_password=env:A-B", "variable name"},
		{"kafka://b1/t?stream=X", "unknown parameter"},
		{"kafka://b1/t?acks=1&acks=0", "given 2 times"},
	} {
		_, err := Parse(c.url)
		if err == nil {
			t.Errorf("%s: accepted", c.url)
			continue
		}
		if !errors.Is(err, ErrBadURL) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want it to say %q", c.url, err, c.want)
		}
		// A secret typed into the URL never shows in the error.
		if strings.Contains(err.Error(), "Zq9s") {
			t.Errorf("%s: the error shows the secret: %v", c.url, err)
		}
	}
}

// The spec printed or logged whole shows where the password comes from,
// never more.
func TestKafkaSpecPrints(t *testing.T) {
	spec, err := Parse("kafka://b1/t?sasl=plain&sasl_user=u&sasl_password=env:KAFKA_PW")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{spec.String(), spec.Kafka.String(), spec.LogValue().String(), spec.Kafka.LogValue().String()} {
		if s != "kafka://b1:9092/t" {
			t.Errorf("printed as %q", s)
		}
	}
}

// Any kafka URL: Parse never panics; what it accepts has brokers in
// HOST:PORT form, a topic Kafka takes once {dport} is filled in, a
// destination per broker, and a name that parses back to the same brokers
// and topic.
func FuzzParseKafka(f *testing.F) {
	for _, s := range []string{
		"kafka://b1/flows", "kafka://b1:9092,[2001:db8::1]:9093/flows.{dport}?format=batch&batch=9&acks=1",
		"kafka://b/t?tls_ca=/a&tls_cert=/c&tls_key=/k&sasl=scram-sha-256&sasl_user=u&sasl_password=env:P",
		"kafka://u:Zq9s@b/t", "kafka://b/t?sasl=plain&sasl_user=u&sasl_password=Zq9s", "kafka://b/{dport}{dport}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		sp, err := Parse(raw)
		if err != nil || sp.Kind != KindKafka {
			return
		}
		k := sp.Kafka
		if len(k.Brokers) == 0 || len(sp.Destinations()) != len(k.Brokers) {
			t.Fatalf("%q: brokers %q, destinations %q", raw, k.Brokers, sp.Destinations())
		}
		for _, b := range k.Brokers {
			if _, _, err := net.SplitHostPort(b); err != nil || strings.ContainsAny(b, "@,/") {
				t.Fatalf("%q: broker %q", raw, b)
			}
		}
		if err := checkKafkaTopic(strings.ReplaceAll(k.Topic, kafkaDportVar, "2055")); err != nil {
			t.Fatalf("%q: topic %q: %v", raw, k.Topic, err)
		}
		again, err := Parse(k.name())
		if err != nil || !slices.Equal(again.Kafka.Brokers, k.Brokers) || again.Kafka.Topic != k.Topic {
			t.Fatalf("%q: name %q parses to %+v, %v", raw, k.name(), again.Kafka, err)
		}
	})
}
