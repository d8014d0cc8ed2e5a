package sink

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xdpingest/xdpingest/datapath"
)

// A subject template: datagrams to two ports land on two subjects, each
// once, whether one per message or in batches (each batch one port's);
// the stream created captures every port's subject.
func TestNATSSubjectTemplate(t *testing.T) {
	for _, batch := range []int{1, 16} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			srv := startNATS(t, 0, t.TempDir())
			url := fmt.Sprintf("nats://127.0.0.1:%d/flows.{dport}?stream=FLOWS&batch=%d&max_wait=30s", natsPort(srv), batch)
			s := mustOpen(t, url, Options{Workers: 1, CloseTimeout: 20 * time.Second})
			if want := fmt.Sprintf("nats://127.0.0.1:%d/flows.{dport}", natsPort(srv)); s.Name() != want {
				t.Errorf("name %q, want %q", s.Name(), want)
			}
			// Ports interleaved datagram by datagram: even sequence
			// numbers to 2055, odd ones to 4739.
			const n = 1000
			w := s.Writer(0)
			dgs := make([]datapath.Datagram, 10)
			buf := make([]byte, 10*slotSize)
			for i := uint64(0); i < n; i += 10 {
				g := gen{}.batch(dgs, buf, i)
				for k := range g {
					g[k].Dst = netip.AddrPortFrom(g[k].Dst.Addr(), natsPortOf(i+uint64(k)))
				}
				if err := w.Write(g); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			st := s.Stats()
			checkIdentity(t, st)
			if st.Written != n {
				t.Fatalf("stats %+v", st)
			}
			got := natsStreamSeqs(t, srv, "FLOWS")
			if len(got) != 2 {
				t.Fatalf("subjects %v, want flows.2055 and flows.4739", natsSubjects(got))
			}
			for subj, seqs := range got {
				seen := map[uint64]bool{}
				for _, seq := range seqs {
					if subj != fmt.Sprintf("flows.%d", natsPortOf(seq)) || seen[seq] {
						t.Fatalf("datagram %d on %s, or twice", seq, subj)
					}
					seen[seq] = true
				}
				if len(seqs) != n/2 {
					t.Errorf("%d datagrams on %s, want %d", len(seqs), subj, n/2)
				}
			}
			msgs := natsCountMsgs(t, srv, "FLOWS")
			if want := 2 * ((n/2 + batch - 1) / batch); msgs != want {
				t.Errorf("%d messages, want %d: the batches are not one port's each, or not full", msgs, want)
			}
			// The stream captures every port, not only those seen.
			nc, err := nats.Connect(srv.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, _ := jetstream.New(nc)
			if _, err := js.Publish(context.Background(), "flows.9999", []byte("x")); err != nil {
				t.Errorf("the stream does not capture flows.9999: %v", err)
			}
		})
	}
}

func natsPortOf(seq uint64) uint16 {
	if seq%2 == 0 {
		return 2055
	}
	return 4739
}

func natsSubjects(m map[string][]uint64) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func natsCountMsgs(t *testing.T, srv interface{ ClientURL() string }, stream string) int {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return int(info.State.Msgs)
}

// More ports than a writer fills batches for at once: the oldest batch is
// published as it is, and every datagram still lands once on its port's
// subject.
func TestNATSSubjectTemplateManyPorts(t *testing.T) {
	srv := startNATS(t, 0, t.TempDir())
	s := mustOpen(t, fmt.Sprintf("nats://127.0.0.1:%d/many.{dport}?stream=MANY&batch=1000&max_wait=30s", natsPort(srv)),
		Options{CloseTimeout: 20 * time.Second})
	ports := natsMaxOpenBatches * 3
	const perPort = 5
	n := uint64(ports * perPort)
	w := s.Writer(0)
	dgs := make([]datapath.Datagram, 1)
	buf := make([]byte, slotSize)
	for i := uint64(0); i < n; i++ {
		g := gen{}.batch(dgs, buf, i)
		g[0].Dst = netip.AddrPortFrom(g[0].Dst.Addr(), uint16(10000+i%uint64(ports)))
		if err := w.Write(g); err != nil {
			t.Fatal(err)
		}
		if nw := s.(*natsSink).writers[0]; len(nw.open) > natsMaxOpenBatches {
			t.Fatalf("%d batches open, bound %d", len(nw.open), natsMaxOpenBatches)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Written != n {
		t.Fatalf("stats %+v", st)
	}
	got := natsStreamSeqs(t, srv, "MANY")
	total := 0
	for subj, seqs := range got {
		for _, seq := range seqs {
			if want := fmt.Sprintf("many.%d", 10000+seq%uint64(ports)); subj != want {
				t.Fatalf("datagram %d on %s, want %s", seq, subj, want)
			}
		}
		total += len(seqs)
	}
	if len(got) != ports || total != int(n) {
		t.Fatalf("%d subjects, %d datagrams; want %d, %d", len(got), total, ports, n)
	}
}

// Without stream=, an existing stream must capture every subject of the
// template: one capturing flows.* is found, one capturing only
// flows.2055 is refused, naming it.
func TestNATSSubjectTemplateExistingStream(t *testing.T) {
	srv := startNATS(t, 0, t.TempDir())
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ONEPORT", Subjects: []string{"part.2055"}}); err != nil {
		t.Fatal(err)
	}
	spec, _ := Parse(fmt.Sprintf("nats://127.0.0.1:%d/part.{dport}", natsPort(srv)))
	_, err = Open(ctx, spec, Options{})
	if err == nil || !strings.Contains(err.Error(), "ONEPORT captures only some; make one capture part.*") {
		t.Fatalf("a stream of one port: %v", err)
	}
	spec, _ = Parse(fmt.Sprintf("nats://127.0.0.1:%d/none.{dport}", natsPort(srv)))
	if _, err = Open(ctx, spec, Options{}); err == nil || !strings.Contains(err.Error(), "no JetStream stream") {
		t.Fatalf("no stream: %v", err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ALLPORTS", Subjects: []string{"all.>"}}); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, fmt.Sprintf("nats://127.0.0.1:%d/all.{dport}", natsPort(srv)), Options{})
	s.Close()
	// stream= names a stream that exists with other subjects.
	spec, _ = Parse(fmt.Sprintf("nats://127.0.0.1:%d/part.{dport}?stream=ONEPORT", natsPort(srv)))
	if _, err = Open(ctx, spec, Options{}); err == nil || !strings.Contains(err.Error(), "captures [part.2055], not part.*") {
		t.Fatalf("stream= of one port: %v", err)
	}
}
