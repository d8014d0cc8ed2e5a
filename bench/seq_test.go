package bench

import "testing"

func TestSizedRoundTrip(t *testing.T) {
	buf := make([]byte, SizedSpan)
	seen := make(map[uint64]bool)
	for i := uint64(0); i < MaxSized; i += 7 {
		p := PutSized(buf, i)
		if len(p) != SizedLen(i) {
			t.Fatalf("%d: len %d want %d", i, len(p), SizedLen(i))
		}
		got, ok := DecodeSized(p)
		if !ok || got != i {
			t.Fatalf("%d: decoded %d %v", i, got, ok)
		}
		seen[got] = true
	}
	// A corrupted filler byte is refused.
	p := PutSized(buf, 100)
	p[50] ^= 0xff
	if _, ok := DecodeSized(p); ok {
		t.Fatal("corrupted payload decoded")
	}
}

func TestTracker(t *testing.T) {
	tr := NewTracker(4)
	for _, s := range []uint64{0, 1, 2, 3} {
		tr.Mark(s, true)
	}
	if err := tr.Check(); err != nil {
		t.Fatal(err)
	}
	tr.Mark(2, true)
	if tr.Check() == nil {
		t.Fatal("duplicate not reported")
	}
	tr2 := NewTracker(3)
	tr2.Mark(0, true)
	tr2.Mark(9, true)
	if err := tr2.Check(); err == nil {
		t.Fatal("missing and out-of-range not reported")
	} else {
		t.Log(err)
	}
}
