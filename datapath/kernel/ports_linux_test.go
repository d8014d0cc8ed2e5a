package kernel

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// streams sends tagged, numbered datagrams and tracks which arrived.
type streams struct {
	mu   sync.Mutex
	byID map[byte]*stream
	next byte
	bad  []string
}

type stream struct {
	name string
	port uint16
	tr   *bench.Tracker
	n    int
}

// add makes a stream of n datagrams to port.
func (ss *streams) add(name string, port uint16, n int) byte {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.byID == nil {
		ss.byID = map[byte]*stream{}
	}
	ss.next++
	ss.byID[ss.next] = &stream{name: name, port: port, tr: bench.NewTracker(n), n: n}
	return ss.next
}

// mark records one delivered datagram.
func (ss *streams) mark(d *datapath.Datagram) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(d.Payload) != 9 || ss.byID[d.Payload[0]] == nil {
		ss.bad = append(ss.bad, fmt.Sprintf("%d bytes to %v", len(d.Payload), d.Dst))
		return
	}
	s := ss.byID[d.Payload[0]]
	if d.Dst.Port() != s.port {
		ss.bad = append(ss.bad, fmt.Sprintf("%s datagram to port %d", s.name, d.Dst.Port()))
	}
	s.tr.Mark(binary.BigEndian.Uint64(d.Payload[1:]), true)
}

// send sends stream id's datagrams from src to dst, Flows 8, at rate per
// second (0: as fast as the kernel takes them).
func (ss *streams) send(ctx context.Context, t *testing.T, b *testbed.Bed, id byte, src netip.Addr, dst netip.AddrPort, rate float64) error {
	ss.mu.Lock()
	n := ss.byID[id].n
	ss.mu.Unlock()
	g := newGen(t, b, bench.UDPGenConfig{Dst: dst, Src: src, Flows: 8, Count: uint64(n), Size: 16, Rate: rate,
		Payload: func(buf []byte, seq uint64) []byte {
			buf[0] = id
			binary.BigEndian.PutUint64(buf[1:], seq)
			return buf[:9]
		}})
	res, err := g.Run(ctx)
	if err == nil && res.Sent != uint64(n) {
		err = fmt.Errorf("sent %d of %d", res.Sent, n)
	}
	return err
}

// delivered returns how many datagrams of stream id arrived (once or more).
func (ss *streams) delivered(id byte) uint64 {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.byID[id].tr.Unique()
}

// check says what went wrong: a stream that must arrive whole and once
// didn't, a stream that must not arrive did.
func (ss *streams) check(mustNot ...byte) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var errs []error
	for id, s := range ss.byID {
		_, unique, dups, _ := s.tr.Counts()
		if slices.Contains(mustNot, id) {
			if unique+dups > 0 {
				errs = append(errs, fmt.Errorf("%s: %d datagrams delivered, want none", s.name, unique+dups))
			}
			continue
		}
		if err := s.tr.Check(); err != nil {
			errs = append(errs, fmt.Errorf("%s, %d sent: %w", s.name, s.n, err))
		}
	}
	if len(ss.bad) > 0 {
		errs = append(errs, fmt.Errorf("unexpected datagrams: %q", ss.bad))
	}
	return errors.Join(errs...)
}

// setPortsIn calls SetPorts in the namespace of the bed's receiving side,
// where Open made the sockets.
func setPortsIn(b *testbed.Bed, rs []*Receiver, ports []uint16) (err error) {
	b.Rx.Do(func() error {
		_, err = setPorts(rs, ports)
		return nil
	})
	return err
}

// portsOf lists the ports a Receiver has sockets for.
func portsOf(r *Receiver) []uint16 {
	r.sockMu.Lock()
	defer r.sockMu.Unlock()
	var ports []uint16
	for i := range r.socks {
		// Only the fields other goroutines may read.
		if p := r.socks[i].local.Port(); !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	slices.Sort(ports)
	return ports
}

// Ports added and removed while datagrams flow: with the receiving
// goroutines running (SetPorts wakes them), running slowly (so that the
// sockets of removed ports still hold datagrams when SetPorts returns),
// and held (SetPorts switches the Receivers itself, and every socket holds
// what was sent). Every datagram to a kept port arrives once; every one
// sent to a removed port before SetPorts arrives once; none sent after
// does; a port added back (its sockets still draining, or closed) and a new
// port get everything; the sockets of removed ports close; nothing counts
// as an overflow.
func TestSetPortsUnderTraffic(t *testing.T) {
	for _, mode := range []string{"running", "slow", "held"} {
		t.Run(mode, func(t *testing.T) { setPortsUnderTraffic(t, mode) })
	}
}

func setPortsUnderTraffic(t *testing.T, mode string) {
	// kept throughout; removed; removed and added back; added.
	const a, rm, back, c = testPort + 30, testPort + 31, testPort + 32, testPort + 33
	b := newBed(t, testbed.Config{Queues: 2})
	rs, _ := openRx(t, b, Config{Ports: []uint16{a, rm, back}, Device: b.Rx.Link, Workers: 2, RcvBuf: 32 << 20, ForceRcvBuf: true})
	var ss streams
	var gate sync.RWMutex
	var slow atomic.Bool
	rx := startReceiving(rs, func(_ int, d *datapath.Datagram) error {
		gate.RLock()
		defer gate.RUnlock()
		if slow.Load() {
			time.Sleep(100 * time.Microsecond)
		}
		ss.mark(d)
		return nil
	})
	defer rx.stop()
	locked := false
	defer func() { // before the receivers stop, also after a failure
		if locked {
			gate.Unlock()
		}
	}()
	to := func(fam int, port uint16) (netip.Addr, netip.AddrPort) {
		return families[fam].gen, netip.AddrPortFrom(families[fam].rx, port)
	}
	var want uint64
	send := func(name string, port uint16, n int, delivered bool) []byte {
		var ids []byte
		for f := range families {
			id := ss.add(fmt.Sprintf("%s %s", name, families[f].name), port, n)
			src, dst := to(f, port)
			if err := ss.send(context.Background(), t, b, id, src, dst, 0); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
			if delivered {
				want += uint64(n)
			}
		}
		return ids
	}
	setPorts := func(ports ...uint16) {
		t.Helper()
		if err := setPortsIn(b, rs, ports); err != nil {
			t.Fatalf("SetPorts(%v): %v", ports, err)
		}
		// Removed ports' sockets may still be open, draining.
		for _, r := range rs {
			got := portsOf(r)
			for _, p := range ports {
				if !slices.Contains(got, p) {
					t.Fatalf("worker %d has sockets for %v after SetPorts(%v)", r.Queue(), got, ports)
				}
			}
		}
	}

	// A steady stream to the kept port, throughout.
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer wg.Wait() // also after a failure, before the generators close
	defer cancel()
	errc := make(chan error, 2)
	for f := range families {
		id := ss.add("kept "+families[f].name, a, 4000)
		want += 4000
		src, dst := to(f, a)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- ss.send(ctx, t, b, id, src, dst, 10000)
		}()
	}
	switch mode {
	case "held":
		gate.Lock()
		locked = true
	case "slow":
		slow.Store(true)
	}
	removed := send("removed port, before", rm, 3000, true)
	send("port added back, before", back, 3000, true)
	queued := 2*3000 - (ss.delivered(removed[0]) + ss.delivered(removed[1]))
	setPorts(a, c)
	queued = min(queued, 2*3000-(ss.delivered(removed[0])+ss.delivered(removed[1])))
	late := send("removed port, after", rm, 500, false)
	late = append(late, send("port added back, while removed", back, 500, false)...)
	time.Sleep(50 * time.Millisecond) // past the grace time: drained sockets close
	setPorts(a, back, c)
	send("port added back, after", back, 3000, true)
	send("added port", c, 3000, true)
	switch mode {
	case "held":
		gate.Unlock()
		locked = false
	case "slow":
		slow.Store(false)
	}
	t.Logf("%s: %d datagrams of the removed port were still to read when SetPorts returned", mode, queued)
	if mode != "running" && queued == 0 {
		t.Errorf("%s: the removed port's datagrams were all read before SetPorts: the test did not test draining", mode)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Fatal(err)
		}
	}
	if !testutil.WaitFor(10*time.Second, func() bool { return rx.received.Load() >= want }) {
		t.Errorf("received %d of %d", rx.received.Load(), want)
	}

	// Removing ports closes their sockets once read empty.
	setPorts(a)
	if !testutil.WaitFor(2*time.Second, func() bool {
		for _, r := range rs {
			if !slices.Equal(portsOf(r), []uint16{a}) {
				return false
			}
		}
		return true
	}) {
		t.Errorf("sockets of removed ports still open: %v, %v", portsOf(rs[0]), portsOf(rs[1]))
	}
	time.Sleep(200 * time.Millisecond) // for datagrams that must not come
	if err := rx.stop(); err != nil {
		t.Error(err)
	}
	if err := ss.check(late...); err != nil {
		t.Error(err)
	}
	if st := statsOf(rs); st.SocketOverflows != 0 {
		t.Errorf("%d socket overflows: the refusals of removed ports' sockets count as overflows, or the buffers overflowed", st.SocketOverflows)
	}
	// Nothing of ours holds the removed ports: a socket without
	// SO_REUSEPORT binds them.
	for _, p := range []uint16{rm, back, c} {
		if err := b.Rx.Do(func() error {
			l, err := net.ListenUDP("udp4", &net.UDPAddr{Port: int(p)})
			if err == nil {
				l.Close()
			}
			return err
		}); err != nil {
			t.Errorf("port %d still held after it was removed: %v", p, err)
		}
	}
}

// A SetPorts that can't open a socket (the port is held by a socket
// without SO_REUSEPORT) changes nothing: no socket of the other added
// ports stays open, the removed ports keep receiving, and the Receivers
// go on as before; a SetPorts without that port then succeeds.
func TestSetPortsFailureChangesNothing(t *testing.T) {
	const a, bp, c, held = testPort + 40, testPort + 41, testPort + 42, testPort + 43
	b := newBed(t, testbed.Config{})
	var holder *net.UDPConn
	if err := b.Rx.Do(func() (err error) {
		holder, err = net.ListenUDP("udp6", &net.UDPAddr{Port: held})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	rs, _ := openRx(t, b, Config{Ports: []uint16{a, bp}, Workers: 2, RcvBuf: 16 << 20, ForceRcvBuf: true})
	var ss streams
	rx := startReceiving(rs, func(_ int, d *datapath.Datagram) error {
		ss.mark(d)
		return nil
	})
	defer rx.stop()
	fds := testutil.OpenFDs(t)
	err := setPortsIn(b, rs, []uint16{a, c, held})
	if err == nil || !strings.Contains(err.Error(), "unchanged") || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("SetPorts with port %d held: err = %v, want EADDRINUSE and \"unchanged\"", held, err)
	}
	if got := testutil.OpenFDs(t); got != fds {
		t.Errorf("%d descriptors open after the failed SetPorts, %d before", got, fds)
	}
	for _, r := range rs {
		if got := portsOf(r); !slices.Equal(got, []uint16{a, bp}) {
			t.Errorf("worker %d has sockets for %v, want %v", r.Queue(), got, []uint16{a, bp})
		}
	}
	var want uint64
	for _, p := range []uint16{a, bp} {
		for f, fam := range families {
			id := ss.add(fmt.Sprintf("port %d %s", p, fam.name), p, 1000)
			if err := ss.send(context.Background(), t, b, id, families[f].gen, netip.AddrPortFrom(fam.rx, p), 0); err != nil {
				t.Fatal(err)
			}
			want += 1000
		}
	}
	// Nothing of ours holds c.
	if err := b.Rx.Do(func() error {
		l, err := net.ListenUDP("udp4", &net.UDPAddr{Port: c})
		if err == nil {
			l.Close()
		}
		return err
	}); err != nil {
		t.Errorf("port %d held after the failed SetPorts: %v", c, err)
	}
	if err := setPortsIn(b, rs, []uint16{a, c}); err != nil {
		t.Fatalf("SetPorts without the held port: %v", err)
	}
	for f, fam := range families {
		id := ss.add("port c "+fam.name, c, 1000)
		if err := ss.send(context.Background(), t, b, id, families[f].gen, netip.AddrPortFrom(fam.rx, c), 0); err != nil {
			t.Fatal(err)
		}
		want += 1000
	}
	if !testutil.WaitFor(5*time.Second, func() bool { return rx.received.Load() >= want }) {
		t.Errorf("received %d of %d", rx.received.Load(), want)
	}
	if err := rx.stop(); err != nil {
		t.Error(err)
	}
	if err := ss.check(); err != nil {
		t.Error(err)
	}
}

func TestSetPortsRefused(t *testing.T) {
	b := newBed(t, testbed.Config{})
	rs, _ := openRx(t, b, Config{Ports: []uint16{testPort}, Workers: 2})
	other, _ := openRx(t, b, Config{Ports: []uint16{testPort + 1}})
	for _, tc := range []struct {
		rs    []*Receiver
		ports []uint16
		want  string
	}{
		{nil, []uint16{1}, "all the Receivers"},
		{rs[:1], []uint16{testPort}, "all the Receivers"},
		{[]*Receiver{rs[1], rs[0]}, []uint16{testPort}, "all the Receivers"},
		{append(slices.Clone(rs), other...), []uint16{testPort}, "all the Receivers"},
		{rs, nil, "no UDP port"},
		{rs, []uint16{testPort, 0}, "port 0"},
		{rs, []uint16{testPort, testPort}, "twice"},
	} {
		if err := setPortsIn(b, tc.rs, tc.ports); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SetPorts(%d receivers, %v): err = %v, want %q", len(tc.rs), tc.ports, err, tc.want)
		}
	}
	rs[1].Close()
	if err := setPortsIn(b, rs, []uint16{testPort + 2}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("SetPorts with a closed Receiver: err = %v, want one saying it is closed", err)
	}
}

// The sockets SetPorts adds are steered like those of Open: a datagram
// processed on a worker's CPU is read by that worker.
func TestSetPortsSteering(t *testing.T) {
	cpus := testutil.CPUs(2)
	if len(cpus) < 2 {
		testutil.Skip(t, "steering to two workers needs two CPUs; this process may use "+fmt.Sprint(cpus))
	}
	const a, added = testPort + 50, testPort + 51
	b := newBed(t, testbed.Config{Queues: 2})
	rs, _ := openRx(t, b, Config{Ports: []uint16{a}, Addrs: []netip.Addr{testbed.RxIPv4},
		Workers: 2, CPUs: cpus, RcvBuf: 1 << 20, ForceRcvBuf: true})
	var perWorker [2]atomic.Uint64
	rx := startReceiving(rs, func(w int, d *datapath.Datagram) error {
		if d.Dst.Port() == added {
			perWorker[w].Add(1)
		}
		return nil
	})
	defer rx.stop()
	if err := setPortsIn(b, rs, []uint16{a, added}); err != nil {
		t.Fatal(err)
	}
	const per = 1000
	for w, cpu := range cpus {
		base := [2]uint64{perWorker[0].Load(), perWorker[1].Load()}
		total := func() uint64 { return perWorker[0].Load() + perWorker[1].Load() - base[0] - base[1] }
		g := newGen(t, b, bench.UDPGenConfig{Dst: netip.AddrPortFrom(testbed.RxIPv4, added), Flows: 16, Count: per, Size: 32,
			Gate: closedLoop(total, 256, 10*time.Second)})
		if err := testutil.OnCPU(cpu, func() error { _, err := g.Run(context.Background()); return err }); err != nil {
			t.Fatal(err)
		}
		if !testutil.WaitFor(5*time.Second, func() bool { return total() >= per }) {
			t.Fatalf("received %d of %d", total(), per)
		}
		if got := perWorker[w].Load() - base[w]; got != per {
			t.Errorf("sent from CPU %d: worker %d read %d of %d", cpu, w, got, per)
		}
	}
}
