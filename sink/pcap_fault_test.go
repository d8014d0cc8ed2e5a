package sink

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/sink/pcapfile"
)

// faultFS makes a pcap sink's files fail as a sick disk does: the
// failWrite-th write(2) (counted over all files) takes failAt bytes and
// returns err; with sticky, every write after it takes nothing and fails
// the same way (a full disk) until heal. failSync makes the failSync-th
// fsync fail with syncErr; truncErr makes every truncate fail while the
// disk is failing.
type faultFS struct {
	mu        sync.Mutex
	failWrite int
	failAt    int
	err       error
	sticky    bool
	failSync  int
	syncErr   error
	truncErr  error

	writes, syncs int
	failing       bool
	created       []string         // paths, in order
	taken         map[string]int64 // bytes write(2) took
	durable       map[string]bool  // fsynced after the last write or truncate
}

func newFaultFS() *faultFS {
	return &faultFS{taken: map[string]int64{}, durable: map[string]bool{}}
}

func (fs *faultFS) create(path string) (pcapFile, error) {
	f, err := createPcapFile(path)
	if err != nil {
		return nil, err
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.created = append(fs.created, path)
	return &faultFile{fs: fs, f: f, path: path}, nil
}

func (fs *faultFS) heal() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.failing, fs.failWrite, fs.failSync, fs.truncErr = false, 0, 0, nil
}

type faultFile struct {
	fs   *faultFS
	f    pcapFile
	path string
}

func (f *faultFile) Write(b []byte) (int, error) {
	fs := f.fs
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.writes++
	fs.durable[f.path] = false
	room := len(b)
	switch {
	case fs.failing:
		room = 0
	case fs.writes == fs.failWrite:
		room = min(room, fs.failAt)
		fs.failing = fs.sticky
	}
	n, err := f.f.Write(b[:room])
	fs.taken[f.path] += int64(n)
	if err == nil && n < len(b) {
		err = &os.PathError{Op: "write", Path: f.path, Err: fs.err}
	}
	return n, err
}

func (f *faultFile) Truncate(size int64) error {
	fs := f.fs
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.truncErr != nil {
		return &os.PathError{Op: "truncate", Path: f.path, Err: fs.truncErr}
	}
	if err := f.f.Truncate(size); err != nil {
		return err
	}
	fs.durable[f.path] = false
	return nil
}

func (f *faultFile) Sync() error {
	fs := f.fs
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.syncs++
	if fs.syncs == fs.failSync {
		return &os.PathError{Op: "sync", Path: f.path, Err: fs.syncErr}
	}
	if err := f.f.Sync(); err != nil {
		return err
	}
	fs.durable[f.path] = true
	return nil
}

func (f *faultFile) Close() error { return f.f.Close() }

// pcapContents reads every file in dir (finished and .part), checks and
// marks each record in tr, and returns the records per file and the
// sequence numbers found. A .pcap file must read to its end; a .part file
// may end inside a record (that one is not counted).
func pcapContents(t *testing.T, g gen, tr *bench.Tracker, dir string) (map[string]int, map[uint64]bool) {
	t.Helper()
	files, err := PcapFiles(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	counts, seqs := map[string]int{}, map[uint64]bool{}
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		r, err := pcapfile.NewReader(f)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			f.Close()
			continue
		}
		counts[path] = 0
		for {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				if !strings.HasSuffix(path, partSuffix) || !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("%s: %v", path, err)
				}
				break
			}
			if len(rec.Data) != rec.OrigLen {
				t.Errorf("%s: record cut: %d of %d bytes", path, len(rec.Data), rec.OrigLen)
			}
			g.checkFrame(t, tr, rec.Data, rec.UnixNano)
			if p, err := parseTestFrame(rec.Data); err == nil {
				if seq, ok := bench.DecodeSized(p.payload); ok {
					seqs[seq] = true
				}
			}
			counts[path]++
		}
		f.Close()
	}
	return counts, seqs
}

// A write, truncate or fsync that fails: the file under its final name ends
// on a whole record and was fsynced, the records in it are counted written
// and the rest dropped, the error names the file, and with the disk healed
// the writer goes on in a new file.
func TestPcapWriteFaults(t *testing.T) {
	enospc, eio, efbig := syscall.ENOSPC, syscall.EIO, syscall.EFBIG
	cases := []struct {
		name      string
		maxMB     int
		failWrite int
		failAt    int
		err       error
		sticky    bool
		failSync  int
		truncErr  error
		reason    string // of the drops
		// the failed file keeps its .part name / is removed (no whole record)
		part, removed bool
		// the write stopped inside a record: the file must be cut back
		cut bool
	}{
		{name: "enospc inside a record", failWrite: 2, failAt: 777, err: enospc, sticky: true, reason: "no_space", cut: true},
		{name: "enospc inside the first records", failWrite: 1, failAt: 3001, err: enospc, sticky: true, reason: "no_space", cut: true},
		{name: "enospc inside the file header", failWrite: 1, failAt: 10, err: enospc, sticky: true, reason: "no_space", removed: true},
		{name: "eio with nothing written", failWrite: 2, failAt: 0, err: eio, reason: "write_failed"},
		{name: "efbig inside a record header", failWrite: 2, failAt: 5, err: efbig, reason: "write_failed", cut: true},
		{name: "truncate fails", failWrite: 2, failAt: 777, err: enospc, sticky: true, truncErr: eio, reason: "no_space", part: true},
		{name: "fsync fails after a short write", failWrite: 2, failAt: 777, err: eio, failSync: 1, reason: "write_failed", part: true, cut: true},
		{name: "fsync fails on rotation", maxMB: 1, failSync: 1, err: eio, reason: "write_failed", part: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := mustOpen(t, fmt.Sprintf("pcap:%s?max_mb=%d", dir, c.maxMB), Options{}).(*pcapSink)
			fs := newFaultFS()
			fs.failWrite, fs.failAt, fs.err, fs.sticky = c.failWrite, c.failAt, c.err, c.sticky
			fs.failSync, fs.syncErr, fs.truncErr = c.failSync, c.err, c.truncErr
			s.create = fs.create
			s.retryAfter = 100 * time.Millisecond
			g := gen{mixed: true}
			w := s.Writer(0)
			dgs := make([]datapath.Datagram, 64)
			buf := make([]byte, 64*slotSize)

			// ~2.3 MB: two full 1 MiB buffers, the rest at Flush.
			const n1, n2 = 3000, 200
			var errs []error
			for i := uint64(0); i < n1; i += 64 {
				errs = append(errs, w.Write(g.batch(dgs[:min(64, n1-i)], buf, i)))
			}
			errs = append(errs, w.Flush())
			fs.mu.Lock()
			failed := fs.created[0]
			fs.mu.Unlock()
			final := strings.TrimSuffix(failed, partSuffix)
			onDisk := final
			if c.part || c.removed {
				onDisk = failed
			}
			err := errors.Join(errs...)
			msg := fmt.Sprint(err)
			if onDisk == final {
				msg = strings.ReplaceAll(msg, failed, "") // name the file, not just its .part
			}
			if err == nil || !strings.Contains(msg, onDisk) {
				t.Errorf("errors don't name %s: %v", onDisk, err)
			}
			if c.part && !strings.Contains(err.Error(), "kept") {
				t.Errorf("errors don't say the .part file is kept: %v", err)
			}
			t.Logf("errors: %v", err)
			sizeAfter := fileSize(failed) + fileSize(final)

			// The disk heals: after retryAfter the writer opens a new file.
			fs.heal()
			time.Sleep(s.retryAfter + 50*time.Millisecond)
			for i := uint64(n1); i < n1+n2; i += 64 {
				if err := w.Write(g.batch(dgs[:min(64, n1+n2-i)], buf, i)); err != nil {
					t.Errorf("write with the disk healed: %v", err)
				}
			}
			if err := s.Close(); err != nil {
				t.Errorf("close with the disk healed: %v", err)
			}

			st := s.Stats()
			checkIdentity(t, st)
			tr := bench.NewTracker(n1 + n2)
			counts, seqs := pcapContents(t, g, tr, dir)
			_, unique, dups, bad := tr.Counts()
			if dups != 0 || bad != 0 {
				t.Errorf("%d duplicates, %d bad records", dups, bad)
			}
			var inFiles uint64
			for _, k := range counts {
				inFiles += uint64(k)
			}
			if st.InFlight != 0 || st.Offered != n1+n2 || st.Written != inFiles || unique != inFiles {
				t.Errorf("offered %d (want %d), in flight %d, written %d, in the files %d (%d unique)", st.Offered, n1+n2, st.InFlight, st.Written, inFiles, unique)
			}
			for r, k := range st.Dropped {
				if r != c.reason && k != 0 {
					t.Errorf("dropped %d as %q, want only %q: %v", k, r, c.reason, st.Dropped)
				}
			}
			if st.Dropped[c.reason] == 0 {
				t.Errorf("nothing dropped as %q: %+v", c.reason, st)
			}
			if st.Errors == 0 {
				t.Errorf("no error counted: %+v", st)
			}
			// What was offered after the disk healed is all in the files.
			for i := uint64(n1); i < n1+n2; i++ {
				if !seqs[i] {
					t.Errorf("datagram %d, written with the disk healed, is in no file", i)
					break
				}
			}

			// The failed file, under the name it should have.
			_, errPart := os.Stat(failed)
			_, errFinal := os.Stat(final)
			switch {
			case c.removed:
				if errPart == nil || errFinal == nil {
					t.Errorf("%s holds no whole record and should be gone (.part: %v, .pcap: %v)", failed, errPart, errFinal)
				}
			case c.part:
				if errPart != nil || errFinal == nil {
					t.Errorf("%s should keep its .part name: .part %v, .pcap %v", failed, errPart, errFinal)
				}
			default:
				if errPart == nil || errFinal != nil {
					t.Errorf("%s should be finished: .part %v, .pcap %v", failed, errPart, errFinal)
				}
			}
			fs.mu.Lock()
			defer fs.mu.Unlock()
			// The case is what it says: the write stopped inside a record.
			if c.cut && fs.taken[failed] <= sizeAfter {
				t.Errorf("%s: write(2) took %d bytes, %d remain: the fault did not stop inside a record", failed, fs.taken[failed], sizeAfter)
			}
			// Nothing went into the failed file after its failure.
			if now := fileSize(failed) + fileSize(final); now != sizeAfter {
				t.Errorf("%s grew from %d to %d bytes after its failure", final, sizeAfter, now)
			}
			// Every finished file was fsynced after its last change.
			for _, p := range fs.created {
				if fileSize(strings.TrimSuffix(p, partSuffix)) > 0 && !fs.durable[p] {
					t.Errorf("%s finished without fsync after its last write or truncate", p)
				}
			}
			if len(counts) < 2 && !c.removed || len(fs.created) < 2 {
				t.Errorf("files %v: want a new one after the failure", counts)
			}
		})
	}
}

// fileSize returns the size of path, 0 when it does not exist.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
