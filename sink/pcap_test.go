package sink

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testutil"
	"github.com/xdpingest/xdpingest/sink/pcapfile"
)

// writeSeq writes datagrams first..first+n-1 through w in batches of 64.
func writeSeq(t testing.TB, g gen, w Writer, first, n uint64) {
	t.Helper()
	dgs := make([]datapath.Datagram, 64)
	buf := make([]byte, 64*slotSize)
	for i := first; i < first+n; i += 64 {
		k := min(64, first+n-i)
		if err := w.Write(g.batch(dgs[:k], buf, i)); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
}

// readAll reads every finished file in dir, checks each record and returns
// the tracker and the number of records per file.
func readAll(t *testing.T, g gen, dir string, n int) (*bench.Tracker, map[string]int) {
	t.Helper()
	files, err := PcapFiles(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	tr := bench.NewTracker(n)
	counts := map[string]int{}
	for _, f := range files {
		if strings.HasSuffix(f, partSuffix) {
			t.Errorf("%s left unfinished", f)
		}
		err := pcapfile.ReadFile(f, func(rec pcapfile.Record) error {
			if len(rec.Data) != rec.OrigLen {
				t.Errorf("record cut: %d of %d bytes", len(rec.Data), rec.OrigLen)
			}
			g.checkFrame(t, tr, rec.Data, rec.UnixNano)
			counts[f]++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return tr, counts
}

func TestPcapWriteRead(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, "pcap:"+dir, Options{Workers: 3})
	g := gen{mixed: true}
	const n = 3000
	// Each worker writes a third; worker 2 gets nothing at first.
	writeSeq(t, g, s.Writer(0), 0, 1000)
	writeSeq(t, g, s.Writer(1), 1000, 2000)
	if st := s.Stats(); st.Offered != n || st.Written+st.InFlight != n {
		t.Fatalf("before close: %+v", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	checkIdentity(t, st)
	if st.Written != n || st.InFlight != 0 || st.DroppedTotal() != 0 || st.Errors != 0 {
		t.Fatalf("after close: %+v", st)
	}
	if want := payloadTotal(0, n); st.WrittenBytes != want {
		t.Errorf("written bytes %d, want %d", st.WrittenBytes, want)
	}
	tr, counts := readAll(t, g, dir, n)
	if err := tr.Check(); err != nil {
		t.Fatal(err)
	}
	if len(counts) != 2 {
		t.Errorf("files %v: want one per worker that wrote", counts)
	}
	for f := range counts {
		if !strings.Contains(f, "-w000-") && !strings.Contains(f, "-w001-") {
			t.Errorf("file %s: not named after worker 0 or 1", f)
		}
	}
	// Writes after Close are refused and counted.
	err := s.Writer(2).Write(g.batch(make([]datapath.Datagram, 5), make([]byte, 5*slotSize), 0))
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	if st := s.Stats(); st.Dropped["closed"] != 5 {
		t.Fatalf("after a write after close: %+v", st)
	}
	checkIdentity(t, s.Stats())
}

func payloadTotal(first, n uint64) uint64 {
	var b uint64
	for i := first; i < first+n; i++ {
		b += uint64(bench.SizedLen(i))
	}
	return b
}

// tcpdump and tshark read the files and decode every record, also the
// synthesized ones, with the right ports and valid checksums.
func TestPcapTools(t *testing.T) {
	tcpdump := testutil.RequireProgram(t, "tcpdump")
	tshark := testutil.RequireProgram(t, "tshark")
	dir := t.TempDir()
	s := mustOpen(t, "pcap:"+dir, Options{})
	g := gen{mixed: true}
	const n = 600
	writeSeq(t, g, s.Writer(0), 0, n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := PcapFiles(dir, false)
	if err != nil || len(files) != 1 {
		t.Fatalf("files %v, %v", files, err)
	}
	f := files[0]

	out, err := exec.Command(tcpdump, "-r", f, "-nn", "-e").Output()
	if err != nil {
		t.Fatalf("tcpdump -r: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != n {
		t.Fatalf("tcpdump printed %d lines, want %d", len(lines), n)
	}
	if !strings.Contains(lines[0], "198.18.0.1.40000 > 198.18.0.2.9000: UDP, length 1") {
		t.Errorf("tcpdump's first line: %q", lines[0])
	}
	if !strings.Contains(lines[1], "2001:db8::1.40001 > 2001:db8::2.9001: UDP, length 2") || !strings.Contains(lines[1], "vlan 1") {
		t.Errorf("tcpdump's second line: %q", lines[1])
	}

	// tshark: ports, lengths and checksums of every frame. Checksum status:
	// 1 is good, 2 unverified (the IPv4 UDP checksum 0 means "none").
	cmd := exec.Command(tshark, "-r", f, "-n",
		"-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
		"-T", "fields", "-E", "separator=,",
		"-e", "udp.srcport", "-e", "udp.dstport", "-e", "udp.length",
		"-e", "ip.checksum.status", "-e", "udp.checksum.status", "-e", "ieee8021ad.id", "-e", "vlan.id")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("tshark -r: %v: %s", err, stderr.String())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	var i uint64
	for ; sc.Scan(); i++ {
		v6, nvlan, _, src, dst := g.expect(i)
		fs := strings.Split(sc.Text(), ",")
		want := []string{strconv.Itoa(int(src.Port())), strconv.Itoa(int(dst.Port())), strconv.Itoa(8 + bench.SizedLen(i))}
		if len(fs) != 7 || fs[0] != want[0] || fs[1] != want[1] || fs[2] != want[2] {
			t.Fatalf("tshark frame %d: %q, want ports and length %v", i+1, sc.Text(), want)
		}
		if !v6 && fs[3] != "1" {
			t.Errorf("tshark frame %d: IPv4 header checksum status %q, want 1 (good)", i+1, fs[3])
		}
		if v6 && fs[4] != "1" {
			t.Errorf("tshark frame %d: UDP checksum status %q, want 1 (good)", i+1, fs[4])
		}
		// A single tag is 802.1Q (vlan.id); the outer of two is 802.1ad.
		wantTags := []string{"", ""}
		switch nvlan {
		case 1:
			wantTags[1] = strconv.Itoa(int(i % 4095))
		case 2:
			wantTags = []string{strconv.Itoa(int(i % 4095)), "7"}
		}
		if fs[5] != wantTags[0] || fs[6] != wantTags[1] {
			t.Errorf("tshark frame %d: 802.1ad %q 802.1Q %q, want %q", i+1, fs[5], fs[6], wantTags)
		}
	}
	if i != n {
		t.Fatalf("tshark decoded %d frames, want %d", i, n)
	}
}

func TestPcapRotateBySize(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, "pcap:"+dir+"?max_mb=1", Options{Workers: 2})
	g := gen{mixed: true}
	const n = 6000 // ~4.5 MB of sized payloads over two workers
	writeSeq(t, g, s.Writer(0), 0, n/2)
	writeSeq(t, g, s.Writer(1), n/2, n/2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	tr, counts := readAll(t, g, dir, n)
	if err := tr.Check(); err != nil {
		t.Fatal(err)
	}
	if len(counts) < 4 {
		t.Fatalf("%d files, want at least 4: %v", len(counts), counts)
	}
	for f := range counts {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 1<<20 {
			t.Errorf("%s: %d bytes, above max_mb=1", f, fi.Size())
		}
	}
	checkIdentity(t, s.Stats())
}

func TestPcapRotateByAge(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, "pcap:"+dir+"?max_age=100ms", Options{})
	g := gen{mixed: true}
	w := s.Writer(0)
	writeSeq(t, g, w, 0, 100)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	// Flushed: the records are in the .part file, readable now.
	parts, _ := PcapFiles(dir, true)
	if len(parts) != 1 || !strings.HasSuffix(parts[0], partSuffix) {
		t.Fatalf("files while writing: %v", parts)
	}
	var live int
	if err := pcapfile.ReadFile(parts[0], func(pcapfile.Record) error { live++; return nil }); err != nil || live != 100 {
		t.Fatalf("%d records readable in the open file (%v), want 100", live, err)
	}
	time.Sleep(150 * time.Millisecond)
	// An idle writer's Flush finishes the old file; no new one until data.
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if files, _ := PcapFiles(dir, true); len(files) != 1 || strings.HasSuffix(files[0], partSuffix) {
		t.Fatalf("after max_age and Flush: %v, want one finished file", files)
	}
	writeSeq(t, g, w, 100, 100)
	time.Sleep(150 * time.Millisecond)
	// A Write after max_age finishes the file before adding to a new one.
	writeSeq(t, g, w, 200, 100)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	tr, counts := readAll(t, g, dir, 300)
	if err := tr.Check(); err != nil {
		t.Fatal(err)
	}
	if len(counts) != 3 {
		t.Fatalf("files %v, want 3 of 100 records", counts)
	}
	for f, c := range counts {
		if c != 100 {
			t.Errorf("%s: %d records, want 100", f, c)
		}
	}
}

// Close finishes the files durably: nothing stays in a buffer or in a .part.
func TestPcapCloseFlushes(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, "pcap:"+dir, Options{Workers: 2})
	g := gen{}
	writeSeq(t, g, s.Writer(0), 0, 10)
	writeSeq(t, g, s.Writer(1), 10, 10)
	if st := s.Stats(); st.InFlight != 20 || st.Written != 0 {
		t.Fatalf("before Flush and Close, 20 records are buffered: %+v", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if st := s.Stats(); st.InFlight != 0 || st.Written != 20 {
		t.Fatalf("after Close: %+v", st)
	}
	tr, _ := readAll(t, g, dir, 20)
	if err := tr.Check(); err != nil {
		t.Fatal(err)
	}
}

// Open refuses a directory it can't write to, before any traffic.
func TestPcapOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	spec, _ := Parse("pcap:" + filepath.Join(file, "sub"))
	_, err := Open(t.Context(), spec, Options{})
	if err == nil || !strings.Contains(err.Error(), "can't create pcap directory") {
		t.Fatalf("directory under a file: %v", err)
	}
}

// Write and Flush allocate nothing per datagram.
func TestPcapWriteAllocs(t *testing.T) {
	s := mustOpen(t, "pcap:"+t.TempDir()+"?max_mb=0", Options{})
	defer s.Close()
	w := s.Writer(0)
	dgs := gen{mixed: true}.batch(make([]datapath.Datagram, 64), make([]byte, 64*slotSize), 0)
	allocs := testing.AllocsPerRun(100, func() {
		if err := w.Write(dgs); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.2f allocations per Write and Flush of 64 datagrams", allocs)
	}
}

func BenchmarkPcapWrite(b *testing.B) {
	for _, c := range []struct {
		name  string
		frame bool
	}{{"frame64", true}, {"synth64", false}} {
		b.Run(c.name, func(b *testing.B) {
			s := mustOpen(b, "pcap:"+b.TempDir()+"?max_mb=0&max_age=0", Options{})
			defer s.Close()
			w := s.Writer(0)
			// 64-byte IPv4 frames: 22-byte payloads.
			dgs := make([]datapath.Datagram, 64)
			for i := range dgs {
				d := testDatagram(false, 0, make([]byte, 22))
				if c.frame {
					d.Frame = AppendFrame(nil, &d)
				}
				dgs[i] = d
			}
			if FrameLen(&dgs[0]) != 64 {
				b.Fatalf("frame of %d bytes", FrameLen(&dgs[0]))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += len(dgs) {
				if err := w.Write(dgs[:min(len(dgs), b.N-i)]); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/datagram")
			if st := s.Stats(); st.Written != uint64(b.N) {
				b.Fatalf("written %d of %d", st.Written, b.N)
			}
		})
	}
}
