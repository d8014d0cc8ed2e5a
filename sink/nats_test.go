package sink

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testutil"
	"github.com/xdpingest/xdpingest/sink/natsmsg"
)

// startNATS starts an embedded JetStream server on 127.0.0.1 (port 0: a free
// one) with its store in dir.
func startNATS(t testing.TB, port int, dir string) *server.Server {
	t.Helper()
	if port == 0 {
		port = server.RANDOM_PORT
	}
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir,
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatalf("can't make the NATS server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatalf("NATS server on port %d not ready after 10 s", port)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

func natsPort(srv *server.Server) int { return srv.Addr().(*net.TCPAddr).Port }

// readStream reads every message of stream and decodes its datagrams into a
// tracker of n, checking each against gen's expectations. It returns the
// tracker, the number of messages and the number of datagrams decoded.
func readStream(t *testing.T, g gen, url, stream string, n int) (*bench.Tracker, int, int) {
	t.Helper()
	nc, err := nats.Connect(url)
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
	total := int(info.State.Msgs)
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	tr := bench.NewTracker(n)
	var dgs []datapath.Datagram
	decoded := 0
	for got := 0; got < total; {
		batch, err := cons.Fetch(min(total-got, 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for m := range batch.Messages() {
			k++
			dgs, err = natsmsg.Decode(m.Headers(), m.Data(), dgs[:0])
			if err != nil {
				t.Fatalf("message %d: %v", got+k, err)
			}
			decoded += len(dgs)
			for _, d := range dgs {
				seq, ok := bench.DecodeSized(d.Payload)
				tr.Mark(seq, ok)
				if !ok {
					continue
				}
				_, nvlan, _, src, dst := g.expect(seq)
				if d.Src != src || d.Dst != dst || int(d.NVLAN) != nvlan || d.RxTime != int64(rxTimeBase+seq*1000) {
					t.Errorf("datagram %d: %v -> %v, %d VLANs, time %d; want %v -> %v, %d", seq, d.Src, d.Dst, d.NVLAN, d.RxTime, src, dst, nvlan)
				}
			}
		}
		if batch.Error() != nil {
			t.Fatal(batch.Error())
		}
		if k == 0 {
			t.Fatalf("fetch returned nothing after %d of %d messages", got, total)
		}
		got += k
	}
	return tr, total, decoded
}

func TestNATSDelivers(t *testing.T) {
	for _, c := range []struct {
		name  string
		batch int
		n     uint64
		msgs  int // expected messages
	}{
		{"per-datagram", 1, 3000, 3000},
		{"batch", 50, 40000, 800},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := startNATS(t, 0, t.TempDir())
			url := fmt.Sprintf("nats://127.0.0.1:%d/ingest.%s?stream=INGEST&batch=%d&max_wait=30s", natsPort(srv), c.name, c.batch)
			s := mustOpen(t, url, Options{Workers: 2, CloseTimeout: 20 * time.Second})
			if want := fmt.Sprintf("nats://127.0.0.1:%d/ingest.%s", natsPort(srv), c.name); s.Name() != want {
				t.Errorf("name %q, want %q", s.Name(), want)
			}
			g := gen{mixed: true}
			done := make(chan struct{})
			go func() {
				defer close(done)
				writeSeq(t, g, s.Writer(1), c.n/2, c.n-c.n/2)
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
			tr, msgs, _ := readStream(t, g, srv.ClientURL(), "INGEST", int(c.n))
			if err := tr.Check(); err != nil {
				t.Fatal(err)
			}
			if msgs != c.msgs {
				t.Errorf("%d messages, want %d", msgs, c.msgs)
			}
		})
	}
}

// The server goes away mid-stream and comes back on the same port with the
// same store: publishing resumes, nothing is stored twice, and whatever did
// not make it is counted.
func TestNATSServerRestart(t *testing.T) {
	for _, batch := range []int{1, 16} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			dir := t.TempDir()
			srv := startNATS(t, 0, dir)
			port := natsPort(srv)
			url := fmt.Sprintf("nats://127.0.0.1:%d/ingest.restart?stream=RESTART&batch=%d&max_wait=30s&retry_for=60s", port, batch)
			s := mustOpen(t, url, Options{CloseTimeout: 20 * time.Second})
			ns := s.(*natsSink)
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
			srv.Shutdown()
			srv.WaitForShutdown()
			down := offered.Load()
			time.Sleep(300 * time.Millisecond)
			startNATS(t, port, dir)
			up := offered.Load()
			<-writerDone
			closeErr := s.Close()
			st := s.Stats()
			checkIdentity(t, st)
			if st.Offered != n || st.InFlight != 0 {
				t.Fatalf("stats %+v", st)
			}
			if r := ns.nc.Stats().Reconnects; r < 1 {
				t.Fatalf("%d reconnects: the restart went unnoticed", r)
			}
			tr, _, decoded := readStream(t, g, fmt.Sprintf("nats://127.0.0.1:%d", port), "RESTART", n)
			unique := tr.Unique()
			t.Logf("offered %d (%d..%d while the server was down), written %d, dropped %v, errors %d, in the stream %d, close: %v",
				st.Offered, down, up, st.Written, st.Dropped, st.Errors, unique, closeErr)
			// Every acknowledged datagram is in the stream; what is not
			// there was counted as dropped. (A dropped one may still be
			// there: its fate was unknown when it was given up.)
			if unique < st.Written {
				t.Errorf("%d datagrams in the stream, %d acknowledged", unique, st.Written)
			}
			if missing := n - unique; missing > st.DroppedTotal() {
				t.Errorf("%d datagrams missing from the stream, %d counted as dropped", missing, st.DroppedTotal())
			}
			if err := tr.Check(); err != nil && st.DroppedTotal() == 0 {
				t.Error(err)
			}
			// Retries carry the same Nats-Msg-Id: the stream keeps one copy.
			if decoded != int(unique) {
				t.Errorf("%d datagrams in the stream, %d distinct: duplicates or garbage (%v)", decoded, unique, tr.Check())
			}
		})
	}
}

// waitFor waits for cond with the sinks' tests' patience.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testutil.MustWaitFor(t, 30*time.Second, what, cond)
}

// No server: Open fails with a message that says where and what to check.
// A subject no stream captures fails Open too.
func TestNATSOpenErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	spec, _ := Parse(fmt.Sprintf("nats://127.0.0.1:%d/x", port))
	_, err = Open(context.Background(), spec, Options{})
	if err == nil || !strings.Contains(err.Error(), "can't connect to NATS") {
		t.Fatalf("no server: %v", err)
	}

	srv := startNATS(t, 0, t.TempDir())
	spec, _ = Parse(fmt.Sprintf("nats://127.0.0.1:%d/nostream", natsPort(srv)))
	_, err = Open(context.Background(), spec, Options{})
	if err == nil || !strings.Contains(err.Error(), "no JetStream stream") {
		t.Fatalf("no stream: %v", err)
	}
	// A stream that exists but captures other subjects.
	s := mustOpen(t, fmt.Sprintf("nats://127.0.0.1:%d/a.b?stream=AB", natsPort(srv)), Options{})
	s.Close()
	spec, _ = Parse(fmt.Sprintf("nats://127.0.0.1:%d/c.d?stream=AB", natsPort(srv)))
	_, err = Open(context.Background(), spec, Options{})
	if err == nil || !strings.Contains(err.Error(), "captures [a.b], not c.d") {
		t.Fatalf("stream of other subjects: %v", err)
	}
	// An existing stream found by subject, without stream=.
	s = mustOpen(t, fmt.Sprintf("nats://127.0.0.1:%d/a.b", natsPort(srv)), Options{})
	s.Close()
}

// With the server gone for good, the backlog fills, then Write drops and
// counts at once ("not_connected"), and Close counts what was held.
func TestNATSDownDropsAndCounts(t *testing.T) {
	srv := startNATS(t, 0, t.TempDir())
	url := fmt.Sprintf("nats://127.0.0.1:%d/down?stream=DOWN&max_inflight=10&retry_for=60s", natsPort(srv))
	s := mustOpen(t, url, Options{CloseTimeout: 500 * time.Millisecond})
	ns := s.(*natsSink)
	srv.Shutdown()
	srv.WaitForShutdown()
	waitFor(t, "the sink to see the connection go", func() bool { return !ns.connected.Load() })
	g := gen{}
	w := s.Writer(0)
	dgs := make([]datapath.Datagram, 25)
	buf := make([]byte, 25*slotSize)
	start := time.Now()
	err := w.Write(g.batch(dgs, buf, 0))
	if err == nil || !strings.Contains(err.Error(), "not_connected") {
		t.Fatalf("write with the backlog full and no server: %v", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("write took %v while disconnected: it should drop at once", d)
	}
	st := s.Stats()
	checkIdentity(t, st)
	if st.InFlight != 10 || st.Dropped["not_connected"] != 15 {
		t.Fatalf("stats %+v: want 10 held, 15 dropped", st)
	}
	err = s.Close()
	if err == nil || !strings.Contains(err.Error(), "10 messages (10 datagrams) still unacknowledged") {
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

func TestSubjectsCover(t *testing.T) {
	for _, c := range []struct {
		pats []string
		subj string
		want bool
	}{
		{[]string{"a.b"}, "a.b", true},
		{[]string{"a.b"}, "a.b.c", false},
		{[]string{"a.b.c"}, "a.b", false},
		{[]string{"a.*"}, "a.b", true},
		{[]string{"a.*"}, "a.b.c", false},
		{[]string{"a.>"}, "a.b.c", true},
		{[]string{"a.>"}, "a", false},
		{[]string{">"}, "x", true},
		{[]string{"x", "*.b"}, "a.b", true},
		{nil, "a", false},
	} {
		if got := subjectsCover(c.pats, c.subj); got != c.want {
			t.Errorf("subjectsCover(%q, %q) = %v", c.pats, c.subj, got)
		}
	}
}

// BenchmarkNATSPublish measures the sink's cost per datagram up to the
// acknowledgement, against an embedded server on loopback (which shares the
// machine's cores: a lower bound on what a remote server allows).
func BenchmarkNATSPublish(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			srv := startNATS(b, 0, b.TempDir())
			s := mustOpen(b, fmt.Sprintf("nats://127.0.0.1:%d/bench?stream=BENCH&batch=%d&max_wait=60s", natsPort(srv), batch),
				Options{CloseTimeout: time.Minute})
			w := s.Writer(0)
			dgs := make([]datapath.Datagram, 64)
			for i := range dgs {
				dgs[i] = testDatagram(false, 0, make([]byte, 22))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += len(dgs) {
				_ = w.Write(dgs[:min(len(dgs), b.N-i)])
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/datagram")
			if st := s.Stats(); st.Written != uint64(b.N) {
				b.Fatalf("written %d of %d: %+v", st.Written, b.N, st)
			}
		})
	}
}

// Close stops everything the sink started: the retrier and nats.go's
// goroutines.
func TestNATSCloseLeavesNoGoroutines(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	srv := startNATS(t, 0, t.TempDir())
	s := mustOpen(t, fmt.Sprintf("nats://127.0.0.1:%d/leak?stream=LEAK&batch=8", natsPort(srv)), Options{Workers: 2})
	writeSeq(t, gen{}, s.Writer(0), 0, 1000)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	goleak.VerifyNone(t, ignore) // retries for a while before failing
}

// A seed list: the sink connects through the servers that answer, whatever
// the order nats.go tries them in, and the credentials reach each (nats.go
// itself gives those of "nats://u:p@a,b" to a only). The name shows the
// list without them.
func TestNATSSeedList(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there now
	for _, c := range []struct {
		name, creds string
		opts        server.Options
	}{
		{"user and password", "ingest:pw%2Fx@", server.Options{Username: "ingest", Password: "pw/x"}},
		{"token", "t0ken@", server.Options{Authorization: "t0ken"}},
		{"none", "", server.Options{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := c.opts
			o.Host, o.Port, o.JetStream, o.StoreDir, o.NoLog, o.NoSigs = "127.0.0.1", server.RANDOM_PORT, true, t.TempDir(), true, true
			srv, err := server.NewServer(&o)
			if err != nil {
				t.Fatal(err)
			}
			go srv.Start()
			t.Cleanup(srv.Shutdown)
			if !srv.ReadyForConnections(10 * time.Second) {
				t.Fatal("NATS server not ready after 10 s")
			}
			live := natsPort(srv)
			url := fmt.Sprintf("nats://%s127.0.0.1:%d,127.0.0.1:%d/seed.list?stream=SEED", c.creds, dead, live)
			spec, err := Parse(url)
			if err != nil {
				t.Fatal(err)
			}
			// Several opens: nats.go shuffles the list, so that some try
			// the dead server first.
			for range 4 {
				s, err := Open(context.Background(), spec, Options{Workers: 1, CloseTimeout: time.Second})
				if err != nil {
					t.Fatalf("open %s: %v", Redact(url), err)
				}
				want := fmt.Sprintf("nats://127.0.0.1:%d,127.0.0.1:%d/seed.list", dead, live)
				if s.Name() != want {
					t.Errorf("name %q, want %q", s.Name(), want)
				}
				g := gen{}
				dgs := make([]datapath.Datagram, 4)
				buf := make([]byte, 4*slotSize)
				if err := s.Writer(0).Write(g.batch(dgs, buf, 0)); err != nil {
					t.Fatal(err)
				}
				if err := s.Writer(0).Flush(); err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if st := s.Stats(); st.Written != 4 {
					t.Fatalf("stats %+v: want 4 written", st)
				}
			}
		})
	}
}
