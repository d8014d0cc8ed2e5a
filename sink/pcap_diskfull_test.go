package sink

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testutil"
	"golang.org/x/sys/unix"
)

// A real full disk: two workers fill an 8 MiB tmpfs (max_mb=3, so a rotation
// before the failure). Every .pcap left reads to its end with our reader, tcpdump
// and tshark; what is in the files is exactly what was counted written, the
// rest is counted no_space. With files removed to make room, writing
// resumes in new files after the retry delay.
func TestPcapDiskFull(t *testing.T) {
	testutil.RequireRoot(t)
	tcpdump := testutil.RequireProgram(t, "tcpdump")
	tshark := testutil.RequireProgram(t, "tshark")
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=8m"); err != nil {
		if errors.Is(err, unix.EPERM) {
			testutil.Skip(t, "can't mount a small tmpfs to fill: needs CAP_SYS_ADMIN: "+err.Error())
		}
		t.Fatalf("can't mount a tmpfs on %s: %v", dir, err)
	}
	// Registered after TempDir's, so it runs before the directory is removed.
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("can't unmount the tmpfs on %s: %v", dir, err)
		}
	})
	s := mustOpen(t, "pcap:"+dir+"?max_mb=3", Options{Workers: 2})
	g := gen{mixed: true}
	ws := []Writer{s.Writer(0), s.Writer(1)}
	dgs := make([]datapath.Datagram, 64)
	buf := make([]byte, 64*slotSize)

	// ~750 bytes a record: 8 MiB is full after ~11,000. Go on until well
	// past the first loss, but stop at 40,000.
	const max1 = 40_000
	var seq uint64
	var errs []error
	for ; seq < max1; seq += 64 {
		errs = append(errs, ws[seq/64%2].Write(g.batch(dgs, buf, seq)))
		if st := s.Stats(); st.Dropped["no_space"] > 5000 {
			seq += 64
			break
		}
	}
	for _, w := range ws {
		errs = append(errs, w.Flush())
	}
	n1 := seq
	st := s.Stats()
	checkIdentity(t, st)
	t.Logf("full disk: offered %d, written %d, dropped %v, errors %d", st.Offered, st.Written, st.Dropped, st.Errors)
	if st.Offered != n1 || st.InFlight != 0 || st.Written == 0 || st.Dropped["no_space"] == 0 || st.Dropped["write_failed"] != 0 || st.Errors == 0 {
		t.Fatalf("after filling the disk and Flush: %+v", st)
	}
	err := errors.Join(errs...)
	if err == nil || !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), dir+"/xdpingest-w00") {
		t.Errorf("errors don't say the disk is full and in which file: %v", err)
	}

	full := checkPcapDir(t, tcpdump, tshark, g, dir, int(n1))
	var inFiles uint64
	for _, k := range full {
		inFiles += uint64(k)
	}
	if inFiles != st.Written {
		t.Fatalf("%d records in the files, %d counted written", inFiles, st.Written)
	}

	// Room again: remove what was written, wait for the retry delay.
	for f := range full {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(s.(*pcapSink).retryAfter + 100*time.Millisecond)
	const n2 = 1000
	for i := uint64(0); i < n2; i += 64 {
		k := min(64, n2-i)
		if err := ws[i/64%2].Write(g.batch(dgs[:k], buf, n1+i)); err != nil {
			t.Errorf("write with room again: %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close with room again: %v", err)
	}
	st2 := s.Stats()
	checkIdentity(t, st2)
	if st2.Written != st.Written+n2 || st2.DroppedTotal() != st.DroppedTotal() || st2.InFlight != 0 {
		t.Fatalf("with room again: %+v, want %d more written and nothing more dropped (before: %+v)", st2, n2, st)
	}
	again := checkPcapDir(t, tcpdump, tshark, g, dir, int(n1+n2))
	var n uint64
	for f, k := range again {
		if _, ok := full[f]; ok {
			t.Errorf("%s: written to again after the disk was full", f)
		}
		n += uint64(k)
	}
	if n != n2 {
		t.Fatalf("%d records in the new files %v, want %d", n, again, n2)
	}
}

// checkPcapDir checks that dir holds only finished files, each read to its
// end by our reader, tcpdump and tshark, and returns the records per file.
func checkPcapDir(t *testing.T, tcpdump, tshark string, g gen, dir string, n int) map[string]int {
	t.Helper()
	tr := bench.NewTracker(n)
	counts, _ := pcapContents(t, g, tr, dir)
	if _, _, dups, bad := tr.Counts(); dups != 0 || bad != 0 {
		t.Errorf("%d duplicate records, %d bad", dups, bad)
	}
	for f, k := range counts {
		if strings.HasSuffix(f, partSuffix) {
			t.Errorf("%s left unfinished", f)
			continue
		}
		for _, tool := range [][]string{{tcpdump, "-r", f, "-nn"}, {tshark, "-r", f, "-n"}} {
			cmd := exec.Command(tool[0], tool[1:]...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			msg := strings.ToLower(stderr.String())
			if err != nil || strings.Contains(msg, "cut short") || strings.Contains(msg, "truncated") {
				t.Errorf("%s: %v: %s", strings.Join(tool, " "), err, stderr.String())
				continue
			}
			if lines := bytes.Count(out, []byte("\n")); lines != k {
				t.Errorf("%s: %d lines, want %d records", strings.Join(tool, " "), lines, k)
			}
		}
	}
	return counts
}
