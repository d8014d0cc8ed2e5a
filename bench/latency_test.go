package bench

import (
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Every value lands in the bucket whose range holds it, buckets are
// contiguous and in order, and no bucket is wider than 1/128 of its values.
func TestHistIndexRanges(t *testing.T) {
	prevHi := int64(-1)
	for i := 0; i < HistBuckets; i++ {
		lo, hi := HistBucketRange(i)
		if lo != prevHi+1 || hi < lo {
			t.Fatalf("bucket %d: [%d, %d] after %d", i, lo, hi, prevHi)
		}
		if width := hi - lo + 1; width > 1 && float64(width) > float64(lo)/128 {
			t.Fatalf("bucket %d: [%d, %d] is wider than 1/128 of %d", i, lo, hi, lo)
		}
		for _, v := range []int64{lo, hi, lo + (hi-lo)/2} {
			if got := HistIndex(v); got != i {
				t.Fatalf("HistIndex(%d) = %d, want %d (bucket [%d, %d])", v, got, i, lo, hi)
			}
		}
		prevHi = hi
	}
	if prevHi != HistLimit-1 {
		t.Fatalf("the last bucket ends at %d, want %d", prevHi, HistLimit-1)
	}
	if HistIndex(HistLimit) != HistBuckets-1 || HistIndex(math.MaxInt64) != HistBuckets-1 {
		t.Fatal("values beyond the limit must land in the last bucket")
	}
}

// Quantiles agree with the sorted values to the stated resolution: the
// nearest-rank value v and the result r satisfy v <= r <= v*129/128 (exact
// below 256 ns), for distributions from narrow to heavy-tailed.
func TestHistogramQuantiles(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for name, gen := range map[string]func() int64{
		"uniform-small": func() int64 { return r.Int64N(300) },
		"uniform-us":    func() int64 { return 10_000 + r.Int64N(90_000) },
		"lognormal":     func() int64 { return int64(math.Exp(r.NormFloat64()*1.5 + 10)) },
		"constant":      func() int64 { return 123_456 },
	} {
		t.Run(name, func(t *testing.T) {
			var h Histogram
			vals := make([]int64, 20_000)
			for i := range vals {
				vals[i] = gen()
				h.Record(vals[i])
			}
			slices.Sort(vals)
			if h.Count() != uint64(len(vals)) || h.Min() != vals[0] || h.Max() != vals[len(vals)-1] {
				t.Fatalf("count %d min %d max %d, want %d %d %d", h.Count(), h.Min(), h.Max(), len(vals), vals[0], vals[len(vals)-1])
			}
			for _, q := range []float64{0, 0.001, 0.5, 0.9, 0.99, 0.999, 1} {
				rank := max(int(math.Ceil(q*float64(len(vals)))), 1)
				want := vals[rank-1]
				if q == 0 {
					want = vals[0]
				}
				got := h.Quantile(q)
				if got < want || float64(got) > float64(want)*129/128+1 {
					t.Errorf("q%v = %d, exact %d", q, got, want)
				}
			}
			var sum float64
			for _, v := range vals {
				sum += float64(v)
			}
			if m := h.Mean(); math.Abs(m-sum/float64(len(vals))) > 1e-6*m {
				t.Errorf("mean %v, want %v", m, sum/float64(len(vals)))
			}
		})
	}
}

// Negative values are counted apart; merging adds counts and extremes;
// bucket by bucket copies (as xskdrop's output is read) give the same
// quantiles.
func TestHistogramMergeAndBuckets(t *testing.T) {
	var a, b Histogram
	if a.Quantile(0.5) != 0 || a.Count() != 0 {
		t.Fatal("an empty histogram must give 0")
	}
	for v := int64(1000); v < 2000; v++ {
		a.Record(v)
	}
	for v := int64(5_000_000); v < 5_001_000; v++ {
		b.Record(v)
	}
	b.Record(-5)
	a.Merge(&b)
	if a.Count() != 2000 || a.Negative != 1 || a.Min() != 1000 || a.Max() != 5_000_999 {
		t.Fatalf("merged: count %d negative %d min %d max %d", a.Count(), a.Negative, a.Min(), a.Max())
	}
	if q := a.Quantile(0.5); q < 1999 || q > 2000*129/128 {
		t.Errorf("merged median %d", q)
	}
	if q := a.Quantile(0.75); q < 5_000_499 || q > 5_000_499*129/128 {
		t.Errorf("merged q75 %d", q)
	}
	var c Histogram
	a.Buckets(func(i int, n uint64) {
		if err := c.AddBucket(i, n, a.Min(), a.Max()); err != nil {
			t.Fatal(err)
		}
	})
	for _, q := range []float64{0.1, 0.5, 0.9, 0.999, 1} {
		if c.Quantile(q) != a.Quantile(q) {
			t.Errorf("q%v from buckets %d, recorded %d", q, c.Quantile(q), a.Quantile(q))
		}
	}
	if c.AddBucket(HistBuckets, 1, 0, 0) == nil || c.AddBucket(-1, 1, 0, 0) == nil {
		t.Error("a bucket out of range must be refused")
	}
}

func TestHistogramRecordAllocatesNothing(t *testing.T) {
	var h Histogram
	v := int64(1)
	if n := testing.AllocsPerRun(1000, func() { h.Record(v); v = v*3 + 7 }); n != 0 {
		t.Errorf("Record allocates %v times", n)
	}
}

// MonoNow is CLOCK_MONOTONIC: between two clock_gettime calls, to within
// the anchor's error.
func TestMonoNow(t *testing.T) {
	for range 100 {
		var a, b unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &a)
		m := MonoNow()
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &b)
		e := int64(MonoAnchorError())
		if m < a.Nano()-e || m > b.Nano()+e {
			t.Fatalf("MonoNow %d outside [%d, %d] ± %d", m, a.Nano(), b.Nano(), e)
		}
	}
	if e := MonoAnchorError(); e < 0 || e > time.Millisecond {
		t.Errorf("anchor error %v", e)
	}
}

// A stamp written into a frame reads back from its payload, and the frame's
// checksums stay right, over IPv4 and IPv6.
func TestStampTime(t *testing.T) {
	for _, c := range []struct{ src, dst string }{{"198.18.0.1:1000", "198.19.0.1:9000"}, {"[2001:db8::1]:1000", "[2001:db8::2]:9000"}} {
		tpl, err := BuildTemplate(FrameSpec{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
			Src: netip.MustParseAddrPort(c.src), Dst: netip.MustParseAddrPort(c.dst), Size: 90})
		if err != nil {
			t.Fatal(err)
		}
		frame := make([]byte, 2048)
		for _, ns := range []int64{0, 1, 0x0123456789abcdef, math.MaxInt64, MonoNow()} {
			n := tpl.Stamp(frame, 77, 1234)
			tpl.StampTime(frame[:n], ns)
			p, err := VerifyUDPFrame(frame[:n])
			if err != nil {
				t.Fatalf("%s, stamp %d: %v", c.src, ns, err)
			}
			seq, _ := DecodeWide(p)
			got, ok := ReadStamp(p)
			if !ok || got != ns || seq != 77 {
				t.Fatalf("%s: read seq %d stamp %d (%v), want 77 %d", c.src, seq, got, ok, ns)
			}
		}
	}
	p := make([]byte, StampedLen)
	PutStamp(p, 42)
	if v, ok := ReadStamp(p); !ok || v != 42 {
		t.Errorf("ReadStamp = %d, %v", v, ok)
	}
	if _, ok := ReadStamp(p[:StampedLen-1]); ok {
		t.Error("a payload too short for a stamp must not read as one")
	}
}

// The pacer hands out datagrams on schedule: none before its time, and a
// run of 200 at 20 kpps takes 10 ms, not less.
func TestPacer(t *testing.T) {
	p := NewPacer(20_000)
	t0 := time.Now()
	for p.Next() < 200 {
		n := p.Wait(8, func() bool { return false })
		if n < 1 || n > 8 {
			t.Fatalf("Wait gave %d", n)
		}
		due := time.Duration(float64(p.Next()+uint64(n)-1) * 50_000)
		if el := time.Since(t0); el+100*time.Microsecond < due {
			t.Fatalf("datagram %d handed out at %v, due at %v", p.Next()+uint64(n)-1, el, due)
		}
		p.Sent(min(n, int(200-p.Next())))
	}
	if el := time.Since(t0); el < 9950*time.Microsecond {
		t.Errorf("200 datagrams at 20 kpps in %v", el)
	}
	stopped := NewPacer(1)
	stopped.Sent(1)
	if n := stopped.Wait(1, func() bool { return true }); n != 0 {
		t.Errorf("a stopped wait gave %d", n)
	}
}

// At the rounded deadline of any datagram, at rates whose interval is no
// whole number of ns, the pacer hands out at least that datagram: a 0
// would read as "stop" to the senders (it did for 3 in 3,500 at 7k/s).
func TestPacerDueAtRoundedDeadline(t *testing.T) {
	for _, rate := range []float64{7000, 1.5e6, 3e6, 999} {
		interval := 1e9 / rate
		for due := uint64(0); due < 100000; due++ {
			at := time.Duration(float64(due) * interval)
			if n := dueBy(at, interval, due); n < 1 {
				t.Fatalf("rate %v: datagram %d at its deadline %v: %d due", rate, due, at, n)
			}
			if n := dueBy(at+time.Duration(10*interval), interval, due); n < 10 || n > 12 {
				t.Fatalf("rate %v: datagram %d, ten intervals late: %d due", rate, due, n)
			}
		}
	}
}
