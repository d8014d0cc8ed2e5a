package sink

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// securityOptions returns the nats.go options that authenticate the sink
// and set up TLS, for every server of the list and every server the cluster
// announces (nats.go gives the credentials of a URL to that URL only). It
// reads the secrets and checks the files now, so that a missing or bad one
// fails Open naming it; certificates, creds and nkey files are read again
// at each reconnect, so that renewed ones are picked up. Its errors never
// hold a secret.
func (n NATSSpec) securityOptions() ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case n.Token != "":
		opts = append(opts, nats.Token(n.Token))
	case n.Password != "" || (n.User != "" && n.PasswordRef.IsZero()):
		opts = append(opts, nats.UserInfo(n.User, n.Password))
	case !n.PasswordRef.IsZero():
		pw, err := n.PasswordRef.Read()
		if err != nil {
			return nil, fmt.Errorf("password=%s: %w", n.PasswordRef, err)
		}
		opts = append(opts, nats.UserInfo(n.User, pw))
	case !n.TokenRef.IsZero():
		tok, err := n.TokenRef.Read()
		if err != nil {
			return nil, fmt.Errorf("token=%s: %w", n.TokenRef, err)
		}
		opts = append(opts, nats.Token(tok))
	case n.Creds != "":
		if err := checkCredsFile(n.Creds); err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(n.Creds))
	case n.Nkey != "":
		if err := checkSeedFile(natsParamNkey, n.Nkey, false); err != nil {
			return nil, err
		}
		o, err := nats.NkeyOptionFromSeed(n.Nkey)
		if err != nil {
			return nil, fmt.Errorf("nkey=%s: %w", n.Nkey, err)
		}
		opts = append(opts, o)
	}
	if !n.TLS {
		return opts, nil
	}
	// ServerName empty: nats.go verifies each server for the host it dials.
	opts = append(opts, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12, ServerName: n.TLSServerName}))
	var certCB nats.TLSCertHandler
	var caCB nats.RootCAsHandler
	if n.TLSCA != "" {
		caCB = func() (*x509.CertPool, error) { return loadCAs(n.TLSCA) }
		if _, err := caCB(); err != nil {
			return nil, err
		}
	}
	if n.TLSCert != "" {
		certCB = func() (tls.Certificate, error) { return loadClientCert(n.TLSCert, n.TLSKey) }
		if _, err := certCB(); err != nil {
			return nil, err
		}
	}
	if certCB != nil || caCB != nil {
		opts = append(opts, nats.ClientTLSConfig(certCB, caCB))
	}
	return opts, nil
}

func loadCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls_ca=%s: can't read the CA file: %w", path, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls_ca=%s: no PEM certificate in the file: give the CA certificates that sign the servers', in PEM", path)
	}
	return pool, nil
}

func loadClientCert(certFile, keyFile string) (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		// The errors of crypto/tls name the problem, never the key.
		return tls.Certificate{}, fmt.Errorf("tls_cert=%s, tls_key=%s: can't load the client certificate and key: %w", certFile, keyFile, err)
	}
	return c, nil
}

// checkCredsFile checks that path holds what nats.UserCredentials reads at
// each connect: a user JWT and a user nkey seed.
func checkCredsFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("creds=%s: can't read the credentials file: %w", path, err)
	}
	defer clear(b)
	// ParseDecoratedJWT falls back to the whole file when it finds no
	// JWT block: a JWT is three base64url parts joined by dots.
	jwt, err := nkeys.ParseDecoratedJWT(b)
	if err != nil || strings.Count(jwt, ".") != 2 || strings.ContainsAny(jwt, " \n") {
		return fmt.Errorf("creds=%s: no user JWT in the file: give a credentials file as nsc or nats-server's tools write it (a JWT and an nkey seed)", path)
	}
	return checkSeed(natsParamCreds, path, b, true)
}

// checkSeedFile checks that path holds a user nkey seed.
func checkSeedFile(param, path string, decorated bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s=%s: can't read the seed file: %w", param, path, err)
	}
	defer clear(b)
	return checkSeed(param, path, b, decorated)
}

func checkSeed(param, path string, b []byte, decorated bool) error {
	what := "a user nkey seed (SU...), as nk -gen user writes it"
	if decorated {
		what = "a user nkey seed after its JWT"
	}
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		// nkeys' errors are fixed strings: they never quote the seed.
		return fmt.Errorf("%s=%s: can't read the nkey seed (want %s): %w", param, path, what, err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return fmt.Errorf("%s=%s: the seed is not a user's: want %s", param, path, what)
	}
	return nil
}

// authDesc says how the sink authenticates, for messages: never a secret.
func (n NATSSpec) authDesc() string {
	switch {
	case n.Token != "":
		return "the token in the URL"
	case n.Password != "" || (n.User != "" && n.PasswordRef.IsZero()):
		return "user " + n.User + " with the password in the URL"
	case !n.PasswordRef.IsZero():
		return "user " + n.User + " with the password in " + n.PasswordRef.String()
	case !n.TokenRef.IsZero():
		return "the token in " + n.TokenRef.String()
	case n.Creds != "":
		return "the credentials in " + n.Creds
	case n.Nkey != "":
		return "the nkey seed in " + n.Nkey
	}
	return "no credentials"
}

// connectError explains why nats.Connect failed and what to do. err
// comes from nats.go and crypto/tls, which never quote a secret.
func (n NATSSpec) connectError(err error) error {
	var unknownCA x509.UnknownAuthorityError
	var badHost x509.HostnameError
	var invalid x509.CertificateInvalidError
	msg := err.Error()
	var hint string
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired),
		errors.Is(err, nats.ErrAuthRevoked), errors.Is(err, nats.ErrAccountAuthExpired):
		hint = "the server refused " + n.authDesc() + ": check them against the server's configuration"
		if n.authDesc() == "no credentials" {
			hint = "the server wants credentials: add user=NAME&password=file:PATH, token=file:PATH, creds=PATH or nkey=PATH"
		}
	case errors.As(err, &unknownCA):
		ca := "the system's CAs"
		if n.TLSCA != "" {
			ca = "tls_ca=" + n.TLSCA
		}
		hint = "the server's certificate is not signed by a CA in " + ca + ": give the CA that signs it as tls_ca=PATH"
	case errors.As(err, &badHost):
		hint = "the server's certificate is not for the name dialled: set tls_server_name=NAME to a name it is for"
	case errors.As(err, &invalid):
		hint = "the server's certificate is not valid (expired, or not for a server): renew it"
	case clientCertRefused(msg) && n.TLSCert == "":
		hint = "the server requires a client certificate: give tls_cert=PATH and tls_key=PATH"
	case clientCertRefused(msg):
		hint = "the server did not take the client certificate tls_cert=" + n.TLSCert + ": is it signed by a CA the server trusts, and valid?"
	case errors.Is(err, nats.ErrSecureConnWanted):
		hint = "the server does not offer TLS: enable TLS on it, or drop tls:// and the tls_ parameters"
	case errors.Is(err, nats.ErrTLS), strings.Contains(msg, "tls:"):
		hint = "the TLS handshake failed: check the server's TLS settings against tls_ca, tls_cert, tls_key and tls_server_name"
	default:
		hint = "is the server running and reachable?"
	}
	return fmt.Errorf("can't connect to NATS at %s: %w: %s", n.addrs(), err, hint)
}

// clientCertRefused says whether a failed connection looks like a server
// refusing the client's certificate, or the lack of one. With TLS 1.3 the
// client's handshake ends before the server checks the client's
// certificate, so the client mostly sees the connection closed right after
// (nats.go: "connection closed by remote after TLS handshake"), seldom the
// server's alert. crypto/tls sends no certificate when the server asks for
// one signed by CAs that didn't sign ours: "certificate required" then too.
func clientCertRefused(msg string) bool {
	for _, s := range []string{"closed by remote after TLS handshake", "certificate required", "bad certificate",
		"unknown certificate authority", "certificate expired", "certificate revoked"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
