package sink

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
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
	"go.uber.org/goleak"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testutil"
	"github.com/xdpingest/xdpingest/sink/natsmsg"
)

// startKafka starts an in-process Kafka cluster (franz-go's kfake) on
// 127.0.0.1, closed when the test ends.
func startKafka(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("can't start the Kafka test cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// kafkaRecord is a record read back, with where it was.
type kafkaRecord struct {
	partition int32
	offset    int64
	key       []byte
	headers   []kgo.RecordHeader
	value     []byte
}

// readKafka reads every record of topic, from the start to the end each
// partition has when it is called, with a client made of opts (the seed
// brokers, TLS, SASL).
func readKafka(t testing.TB, topic string, opts ...kgo.Opt) []kafkaRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	// The end of each partition, from the brokers, so that the read stops
	// there: a duplicate written late would still be seen.
	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	meta.Topics = append(meta.Topics, mt)
	mresp, err := meta.RequestWith(ctx, admin)
	if err != nil || len(mresp.Topics) != 1 {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	if err := kerr.ErrorForCode(mresp.Topics[0].ErrorCode); err != nil {
		t.Fatalf("metadata of %s: %v", topic, err)
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
	// Each partition's leader answers for it: send through the client,
	// which splits the request by leader.
	for _, shard := range admin.RequestSharded(ctx, lo) {
		if shard.Err != nil {
			t.Fatalf("list offsets of %s: %v", topic, shard.Err)
		}
		for _, rt := range shard.Resp.(*kmsg.ListOffsetsResponse).Topics {
			for _, rp := range rt.Partitions {
				if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
					t.Fatalf("end of %s/%d: %v", topic, rp.Partition, err)
				}
				ends[rp.Partition] = rp.Offset
			}
		}
	}
	want := map[string]map[int32]kgo.Offset{topic: {}}
	var total int64
	for p, end := range ends {
		if end > 0 {
			want[topic][p] = kgo.NewOffset().AtStart()
			total += end
		}
	}
	if total == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append(opts, kgo.ConsumePartitions(want))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []kafkaRecord
	next := map[int32]int64{}
	for done := 0; done < len(want[topic]); {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d records of %s: %v", len(out), total, topic, err)
		}
		fs.EachError(func(_ string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= ends[r.Partition] {
				return
			}
			if r.Offset != next[r.Partition] {
				t.Errorf("%s/%d: offset %d after %d", topic, r.Partition, r.Offset, next[r.Partition]-1)
			}
			next[r.Partition] = r.Offset + 1
			if next[r.Partition] == ends[r.Partition] {
				done++
			}
			out = append(out, kafkaRecord{r.Partition, r.Offset, r.Key, r.Headers, r.Value})
		})
	}
	return out
}

// checkKafkaRecords decodes records as gen made their datagrams: each
// carries what gen says, its key is the exporter's address and each
// exporter is in one partition. It returns the tracker and the number of
// datagrams decoded.
func checkKafkaRecords(t testing.TB, g gen, recs []kafkaRecord, n int) (*bench.Tracker, int) {
	t.Helper()
	tr := bench.NewTracker(n)
	part := map[string]int32{}
	var dgs []datapath.Datagram
	decoded := 0
	for _, r := range recs {
		var err error
		dgs, err = DecodeKafkaRecord(r.headers, r.value, dgs[:0])
		if err != nil {
			t.Fatalf("record %d/%d: %v", r.partition, r.offset, err)
		}
		decoded += len(dgs)
		for _, d := range dgs {
			if string(r.key) != d.Src.Addr().String() {
				t.Errorf("record %d/%d: key %q, datagram from %v", r.partition, r.offset, r.key, d.Src)
			}
			seq, ok := bench.DecodeSized(d.Payload)
			tr.Mark(seq, ok)
			if !ok {
				continue
			}
			_, nvlan, _, src, dst := g.expect(seq)
			if d.Src != src || d.Dst != dst || int(d.NVLAN) != nvlan || d.RxTime != int64(rxTimeBase+seq*1000) {
				t.Errorf("datagram %d: %v -> %v, %d VLANs, time %d; want %v -> %v, %d", seq, d.Src, d.Dst, d.NVLAN, d.RxTime, src, dst, nvlan)
			}
			if nvlan > 0 && d.VLAN[0] != uint16(seq%4095) {
				t.Errorf("datagram %d: VLAN %d, want %d", seq, d.VLAN[0], seq%4095)
			}
		}
		if p, ok := part[string(r.key)]; ok && p != r.partition {
			t.Errorf("exporter %s in partitions %d and %d", r.key, p, r.partition)
		}
		part[string(r.key)] = r.partition
	}
	return tr, decoded
}

func kafkaAddr(c *kfake.Cluster) string { return strings.Join(c.ListenAddrs(), ",") }

func TestKafkaDelivers(t *testing.T) {
	for _, c := range []struct {
		name, params string
		n            uint64
	}{
		{"record", "", 6000},
		{"record-lz4", "compression=lz4&acks=all", 6000},
		{"batch", "format=batch&batch=50&compression=zstd", 40000},
	} {
		t.Run(c.name, func(t *testing.T) {
			kc := startKafka(t, kfake.NumBrokers(3), kfake.SeedTopics(4, "ingest"))
			url := fmt.Sprintf("kafka://%s/ingest?max_wait=30s&%s", kafkaAddr(kc), c.params)
			s := mustOpen(t, url, Options{Workers: 2, CloseTimeout: 20 * time.Second})
			if want := "kafka://" + kafkaAddr(kc) + "/ingest"; s.Name() != want {
				t.Errorf("name %q, want %q", s.Name(), want)
			}
			g := gen{mixed: true}
			done := make(chan struct{})
			go func() {
				defer close(done)
				writeSeq(t, g, s.Writer(1), c.n/2, c.n-c.n/2)
				s.Writer(1).Flush()
			}()
			writeSeq(t, g, s.Writer(0), 0, c.n/2)
			<-done
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			st := s.Stats()
			checkIdentity(t, st)
			if st.Written != c.n || st.WrittenBytes != payloadTotal(0, c.n) || st.InFlight != 0 {
				t.Fatalf("stats %+v, want all %d written", st, c.n)
			}
			recs := readKafka(t, "ingest", kgo.SeedBrokers(kc.ListenAddrs()...))
			tr, decoded := checkKafkaRecords(t, g, recs, int(c.n))
			if err := tr.Check(); err != nil {
				t.Fatal(err)
			}
			if decoded != int(c.n) {
				t.Fatalf("%d datagrams decoded, %d written", decoded, c.n)
			}
			if c.name != "batch" && len(recs) != int(c.n) {
				t.Errorf("%d records for %d datagrams", len(recs), c.n)
			}
			if c.name == "batch" && len(recs) >= int(c.n)/10 {
				t.Errorf("%d records for %d datagrams in batches of 50", len(recs), c.n)
			}
		})
	}
}

// Many exporters over several partitions: each exporter's records are in
// one partition (the one Kafka's own key hash picks) and in the order they
// were written; between them the exporters use every partition. With more
// exporters than a writer fills batches for at once (256), the batches get
// smaller, and nothing else changes.
func TestKafkaPartitionsByExporter(t *testing.T) {
	const parts, n = 8, 6400
	for _, c := range []struct {
		name, params string
		exporters    uint64
	}{
		{"record", "", 64},
		{"batch", "format=batch&batch=8", 64},
		{"batch-300-exporters", "format=batch&batch=8", 300},
	} {
		exporters := c.exporters
		t.Run(c.name, func(t *testing.T) {
			kc := startKafka(t, kfake.NumBrokers(2), kfake.SeedTopics(parts, "flows"))
			url := fmt.Sprintf("kafka://%s/flows?%s", kafkaAddr(kc), c.params)
			s := mustOpen(t, url, Options{CloseTimeout: 20 * time.Second})
			w := s.Writer(0)
			dgs := make([]datapath.Datagram, 64)
			buf := make([]byte, 64*slotSize)
			src := func(i uint64) netip.Addr {
				e := i % exporters
				return netip.AddrFrom4([4]byte{198, 18, 1 + byte(e>>8), byte(e)})
			}
			for i := uint64(0); i < n; i += 64 {
				b := gen{}.batch(dgs, buf, i)
				for k := range b {
					b[k].Src = netip.AddrPortFrom(src(i+uint64(k)), 40000)
				}
				if err := w.Write(b); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			recs := readKafka(t, "flows", kgo.SeedBrokers(kc.ListenAddrs()...))
			part := map[netip.Addr]int32{}
			last := map[netip.Addr]uint64{}
			used := map[int32]bool{}
			tr := bench.NewTracker(n)
			var dgsOut []datapath.Datagram
			for _, r := range recs {
				var err error
				if dgsOut, err = DecodeKafkaRecord(r.headers, r.value, dgsOut[:0]); err != nil {
					t.Fatal(err)
				}
				for _, d := range dgsOut {
					seq, ok := bench.DecodeSized(d.Payload)
					tr.Mark(seq, ok)
					a := d.Src.Addr()
					if a != src(seq) || string(r.key) != a.String() {
						t.Fatalf("datagram %d from %v with key %q, want %v", seq, a, r.key, src(seq))
					}
					if p, ok := part[a]; ok && p != r.partition {
						t.Fatalf("exporter %v in partitions %d and %d", a, p, r.partition)
					}
					if l, ok := last[a]; ok && seq <= l {
						t.Errorf("exporter %v: datagram %d after %d", a, seq, l)
					}
					part[a], last[a], used[r.partition] = r.partition, seq, true
				}
			}
			if err := tr.Check(); err != nil {
				t.Fatal(err)
			}
			if len(part) != int(exporters) || len(used) != parts {
				t.Fatalf("%d exporters over %d partitions, want %d over %d", len(part), len(used), exporters, parts)
			}
			// The partition is Kafka's: murmur2 of the key, as the Java
			// client and kafka-console-producer pick it.
			for a, p := range part {
				if want := kafkaPartition([]byte(a.String()), parts); p != want {
					t.Errorf("exporter %v in partition %d, Kafka's default partitioner says %d", a, p, want)
				}
			}
		})
	}
}

// The hash below is Kafka's: the vectors are those of Kafka's own tests
// (UtilsTest.testMurmur2).
func TestKafkaPartitionHash(t *testing.T) {
	for k, want := range map[string]int32{
		"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536,
		"a-little-bit-longer-string": -1486304829, "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971, "abc": 479470107,
	} {
		if got := murmur2([]byte(k)); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", k, got, want)
		}
	}
}

// kafkaPartition is the Java client's default partition of a key: murmur2,
// positive, modulo the partitions. Written out here so that the test does
// not take the sink's word for it.
func kafkaPartition(key []byte, n int) int32 {
	return (murmur2(key) & 0x7fffffff) % int32(n)
}

func murmur2(key []byte) int32 {
	const seed, m, r = 0x9747b28c, 0x5bd1e995, 24
	length := len(key)
	h := uint32(seed ^ length)
	for i := 0; i+4 <= length; i += 4 {
		k := uint32(key[i]) | uint32(key[i+1])<<8 | uint32(key[i+2])<<16 | uint32(key[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := key[length&^3:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// The records read by a Kafka client we didn't write: kcat (librdkafka)
// decodes them, compressed or not, with their keys and headers; batch
// records decode with the batch framing.
func TestKafkaKcat(t *testing.T) {
	kcat := testutil.RequireProgram(t, "kcat")
	for _, c := range []struct{ name, params string }{
		{"record-lz4", "compression=lz4"},
		{"record-zstd", "compression=zstd"},
		{"record-snappy", "compression=snappy"},
		{"record-gzip", "compression=gzip"},
		{"batch", "format=batch&batch=16"},
	} {
		t.Run(c.name, func(t *testing.T) {
			kc := startKafka(t, kfake.NumBrokers(1), kfake.SeedTopics(3, "ingest"))
			s := mustOpen(t, fmt.Sprintf("kafka://%s/ingest?%s", kafkaAddr(kc), c.params), Options{CloseTimeout: 20 * time.Second})
			g := gen{mixed: true}
			const n = 2000
			writeSeq(t, g, s.Writer(0), 0, n)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			recs := kcatRead(t, kcat, kafkaAddr(kc), "ingest")
			tr, decoded := checkKafkaRecords(t, g, recs, n)
			if err := tr.Check(); err != nil {
				t.Fatal(err)
			}
			if decoded != n {
				t.Fatalf("kcat: %d datagrams in %d records, want %d", decoded, len(recs), n)
			}
		})
	}
}

// kcatRead reads topic from the start to its end with kcat; extra are more
// kcat arguments (-X for TLS and SASL). Each record is printed as a line
// "partition offset length key|headers" followed by the value's bytes.
func kcatRead(t testing.TB, kcat, brokers, topic string, extra ...string) []kafkaRecord {
	t.Helper()
	args := append([]string{"-C", "-b", brokers, "-t", topic, "-o", "beginning", "-e", "-q",
		"-f", `%p %o %S %k|%h\n%s`}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kcat %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var recs []kafkaRecord
	rd := bufio.NewReader(bytes.NewReader(out))
	for {
		line, err := rd.ReadString('\n')
		if err == io.EOF && line == "" {
			return recs
		}
		if err != nil {
			t.Fatalf("kcat output after %d records: %v", len(recs), err)
		}
		var r kafkaRecord
		var size int
		head, hdrs, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "|")
		var key string
		if _, err := fmt.Sscanf(head, "%d %d %d %s", &r.partition, &r.offset, &size, &key); err != nil {
			t.Fatalf("kcat line %q: %v", line, err)
		}
		r.key = []byte(key)
		// name=value,name=value; a VLAN list "100,7" has a comma of its
		// own, and no value an '='.
		for _, kv := range strings.Split(hdrs, ",") {
			name, v, ok := strings.Cut(kv, "=")
			if !ok && len(r.headers) > 0 {
				h := &r.headers[len(r.headers)-1]
				h.Value = append(h.Value, ","+kv...)
				continue
			}
			r.headers = append(r.headers, kgo.RecordHeader{Key: name, Value: []byte(v)})
		}
		r.value = make([]byte, size)
		if _, err := io.ReadFull(rd, r.value); err != nil {
			t.Fatalf("kcat value of %d bytes: %v", size, err)
		}
		recs = append(recs, r)
	}
}

// The cluster goes away mid-stream and comes back on the same port with
// its data: producing resumes without a restart of the sink, nothing is
// stored twice (the idempotent producer's sequence numbers survive the
// restart), and whatever is not in the topic was counted.
func TestKafkaBrokerRestart(t *testing.T) {
	dir := t.TempDir()
	kc := startKafka(t, kfake.NumBrokers(1), kfake.DataDir(dir), kfake.SeedTopics(2, "restart"))
	addr := kafkaAddr(kc)
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	var logBuf testutil.SyncBuffer
	url := fmt.Sprintf("kafka://%s/restart?max_wait=30s&retry_for=60s&linger=1ms", addr)
	s := mustOpen(t, url, Options{CloseTimeout: 20 * time.Second, Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	g := gen{mixed: true}
	const n = 20000
	var offered atomic.Uint64
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		w := s.Writer(0)
		dgs := make([]datapath.Datagram, 32)
		buf := make([]byte, 32*slotSize)
		for i := uint64(0); i < n; i += 32 {
			_ = w.Write(g.batch(dgs, buf, i)) // losses are counted; the check is below
			_ = w.Flush()
			offered.Store(i + 32)
			time.Sleep(200 * time.Microsecond) // a steady stream across the restart
		}
	}()
	waitFor(t, "a third of the datagrams offered", func() bool { return offered.Load() >= n/3 })
	kc.Close()
	down := offered.Load()
	time.Sleep(500 * time.Millisecond)
	kc2 := startKafka(t, kfake.Ports(port), kfake.DataDir(dir))
	up := offered.Load()
	<-writerDone
	closeErr := s.Close()
	st := s.Stats()
	checkIdentity(t, st)
	if st.Offered != n || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(logBuf.String(), "Kafka broker reachable again") {
		t.Errorf("no reconnection logged: the restart went unnoticed\n%s", logBuf.String())
	}
	recs := readKafka(t, "restart", kgo.SeedBrokers(kc2.ListenAddrs()...))
	tr, decoded := checkKafkaRecords(t, g, recs, n)
	unique := tr.Unique()
	t.Logf("offered %d (%d..%d while the broker was down), written %d, dropped %v, errors %d, in the topic %d, close: %v",
		st.Offered, down, up, st.Written, st.Dropped, st.Errors, unique, closeErr)
	if unique < st.Written {
		t.Errorf("%d datagrams in the topic, %d acknowledged", unique, st.Written)
	}
	if missing := n - unique; missing > st.DroppedTotal() {
		t.Errorf("%d datagrams missing from the topic, %d counted as dropped", missing, st.DroppedTotal())
	}
	if decoded != int(unique) {
		t.Errorf("%d datagrams in the topic, %d distinct: duplicates (%v)", decoded, unique, tr.Check())
	}
	// With retry_for well past the outage, nothing should be lost at all.
	if err := tr.Check(); err != nil || st.Written != n {
		t.Errorf("written %d of %d, topic: %v", st.Written, n, err)
	}
}

// With the cluster gone for good, the backlog fills, then Write drops and
// counts at once ("broker_unreachable"), and Close counts what was held.
func TestKafkaDownDropsAndCounts(t *testing.T) {
	kc := startKafka(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "down"))
	url := fmt.Sprintf("kafka://%s/down?max_inflight=10&retry_for=60s", kafkaAddr(kc))
	s := mustOpen(t, url, Options{CloseTimeout: 500 * time.Millisecond})
	ks := s.(*kafkaSink)
	kc.Close()
	g := gen{}
	w := s.Writer(0)
	dgs := make([]datapath.Datagram, 25)
	buf := make([]byte, 25*slotSize)
	// One record makes the producer dial, and fail.
	if err := w.Write(g.batch(dgs[:1], buf, 0)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the sink to see the broker go", func() bool { return ks.nDown.Load() > 0 })
	start := time.Now()
	err := w.Write(g.batch(dgs, buf, 1))
	if err == nil || !strings.Contains(err.Error(), "broker_unreachable") {
		t.Fatalf("write with the backlog full and no broker: %v", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("write took %v while the broker was down: it should drop at once", d)
	}
	st := s.Stats()
	checkIdentity(t, st)
	if st.InFlight != 10 || st.Dropped["broker_unreachable"] != 16 {
		t.Fatalf("stats %+v: want 10 held, 16 dropped", st)
	}
	err = s.Close()
	if err == nil || !strings.Contains(err.Error(), "10 datagrams still unacknowledged") {
		t.Fatalf("close: %v", err)
	}
	st = s.Stats()
	checkIdentity(t, st)
	if st.InFlight != 0 || st.Dropped["closed"] != 10 {
		t.Fatalf("after close: %+v", st)
	}
	if err := w.Write(dgs[:1]); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	if st := s.Stats(); st.InFlight != 0 || st.Dropped["closed"] != 11 {
		t.Fatalf("after a write after close: %+v", st)
	}
	checkIdentity(t, s.Stats())
}

// A broker that stops answering produce requests (the connection stays
// up): Write waits max_wait for room, then drops ("backlog_full"); after
// Abort it no longer waits ("shutdown"); once the broker answers again,
// what was held is written.
func TestKafkaBacklogFullAndAbort(t *testing.T) {
	kc := startKafka(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "slow"))
	url := fmt.Sprintf("kafka://%s/slow?max_inflight=8&max_wait=300ms&linger=0", kafkaAddr(kc))
	s := mustOpen(t, url, Options{CloseTimeout: 20 * time.Second})
	release := make(chan struct{})
	var stalled atomic.Int32
	kc.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		stalled.Add(1)
		kc.SleepControl(func() { <-release })
		return nil, nil, false // then handled as usual
	})
	g := gen{}
	w := s.Writer(0)
	dgs := make([]datapath.Datagram, 20)
	buf := make([]byte, 20*slotSize)
	start := time.Now()
	err := w.Write(g.batch(dgs, buf, 0))
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "backlog_full") {
		t.Fatalf("write into a full backlog: %v", err)
	}
	// One max_wait per Write, not per record.
	if took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("write took %v, want max_wait (300ms) once", took)
	}
	st := s.Stats()
	checkIdentity(t, st)
	if st.InFlight != 8 || st.Dropped["backlog_full"] != 12 || stalled.Load() == 0 {
		t.Fatalf("stats %+v (%d produce requests stalled): want 8 held, 12 dropped", st, stalled.Load())
	}

	// A Write waiting for room returns promptly on Abort.
	s2 := mustOpen(t, strings.Replace(url, "max_wait=300ms", "max_wait=60s", 1), Options{CloseTimeout: 20 * time.Second})
	w2 := s2.Writer(0)
	res := make(chan error, 1)
	go func() { res <- w2.Write(g.batch(dgs, buf, 100)) }()
	waitFor(t, "the writer to wait for room", func() bool { return s2.Stats().InFlight == 20 })
	time.Sleep(100 * time.Millisecond)
	s2.(Aborter).Abort()
	select {
	case err := <-res:
		if err == nil || !strings.Contains(err.Error(), "shutdown") {
			t.Fatalf("write aborted: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("write still waiting 5 s after Abort")
	}
	if st := s2.Stats(); st.Dropped["shutdown"] != 12 || st.InFlight != 8 {
		t.Fatalf("after abort: %+v", st)
	}
	close(release)
	for _, s := range []Sink{s, s2} {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		st := s.Stats()
		checkIdentity(t, st)
		if st.Written != 8 || st.InFlight != 0 {
			t.Fatalf("after the broker answered: %+v", st)
		}
	}
}

// A topic the brokers don't have and don't create: Open refuses a fixed
// one; records to a {dport} topic that doesn't exist are counted
// ("unknown_topic") while those to one that exists are written. A cluster
// that creates topics on first use gets every {dport} topic created.
func TestKafkaTopics(t *testing.T) {
	kc := startKafka(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "flows.9000"))
	spec, err := Parse(fmt.Sprintf("kafka://%s/nothere", kafkaAddr(kc)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), spec, Options{})
	if err == nil || !strings.Contains(err.Error(), "topic nothere does not exist") {
		t.Fatalf("open with a missing topic: %v", err)
	}

	s := mustOpen(t, fmt.Sprintf("kafka://%s/flows.{dport}?retry_for=5s", kafkaAddr(kc)), Options{CloseTimeout: 20 * time.Second})
	if want := "kafka://" + kafkaAddr(kc) + "/flows.{dport}"; s.Name() != want {
		t.Errorf("name %q, want %q", s.Name(), want)
	}
	g := gen{}
	dgs := make([]datapath.Datagram, 10)
	buf := make([]byte, 10*slotSize)
	b := g.batch(dgs, buf, 0)
	for k := range b {
		b[k].Dst = netip.AddrPortFrom(b[k].Dst.Addr(), uint16(9000+k%2)) // 9000 and 9001
	}
	if err := s.Writer(0).Write(b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the records to the missing topic to fail", func() bool { return s.Stats().InFlight == 0 })
	st := s.Stats()
	checkIdentity(t, st)
	if st.Written != 5 || st.Dropped["unknown_topic"] != 5 {
		t.Fatalf("stats %+v: want 5 written to flows.9000, 5 unknown_topic for flows.9001", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if recs := readKafka(t, "flows.9000", kgo.SeedBrokers(kc.ListenAddrs()...)); len(recs) != 5 {
		t.Fatalf("%d records in flows.9000, want 5", len(recs))
	}

	auto := startKafka(t, kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(2))
	s = mustOpen(t, fmt.Sprintf("kafka://%s/flows.{dport}", kafkaAddr(auto)), Options{CloseTimeout: 20 * time.Second})
	if err := s.Writer(0).Write(b); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Written != 10 {
		t.Fatalf("auto-created topics: %+v", st)
	}
	for _, topic := range []string{"flows.9000", "flows.9001"} {
		recs := readKafka(t, topic, kgo.SeedBrokers(auto.ListenAddrs()...))
		if len(recs) != 5 {
			t.Errorf("%d records in %s, want 5", len(recs), topic)
		}
		for _, r := range recs {
			var dport string
			for _, h := range r.headers {
				if h.Key == natsmsg.HeaderDport {
					dport = string(h.Value)
				}
			}
			if "flows."+dport != topic {
				t.Errorf("a datagram to port %s in topic %s", dport, topic)
			}
		}
	}
}

// A record larger than the brokers take is dropped as record_too_large;
// the records around it are written.
func TestKafkaRecordTooLarge(t *testing.T) {
	kc := startKafka(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "big"),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": "2000"}))
	s := mustOpen(t, fmt.Sprintf("kafka://%s/big?linger=0", kafkaAddr(kc)), Options{CloseTimeout: 20 * time.Second})
	w := s.Writer(0)
	for i, size := range []int{100, 5000, 100} {
		d := testDatagram(false, 0, make([]byte, size))
		if err := w.Write([]datapath.Datagram{d}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, fmt.Sprintf("record %d answered", i), func() bool { return s.Stats().InFlight == 0 })
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	checkIdentity(t, st)
	if st.Written != 2 || st.Dropped["record_too_large"] != 1 {
		t.Fatalf("stats %+v: want 2 written, 1 record_too_large", st)
	}
}

// Close stops everything the sink started: franz-go's goroutines.
func TestKafkaCloseLeavesNoGoroutines(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "leak"))
	if err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, fmt.Sprintf("kafka://%s/leak?format=batch&batch=8", kafkaAddr(kc)), Options{Workers: 2})
	writeSeq(t, gen{}, s.Writer(0), 0, 1000)
	writeSeq(t, gen{}, s.Writer(1), 1000, 1000)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	kc.Close()
	goleak.VerifyNone(t, ignore)
}

// A seed list with a dead broker first: the sink finds the cluster through
// the live one.
func TestKafkaSeedList(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	kc := startKafka(t, kfake.NumBrokers(1), kfake.SeedTopics(1, "seed"))
	for range 3 {
		s := mustOpen(t, fmt.Sprintf("kafka://%s,%s/seed", dead, kafkaAddr(kc)), Options{CloseTimeout: 10 * time.Second})
		writeSeq(t, gen{}, s.Writer(0), 0, 10)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); st.Written != 10 {
			t.Fatalf("stats %+v", st)
		}
	}
}

// No broker: Open fails saying where and what to check.
func TestKafkaOpenErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	spec, _ := Parse("kafka://" + addr + "/x")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = Open(ctx, spec, Options{})
	if err == nil || !strings.Contains(err.Error(), "can't reach Kafka at "+addr) {
		t.Fatalf("no broker: %v", err)
	}
}

// processCPU is the CPU time (user and system) the process used so far, in
// nanoseconds.
func processCPU(tb testing.TB) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkKafkaProduce measures datagrams per second into the sink, up to
// the brokers' acknowledgement (acks=all, idempotent), against kfake on
// loopback sharing the machine's cores: in this process (broker=inproc, the
// CPU time then includes the broker's) or in a child process (broker=child,
// the CPU time is the sink's and its client's alone, what an ingest host
// pays). kfake discards what it is sent (BlackholeProduce) so that its
// storage does not grow with b.N; the rest of the protocol,
// acknowledgements and sequence checks included, runs.
func BenchmarkKafkaProduce(b *testing.B) {
	for _, broker := range []string{"inproc", "child"} {
		for _, size := range []int{64, 512} {
			for _, format := range []string{"record", "batch=64"} {
				b.Run(fmt.Sprintf("broker=%s/size=%d/%s", broker, size, format), func(b *testing.B) {
					benchKafka(b, broker, size, format)
				})
			}
		}
	}
}

// TestKafkaHelperBroker is the child of BenchmarkKafkaProduce's
// broker=child: a kfake cluster in a process of its own, which prints its
// address and runs until its standard input closes. Run as a test, it does
// nothing.
func TestKafkaHelperBroker(t *testing.T) {
	if os.Getenv("XDPI_KAFKA_HELPER_BROKER") != "1" {
		return
	}
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "bench"), kfake.BlackholeProduce())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("broker", kafkaAddr(kc))
	io.Copy(io.Discard, os.Stdin)
	kc.Close()
}

// kafkaBroker returns the address of a benchmark cluster: in this process,
// or in a child process (this test binary running TestKafkaHelperBroker).
func kafkaBroker(b *testing.B, where string) string {
	if where == "inproc" {
		return kafkaAddr(startKafka(b, kfake.NumBrokers(1), kfake.SeedTopics(4, "bench"), kfake.BlackholeProduce()))
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestKafkaHelperBroker$")
	cmd.Env = append(os.Environ(), "XDPI_KAFKA_HELPER_BROKER=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if addr, ok := strings.CutPrefix(sc.Text(), "broker "); ok {
			go io.Copy(io.Discard, stdout)
			return addr
		}
	}
	b.Fatalf("the broker process said no address: %v", sc.Err())
	return ""
}

func benchKafka(b *testing.B, broker string, size int, format string) {
	url := fmt.Sprintf("kafka://%s/bench?max_wait=60s", kafkaBroker(b, broker))
	if format != "record" {
		url += "&format=batch&batch=64"
	}
	s := mustOpen(b, url, Options{CloseTimeout: time.Minute})
	w := s.Writer(0)
	dgs := make([]datapath.Datagram, 64)
	for i := range dgs {
		dgs[i] = testDatagram(false, 0, make([]byte, size))
		// 16 exporters: 16 keys over the partitions.
		dgs[i].Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 2, byte(i % 16)}), 40000)
	}
	b.ReportAllocs()
	b.SetBytes(int64(size))
	cpu0 := processCPU(b)
	b.ResetTimer()
	for i := 0; i < b.N; i += len(dgs) {
		_ = w.Write(dgs[:min(len(dgs), b.N-i)])
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "datagrams/s")
	// The process's CPU time (with broker=inproc the broker's too):
	// steadier than the wall clock on a machine shared with other work.
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/datagram")
	if st := s.Stats(); st.Written != uint64(b.N) {
		b.Fatalf("written %d of %d: %+v", st.Written, b.N, st)
	}
}
