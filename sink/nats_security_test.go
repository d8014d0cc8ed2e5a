package sink

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/sink/natsmsg"
)

// natsPKI is a CA with a server and a client certificate it signed, and a
// second CA, unknown to both ends, with a client certificate of its own.
// PEM files in one directory.
type natsPKI struct {
	ca, serverCert, serverKey, clientCert, clientKey string
	otherCA, otherClientCert, otherClientKey         string
}

// makeNATSPKI makes the certificates. The server's is for 127.0.0.1 and
// nats.test.
func makeNATSPKI(t testing.TB) natsPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	serial := int64(1)
	newCert := func(tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return cert, key, der, keyDER
	}
	newCA := func(name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		c, k, der, _ := newCert(&x509.Certificate{
			Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		}, nil, nil)
		return c, k, der
	}
	var p natsPKI
	ca, caKey, caDER := newCA("xdpingest test CA")
	p.ca = write("ca.pem", "CERTIFICATE", caDER)
	_, _, der, keyDER := newCert(&x509.Certificate{
		Subject: pkix.Name{CommonName: "nats.test"}, DNSNames: []string{"nats.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, caKey)
	p.serverCert, p.serverKey = write("server.pem", "CERTIFICATE", der), write("server-key.pem", "EC PRIVATE KEY", keyDER)
	client := &x509.Certificate{
		Subject: pkix.Name{CommonName: "xdpingest"}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	_, _, der, keyDER = newCert(client, ca, caKey)
	p.clientCert, p.clientKey = write("client.pem", "CERTIFICATE", der), write("client-key.pem", "EC PRIVATE KEY", keyDER)
	other, otherKey, otherDER := newCA("untrusted CA")
	p.otherCA = write("other-ca.pem", "CERTIFICATE", otherDER)
	_, _, der, keyDER = newCert(&x509.Certificate{
		Subject: pkix.Name{CommonName: "intruder"}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, other, otherKey)
	p.otherClientCert, p.otherClientKey = write("other-client.pem", "CERTIFICATE", der), write("other-client-key.pem", "EC PRIVATE KEY", keyDER)
	return p
}

// startNATSWith starts an embedded JetStream server with o's security
// settings on 127.0.0.1, on o.Port or a free port.
func startNATSWith(t testing.TB, o server.Options) *server.Server {
	t.Helper()
	if o.Port == 0 {
		o.Port = server.RANDOM_PORT
	}
	if o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	o.Host, o.JetStream, o.NoLog, o.NoSigs = "127.0.0.1", true, true, true
	srv, err := server.NewServer(&o)
	if err != nil {
		t.Fatalf("can't make the NATS server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatalf("NATS server not ready after 10 s")
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// natsMutualTLS is a server configuration that requires TLS and a client
// certificate signed by p's CA.
func natsMutualTLS(t testing.TB, p natsPKI) server.Options {
	t.Helper()
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: p.serverCert, KeyFile: p.serverKey, CaFile: p.ca, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	return server.Options{TLSConfig: tc, TLS: true, TLSVerify: true, TLSTimeout: 5}
}

// natsPublishOnce opens the sink of url, writes datagrams 0..n-1 (batch 1:
// one message each), closes it and checks that all were acknowledged.
func natsPublishOnce(t *testing.T, url string, n uint64, opts Options) Sink {
	t.Helper()
	spec, err := Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), spec, opts)
	if err != nil {
		t.Fatalf("open %s: %v", Redact(url), err)
	}
	writeSeq(t, gen{}, s.Writer(0), 0, n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	checkIdentity(t, st)
	if st.Written != n {
		t.Fatalf("stats %+v: want %d written", st, n)
	}
	return s
}

// natsStreamSeqs reads every message of stream through a client with opts and
// returns the sequence numbers of the datagrams on each subject.
func natsStreamSeqs(t *testing.T, srv *server.Server, stream string, opts ...nats.Option) map[string][]uint64 {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]uint64{}
	var dgs []datapath.Datagram
	for got := 0; got < int(info.State.Msgs); {
		batch, err := cons.Fetch(int(info.State.Msgs)-got, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for m := range batch.Messages() {
			k++
			if dgs, err = natsmsg.Decode(m.Headers(), m.Data(), dgs[:0]); err != nil {
				t.Fatal(err)
			}
			for _, d := range dgs {
				seq, ok := bench.DecodeSized(d.Payload)
				if !ok {
					t.Fatalf("a datagram on %s is not one of ours", m.Subject())
				}
				out[m.Subject()] = append(out[m.Subject()], seq)
			}
		}
		if k == 0 {
			t.Fatalf("fetch returned nothing after %d of %d messages", got, info.State.Msgs)
		}
		got += k
	}
	return out
}

// natsCheckOnce checks that seqs holds 0..n-1 once each, on subject.
func natsCheckOnce(t *testing.T, got map[string][]uint64, subject string, n uint64) {
	t.Helper()
	seen := make([]bool, n)
	for _, s := range got[subject] {
		if s >= n || seen[s] {
			t.Fatalf("datagram %d on %s is stored twice or unexpected", s, subject)
		}
		seen[s] = true
	}
	if uint64(len(got[subject])) != n {
		t.Fatalf("%d datagrams on %s, want %d (subjects: %d)", len(got[subject]), subject, n, len(got))
	}
}

// TLS with certificates the test made, the server requiring a client
// certificate: the sink connects with tls:// (or a tls_ parameter alone),
// verifies the server with tls_ca, for the address dialled or for
// tls_server_name, and publishes each datagram once.
func TestNATSMutualTLS(t *testing.T) {
	p := makeNATSPKI(t)
	srv := startNATSWith(t, natsMutualTLS(t, p))
	port := natsPort(srv)
	client := fmt.Sprintf("tls_ca=%s&tls_cert=%s&tls_key=%s", p.ca, p.clientCert, p.clientKey)
	for i, url := range []string{
		fmt.Sprintf("tls://127.0.0.1:%d/tls.a?stream=TLSA&%s", port, client),
		fmt.Sprintf("nats://127.0.0.1:%d/tls.b?stream=TLSB&%s&tls_server_name=nats.test", port, client),
	} {
		const n = 50
		s := natsPublishOnce(t, url, n, Options{Workers: 1})
		if want := fmt.Sprintf("tls://127.0.0.1:%d/tls.%c", port, 'a'+i); s.Name() != want {
			t.Errorf("name %q, want %q", s.Name(), want)
		}
		got := natsStreamSeqs(t, srv, fmt.Sprintf("TLS%c", 'A'+i), nats.RootCAs(p.ca), nats.ClientCert(p.clientCert, p.clientKey))
		natsCheckOnce(t, got, fmt.Sprintf("tls.%c", 'a'+i), n)
	}
	// The client certificate as the only credentials: the server maps its
	// subject to a user, and refuses a client without a certificate.
	o := natsMutualTLS(t, p)
	o.TLSMap, o.Users = true, []*server.User{{Username: "CN=xdpingest"}}
	srv = startNATSWith(t, o)
	url := fmt.Sprintf("tls://127.0.0.1:%d/tls.map?stream=TLSMAP&%s", natsPort(srv), client)
	natsPublishOnce(t, url, 10, Options{})
	natsCheckOnce(t, natsStreamSeqs(t, srv, "TLSMAP", nats.RootCAs(p.ca), nats.ClientCert(p.clientCert, p.clientKey)), "tls.map", 10)
}

// The forms with the secret in the URL still work, and the server logs a
// warning that says where to put it instead, without showing it.
func TestNATSInlineSecretWarns(t *testing.T) {
	for _, c := range []struct {
		name, userinfo, what string
		o                    server.Options
	}{
		{"password", "ingest:" + secretMark + "%2Fx@", "password", server.Options{Users: []*server.User{{Username: "ingest", Password: secretMark + "/x"}}}},
		{"token", secretMark + "tok@", "token", server.Options{Authorization: secretMark + "tok"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := startNATSWith(t, c.o)
			var logged natsLog
			opts := Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))}
			s := natsPublishOnce(t, fmt.Sprintf("nats://%s127.0.0.1:%d/inline?stream=INLINE", c.userinfo, natsPort(srv)), 5, opts)
			want := "the sink URL holds a " + c.what + ", which ps, shell history and unit files show: give it as " + c.what + "=file:PATH or " + c.what + "=env:NAME instead"
			if !strings.Contains(logged.String(), want) {
				t.Errorf("no warning: %s", logged.String())
			}
			for _, shown := range []string{logged.String(), s.Name(), fmt.Sprint(s.Stats())} {
				if strings.Contains(shown, secretMark) {
					t.Errorf("the secret shows in %q", shown)
				}
			}
		})
	}
}

// A secret or key file that is missing, or holds something else, fails
// Open naming the parameter and the file, never quoting the content.
func TestNATSSecretFileErrors(t *testing.T) {
	srv := startNATS(t, 0, t.TempDir())
	dir := t.TempDir()
	file := func(name string, content []byte) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, content, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	akp, _ := nkeys.CreateAccount()
	accountSeed, _ := akp.Seed()
	ukp, _ := nkeys.CreateUser()
	userSeed, _ := ukp.Seed()
	secrets := []string{string(accountSeed), string(userSeed), secretMark}
	acctSeedFile := file("account.nk", accountSeed)
	seedOnly := file("seed-only.creds", userSeed)
	garbage := file("garbage", []byte(secretMark+"\n"))
	empty := file("empty", []byte("\n"))
	for _, c := range []struct{ params, want string }{
		{"user=u&password=env:XI_TEST_UNSET_NATS", "password=env:XI_TEST_UNSET_NATS: the environment variable XI_TEST_UNSET_NATS, which should hold a secret, is not set"},
		{"token=file:" + dir + "/gone", "token=file:" + dir + "/gone: can't read the secret in " + dir + "/gone"},
		{"token=file:" + empty, "the secret in file:" + empty + " is empty"},
		{"creds=" + dir + "/gone.creds", "creds=" + dir + "/gone.creds: can't read the credentials file"},
		{"creds=" + seedOnly, "creds=" + seedOnly + ": no user JWT in the file"},
		{"creds=" + garbage, "creds=" + garbage + ": no user JWT in the file"},
		{"nkey=" + acctSeedFile, "nkey=" + acctSeedFile + ": the seed is not a user's"},
		{"nkey=" + garbage, "nkey=" + garbage + ": can't read the nkey seed"},
		{"nkey=" + dir + "/gone.nk", "nkey=" + dir + "/gone.nk: can't read the seed file"},
	} {
		spec, err := Parse(fmt.Sprintf("nats://127.0.0.1:%d/files?stream=FILES&%s", natsPort(srv), c.params))
		if err != nil {
			t.Fatal(err)
		}
		s, err := Open(context.Background(), spec, Options{})
		if err == nil {
			s.Close()
			t.Errorf("%s: opened", c.params)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.params, err, c.want)
		}
		for _, sec := range secrets {
			if strings.Contains(err.Error(), sec) {
				t.Errorf("%s: the error shows a secret: %v", c.params, err)
			}
		}
	}
}

// Every way TLS can fail fails Open, with an error that names the problem
// and what to do.
func TestNATSTLSFailures(t *testing.T) {
	p := makeNATSPKI(t)
	srv := startNATSWith(t, natsMutualTLS(t, p))
	plain := startNATS(t, 0, t.TempDir())
	base := fmt.Sprintf("tls://127.0.0.1:%d/tls.fail?stream=FAIL&", natsPort(srv))
	client := fmt.Sprintf("&tls_cert=%s&tls_key=%s", p.clientCert, p.clientKey)
	for _, c := range []struct {
		name, url string
		want      []string
	}{
		{"untrusted CA", base + "tls_ca=" + p.otherCA + client,
			[]string{"certificate signed by unknown authority", "not signed by a CA in tls_ca=" + p.otherCA}},
		{"system CAs", base + "tls_cert=" + p.clientCert + "&tls_key=" + p.clientKey,
			[]string{"not signed by a CA in the system's CAs", "give the CA that signs it as tls_ca=PATH"}},
		{"no client certificate", base + "tls_ca=" + p.ca, []string{"the server requires a client certificate: give tls_cert=PATH and tls_key=PATH"}},
		{"client certificate of another CA", base + "tls_ca=" + p.ca + "&tls_cert=" + p.otherClientCert + "&tls_key=" + p.otherClientKey,
			[]string{"the server did not take the client certificate tls_cert=" + p.otherClientCert, "signed by a CA the server trusts"}},
		{"wrong server name", base + "tls_ca=" + p.ca + client + "&tls_server_name=other.test",
			[]string{"not other.test", "set tls_server_name=NAME to a name it is for"}},
		{"key of another certificate", base + "tls_ca=" + p.ca + "&tls_cert=" + p.clientCert + "&tls_key=" + p.otherClientKey,
			[]string{"can't load the client certificate and key", "private key does not match public key"}},
		{"missing CA file", base + "tls_ca=" + p.ca + ".gone" + client, []string{"tls_ca=" + p.ca + ".gone: can't read the CA file", "no such file"}},
		{"CA file without a certificate", base + "tls_ca=" + p.clientKey + client, []string{"no PEM certificate in the file"}},
		{"server without TLS", fmt.Sprintf("tls://127.0.0.1:%d/x?tls_ca=%s", natsPort(plain), p.ca),
			[]string{"the server does not offer TLS"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec, err := Parse(c.url)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := Open(ctx, spec, Options{})
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// natsNkeyUser makes a user nkey and writes its seed to a file.
func natsNkeyUser(t testing.TB) (pub, seedFile string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ = kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile = filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	return pub, seedFile
}

// natsOperator is a NATS operator with a system account and an account
// with JetStream, as JWTs, and a creds file for a user of that account.
type natsOperator struct {
	claims   *jwt.OperatorClaims
	accounts map[string]string // public key: JWT
	sys      string
	creds    string
}

func newNATSOperator(t testing.TB) natsOperator {
	t.Helper()
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	oc.Name = "xdpingest-test"
	ojwt, err := oc.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	op := natsOperator{accounts: map[string]string{}}
	if op.claims, err = jwt.DecodeOperatorClaims(ojwt); err != nil {
		t.Fatal(err)
	}
	account := func(name string, js bool) (nkeys.KeyPair, string) {
		akp, _ := nkeys.CreateAccount()
		apub, _ := akp.PublicKey()
		ac := jwt.NewAccountClaims(apub)
		ac.Name = name
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		ajwt, err := ac.Encode(okp)
		if err != nil {
			t.Fatal(err)
		}
		op.accounts[apub] = ajwt
		return akp, apub
	}
	_, op.sys = account("SYS", false)
	akp, _ := account("INGEST", true)
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	useed, _ := ukp.Seed()
	ujwt, err := jwt.NewUserClaims(upub).Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(ujwt, useed)
	if err != nil {
		t.Fatal(err)
	}
	op.creds = filepath.Join(t.TempDir(), "ingest.creds")
	if err := os.WriteFile(op.creds, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return op
}

// configure puts a server in operator mode, trusting op.
func (op natsOperator) configure(o *server.Options) {
	r := &server.MemAccResolver{}
	for k, v := range op.accounts {
		r.Store(k, v)
	}
	o.TrustedOperators, o.AccountResolver, o.SystemAccount = []*jwt.OperatorClaims{op.claims}, r, op.sys
}

func natsFreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Every way to authenticate, with and without mutual TLS, through a seed
// list of two servers: the sink connects through either (the other one
// down) and publishes each datagram once, its secrets read from a file or
// the environment, so the credentials and TLS settings reach every seed. A
// wrong secret is refused at Open with an error that says which; no secret
// shows in any error, log line, name or counter.
func TestNATSAuth(t *testing.T) {
	p := makeNATSPKI(t)
	dir := t.TempDir()
	secretFile := func(name, v string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	password, token := secretMark+"pw/?#@%&=", secretMark+"t0k"
	t.Setenv("XI_TEST_NATS_PASS", password)
	t.Setenv("XI_TEST_NATS_WRONG", secretMark+"wrong")
	pwFile, tokFile := secretFile("pw", password), secretFile("tok", token)
	wrongFile := secretFile("wrong", secretMark+"wrong")
	nkPub, nkSeed := natsNkeyUser(t)
	nk, err := nats.NkeyOptionFromSeed(nkSeed)
	if err != nil {
		t.Fatal(err)
	}
	_, strangerSeed := natsNkeyUser(t)
	op, stranger := newNATSOperator(t), newNATSOperator(t)
	users := func(o *server.Options) { o.Users = []*server.User{{Username: "ingest", Password: password}} }
	for _, c := range []struct {
		name      string
		configure func(o *server.Options)
		params    string // the sink's
		client    nats.Option
		wrong     string // parameters with a wrong secret
		want      string // what the error then says
	}{
		{"password from env", users, "user=ingest&password=env:XI_TEST_NATS_PASS", nats.UserInfo("ingest", password),
			"user=ingest&password=env:XI_TEST_NATS_WRONG", "refused user ingest with the password in env:XI_TEST_NATS_WRONG"},
		{"password from file", users, "user=ingest&password=file:" + pwFile, nats.UserInfo("ingest", password),
			"user=ingest&password=file:" + wrongFile, "refused user ingest with the password in file:" + wrongFile},
		{"token", func(o *server.Options) { o.Authorization = token }, "token=file:" + tokFile, nats.Token(token),
			"token=file:" + wrongFile, "refused the token in file:" + wrongFile},
		{"nkey", func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: nkPub}} }, "nkey=" + nkSeed, nk,
			"nkey=" + strangerSeed, "refused the nkey seed in " + strangerSeed},
		{"creds", op.configure, "creds=" + op.creds, nats.UserCredentials(op.creds),
			"creds=" + stranger.creds, "refused the credentials in " + stranger.creds},
		{"none required", users, "", nats.UserInfo("ingest", password),
			"", "the server wants credentials: add user=NAME&password=file:PATH"},
	} {
		for _, withTLS := range []bool{false, true} {
			name := c.name
			if withTLS {
				name += " over mutual TLS"
			}
			t.Run(name, func(t *testing.T) {
				start := func(port int) *server.Server {
					var o server.Options
					if withTLS {
						o = natsMutualTLS(t, p)
					}
					o.Port = port
					c.configure(&o)
					return startNATSWith(t, o)
				}
				client := []nats.Option{c.client}
				var tlsParams string
				if withTLS {
					tlsParams = fmt.Sprintf("&tls_ca=%s&tls_cert=%s&tls_key=%s", p.ca, p.clientCert, p.clientKey)
					client = append(client, nats.RootCAs(p.ca), nats.ClientCert(p.clientCert, p.clientKey))
				}
				var logged natsLog
				opts := Options{Logger: slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))}
				portA, b := natsFreePort(t), start(0)
				portB := natsPort(b)
				url := func(params string) string {
					return fmt.Sprintf("nats://127.0.0.1:%d,127.0.0.1:%d/auth.ok?stream=AUTH&%s%s", portA, portB, params, tlsParams)
				}
				var shown []string
				live := b
				if c.params != "" {
					// Through b, a down.
					const n = 40
					s := natsPublishOnce(t, url(c.params), n, opts)
					natsCheckOnce(t, natsStreamSeqs(t, b, "AUTH", client...), "auth.ok", n)
					shown = append(shown, s.Name(), fmt.Sprint(s.Stats()))
					// Through a, b down.
					b.Shutdown()
					a := start(portA)
					live = a
					s = natsPublishOnce(t, url(c.params), n, opts)
					natsCheckOnce(t, natsStreamSeqs(t, a, "AUTH", client...), "auth.ok", n)
					shown = append(shown, s.Name(), fmt.Sprint(s.Stats()))
					if strings.Contains(logged.String(), "sink URL holds") {
						t.Errorf("a warning about a secret in the URL, with none there: %s", logged.String())
					}
				}
				// A wrong secret (none at all for "none required"):
				// refused at Open, saying what was refused. One server:
				// nats.go reports the error of the last seed it tried.
				spec, err := Parse(fmt.Sprintf("nats://127.0.0.1:%d/auth.ok?stream=AUTH&%s%s", natsPort(live), c.wrong, tlsParams))
				if err != nil {
					t.Fatal(err)
				}
				s, err := Open(context.Background(), spec, opts)
				if err == nil {
					s.Close()
					t.Fatal("opened with a wrong secret")
				}
				if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") || !strings.Contains(err.Error(), c.want) {
					t.Errorf("wrong secret: %v", err)
				}
				shown = append(shown, err.Error(), logged.String())
				for _, s := range shown {
					if strings.Contains(s, secretMark) {
						t.Errorf("the secret shows in %q", s)
					}
				}
			})
		}
	}
}

// natsLog collects log output (nats.go's handlers log from its own
// goroutines).
type natsLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *natsLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *natsLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
