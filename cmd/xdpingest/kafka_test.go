package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
	"github.com/xdpingest/xdpingest/sink"
)

// startKafkaInRx starts an in-process Kafka cluster (kfake) whose brokers
// listen on the loopback of the bed's receiving namespace, where the server
// runs: Kafka clients dial the addresses the brokers advertise, which are
// the listeners' own. The listening sockets belong to that namespace; the
// cluster's goroutines run in the test process as usual. port 0 picks a
// free one.
func startKafkaInRx(t *testing.T, b *testbed.Bed, port int, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	listen := func(network, addr string) (ln net.Listener, err error) {
		err = b.Rx.Do(func() (err error) { ln, err = net.Listen(network, addr); return err })
		return ln, err
	}
	opts = append([]kfake.Opt{kfake.NumBrokers(1), kfake.ListenFn(listen)}, opts...)
	if port != 0 {
		opts = append(opts, kfake.Ports(port))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("can't start the Kafka test cluster in %s: %v", b.Rx.Netns, err)
	}
	t.Cleanup(c.Close)
	return c
}

// rxDialer dials from the receiving namespace, for the test's own clients.
func rxDialer(b *testbed.Bed) kgo.Opt {
	return kgo.Dialer(func(ctx context.Context, network, host string) (c net.Conn, err error) {
		err = b.Rx.Do(func() (err error) { c, err = (&net.Dialer{}).DialContext(ctx, network, host); return err })
		return c, err
	})
}

// readTopic reads topic from the start to the end its partitions have now
// and returns, per sequence number of the sized datagrams found, how often
// it is there, with the number of datagrams decoded. Every record's key must
// be its exporter's address and every exporter in one partition.
func readTopic(t *testing.T, topic string, opts ...kgo.Opt) (map[uint64]int, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	meta.Topics = append(meta.Topics, mt)
	mresp, err := meta.RequestWith(ctx, cl)
	if err != nil || len(mresp.Topics) != 1 || mresp.Topics[0].ErrorCode != 0 {
		t.Fatalf("metadata of %s: %v %+v", topic, err, mresp)
	}
	lo := kmsg.NewPtrListOffsetsRequest()
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = topic
	for _, p := range mresp.Topics[0].Partitions {
		lp := kmsg.NewListOffsetsRequestTopicPartition()
		lp.Partition, lp.Timestamp = p.Partition, -1 // the end
		lt.Partitions = append(lt.Partitions, lp)
	}
	lo.Topics = append(lo.Topics, lt)
	ends := map[int32]int64{}
	consume := map[int32]kgo.Offset{}
	for _, shard := range cl.RequestSharded(ctx, lo) {
		if shard.Err != nil {
			t.Fatalf("end offsets of %s: %v", topic, shard.Err)
		}
		for _, rt := range shard.Resp.(*kmsg.ListOffsetsResponse).Topics {
			for _, rp := range rt.Partitions {
				if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
					t.Fatalf("end of %s/%d: %v", topic, rp.Partition, err)
				}
				if rp.Offset > 0 {
					ends[rp.Partition] = rp.Offset
					consume[rp.Partition] = kgo.NewOffset().AtStart()
				}
			}
		}
	}
	seen := map[uint64]int{}
	if len(ends) == 0 {
		return seen, 0
	}
	cons, err := kgo.NewClient(append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: consume}))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	part := map[string]int32{}
	decoded := 0
	var dgs []datapath.Datagram
	for done := 0; done < len(ends); {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %v", topic, ctx.Err())
		}
		fs.EachError(func(_ string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= ends[r.Partition] {
				return
			}
			if r.Offset == ends[r.Partition]-1 {
				done++
			}
			if dgs, err = sink.DecodeKafkaRecord(r.Headers, r.Value, dgs[:0]); err != nil {
				t.Fatalf("%s/%d@%d: %v", topic, r.Partition, r.Offset, err)
			}
			for _, d := range dgs {
				seq, ok := bench.DecodeSized(d.Payload)
				if !ok {
					t.Fatalf("%s/%d@%d: a datagram that is not ours", topic, r.Partition, r.Offset)
				}
				seen[seq]++
				decoded++
				if string(r.Key) != d.Src.Addr().String() {
					t.Errorf("%s: datagram %d from %v has the key %q", topic, seq, d.Src, r.Key)
				}
			}
			if p, ok := part[string(r.Key)]; ok && p != r.Partition {
				t.Errorf("%s: exporter %s in partitions %d and %d", topic, r.Key, p, r.Partition)
			}
			part[string(r.Key)] = r.Partition
		})
	}
	return seen, decoded
}

// kafkaPKI makes a CA and a broker certificate for 127.0.0.1 it signed,
// as PEM files, and the broker's tls.Config.
func kafkaPKI(t *testing.T) (caFile string, server *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xdpingest e2e Kafka CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: ca.NotBefore, NotAfter: ca.NotAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return caFile, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// Issue 12, point 1, through the running server on the bed: three Kafka
// sinks, one record per datagram on topics with the destination port, per-
// exporter batches compressed with zstd, and one over TLS with SCRAM whose
// password comes from the environment. Datagrams to two ports, over IPv4
// and IPv6, land exactly once in each sink's topics, keyed by exporter;
// the accounting identities hold, at exit nothing is in flight, and the
// password shows nowhere in the server's output.
func TestKafkaSinks(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{MTU: 1600})
	plain := startKafkaInRx(t, b, 0, kfake.SeedTopics(4, "e2e.9000", "e2e.9001", "e2eb"))
	caFile, serverTLS := kafkaPKI(t)
	const password = "Zq9e2e-kafka"
	secured := startKafkaInRx(t, b, 0, kfake.SeedTopics(3, "e2es"), kfake.TLS(serverTLS),
		kfake.EnableSASL(), kfake.Superuser(sink.SASLScramSHA512, "ingest", password))
	t.Setenv("XI_E2E_KAFKA_PW", password)
	pAddr, sAddr := plain.ListenAddrs()[0], secured.ListenAddrs()[0]
	recSink := fmt.Sprintf("kafka://%s/e2e.{dport}", pAddr)
	batchSink := fmt.Sprintf("kafka://%s/e2eb?format=batch&batch=16&compression=zstd", pAddr)
	tlsSink := fmt.Sprintf("kafka://%s/e2es?tls_ca=%s&sasl=scram-sha-512&sasl_user=ingest&sasl_password=env:XI_E2E_KAFKA_PW&compression=lz4", sAddr, caFile)
	srv := startServer(t, b, "--ports", "9000,9001", "--sink", recSink, "--sink", batchSink, "--sink", tlsSink)

	const n = 3000 // per port
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
	m := waitQuiet(t, srv, 30*time.Second)
	if err := afxdpIdentityErr(m); err != nil {
		t.Error(err)
	}
	names := []string{"kafka://" + pAddr + "/e2e.{dport}", "kafka://" + pAddr + "/e2eb", "kafka://" + sAddr + "/e2es"}
	for _, name := range names {
		if w := sum(m, "xdpingest_sink_written_total", `sink="`+name+`"`); w != 2*n {
			t.Errorf("sink %s: %v written, want %d\n%s", name, w, 2*n, dump(m))
		}
	}
	if code := srv.stop(syscall.SIGTERM, 10*time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	finalAccounting(t, srv, true)
	if strings.Contains(srv.log.String(), password) {
		t.Error("the server's output shows the SASL password")
	}

	plainOpts := []kgo.Opt{kgo.SeedBrokers(pAddr), rxDialer(b)}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(caPEM)
	securedOpts := []kgo.Opt{kgo.SeedBrokers(sAddr),
		kgo.Dialer(func(ctx context.Context, network, host string) (c net.Conn, err error) {
			err = b.Rx.Do(func() (err error) {
				c, err = (&tls.Dialer{Config: &tls.Config{RootCAs: pool}}).DialContext(ctx, network, host)
				return err
			})
			return c, err
		}),
		kgo.SASL(scram.Auth{User: "ingest", Pass: password}.AsSha512Mechanism())}
	check := func(what string, seen map[uint64]int, decoded int, from, to uint64) {
		t.Helper()
		for i := from; i < to; i++ {
			if seen[i] != 1 {
				t.Fatalf("%s: datagram %d is there %d times", what, i, seen[i])
			}
		}
		if decoded != int(to-from) || len(seen) != int(to-from) {
			t.Errorf("%s: %d datagrams (%d distinct), want %d", what, decoded, len(seen), to-from)
		}
	}
	for k, port := range []uint16{9000, 9001} {
		topic := "e2e." + strconv.Itoa(int(port))
		seen, decoded := readTopic(t, topic, plainOpts...)
		check(topic, seen, decoded, uint64(k)*n, uint64(k+1)*n)
	}
	seen, decoded := readTopic(t, "e2eb", plainOpts...)
	check("e2eb (batches)", seen, decoded, 0, 2*n)
	seen, decoded = readTopic(t, "e2es", securedOpts...)
	check("e2es (TLS, SCRAM)", seen, decoded, 0, 2*n)
}

// Issue 12, point 1, faults: the Kafka broker goes away mid-stream and
// comes back on the same address with its data. The server keeps running
// and the sink reconnects by itself; nothing is stored twice (the
// idempotent producer's sequence numbers survive the restart), every
// datagram counted written is in the topic, whatever is not there is
// counted, and at exit nothing is in flight.
func TestKafkaBrokerRestart(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{MTU: 1600})
	data := t.TempDir()
	kc := startKafkaInRx(t, b, 0, kfake.DataDir(data), kfake.SeedTopics(2, "restart"))
	addr := kc.ListenAddrs()[0]
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	srv := startServer(t, b, "--ports", "9000", "--sink", fmt.Sprintf("kafka://%s/restart?retry_for=60s", addr))
	snd := newSender(t, b, 9000)

	const n = 60000 // ~6 s at 10,000 a second
	var sent atomic.Uint64
	sendErr := make(chan error, 1)
	go func() { sendErr <- steady(snd, 0, n, 10000, &sent) }()
	waitSent := func(k uint64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for sent.Load() < k {
			if time.Now().After(deadline) {
				t.Fatalf("sent %d of %d after 30 s", sent.Load(), k)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitSent(n / 3)
	kc.Close()
	down := sent.Load()
	time.Sleep(500 * time.Millisecond)
	startKafkaInRx(t, b, port, kfake.DataDir(data)) // the same address, the same data
	up := sent.Load()
	waitSent(n)
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	t.Logf("Kafka down while datagrams %d..%d were sent", down, up)

	m := waitQuiet(t, srv, 60*time.Second)
	if err := sinkIdentityErr(m, true); err != nil {
		t.Error(err)
	}
	if err := afxdpIdentityErr(m); err != nil {
		t.Error(err)
	}
	if code := srv.stop(syscall.SIGTERM, 10*time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
	if !strings.Contains(srv.log.String(), "Kafka broker reachable again") {
		t.Error("no reconnection logged: the restart went unnoticed")
	}
	final := finalAccounting(t, srv, true)
	var written, dropped uint64
	for _, s := range final.sinks {
		written, dropped = s["written"], s["dropped"]+s["queue_full"]+s["shutdown"]
	}
	seen, decoded := readTopic(t, "restart", kgo.SeedBrokers(addr), rxDialer(b))
	unique := uint64(len(seen))
	t.Logf("sent %d, received %d, written %d, dropped %d; the topic holds %d datagrams, %d distinct", n, final.received, written, dropped, decoded, unique)
	if decoded != int(unique) {
		t.Errorf("the topic holds %d datagrams, %d distinct: duplicates", decoded, unique)
	}
	// A datagram dropped after a timeout may be in the topic (its fate was
	// unknown); one counted written must be there.
	if unique < written || unique > written+dropped {
		t.Errorf("%d distinct datagrams in the topic; want from written %d to written + dropped %d", unique, written, written+dropped)
	}
	if missing := n - unique; missing > dropped+(n-final.received) {
		t.Errorf("%d datagrams missing from the topic, %d counted dropped and %d not received", missing, dropped, n-final.received)
	}
	// retry_for is far longer than the outage: nothing the server received
	// should be lost.
	if written != final.received {
		t.Errorf("written %d of %d received", written, final.received)
	}
}
