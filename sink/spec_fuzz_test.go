package sink

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
)

// Any sink URL: Parse never panics; what it accepts has a name, a
// destination for each place, and NATS servers in HOST:PORT form; the name
// of a pcap or UDP sink parses back to the same sink.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"discard", "discard:", "pcap:./capture", "pcap:/var/x?max_mb=1&max_age=60s", "pcap://h/d",
		"udp://198.18.0.2:9000", "udp://[2001:db8::2]:9000/", "udp://u:p@h:1",
		"nats://h/s", "nats://u:p%40ss@a:4222,b,[2001:db8::1]:4333/s.t?stream=S&batch=64&max_wait=0",
		"nats://tok@a,b/s#f", "nats://a:4222,b:4222:1/s", "nats://[fe80::1%25eth0]/s", "nats://u:pa/ss@h/s",
		"kafka://h:1/t", "", "nats:", "nats://", "nats://@/", "nats://,/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		sp, err := Parse(raw)
		if err != nil {
			return
		}
		name := sp.String()
		dests := sp.Destinations()
		if name == "" || name == "invalid sink spec" || len(dests) == 0 {
			t.Fatalf("%q: name %q, destinations %q", raw, name, dests)
		}
		switch sp.Kind {
		case KindNATS:
			if len(sp.NATS.Servers) == 0 || len(dests) != len(sp.NATS.Servers) {
				t.Fatalf("%q: servers %q, destinations %q", raw, sp.NATS.Servers, dests)
			}
			for _, s := range sp.NATS.Servers {
				if _, _, err := net.SplitHostPort(s); err != nil || strings.ContainsAny(s, "@,/") {
					t.Fatalf("%q: server %q", raw, s)
				}
			}
		case KindPcap, KindUDP:
			again, err := Parse(name)
			if err != nil || again.String() != name || again.Destinations()[0] != dests[0] {
				t.Fatalf("%q: name %q parses to %v, %v", raw, name, again, err)
			}
		}
	})
}

// A NATS or UDP URL with credentials: the secret (whatever follows the
// marker in the password or token) shows in no error, name, destination or
// printed form of the spec.
func FuzzParseSecret(f *testing.F) {
	f.Add(uint8(0), "user", "et", "h:4222/s")
	f.Add(uint8(1), "", "tok", "a,b:4333/s.t?stream=S")
	f.Add(uint8(0), "u", "/x", "h/s")
	f.Add(uint8(0), "u", "@x,y", "h/s?batch=0")
	f.Add(uint8(2), "u", "p", "198.18.0.2:9000")
	f.Add(uint8(0), "u:v", "%zz", "[2001:db8::1]/s")
	f.Fuzz(func(t *testing.T, form uint8, user, pass, rest string) {
		const mark = "Zq9"
		if strings.Contains(user+rest, mark) || strings.Contains(rest, "%") {
			return // the marker could come from outside the secret
		}
		scheme := []string{"nats", "udp", "kafka", "pcap"}[form%4]
		userinfo := user + ":" + mark + pass // USER:PASS
		if form&4 != 0 {
			userinfo = user + mark + pass // TOKEN, the secret within it
			if strings.ContainsAny(user, "/?#@:") || strings.Contains(pass, ":") {
				return // a user name before a password then, which is shown
			}
		}
		raw := scheme + "://" + userinfo + "@" + rest
		sp, err := Parse(raw)
		if err != nil {
			if strings.Contains(err.Error(), mark) {
				t.Fatalf("%q: error shows the secret: %v", raw, err)
			}
			return
		}
		var logged strings.Builder
		slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "spec", sp, "nats", sp.NATS)
		shown := append([]string{sp.String(), fmt.Sprintf("%v %+v %s", sp, sp.NATS, sp.NATS), logged.String(), Redact(raw)}, sp.Destinations()...)
		for _, s := range shown {
			if strings.Contains(s, mark) {
				t.Fatalf("%q: %q shows the secret", raw, s)
			}
		}
	})
}
