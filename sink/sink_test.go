package sink

import (
	"errors"
	"strings"
	"testing"

	"github.com/xdpingest/xdpingest/datapath"
)

func TestDiscard(t *testing.T) {
	s := mustOpen(t, "discard", Options{Workers: 2})
	g := gen{mixed: true}
	writeSeq(t, g, s.Writer(0), 0, 100)
	writeSeq(t, g, s.Writer(1), 100, 50)
	st := s.Stats()
	if st.Offered != 150 || st.Written != 150 || st.WrittenBytes != payloadTotal(0, 150) || s.Name() != "discard" {
		t.Fatalf("%s: %+v", s.Name(), st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Writer(0).Write(make([]datapath.Datagram, 2)); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	checkIdentity(t, s.Stats())
	if s.Stats().Dropped["closed"] != 2 {
		t.Fatalf("%+v", s.Stats())
	}
}

func TestMulti(t *testing.T) {
	dir := t.TempDir()
	a := mustOpen(t, "discard", Options{Workers: 2})
	b := mustOpen(t, "pcap:"+dir, Options{Workers: 2})
	m := Multi(a, b)
	if m.Name() != "discard,pcap:"+dir {
		t.Errorf("name %q", m.Name())
	}
	g := gen{mixed: true}
	writeSeq(t, g, m.Writer(0), 0, 100)
	writeSeq(t, g, m.Writer(1), 100, 100)
	if err := m.Writer(0).Flush(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Parts() {
		if st := p.Stats(); st.Offered != 200 || st.Written != 200 {
			t.Errorf("%s: %+v", p.Name(), st)
		}
	}
	st := m.Stats()
	checkIdentity(t, st)
	if st.Offered != 400 || len(st.Dropped) != 3 { // discard: closed; pcap: write_failed, no_space, closed
		t.Errorf("sum %+v", st)
	}
	tr, _ := readAll(t, g, dir, 200)
	if err := tr.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenAllClosesOnFailure(t *testing.T) {
	good, _ := Parse("pcap:" + t.TempDir())
	bad := Spec{Kind: "bogus"}
	_, err := OpenAll(t.Context(), []Spec{good, bad}, Options{})
	if err == nil || !strings.Contains(err.Error(), "unknown sink kind") {
		t.Fatalf("OpenAll: %v", err)
	}
}
