package sink

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// The TLS, authentication and template parameters of a NATS URL.
func TestParseNATSSecurity(t *testing.T) {
	for _, c := range []struct {
		url   string
		check func(NATSSpec) bool
		name  string
	}{
		{"tls://a:4222,b/s", func(n NATSSpec) bool { return n.TLS && n.TLSCA == "" }, "tls://a:4222,b:4222/s"},
		{"nats://h/s?tls_ca=/etc/ca.pem", func(n NATSSpec) bool { return n.TLS && n.TLSCA == "/etc/ca.pem" }, "tls://h:4222/s"},
		{"tls://h/s?tls_ca=file:/etc/ca.pem&tls_cert=/c.pem&tls_key=/k.pem&tls_server_name=nats.example",
			func(n NATSSpec) bool {
				return n.TLS && n.TLSCA == "/etc/ca.pem" && n.TLSCert == "/c.pem" && n.TLSKey == "/k.pem" && n.TLSServerName == "nats.example"
			}, "tls://h:4222/s"},
		{"nats://h/s?user=ingest&password=env:NATS_PASS", func(n NATSSpec) bool {
			return n.User == "ingest" && n.PasswordRef == SecretRef{Env: "NATS_PASS"} && n.Password == "" && n.InlineSecret() == ""
		}, "nats://h:4222/s"},
		{"nats://h/s?token=file:/run/secrets/nats", func(n NATSSpec) bool { return n.TokenRef == SecretRef{File: "/run/secrets/nats"} }, "nats://h:4222/s"},
		{"nats://h/s?creds=/etc/xdpingest/ingest.creds", func(n NATSSpec) bool { return n.Creds == "/etc/xdpingest/ingest.creds" }, "nats://h:4222/s"},
		{"nats://h/s?nkey=seed.nk", func(n NATSSpec) bool { return n.Nkey == "seed.nk" }, "nats://h:4222/s"},
		{"nats://u:p@h/s", func(n NATSSpec) bool { return n.InlineSecret() == "password" }, "nats://h:4222/s"},
		{"nats://tok@h/s", func(n NATSSpec) bool { return n.InlineSecret() == "token" }, "nats://h:4222/s"},
		{"nats://h/flows.{dport}?stream=FLOWS&batch=8", func(n NATSSpec) bool {
			return n.IsTemplate() && n.SubjectFor(2055) == "flows.2055" && n.StreamSubject() == "flows.*"
		}, "nats://h:4222/flows.{dport}"},
		{"nats://h/{dport}.in", func(n NATSSpec) bool { return n.SubjectFor(9) == "9.in" && n.StreamSubject() == "*.in" }, "nats://h:4222/{dport}.in"},
		{"nats://h/flows.%7Bdport%7D", func(n NATSSpec) bool { return n.IsTemplate() }, "nats://h:4222/flows.{dport}"},
		{"nats://h/flows", func(n NATSSpec) bool {
			return !n.IsTemplate() && n.SubjectFor(1) == "flows" && n.StreamSubject() == "flows"
		}, "nats://h:4222/flows"},
	} {
		sp, err := Parse(c.url)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.url, err)
			continue
		}
		if sp.Kind != KindNATS || !c.check(sp.NATS) {
			t.Errorf("Parse(%q) = %+v", c.url, sp.NATS)
		}
		if sp.String() != c.name {
			t.Errorf("Parse(%q).String() = %q, want %q", c.url, sp.String(), c.name)
		}
	}
	// tls:// and nats:// to one server and subject are one destination.
	a, _ := Parse("tls://h/s")
	b, _ := Parse("nats://h:4222/s")
	if fmt.Sprint(a.Destinations()) != fmt.Sprint(b.Destinations()) {
		t.Errorf("destinations %q and %q differ", a.Destinations(), b.Destinations())
	}
}

func TestParseNATSSecurityRefuses(t *testing.T) {
	for _, c := range []struct{ url, want string }{
		{"nats://h/s?password=hunter2&user=u", "password: give where to read it"},
		{"nats://h/s?token=t0k", "token: give where to read it"},
		{"nats://h/s?user=u", "user= and password= go together"},
		{"nats://h/s?password=env:P", "user= and password= go together"},
		{"nats://u:p@h/s?password=env:P", "credentials before the host and password="},
		{"nats://tok@h/s?user=u&password=env:P", "a user before the host and user= too"},
		{"nats://h/s?token=env:T&creds=/c", "token= and creds=: authenticate one way only"},
		{"nats://h/s?creds=/c&nkey=/n", "creds= and nkey=: authenticate one way only"},
		{"nats://u:p@h/s?nkey=/n", "credentials before the host and nkey="},
		{"nats://h/s?tls_cert=/c", "tls_cert and tls_key go together"},
		{"nats://h/s?tls_key=/k", "tls_cert and tls_key go together"},
		{"nats://h/s?tls_ca=", "tls_ca= is empty"},
		{"nats://h/s?creds=env:CREDS", "creds takes the path of a file"},
		{"nats://h/s?tls_server_name=a%20b", "tls_server_name"},
		{"nats://h/s?user=", "want a user name"},
		{"nats://h/s?tls=1", `unknown parameter "tls"`},
		{"nats://h/flows.{sport}", "{dport} alone"},
		{"nats://h/flows.p{dport}", "{dport} alone"},
		{"nats://h/flows.{dport", "{dport} alone"},
		{"nats://h/flows.}", "{dport} alone"},
		{"nats://h/{dport}.{dport}", "more than once"},
		{"nats://h/flows.{dport}.*", "wildcard"},
		{"tls:h/s", "no host: write tls://"},
		{"tls://h/s?creds=/a%40b", ""}, // accepted: @ percent-encoded
	} {
		_, err := Parse(c.url)
		if c.want == "" {
			if err != nil {
				t.Errorf("Parse(%q): %v", c.url, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q): %v, want an error with %q", c.url, err, c.want)
		}
	}
}

// A secret typed into password= or token= (instead of a reference) is
// refused, and the error, which quotes the URL, does not show it; nor does
// anything that prints a spec holding references.
func TestParseNATSSecretParamsRedacted(t *testing.T) {
	for _, url := range []string{
		"nats://h/s?user=u&password=" + secretMark,
		"nats://h/s?token=" + secretMark + "&stream=S",
		"nats://h/s?stream=S&token=x" + secretMark + "y&batch=2",
		"nats://h/s?password=" + secretMark + "@x",
		"nats://h/s?password=a@" + secretMark,
		"nats://h/s?pass%77ord=" + secretMark,
		"nats://h/s?password=file:" + secretMark + "@x&user=u", // an @ hides all: malformed
		"nats://h/s?token=env:" + secretMark + "-x",            // not a variable name
		"tls://u:p?token=" + secretMark + "@h/s",
		"nats://h/s?token=" + secretMark + "#frag",
		"nats://h/s?batch=0&token=" + secretMark,
		"nats://h/s?sasl_password=" + secretMark,     // another sink's secret parameter
		"nats://h/s?stream=S?password=" + secretMark, // ? for &
		"nats://h/s?stream=S;token=" + secretMark,    // ; for &
		"nats://h/s#token=" + secretMark,
		"nats://h/s?password=file:/x?token=" + secretMark,
		"nats://h/s?token=a%26" + secretMark,
	} {
		_, err := Parse(url)
		if err == nil {
			t.Errorf("Parse(%q) accepted", url)
			continue
		}
		if strings.Contains(err.Error(), secretMark) {
			t.Errorf("Parse(%q): the error shows the secret: %v", url, err)
		}
		if strings.Contains(Redact(url), secretMark) {
			t.Errorf("Redact(%q) = %q", url, Redact(url))
		}
	}
	// References are not secrets: Redact keeps them, to say where to look.
	for in, want := range map[string]string{
		"nats://h/s?user=u&password=env:NATS_PASS":     "nats://h/s?user=u&password=env:NATS_PASS",
		"nats://h/s?token=file:/run/secrets/nats":      "nats://h/s?token=file:/run/secrets/nats",
		"nats://h/s?token=t0k&batch=2":                 "nats://h/s?token=xxxxx&batch=2",
		"nats://u:pw@h/s?password=pw2":                 "nats://u:xxxxx@h/s?password=xxxxx",
		"nats://h/s?creds=/etc/a.creds&nkey=/etc/seed": "nats://h/s?creds=/etc/a.creds&nkey=/etc/seed",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	sp, err := Parse("tls://h/s?user=u&password=file:/run/" + "pw&tls_ca=/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "spec", sp, "nats", sp.NATS)
	for _, s := range []string{sp.String(), fmt.Sprint(sp), fmt.Sprintf("%+v", sp.NATS), logged.String()} {
		if s != "tls://h:4222/s" && !strings.Contains(s, `"tls://h:4222/s"`) {
			t.Errorf("a spec prints as %q, want its name", s)
		}
	}
}

// Whatever surrounds it, a secret typed as the value of a secret parameter
// shows neither in Redact's output nor in Parse's error.
func FuzzRedactSecretParam(f *testing.F) {
	f.Add("/s?stream=S", uint8(0), uint8(0), "&batch=2")
	f.Add("/s", uint8(1), uint8(1), "")
	f.Add("/s?a=1", uint8(2), uint8(2), "?x=1")
	f.Add("/s?a=@", uint8(3), uint8(3), "#f")
	f.Add("/s", uint8(4), uint8(0), "@h")
	f.Fuzz(func(t *testing.T, pre string, name, sep uint8, post string) {
		const mark = "Zq9"
		if strings.Contains(pre+post, mark) {
			return
		}
		names := []string{"password", "token", "sasl_password", "PassWord", "pass%77ord", "my_secret"}
		seps := []string{"?", "&", ";", "#"}
		raw := "nats://h" + pre + seps[int(sep)%len(seps)] + names[int(name)%len(names)] + "=" + mark + post
		if strings.Count(raw, mark) != 1 {
			return
		}
		if r := Redact(raw); strings.Contains(r, mark) {
			t.Fatalf("Redact(%q) = %q", raw, r)
		}
		if _, err := Parse(raw); err != nil && strings.Contains(err.Error(), mark) {
			t.Fatalf("Parse(%q): %v", raw, err)
		}
	})
}
