package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
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
		{"udp://[fe80::1%25eth1]:9000", Spec{Kind: KindUDP, UDP: UDPSpec{Addr: "[fe80::1%eth1]:9000"}}, "udp://[fe80::1%eth1]:9000"},
		{"udp://Collector.example:2055", Spec{Kind: KindUDP, UDP: UDPSpec{Addr: "Collector.example:2055"}}, "udp://Collector.example:2055"},
		{"nats://127.0.0.1/ingest.udp", Spec{Kind: KindNATS, NATS: NATSSpec{
			Servers: []string{"127.0.0.1:4222"}, Subject: "ingest.udp", Batch: 1,
			MaxInFlight: 4096, MaxBufferBytes: 64 << 20, AckTimeout: 5 * time.Second, RetryFor: 30 * time.Second, MaxWait: time.Second,
		}}, "nats://127.0.0.1:4222/ingest.udp"},
		{"nats://u:p%40ss@nats.example:4333/s?stream=S1&batch=64&max_inflight=10&max_buffer_mb=2&ack_timeout=2s&retry_for=0&max_wait=0",
			Spec{Kind: KindNATS, NATS: NATSSpec{
				Servers: []string{"nats.example:4333"}, User: "u", Password: "p@ss", Subject: "s", Stream: "S1", Batch: 64,
				MaxInFlight: 10, MaxBufferBytes: 2 << 20, AckTimeout: 2 * time.Second,
			}}, "nats://nats.example:4333/s"},
		// Seed lists, as nats.go takes them: the default port for each
		// server without one, IPv6 in brackets (canonical form), the
		// credentials for all.
		{"nats://tok3n@a:4222,b,[2001:DB8::0:7]:4333,[2001:db8::8]/ingest", Spec{Kind: KindNATS, NATS: NATSSpec{
			Servers: []string{"a:4222", "b:4222", "[2001:db8::7]:4333", "[2001:db8::8]:4222"}, Token: "tok3n", Subject: "ingest", Batch: 1,
			MaxInFlight: 4096, MaxBufferBytes: 64 << 20, AckTimeout: 5 * time.Second, RetryFor: 30 * time.Second, MaxWait: time.Second,
		}}, "nats://a:4222,b:4222,[2001:db8::7]:4333,[2001:db8::8]:4222/ingest"},
		{"nats://u:@h/a%2Eb", Spec{Kind: KindNATS, NATS: NATSSpec{
			Servers: []string{"h:4222"}, User: "u", Subject: "a.b", Batch: 1,
			MaxInFlight: 4096, MaxBufferBytes: 64 << 20, AckTimeout: 5 * time.Second, RetryFor: 30 * time.Second, MaxWait: time.Second,
		}}, "nats://h:4222/a.b"},
	} {
		got, err := Parse(c.url)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.url, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Parse(%q):\n got %+v\nwant %+v", c.url, got, c.want)
		}
		if got.String() != c.name {
			t.Errorf("Parse(%q).String() = %q, want %q", c.url, got.String(), c.name)
		}
	}
}

// badURLs are refused by Parse, each with a message containing want.
var badURLs = []struct{ url, want string }{
	{"", "empty"},
	{"capture", "no scheme"},
	{"amqp://x:5672/q", `unknown scheme "amqp"`},
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
	{"udp://198.18.0.2:9000#x", "no parameters"},
	{"udp://::1", "IPv6 address in brackets"}, // was accepted as [:]:1
	{"udp://::1:9000", "IPv6 address in brackets"},
	{"udp://[::1", "IPv6 address in brackets"},
	{"udp://[::1]", "no port"},
	{"udp://h x:9000", "host name or IP address"},
	{"udp:198.18.0.2:9000", "no host"},
	{"nats://h:4222", "no subject"},
	{"nats:///subj", "no host"},
	{"nats://h:4222/a..b", "empty token"},
	{"nats://h:4222/a.*", "wildcard"},
	{"nats://h:4222/a.>", "wildcard"},
	{"nats://h:x/s", `port="x"`},
	{"nats://h:/s", `port=""`},
	{"nats://a:4222,b:4222:1/s", "IPv6 address in brackets"},
	{"nats://a:4222,,b/s", "empty server"},
	{"nats://a:4222,/s", "empty server"},
	{"nats://a,a:4222/s", "a:4222 is listed twice"},
	{"nats://[2001:db8::1/s", "IPv6 address without a zone in brackets"},
	{"nats://[198.18.0.1]:4222/s", "IPv6 address without a zone in brackets"},
	{"nats://[fe80::1%25eth0]:4222/s", "IPv6 address without a zone in brackets"},
	{"nats://[2001:db8::1]4222/s", "want [IPV6]:PORT"},
	{"nats://h%20x/s", "want a host name or IP address"},
	{"nats://h/s#frag", "fragment"},
	{"nats://h/s%zz", "invalid %-escape"},
	{"nats:h/s", "no host"},
	{"nats://u:%zz@h/s", "invalid %-escape"},
	{"nats://u:pa/ss@h/s", "an @ after the host"},
	{"udp://u:p@198.18.0.2:9000", "no user or password"},
	{"nats://h:4222/s?batch=0", "batch=\"0\""},
	{"nats://h:4222/s?batch=100000", "from 1 to 4096"},
	{"nats://h:4222/s?stream=a.b", "stream name"},
	{"nats://h:4222/s?stream=", "stream= is empty"},
	{"nats://h:4222/s?ack_timeout=0", "positive"},
	{"nats://h:4222/s?bach=2", `unknown parameter "bach"`},
}

func TestParseBad(t *testing.T) {
	for _, c := range badURLs {
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

// withCreds returns url with userinfo put after "scheme://", or url itself
// when it has no "//" (no place for credentials: a pcap path, discard).
func withCreds(url, userinfo string) (string, bool) {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url, false
	}
	return scheme + "://" + userinfo + "@" + rest, true
}

// credForms are user:password and token userinfos, some malformed, each
// hiding a secret that contains secretMark. (User names are shown.)
const secretMark = "Zq9s3cr"

var credForms = []string{
	"user:" + secretMark + "et",
	secretMark + "tok3n", // a token: a user without a password
	"user:" + secretMark + "%40x",
	"user:" + secretMark + "/x",   // raw / in a password
	"user:" + secretMark + "?x=1", // raw ?
	"user:" + secretMark + "#x",   // raw #
	"user:" + secretMark + "@x",   // raw @
	"user:" + secretMark + "%zz",  // bad escape
	"user:" + secretMark + ",h2",  // a comma, as in a seed list
	"a@" + secretMark + "x",       // an @ in a token
}

// Every error path of Parse, with every form of credentials: the secret
// appears in no error, and where the URL is accepted, in no name,
// destination or printed form of the spec.
func TestParseRedacts(t *testing.T) {
	urls := []string{"nats://h:4222/s", "nats://a,b:4333/s.t?stream=S", "udp://198.18.0.2:9000", "kafka://h:1/t", "pcap://h/d"}
	for _, c := range badURLs {
		urls = append(urls, c.url)
	}
	for _, base := range urls {
		for _, cred := range credForms {
			url, ok := withCreds(base, cred)
			if !ok {
				continue
			}
			sp, err := Parse(url)
			if err != nil {
				if strings.Contains(err.Error(), secretMark) {
					t.Errorf("Parse(%q): the error shows the secret: %v", url, err)
				}
				continue
			}
			if sp.Kind == KindNATS && sp.NATS.User+sp.NATS.Password+sp.NATS.Token == "" {
				t.Errorf("Parse(%q): the credentials are lost: %+v", url, sp)
			}
			var logged strings.Builder
			log := slog.New(slog.NewJSONHandler(&logged, nil))
			log.Info("x", "spec", sp, "nats", sp.NATS)
			slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "spec", sp, "nats", sp.NATS)
			shown := []string{sp.String(), fmt.Sprint(sp), fmt.Sprintf("%+v %v", sp, sp.NATS), logged.String()}
			shown = append(shown, sp.Destinations()...)
			for _, s := range shown {
				if strings.Contains(s, secretMark) {
					t.Errorf("Parse(%q): %q shows the secret", url, s)
				}
			}
		}
	}
}

// Redact hides what sits between the scheme and the last @, keeping a user
// name followed by a password.
func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"nats://user:pw@h/s":        "nats://user:xxxxx@h/s",
		"nats://token@h/s":          "nats://xxxxx@h/s",
		"nats://u:p/w@h/s":          "nats://u:xxxxx@h/s",
		"nats://a@b:c@h/s":          "nats://xxxxx@h/s",
		"nats://u:p@w@h/s":          "nats://u:xxxxx@h/s",
		"nats:u:p@h/s":              "nats:u:xxxxx@h/s",
		"udp://u:p@198.18.0.2:9000": "udp://u:xxxxx@198.18.0.2:9000",
		"nats://h/s":                "nats://h/s",
		"pcap:/srv/a@b":             "pcap:/srv/a@b",
		"pcap://u:p@h/d":            "pcap://u:xxxxx@h/d",
		"capture@x":                 "capture@x",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// Spec.String is the name the opened sink gives itself (its metrics label),
// which config's check for duplicate names relies on.
func TestSpecStringIsSinkName(t *testing.T) {
	srv := startNATS(t, 0, t.TempDir())
	for _, url := range []string{
		"discard", "discard:",
		"pcap:" + t.TempDir() + "/c?max_mb=1",
		"udp://127.0.0.1:9",
		fmt.Sprintf("nats://127.0.0.1:%d/name.check?stream=NAMECHECK", natsPort(srv)),
	} {
		sp, err := Parse(url)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Open(context.Background(), sp, Options{Workers: 1})
		if err != nil {
			t.Fatalf("open %s: %v", url, err)
		}
		if s.Name() != sp.String() {
			t.Errorf("%s: Name() %q, String() %q", url, s.Name(), sp.String())
		}
		s.Close()
	}
}

// Destinations: one per place written, in one spelling whatever the URL's.
func TestDestinations(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for url, want := range map[string][]string{
		"pcap:./c/":                               {"pcap:" + filepath.Join(wd, "c")},
		"pcap:/srv/x/../c?max_mb=3":               {"pcap:/srv/c"},
		"nats://u:p@A.example,[2001:DB8::1]:5/su": {"nats://a.example:4222/su", "nats://[2001:db8::1]:5/su"},
		"udp://[::ffff:198.18.0.2]:9000":          {"udp://198.18.0.2:9000"},
		"udp://Collector.example:9000":            {"udp://collector.example:9000"},
		"discard:":                                {"discard"},
	} {
		sp, err := Parse(url)
		if err != nil {
			t.Fatal(err)
		}
		if got := sp.Destinations(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: destinations %q, want %q", url, got, want)
		}
	}
}
