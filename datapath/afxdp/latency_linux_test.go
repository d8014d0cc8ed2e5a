package afxdp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/tuning"
)

// BenchmarkLatency measures what a receiver's way of waiting adds to a
// datagram's delivery at a low rate, where the ring is empty between
// datagrams: the time from the sender's sendto to the receiver's Receive
// returning it, on the test bed (sender on CPU 0, which also runs the
// veth's NAPI and the copy; receiver pinned to CPU 1 at the workers' nice
// value and slice). One op is one datagram; datagrams go out every
// `interval`. Reported: p50, p99 and max in µs.
//
//	go test ./datapath/afxdp -run '^$' -bench Latency -benchtime 20000x
//
// nap=100µs is the default (naps while traffic is recent, adapting below
// 100µs), nap=20µs a short one, poll never naps (Config.Nap < 0).
func BenchmarkLatency(b *testing.B) {
	for _, c := range []struct {
		name     string
		nap      time.Duration
		interval time.Duration
	}{
		{"nap=100µs/every=1ms", 0, time.Millisecond},
		{"nap=20µs/every=1ms", 20 * time.Microsecond, time.Millisecond},
		{"poll/every=1ms", -1, time.Millisecond},
		{"nap=100µs/every=100µs", 0, 100 * time.Microsecond},
		{"poll/every=100µs", -1, 100 * time.Microsecond},
	} {
		b.Run(c.name, func(b *testing.B) { benchLatency(b, c.nap, c.interval) })
	}
}

func benchLatency(b *testing.B, nap, interval time.Duration) {
	bed := bedT(b, 1)
	prog := programT(b, bed)
	path := openT(b, bed, Config{Nap: nap}, prog)
	sock := path.Sockets()[0]
	f := dialT(b, bed, netip.AddrPortFrom(testbed.RxIPv4, testPort))
	base := time.Now()

	lat := make([]time.Duration, 0, b.N)
	done := make(chan error, 1)
	go func() {
		pinThread(1)
		if _, err := tuning.SetThreadSlice(tuning.DefaultWorkerSlice); err != nil {
			done <- err
			return
		}
		if err := tuning.SetThreadNice(tuning.DefaultWorkerNice); err != nil {
			done <- err
			return
		}
		batch := make([]datapath.Datagram, 64)
		for len(lat) < b.N {
			n, err := sock.Receive(batch)
			if err != nil {
				done <- err
				return
			}
			now := time.Since(base)
			for i := range batch[:n] {
				if p := batch[i].Payload; len(p) >= 8 {
					lat = append(lat, now-time.Duration(binary.LittleEndian.Uint64(p)))
				}
			}
		}
		done <- nil
	}()

	pinThread(0)
	buf := make([]byte, 32)
	b.ResetTimer()
	next := time.Now()
	for i := 0; i < b.N; i++ {
		for time.Now().Before(next) {
		}
		next = next.Add(interval)
		binary.LittleEndian.PutUint64(buf, uint64(time.Since(base)))
		if _, err := f.conn.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			b.Fatal(err)
		}
	case <-time.After(10*time.Second + time.Duration(b.N)*interval):
		path.Close()
		b.Fatalf("received %d of %d datagrams", len(lat), b.N)
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))]) / 1e3 }
	b.ReportMetric(q(0.5), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(q(1), "max-µs")
	b.ReportMetric(0, "ns/op")
	if testing.Verbose() {
		fmt.Printf("%s: naps %d polls %d\n", b.Name(), sock.LoopStats().Naps, sock.LoopStats().Polls)
	}
}
