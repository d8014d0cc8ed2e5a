package sink

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseGood(t *testing.T) {
	for _, c := range []struct {
		url  string
		want Spec
		name string
	}{
		{"discard", Spec{Kind: KindDiscard}, "discard"},
		{DefaultURL, Spec{Kind: KindPcap, Pcap: PcapSpec{Dir: "./capture", MaxBytes: 256 << 20, MaxAge: 10 * time.Minute}}, "pcap:./capture"},
		{"pcap:/var/lib/x?max_mb=1&max_age=60s", Spec{Kind: KindPcap, Pcap: PcapSpec{Dir: "/var/lib/x", MaxBytes: 1 << 20, MaxAge: time.Minute}}, "pcap:/var/lib/x"},
		{"pcap:d?max_mb=0&max_age=0", Spec{Kind: KindPcap, Pcap: PcapSpec{Dir: "d"}}, "pcap:d"},
		{"udp://198.18.0.2:9000", Spec{Kind: KindUDP, UDP: UDPSpec{Addr: "198.18.0.2:9000"}}, "udp://198.18.0.2:9000"},
		{"udp://[2001:db8::2]:9000/", Spec{Kind: KindUDP, UDP: UDPSpec{Addr: "[2001:db8::2]:9000"}}, "udp://[2001:db8::2]:9000"},
		{"nats://127.0.0.1/ingest.udp", Spec{Kind: KindNATS, NATS: NATSSpec{
			ServerURL: "nats://127.0.0.1:4222", Addr: "127.0.0.1:4222", Subject: "ingest.udp", Batch: 1,
			MaxInFlight: 4096, MaxBufferBytes: 64 << 20, AckTimeout: 5 * time.Second, RetryFor: 30 * time.Second, MaxWait: time.Second,
		}}, "nats://127.0.0.1:4222/ingest.udp"},
		{"nats://u:p%40ss@nats.example:4333/s?stream=S1&batch=64&max_inflight=10&max_buffer_mb=2&ack_timeout=2s&retry_for=0&max_wait=0",
			Spec{Kind: KindNATS, NATS: NATSSpec{
				ServerURL: "nats://u:p%40ss@nats.example:4333", Addr: "nats.example:4333", Subject: "s", Stream: "S1", Batch: 64,
				MaxInFlight: 10, MaxBufferBytes: 2 << 20, AckTimeout: 2 * time.Second,
			}}, "nats://nats.example:4333/s"},
	} {
		got, err := Parse(c.url)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.url, err)
			continue
		}
		if got != c.want {
			t.Errorf("Parse(%q):\n got %+v\nwant %+v", c.url, got, c.want)
		}
		if got.String() != c.name {
			t.Errorf("Parse(%q).String() = %q, want %q", c.url, got.String(), c.name)
		}
	}
}

func TestParseBad(t *testing.T) {
	for _, c := range []struct{ url, want string }{
		{"", "empty"},
		{"capture", "no scheme"},
		{"kafka://x:1/t", `unknown scheme "kafka"`},
		{"file:/tmp", `unknown scheme "file"`},
		{"discard:x", "discard takes no path"},
		{"pcap:", "no directory"},
		{"pcap:?max_mb=1", "no directory"},
		{"pcap://host/dir", "not a host"},
		{"pcap:d?max_mb=x", `max_mb="x": want an integer`},
		{"pcap:d?max_mb=-1", "from 0 to"},
		{"pcap:d?max_age=soon", `max_age="soon": want a duration`},
		{"pcap:d?max_age=-5s", "positive"},
		{"pcap:d?maxmb=1", `unknown parameter "maxmb": known are max_mb, max_age`},
		{"pcap:d?max_mb=1&max_mb=2", "given 2 times"},
		{"udp://198.18.0.2", "no port"},
		{"udp://198.18.0.2:0", "port=\"0\""},
		{"udp://198.18.0.2:70000", "from 1 to 65535"},
		{"udp://:9000", "no host"},
		{"udp://198.18.0.2:9000/x", "no path"},
		{"udp://198.18.0.2:9000?batch=1", "no parameters"},
		{"nats://h:4222", "no subject"},
		{"nats:///subj", "no host"},
		{"nats://h:4222/a..b", "empty token"},
		{"nats://h:4222/a.*", "wildcard"},
		{"nats://h:4222/a.>", "wildcard"},
		{"nats://h:x/s", "invalid port"},
		{"nats://h:4222/s?batch=0", "batch=\"0\""},
		{"nats://h:4222/s?batch=100000", "from 1 to 4096"},
		{"nats://h:4222/s?stream=a.b", "stream name"},
		{"nats://h:4222/s?stream=", "stream= is empty"},
		{"nats://h:4222/s?ack_timeout=0", "positive"},
		{"nats://h:4222/s?bach=2", `unknown parameter "bach"`},
	} {
		_, err := Parse(c.url)
		if err == nil {
			t.Errorf("Parse(%q) accepted", c.url)
			continue
		}
		if !errors.Is(err, ErrBadURL) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q): %v; want ErrBadURL and %q", c.url, err, c.want)
		}
	}
}

// Passwords never appear in errors or names.
func TestParseRedacts(t *testing.T) {
	_, err := Parse("nats://user:s3cret@h:4222/s?bach=1")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error shows the password: %v", err)
	}
	_, err = Parse("nats://user:s3cret@h:99999/s")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error shows the password: %v", err)
	}
	s, err := Parse("nats://user:s3cret@h:4222/s")
	if err != nil || strings.Contains(s.String(), "s3cret") || strings.Contains(s.String(), "user") {
		t.Fatalf("name %q, %v", s, err)
	}
}
