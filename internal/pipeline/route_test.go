package pipeline

import (
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/portset"
	"github.com/xdpingest/xdpingest/sink"
)

// toPorts returns n datagrams, datagram i to ports[i%len(ports)].
func toPorts(n int, ports ...uint16) []datapath.Datagram {
	src := netip.MustParseAddrPort("198.18.0.1:5000")
	out := make([]datapath.Datagram, n)
	for i := range out {
		out[i] = datapath.Datagram{Payload: []byte{byte(i)}, Src: src,
			Dst: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.2"), ports[i%len(ports)])}
	}
	return out
}

// A sink with ?ports= gets only those ports' datagrams; the others are
// counted as for other ports, and each sink's accounting adds up.
func TestPipelineRoutes(t *testing.T) {
	const n = 4000
	f := datapath.NewFake(0, toPorts(n, 9000, 9001, 9002, 9003))
	f.AtEnd = io.EOF
	flows, logs, all := &recordSink{}, &recordSink{}, &recordSink{}
	routes := []*portset.Set{portset.Of([]uint16{9000}), portset.Of([]uint16{9001, 9002}), nil}
	p, err := New(Config{Receivers: []datapath.Receiver{f}, CPUs: []int{-1}, Sinks: []sink.Sink{flows, logs, all},
		Routes: routes, QueueBytes: 1 << 20, BlockOnFull: true, BatchSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	if err := waitErr(t, p, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		s    *recordSink
		want int
	}{{flows, n / 4}, {logs, n / 2}, {all, n}} {
		got := c.s.got()
		pc := p.SinkCounts(i)
		if len(got) != c.want || int(pc.OtherPorts) != n-c.want || pc.Queued != 0 || pc.QueueFull != 0 {
			t.Errorf("sink %d: written %d (want %d), other ports %d (want %d), queued %d", i, len(got), c.want, pc.OtherPorts, n-c.want, pc.Queued)
		}
	}
	for _, d := range flows.dgs() {
		if d.Dst.Port() != 9000 {
			t.Fatalf("the sink for 9000 got a datagram to %d", d.Dst.Port())
		}
	}
	for _, d := range logs.dgs() {
		if d.Dst.Port() != 9001 && d.Dst.Port() != 9002 {
			t.Fatalf("the sink for 9001-9002 got a datagram to %d", d.Dst.Port())
		}
	}
}

// With --on-full drop, a routed sink whose queue is full loses only its own
// ports' datagrams; the others still count as for other ports.
func TestPipelineRoutesQueueFull(t *testing.T) {
	const n = 20000
	f := datapath.NewFake(0, toPorts(n, 9000, 9001))
	f.AtEnd = io.EOF
	slow := &recordSink{gate: make(chan struct{})}
	p, err := New(Config{Receivers: []datapath.Receiver{f}, CPUs: []int{-1}, Sinks: []sink.Sink{slow},
		Routes: []*portset.Set{portset.Of([]uint16{9000})}, QueueBytes: 2 * chunkMem, BatchSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	deadline := time.Now().Add(10 * time.Second)
	for p.SinkCounts(0).QueueFull == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(slow.gate)
	if err := waitErr(t, p, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	pc := p.SinkCounts(0)
	written := uint64(len(slow.got()))
	if pc.QueueFull == 0 || written+pc.QueueFull != n/2 || pc.OtherPorts != n/2 || pc.Queued != 0 {
		t.Fatalf("written %d + queue_full %d should be the %d datagrams to 9000, other ports %d the %d others (queued %d)",
			written, pc.QueueFull, n/2, pc.OtherPorts, n/2, pc.Queued)
	}
}
