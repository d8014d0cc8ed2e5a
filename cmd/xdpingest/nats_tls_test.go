package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
	"github.com/xdpingest/xdpingest/sink/natsmsg"
)

// natsTLSFiles are the PEM files of a CA, a server certificate for
// 127.0.0.1 and a client certificate it signed.
type natsTLSFiles struct{ ca, cert, key, clientCert, clientKey string }

func makeNATSTLSFiles(t *testing.T) natsTLSFiles {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xdpingest e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	issue := func(name string, serial int64, tmpl *x509.Certificate) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.SerialNumber, tmpl.Subject = big.NewInt(serial), pkix.Name{CommonName: name}
		tmpl.NotBefore, tmpl.NotAfter, tmpl.KeyUsage = ca.NotBefore, ca.NotAfter, x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	f := natsTLSFiles{ca: write("ca.pem", "CERTIFICATE", caDER)}
	f.cert, f.key = issue("server", 2, &x509.Certificate{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	f.clientCert, f.clientKey = issue("client", 3, &x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return f
}

// Issue 12, points 2 and 4, through the running server on the bed: two
// NATS sinks on a broker that requires mutual TLS, one authenticating
// with a password read from the environment and batching, the other with
// an nkey seed file, one message per datagram; both publish to subjects
// with the destination port. Datagrams to two ports land once each on
// their port's subject of each stream, the accounting adds up, and
// neither the password nor the seed shows in the server's output.
func TestNATSSecuredSinks(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{MTU: 1600})
	files := makeNATSTLSFiles(t)
	password := "Zq9e2e/pw"
	t.Setenv("XI_E2E_NATS_PASS", password)
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "ingest.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	tc, err := natsserver.GenTLSConfig(&natsserver.TLSConfigOpts{CertFile: files.cert, KeyFile: files.key, CaFile: files.ca, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := natsserver.NewServer(&natsserver.Options{
		Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		TLSConfig: tc, TLS: true, TLSVerify: true, TLSTimeout: 5,
		Users: []*natsserver.User{{Username: "ingest", Password: password}},
		Nkeys: []*natsserver.NkeyUser{{Nkey: pub}},
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		t.Fatal("NATS server not ready after 10 s")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	proxy := newTCPProxy(t, b, ns.Addr().String())
	tlsParams := fmt.Sprintf("tls_ca=%s&tls_cert=%s&tls_key=%s", files.ca, files.clientCert, files.clientKey)
	pwSink := fmt.Sprintf("tls://%s/pw.{dport}?stream=E2EPW&batch=16&user=ingest&password=env:XI_E2E_NATS_PASS&%s", proxy.Addr(), tlsParams)
	nkSink := fmt.Sprintf("tls://%s/nk.{dport}?stream=E2ENK&nkey=%s&%s", proxy.Addr(), seedFile, tlsParams)
	srv := startServer(t, b, "--ports", "9000,9001", "--sink", pwSink, "--sink", nkSink)

	const n = 2000 // per port
	for k, port := range []uint16{9000, 9001} {
		snd := newSender(t, b, port)
		for i := uint64(0); i < n; i++ {
			if err := snd.send(uint64(k)*n + i); err != nil {
				t.Fatal(err)
			}
			if i%100 == 99 {
				time.Sleep(2 * time.Millisecond) // no ring overflows on a busy machine
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for sum(srv.scrape(), "xdpingest_sink_written_total") < 4*n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	m := srv.scrape()
	for _, name := range []string{"tls://" + proxy.Addr() + "/pw.{dport}", "tls://" + proxy.Addr() + "/nk.{dport}"} {
		if w := sum(m, "xdpingest_sink_written_total", `sink="`+name+`"`); w != 2*n {
			t.Errorf("sink %s: %v written, want %d", name, w, 2*n)
		}
	}
	if code := srv.stop(syscall.SIGTERM, 10*time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	finalAccounting(t, srv, true)
	out := srv.log.String()
	if strings.Contains(out, password) || strings.Contains(out, string(seed)) {
		t.Error("the server's output shows the password or the nkey seed")
	}
	if strings.Contains(out, "sink URL holds") {
		t.Error("a warning about a secret in the URL, with none there")
	}

	nk, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	for stream, prefix := range map[string]string{"E2EPW": "pw.", "E2ENK": "nk."} {
		got := readSubjects(t, ns.ClientURL(), stream, nats.RootCAs(files.ca), nats.ClientCert(files.clientCert, files.clientKey), nk)
		for k, port := range []uint16{9000, 9001} {
			subj := fmt.Sprintf("%s%d", prefix, port)
			seen := map[uint64]int{}
			for _, seq := range got[subj] {
				seen[seq]++
			}
			for i := uint64(0); i < n; i++ {
				if c := seen[uint64(k)*n+i]; c != 1 {
					t.Fatalf("%s: datagram %d to port %d is there %d times", subj, uint64(k)*n+i, port, c)
				}
			}
			if len(got[subj]) != n {
				t.Errorf("%s: %d datagrams, want %d", subj, len(got[subj]), n)
			}
		}
		if len(got) != 2 {
			t.Errorf("stream %s: %d subjects, want 2", stream, len(got))
		}
	}
}

// readSubjects reads every message of stream and returns the sequence
// numbers of the datagrams on each subject.
func readSubjects(t *testing.T, url, stream string, opts ...nats.Option) map[string][]uint64 {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("can't connect to %s to read the stream: %v", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
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
		batch, err := cons.Fetch(min(int(info.State.Msgs)-got, 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for msg := range batch.Messages() {
			k++
			if dgs, err = natsmsg.Decode(msg.Headers(), msg.Data(), dgs[:0]); err != nil {
				t.Fatalf("stream %s: %v", stream, err)
			}
			for _, d := range dgs {
				seq, ok := bench.DecodeSized(d.Payload)
				if !ok {
					t.Fatalf("stream %s: a datagram that is not ours", stream)
				}
				out[msg.Subject()] = append(out[msg.Subject()], seq)
			}
		}
		if k == 0 {
			t.Fatalf("fetch returned nothing after %d of %d messages", got, info.State.Msgs)
		}
		got += k
	}
	return out
}
