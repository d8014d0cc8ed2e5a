package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
	"github.com/xdpingest/xdpingest/sink/natsmsg"
)

// tcpProxy lets the server in the bed's receiving namespace reach a broker
// on the host's loopback, which that namespace can't see: it listens on
// the namespace's loopback and forwards each connection to upstream,
// dialled from the host's namespace. It can stall (stop forwarding, every
// connection left open, as a broker that hangs) and cut (close every
// connection, as a network that drops them).
type tcpProxy struct {
	ln       net.Listener
	upstream string

	mu      sync.Mutex
	pairs   map[*proxyPair]struct{}
	gate    chan struct{} // closed while forwarding; open while stalled
	closed  bool
	wg      sync.WaitGroup
	accepts atomic.Uint64
}

// proxyPair is one forwarded connection.
type proxyPair struct {
	down, up net.Conn
	cut      chan struct{}
	once     sync.Once
}

func (c *proxyPair) close() {
	c.once.Do(func() {
		close(c.cut)
		c.down.Close()
		c.up.Close()
	})
}

func newTCPProxy(t *testing.T, b *testbed.Bed, upstream string) *tcpProxy {
	t.Helper()
	p := &tcpProxy{upstream: upstream, pairs: map[*proxyPair]struct{}{}, gate: make(chan struct{})}
	close(p.gate)
	// The listening socket belongs to the namespace it was made in;
	// Accept and the dials below run on ordinary threads, in the host's.
	if err := b.Rx.Do(func() (err error) {
		p.ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatalf("can't listen in %s: %v", b.Rx.Netns, err)
	}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the address the server in the receiving namespace dials.
func (p *tcpProxy) Addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepts.Add(1)
		p.wg.Add(1)
		go p.serve(down)
	}
}

func (p *tcpProxy) serve(down net.Conn) {
	defer p.wg.Done()
	up, err := net.DialTimeout("tcp", p.upstream, 2*time.Second)
	if err != nil { // the broker is down: so is the connection
		down.Close()
		return
	}
	c := &proxyPair{down: down, up: up, cut: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.close()
		return
	}
	p.pairs[c] = struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(c, up, down) }()
	go func() { defer wg.Done(); p.pipe(c, down, up) }()
	wg.Wait()
	p.mu.Lock()
	delete(p.pairs, c)
	p.mu.Unlock()
}

// pipe copies src to dst until either fails or the pair is cut. What it
// reads while the proxy is stalled it holds, and reads no more, so the
// sockets' buffers fill as behind a hung peer.
func (p *tcpProxy) pipe(c *proxyPair, dst, src net.Conn) {
	defer c.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			gate := p.gate
			p.mu.Unlock()
			select {
			case <-gate:
			case <-c.cut:
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// stall stops forwarding in both directions; connections stay open.
func (p *tcpProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
		p.gate = make(chan struct{})
	default: // already stalled
	}
}

// cut closes every connection; new ones are still accepted.
func (p *tcpProxy) cut() int {
	p.mu.Lock()
	pairs := make([]*proxyPair, 0, len(p.pairs))
	for c := range p.pairs {
		pairs = append(pairs, c)
	}
	p.mu.Unlock()
	for _, c := range pairs {
		c.close()
	}
	return len(pairs)
}

func (p *tcpProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.cut()
	p.wg.Wait()
}

// startJetStream starts an embedded NATS server with JetStream on the
// host's 127.0.0.1:port (0: a free port), its store in dir.
func startJetStream(t *testing.T, port int, dir string) *natsserver.Server {
	t.Helper()
	if port == 0 {
		port = natsserver.RANDOM_PORT
	}
	srv, err := natsserver.NewServer(&natsserver.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatalf("can't make the NATS server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatalf("NATS server on port %d not ready after 10 s", port)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}

func jetStreamPort(srv *natsserver.Server) int { return srv.Addr().(*net.TCPAddr).Port }

// readJetStream reads every message of stream from the host and marks the
// sized datagrams they carry. It returns the datagrams decoded.
func readJetStream(t *testing.T, url, stream string, set *seqSet) int {
	t.Helper()
	nc, err := nats.Connect(url)
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
	total := int(info.State.Msgs)
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
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
				t.Fatalf("message %d of stream %s: %v", got+k, stream, err)
			}
			for _, d := range dgs {
				set.Mark(bench.DecodeSized(d.Payload))
			}
			decoded += len(dgs)
		}
		if batch.Error() != nil {
			t.Fatal(batch.Error())
		}
		if k == 0 {
			t.Fatalf("fetch returned nothing after %d of %d messages", got, total)
		}
		got += k
	}
	return decoded
}

// steady sends datagrams [from, to) at about rate a second, in bursts.
func steady(snd *sender, from, to uint64, rate int, sent *atomic.Uint64) error {
	const burst = 20
	gap := time.Second * burst / time.Duration(rate)
	next := time.Now()
	for i := from; i < to; i++ {
		if err := snd.send(i); err != nil {
			return err
		}
		sent.Store(i + 1)
		if (i-from)%burst == burst-1 {
			next = next.Add(gap)
			time.Sleep(time.Until(next))
		}
	}
	return nil
}

// Issue 10, faults: the NATS server goes away mid-stream and comes back on
// the same port with the same store; later the network cuts the
// connection. Nothing is stored twice, every datagram counted written is in
// the stream, whatever is not there is counted, and at exit nothing is in
// flight.
func TestFaultNATSRestart(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{MTU: 1600})
	store := t.TempDir()
	ns := startJetStream(t, 0, store)
	port := jetStreamPort(ns)
	proxy := newTCPProxy(t, b, fmt.Sprintf("127.0.0.1:%d", port))
	url := fmt.Sprintf("nats://%s/ingest.faults?stream=FAULTS&batch=16&retry_for=60s", proxy.Addr())
	srv := startServer(t, b, "--ports", "9000", "--sink", url)
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
	ns.Shutdown()
	ns.WaitForShutdown()
	down := sent.Load()
	time.Sleep(500 * time.Millisecond)
	startJetStream(t, port, store)
	up := sent.Load()
	waitSent(2 * n / 3)
	cut := proxy.cut()
	waitSent(n)
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	t.Logf("NATS down while datagrams %d..%d were sent; %d connections cut at %d", down, up, cut, 2*n/3)

	// Retries back off up to 2 s: give the backlog time to drain.
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
	if !strings.Contains(srv.log.String(), "NATS reconnected") || proxy.accepts.Load() < 3 {
		t.Errorf("%d connections through the proxy and no reconnection logged: the faults went unnoticed", proxy.accepts.Load())
	}
	final := finalAccounting(t, srv, true)
	var written, dropped uint64
	for _, s := range final.sinks {
		written, dropped = s["written"], s["dropped"]+s["queue_full"]+s["shutdown"]
	}

	set := newSeqSet(bench.MaxSized)
	decoded := readJetStream(t, fmt.Sprintf("nats://127.0.0.1:%d", port), "FAULTS", set)
	unique, dups, bad := set.Counts()
	t.Logf("sent %d, received %d, written %d, dropped %d; the stream holds %d datagrams, %d distinct", n, final.received, written, dropped, decoded, unique)
	if dups != 0 || bad != 0 {
		t.Errorf("the stream holds %d duplicates and %d datagrams not ours", dups, bad)
	}
	// A datagram dropped after a timeout may still be in the stream (its
	// fate was unknown); one counted written must be there.
	if unique < written || unique > written+dropped {
		t.Errorf("%d distinct datagrams in the stream; want from written %d to written + dropped %d", unique, written, written+dropped)
	}
	// What the kernel lost before the server is counted by identity 2.
	if missing := n - unique; missing > dropped+(n-final.received) {
		t.Errorf("%d datagrams missing from the stream, %d counted dropped and %d not received", missing, dropped, n-final.received)
	}
	// The last tenth was sent after both faults and long before the end.
	if k, first := set.Missing(n-n/10, n); k != 0 && dropped == 0 {
		t.Errorf("%d of the last %d datagrams, sent once NATS was back, are not in the stream (first %v)", k, n/10, first)
	}
}

// Issue 10, faults: the NATS sink stalls (the broker stops answering, the
// connection stays open) under --on-full block, the queues fill and the
// worker waits; SIGTERM must still end the process within --drain-timeout
// plus a second, closing each sink only after its writers returned, and
// count what could not be written as shutdown.
func TestFaultSinkStalledThroughSIGTERM(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{MTU: 1600})
	ns := startJetStream(t, 0, t.TempDir())
	proxy := newTCPProxy(t, b, fmt.Sprintf("127.0.0.1:%d", jetStreamPort(ns)))
	// A small backlog and a Write that waits long for room: once the
	// broker stalls, the writer waits in Write and the worker on its full
	// queue.
	url := fmt.Sprintf("nats://%s/ingest.stall?stream=STALL&max_inflight=64&max_wait=60s", proxy.Addr())
	srv := startServer(t, b, "--ports", "9000", "--on-full", "block", "--drain-timeout", "2s", "--queue-mb", "1", "--sink", url)
	snd := newSender(t, b, 9000)

	// The path works before the stall.
	const warm = 2000
	if err := paced(0, warm, 256, snd.send, func() uint64 { return uint64(sum(srv.scrape(), "xdpingest_sink_written_total")) }); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for sum(srv.scrape(), "xdpingest_sink_written_total") < warm {
		if time.Now().After(deadline) {
			t.Fatalf("%v of %d written before the stall:\n%s", sum(srv.scrape(), "xdpingest_sink_written_total"), warm, dump(srv.scrape()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	proxy.stall()

	// Keep sending (bounded) until the process is gone.
	var sent atomic.Uint64
	sent.Store(warm)
	stop := make(chan struct{})
	sending := make(chan struct{})
	go func() {
		defer close(sending)
		end := time.Now().Add(60 * time.Second)
		for i := uint64(warm); i < bench.MaxSized && time.Now().Before(end); i++ {
			select {
			case <-stop:
				return
			default:
			}
			snd.send(i)
			sent.Store(i + 1)
			if i%64 == 0 {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	defer func() { close(stop); <-sending }()

	// The worker waits on its full queue: /healthz says so after 5 s.
	stalled := time.Now()
	var code int
	var body string
	deadline = time.Now().Add(20 * time.Second)
	for {
		resp, err := srv.client.Get("http://" + srv.metrics + "/healthz")
		if err != nil {
			t.Fatalf("/healthz: %v", err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code, body = resp.StatusCode, string(raw)
		if code == http.StatusServiceUnavailable && strings.Contains(body, "stuck") || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	m := srv.scrape()
	t.Logf("%v after the stall, %d sent: /healthz %d %q\n%s", time.Since(stalled).Round(time.Millisecond), sent.Load(), code, strings.TrimSpace(body), dump(m))
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "stuck") {
		t.Errorf("/healthz %d %q 20 s into the stall; want 503 naming a stuck worker", code, strings.TrimSpace(body))
	}
	// Not checked while the worker waits: the batch in its hands is in no
	// counter until it reaches a queue (received, not yet in flight).
	if err := sinkIdentityErr(m, false); err != nil {
		t.Logf("while the worker waits: %v", err)
	}

	// SIGTERM: gone within --drain-timeout (2 s) plus a second, with
	// some slack for the scheduler.
	const within = 3500 * time.Millisecond
	start := time.Now()
	srv.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-srv.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("still running 15 s after SIGTERM with a stalled sink:\n%s", srv.log.String())
	}
	took := time.Since(start)
	t.Logf("exit status %d %v after SIGTERM", srv.exit, took.Round(time.Millisecond))
	if took > within {
		t.Errorf("exit %v after SIGTERM with --drain-timeout 2s; want within %v", took.Round(time.Millisecond), within)
	}
	log := srv.log.String()
	if strings.Contains(log, "still in Write or Flush") || strings.Contains(log, "did not return within") {
		t.Errorf("a writer was still in the stalled sink's Write after the drain timed out (the NATS sink's Abort did not stop it waiting)")
	}
	// 1 is documented for a sink that could not deliver what it held at
	// close; anything else is a crash or a kill.
	if srv.exit != 0 && srv.exit != 1 {
		t.Errorf("exit status %d", srv.exit)
	}
	final := finalAccounting(t, srv, false)
	for name, s := range final.sinks {
		t.Logf("final: received %d; sink %s: %v", final.received, name, s)
		if s["shutdown"] == 0 {
			t.Errorf("sink %s: nothing counted as shutdown after a drain that timed out on a stalled sink: %v", name, s)
		}
	}
}
