package datapath

import (
	"errors"
	"io"
	"slices"
	"testing"
)

// fakePath is a Path over Fakes, for Join's test.
type fakePath struct {
	name   string
	rxs    []*Fake
	closed int
}

func (p *fakePath) Name() string { return p.name }
func (p *fakePath) Receivers() []Receiver {
	out := make([]Receiver, len(p.rxs))
	for i, r := range p.rxs {
		out[i] = r
	}
	return out
}
func (p *fakePath) PathOf(int) string { return p.name }
func (p *fakePath) Stats() Stats {
	var s Stats
	for _, r := range p.rxs {
		s = s.Add(r.Stats())
	}
	return s
}
func (p *fakePath) Drain() {
	for _, r := range p.rxs {
		r.Drain()
	}
}
func (p *fakePath) Close() error {
	p.closed++
	for _, r := range p.rxs {
		r.Close()
	}
	return errors.New(p.name + " closed")
}
func (p *fakePath) Notes() []string { return []string{p.name + " note"} }

// A joined path lists its parts' receivers in order, names each one's
// path, sums, drains and closes every part.
func TestJoin(t *testing.T) {
	a := &fakePath{name: "afxdp", rxs: []*Fake{NewFake(0, []Datagram{{Payload: []byte("a")}}), NewFake(1, nil)}}
	k := &fakePath{name: "kernel", rxs: []*Fake{NewFake(0, []Datagram{{Payload: []byte("k")}})}}
	j := Join(a, k)
	if j.Name() != "afxdp+kernel" {
		t.Errorf("name %q", j.Name())
	}
	rxs := j.Receivers()
	if len(rxs) != 3 || rxs[0] != Receiver(a.rxs[0]) || rxs[2] != Receiver(k.rxs[0]) {
		t.Fatalf("receivers %v", rxs)
	}
	if got := []string{j.PathOf(0), j.PathOf(1), j.PathOf(2)}; !slices.Equal(got, []string{"afxdp", "afxdp", "kernel"}) {
		t.Errorf("paths %v", got)
	}
	if ps := Parts(j); len(ps) != 2 || ps[0] != Path(a) || ps[1] != Path(k) {
		t.Errorf("parts %v", ps)
	}
	if ps := Parts(a); len(ps) != 1 || ps[0] != Path(a) {
		t.Errorf("parts of a single path %v", ps)
	}
	j.Drain()
	batch := make([]Datagram, 4)
	for _, r := range rxs {
		for {
			_, err := r.Receive(batch)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if s := j.Stats(); s.Packets != 2 {
		t.Errorf("stats %+v, want the 2 datagrams", s)
	}
	if n := j.Notes(); !slices.Equal(n, []string{"afxdp note", "kernel note"}) {
		t.Errorf("notes %v", n)
	}
	err := j.Close()
	if a.closed != 1 || k.closed != 1 || err == nil || err.Error() != "afxdp closed\nkernel closed" {
		t.Errorf("close: %v (closed %d, %d)", err, a.closed, k.closed)
	}
}
