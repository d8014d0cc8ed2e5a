package sink

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// The NATS parameters for TLS, authentication and subject templates. The
// parsing of the rest of a NATS URL is in spec.go (parseNATS).
const (
	natsSchemeTLS = "tls"

	natsParamUser          = "user"
	natsParamPassword      = "password"
	natsParamToken         = "token"
	natsParamCreds         = "creds"
	natsParamNkey          = "nkey"
	natsParamTLSCA         = "tls_ca"
	natsParamTLSCert       = "tls_cert"
	natsParamTLSKey        = "tls_key"
	natsParamTLSServerName = "tls_server_name"

	// natsDportField is the one field a subject template may hold.
	natsDportField = "{dport}"
)

// natsSecurityParams are the parameters parseNATSSecurity reads.
var natsSecurityParams = []string{
	natsParamUser, natsParamPassword, natsParamToken, natsParamCreds, natsParamNkey,
	natsParamTLSCA, natsParamTLSCert, natsParamTLSKey, natsParamTLSServerName,
}

// parseNATSSecurity fills n's authentication and TLS from the parameters q
// (and the URL's scheme, tls or nats). User, Password and Token may already
// hold what the URL gave before the host. Its errors never quote a secret.
func parseNATSSecurity(n *NATSSpec, scheme string, q map[string]string) error {
	n.TLS = scheme == natsSchemeTLS
	for _, p := range []struct {
		name string
		dst  *string
	}{
		{natsParamTLSCA, &n.TLSCA},
		{natsParamTLSCert, &n.TLSCert},
		{natsParamTLSKey, &n.TLSKey},
		{natsParamCreds, &n.Creds},
		{natsParamNkey, &n.Nkey},
	} {
		v, ok := q[p.name]
		if !ok {
			continue
		}
		path, err := natsPathParam(p.name, v)
		if err != nil {
			return err
		}
		*p.dst = path
	}
	if v, ok := q[natsParamTLSServerName]; ok {
		if !validHost(v) {
			return fmt.Errorf("%s=%q: want the host name the server's certificate is for", natsParamTLSServerName, v)
		}
		n.TLSServerName = v
	}
	if (n.TLSCert == "") != (n.TLSKey == "") {
		return fmt.Errorf("%s and %s go together: give the client certificate and its private key, both PEM files", natsParamTLSCert, natsParamTLSKey)
	}
	if n.TLSCA != "" || n.TLSCert != "" || n.TLSServerName != "" {
		n.TLS = true // as nats.go's RootCAs and ClientCert options do
	}

	inline := n.User != "" || n.Password != "" || n.Token != ""
	if v, ok := q[natsParamUser]; ok {
		if inline {
			return errors.New("a user before the host and user= too: give it once, as user=NAME with password=")
		}
		if v == "" || strings.ContainsAny(v, " \t\r\n") {
			return fmt.Errorf("%s=%q: want a user name", natsParamUser, v)
		}
		n.User = v
	}
	var err error
	if v, ok := q[natsParamPassword]; ok {
		if n.PasswordRef, err = ParseSecretRef(natsParamPassword, v); err != nil {
			return err
		}
	}
	if v, ok := q[natsParamToken]; ok {
		if n.TokenRef, err = ParseSecretRef(natsParamToken, v); err != nil {
			return err
		}
	}
	if inline && (!n.PasswordRef.IsZero() || !n.TokenRef.IsZero()) {
		return errors.New("credentials before the host and password= or token= too: give them once, as user=NAME&password=file:PATH or token=file:PATH")
	}
	if !inline && (n.User != "") != !n.PasswordRef.IsZero() {
		return fmt.Errorf("%s= and %s= go together: user=NAME&password=file:PATH (or env:NAME)", natsParamUser, natsParamPassword)
	}
	var ways []string
	if inline {
		ways = append(ways, "credentials before the host")
	}
	if !n.PasswordRef.IsZero() {
		ways = append(ways, "user=/password=")
	}
	if !n.TokenRef.IsZero() {
		ways = append(ways, "token=")
	}
	if n.Creds != "" {
		ways = append(ways, "creds=")
	}
	if n.Nkey != "" {
		ways = append(ways, "nkey=")
	}
	if len(ways) > 1 {
		return fmt.Errorf("%s: authenticate one way only", strings.Join(ways, " and "))
	}
	return nil
}

// misplacedSecretParam says whether tail (the hosts and what follows them)
// names a secret parameter (password=, token=) anywhere but at the start of
// a parameter: in the hosts or the subject, or after a ?, ; or # within the
// parameters (a typo for &). The parameter before it would take the secret as part of
// its value, and errors quote values: such a URL is refused up front,
// quoting nothing.
func misplacedSecretParam(tail string) bool {
	q0 := strings.IndexByte(tail, '?')
	for i := 1; i < len(tail); i++ {
		if !strings.ContainsRune("&?;#", rune(tail[i-1])) || (i-1 == q0) || (q0 >= 0 && i-1 > q0 && tail[i-1] == '&') {
			continue
		}
		j := strings.IndexAny(tail[i:], "=&?;#")
		if j < 0 || tail[i+j] != '=' {
			continue
		}
		k := tail[i : i+j]
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if isSecretParam(k) {
			return true
		}
	}
	return false
}

// natsPathParam checks a parameter that names a file. "file:PATH" is taken
// for PATH, as in a secret reference; "env:" is refused: these files hold
// keys and belong on disk (or a mounted secret), not in a variable.
func natsPathParam(name, v string) (string, error) {
	if p, ok := strings.CutPrefix(v, "file:"); ok {
		v = p
	}
	switch {
	case v == "":
		return "", fmt.Errorf("%s= is empty: give the path of a file", name)
	case strings.HasPrefix(v, "env:"):
		return "", fmt.Errorf("%s takes the path of a file, not env:NAME", name)
	case strings.ContainsAny(v, "\x00\r\n"):
		return "", fmt.Errorf("%s: the path has a control character", name)
	}
	return v, nil
}

// checkNATSSubject accepts a literal subject, or a template holding
// {dport} as one whole token ("flows.{dport}", "{dport}.in"), which the sink
// replaces with each datagram's destination port.
func checkNATSSubject(s string) error {
	if !strings.ContainsAny(s, "{}") {
		return checkSubject(s)
	}
	fields := 0
	for tok := range strings.SplitSeq(s, ".") {
		if tok == natsDportField {
			fields++
			continue
		}
		if strings.ContainsAny(tok, "{}") {
			return fmt.Errorf("subject %q: a template takes {dport} alone, as a whole token (flows.{dport}); no other field or brace", s)
		}
	}
	if fields > 1 {
		return fmt.Errorf("subject %q: {dport} more than once", s)
	}
	return checkSubject(strings.Replace(s, natsDportField, "0", 1))
}

// IsTemplate says whether the subject holds {dport}.
func (n NATSSpec) IsTemplate() bool { return strings.Contains(n.Subject, natsDportField) }

// SubjectFor returns the subject of a datagram to port dport.
func (n NATSSpec) SubjectFor(dport uint16) string {
	if !n.IsTemplate() {
		return n.Subject
	}
	return strings.Replace(n.Subject, natsDportField, fmt.Sprint(dport), 1)
}

// StreamSubject is what a stream must capture: the subject, or for a
// template the subject with * for {dport} (flows.{dport}: flows.*).
func (n NATSSpec) StreamSubject() string {
	return strings.Replace(n.Subject, natsDportField, "*", 1)
}

// scheme is tls when the sink requires TLS (the tls:// scheme, or a tls_
// parameter), else nats: the scheme of its name.
func (n NATSSpec) scheme() string {
	if n.TLS {
		return natsSchemeTLS
	}
	return string(KindNATS)
}

// InlineSecret names the secret given in the URL before the host
// ("password" or "token"), which ps and shell history show, or "" when
// there is none.
func (n NATSSpec) InlineSecret() string {
	switch {
	case n.Token != "":
		return "token"
	case n.Password != "":
		return "password"
	}
	return ""
}

// isSecretParam says whether a query parameter holds a secret, or rather
// the reference to one (password=, token=, and any other sink's parameter
// whose name says secret, password or token).
func isSecretParam(name string) bool {
	name = strings.ToLower(name)
	for _, s := range []string{"password", "passwd", "token", "secret"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// redactParams hides the values of the secret parameters in query (what
// follows the first ?, #, & or ;) that are not file: or env: references: a secret
// typed there by mistake is refused by Parse, whose error quotes the URL. A
// value runs to the next & (as url.ParseQuery reads it); a name may follow
// a ?, ; or # as well as an &, as it does in a mistyped URL. whole is set
// when a secret holds an @, which would mislead Redact's search for the
// credentials before the host: the caller then hides all.
func redactParams(query string) (out string, whole bool) {
	hide := make([]bool, len(query))
	hidden := false
	for i := 0; i < len(query); i++ {
		if i > 0 && !strings.ContainsRune("&?;#", rune(query[i-1])) {
			continue
		}
		j := strings.IndexAny(query[i:], "=&?;#")
		if j < 0 || query[i+j] != '=' {
			continue
		}
		k := query[i : i+j]
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		start := i + j + 1
		end := strings.IndexByte(query[start:], '&')
		if end < 0 {
			end = len(query)
		} else {
			end += start
		}
		v := query[start:end]
		if v == "" || !isSecretParam(k) {
			continue
		}
		if dv, err := url.QueryUnescape(v); err == nil && !strings.ContainsAny(dv, "@?#;") {
			if _, err := ParseSecretRef(k, dv); err == nil {
				continue // a reference, which says where to look
			}
		}
		if strings.Contains(v, "@") {
			return "", true
		}
		for x := start; x < end; x++ {
			hide[x] = true
		}
		hidden = true
	}
	if !hidden {
		return query, false
	}
	var b strings.Builder
	for i := 0; i < len(query); i++ {
		if !hide[i] {
			b.WriteByte(query[i])
			continue
		}
		if i == 0 || !hide[i-1] {
			b.WriteString("xxxxx")
		}
	}
	return b.String(), false
}
