package sink

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/sink/pcapfile"
	"golang.org/x/sys/unix"
)

// The pcap sink writes one file at a time per worker, so workers never share
// a file or a lock. A file is opened at the first record after the previous
// one was finished (so idle workers leave no empty files), and finished when
// the next record would pass max_mb, when it is older than max_age (checked
// on Write and Flush), or on Close. Finishing writes what is pending, fsyncs
// the file, renames it from NAME.pcap.part to
// NAME.pcap and fsyncs the directory: a .pcap file is complete and durable,
// a .part file is being written, or was left by a writer that crashed (it is
// valid up to its last whole record).
//
// Records go to the file with writev(2), each as its header and its frame.
// Headers (and the headers of synthesized frames) are built in a 1 MiB
// buffer, and frames are copied into it, which is written when it fills up
// or on Flush. A writer can also write frames of at least inPlaceMin bytes
// from where the datagram holds them (the pipeline's chunk, already one
// copy out of the UMEM), without a copy, and so before Write returns, in
// one writev of up to IOV_MAX segments. It doesn't by default: measured on
// the test bed, a writev per Write costs more than the copy and a write per
// MiB at every frame size, with Writes back to back or a Flush after each
// (see docs/BENCHMARKS.md, "pcap at large frames").
//
// A failed write (short; ENOSPC, EDQUOT, EFBIG, EIO) ends the file at once:
// it is cut back (ftruncate) to the last whole record writev(2) took, then
// finished as above, so a .pcap holds whole records only. Those records
// count as written, the rest of what was pending as dropped (no_space or
// write_failed). A file with no whole record is removed; one that can't be
// cut back, fsynced or closed (also when finished normally) keeps its .part
// name. The writer then drops for pcapRetryAfter and opens a new file,
// never appending to a failed one.

const (
	pcapBufSize = 1 << 20
	// pcapMaxSegs is the most segments one writev takes (IOV_MAX).
	pcapMaxSegs = 1024
	// pcapInPlaceMin is the least frame length written in place rather
	// than copied into the buffer: none is. A system call costs 2-4 µs on
	// the test bed's VM, and the kernel's write into tmpfs 80-90% of the
	// sink's time, the copy a few percent; where a system call costs a
	// tenth of a µs, BenchmarkPcapWriteWays may say to write large frames
	// in place.
	pcapInPlaceMin = math.MaxInt
	// pcapRecsCap is room for the records of a buffer full of 64-byte
	// frames; smaller ones (60 bytes is the least on the wire) grow the
	// slice once.
	pcapRecsCap = pcapBufSize / (pcapfile.RecordHeaderLen + 64)
	// pcapRetryAfter is how long a writer whose file failed waits before it
	// opens another, dropping meanwhile, so that a full disk costs one
	// failed open per second rather than one per batch.
	pcapRetryAfter = time.Second
	pcapPrefix     = "xdpingest-"
	pcapSuffix     = ".pcap"
	partSuffix     = ".part"
	pcapTimeLayout = "20060102T150405.000000000Z"
)

var pcapReasons = reasons{"write_failed", "no_space", "closed"}

const (
	pcapWriteFailed = iota
	pcapNoSpace
	pcapClosed
)

type pcapSink struct {
	spec    PcapSpec
	log     *slog.Logger
	writers []*pcapWriter
	closed  atomic.Bool

	// create makes a new file (createPcapFile); retryAfter is
	// pcapRetryAfter; inPlaceMin is pcapInPlaceMin. Tests change them, to
	// fail writes on cue, to resume without waiting a second, and to take
	// one way of writing frames or the other.
	create     func(path string) (pcapFile, error)
	retryAfter time.Duration
	inPlaceMin int
}

// pcapFile is what a writer needs of its file: an osPcapFile, or in tests
// a wrapper that fails at a chosen byte.
type pcapFile interface {
	// Writev writes segs, in order, as one write (at most pcapMaxSegs of
	// them), and returns how many bytes the file took: all of them, or
	// fewer and an error.
	Writev(segs [][]byte) (int, error)
	Truncate(size int64) error
	Sync() error
	Close() error
}

// osPcapFile is a file written with writev(2).
type osPcapFile struct {
	*os.File
	fd  uintptr
	iov []unix.Iovec // cap pcapMaxSegs, reused by every Writev
}

// createPcapFile creates path, never overwriting a file (O_EXCL).
func createPcapFile(path string) (pcapFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, err
	}
	// A regular file is never in the poller: Fd leaves it as it is.
	return &osPcapFile{File: f, fd: f.Fd(), iov: make([]unix.Iovec, 0, pcapMaxSegs)}, nil
}

// Writev writes segs with writev(2), again after a partial write (as
// os.File.Write does after a partial write(2)) until all is written or
// the kernel returns an error. It allocates nothing: x/sys/unix's Writev
// allocates its iovecs.
func (f *osPcapFile) Writev(segs [][]byte) (int, error) {
	iov := f.iov[:0]
	for _, s := range segs {
		if len(s) > 0 {
			v := unix.Iovec{Base: &s[0]}
			v.SetLen(len(s))
			iov = append(iov, v)
		}
	}
	// The iovecs point into the caller's memory: drop them when done.
	defer clear(f.iov[:len(iov)])
	total := 0
	for len(iov) > 0 {
		r, _, errno := unix.Syscall(unix.SYS_WRITEV, f.fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		runtime.KeepAlive(f.File)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return total, &fs.PathError{Op: "write", Path: f.Name(), Err: errno}
		}
		if r == 0 {
			return total, &fs.PathError{Op: "write", Path: f.Name(), Err: io.ErrShortWrite}
		}
		n := int(r)
		total += n
		for len(iov) > 0 && uint64(n) >= uint64(iov[0].Len) {
			n -= int(iov[0].Len)
			iov = iov[1:]
		}
		if n > 0 {
			iov[0].Base = (*byte)(unsafe.Add(unsafe.Pointer(iov[0].Base), n))
			iov[0].SetLen(int(iov[0].Len) - n)
		}
	}
	return total, nil
}

type pcapWriter struct {
	s      *pcapSink
	worker int
	c      counters

	f       pcapFile // nil between files
	path    string   // of the .part file
	opened  time.Time
	size    int64 // bytes in the file, buffer included
	records int   // records in the file, buffer included
	seq     int   // files opened so far, part of the name

	// What writev(2) took of the file: taken bytes, of which the first whole
	// end after the file header or the last whole record (kept records
	// in all). A failed file is cut back to whole.
	taken, whole int64
	kept         int

	// What is pending, in file order: segs are runs of buf (file header,
	// record headers, copied frames) and frames written in place. pend is
	// their length; bufEnd is how much of buf they cover, and bufRun is
	// where the last segment starts in buf while it is a run of buf that
	// can grow (else -1); inPlace says a segment points into a datagram,
	// so that segs must be written before Write returns.
	buf     []byte   // cap pcapBufSize, never reallocated: segs point into it
	segs    [][]byte // cap pcapMaxSegs
	pend    int
	bufEnd  int
	bufRun  int
	inPlace bool
	recs    []pcapRec // the pending records, all in flight

	retryAt     time.Time   // no new file before this, after a failure
	failing     atomic.Bool // the last file failed and no new one opened since: see Connected
	retryReason int         // why datagrams are dropped until then
}

// pcapRec is one record in a writer's buffer.
type pcapRec struct {
	end     uint32 // offset in the pending bytes just after the record
	payload uint32 // its UDP payload bytes, for WrittenBytes
}

func openPcap(spec PcapSpec, opts Options) (*pcapSink, error) {
	if err := os.MkdirAll(spec.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("can't create pcap directory %s: %w", spec.Dir, err)
	}
	// Probe now, so that a read-only or full file system fails the start
	// rather than the first datagram.
	probe, err := os.CreateTemp(spec.Dir, ".xdpingest-probe-*")
	if err != nil {
		return nil, fmt.Errorf("can't write to pcap directory %s: %w: check its permissions and free space", spec.Dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())

	s := &pcapSink{spec: spec, log: opts.Logger.With("sink", "pcap:"+spec.Dir), create: createPcapFile, retryAfter: pcapRetryAfter, inPlaceMin: pcapInPlaceMin}
	s.writers = make([]*pcapWriter, opts.Workers)
	for i := range s.writers {
		s.writers[i] = &pcapWriter{s: s, worker: i, buf: make([]byte, 0, pcapBufSize), segs: make([][]byte, 0, pcapMaxSegs),
			bufRun: -1, recs: make([]pcapRec, 0, pcapRecsCap)}
	}
	return s, nil
}

// Connected reports whether every writer can write: none has had a file
// fail (a full disk, an I/O error) without opening a new one since.
func (s *pcapSink) Connected() bool {
	for _, w := range s.writers {
		if w.failing.Load() {
			return false
		}
	}
	return true
}

var _ Connector = (*pcapSink)(nil)

func (s *pcapSink) Name() string             { return "pcap:" + s.spec.Dir }
func (s *pcapSink) Writer(worker int) Writer { return s.writers[worker] }

func (s *pcapSink) Stats() Stats {
	cs := make([]*counters, len(s.writers))
	for i, w := range s.writers {
		cs[i] = &w.c
	}
	return stats(pcapReasons, cs...)
}

// Close finishes every worker's open file.
func (s *pcapSink) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	var errs []error
	for _, w := range s.writers {
		if err := w.finish(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (w *pcapWriter) Write(dgs []datapath.Datagram) error {
	if len(dgs) == 0 {
		return nil
	}
	n := uint64(len(dgs))
	w.c.offered.Add(n)
	if w.s.closed.Load() {
		w.c.drop(pcapClosed, n)
		return fmt.Errorf("can't write to %s: %w", w.s.Name(), ErrClosed)
	}
	w.c.inFlight.Add(n)
	now := time.Now()
	var err error
	if w.f != nil && w.s.spec.MaxAge > 0 && now.Sub(w.opened) >= w.s.spec.MaxAge {
		err = w.finish()
	}
	for i := range dgs {
		if werr := w.append(&dgs[i], now); werr != nil {
			// Every failure on the way set retryReason, and wrote or
			// dropped what was pending.
			left := n - uint64(i)
			w.c.drop(w.retryReason, left)
			w.c.inFlight.Add(-left)
			return errors.Join(err, werr)
		}
	}
	// Frames written in place live only as long as this call.
	if w.inPlace {
		if ferr := w.flushBuf(); ferr != nil {
			return errors.Join(err, ferr)
		}
	}
	return err
}

// append adds one record, opening or rotating the file as needed.
func (w *pcapWriter) append(d *datapath.Datagram, now time.Time) error {
	flen := FrameLen(d)
	capLen := min(flen, pcapfile.MaxSnapLen)
	recLen := int64(pcapfile.RecordHeaderLen + capLen)
	if w.f != nil && w.s.spec.MaxBytes > 0 && w.records > 0 && w.size+recLen > w.s.spec.MaxBytes {
		if err := w.finish(); err != nil {
			return err
		}
	}
	if w.f == nil {
		if err := w.open(now); err != nil {
			return err
		}
	}
	// A frame cut at the snapshot length (none is, at MaxSnapLen) is
	// copied.
	inPlace := flen >= w.s.inPlaceMin && capLen == flen
	// Room in buf for the header and what is copied (a synthesized frame
	// is built whole, then cut at the snapshot length), and in segs for a
	// run of buf and a frame.
	room := pcapfile.RecordHeaderLen + flen
	if inPlace {
		room = pcapfile.RecordHeaderLen
		if d.Frame == nil {
			room += synthHeaderLen(d)
		}
	}
	if len(w.buf)+room > cap(w.buf) || len(w.segs)+2 > cap(w.segs) {
		if err := w.flushBuf(); err != nil {
			return err
		}
	}
	ts := d.RxTime
	if ts == 0 {
		ts = now.UnixNano()
	}
	start := len(w.buf)
	w.buf = pcapfile.AppendRecordHeader(w.buf, ts, capLen, flen)
	switch {
	case inPlace && d.Frame != nil:
		w.addBuf()
		w.addInPlace(d.Frame)
	case inPlace:
		w.buf = appendSynthHeaders(w.buf, d)
		w.addBuf()
		w.addInPlace(d.Payload)
	case d.Frame != nil:
		w.buf = append(w.buf, d.Frame[:capLen]...)
		w.addBuf()
	default:
		w.buf = appendSynthHeaders(w.buf, d)
		w.buf = append(w.buf, d.Payload...)
		w.buf = w.buf[:start+int(recLen)]
		w.addBuf()
	}
	w.recs = append(w.recs, pcapRec{end: uint32(w.pend), payload: uint32(len(d.Payload))})
	w.size += recLen
	w.records++
	return nil
}

// addBuf adds what was appended to buf since the last call to the pending
// segments: to the last one when it is a run of buf, else as a new one.
func (w *pcapWriter) addBuf() {
	if len(w.buf) == w.bufEnd {
		return
	}
	if w.bufRun >= 0 {
		w.segs[len(w.segs)-1] = w.buf[w.bufRun:len(w.buf):len(w.buf)]
	} else {
		w.bufRun = w.bufEnd
		w.segs = append(w.segs, w.buf[w.bufEnd:len(w.buf):len(w.buf)])
	}
	w.pend += len(w.buf) - w.bufEnd
	w.bufEnd = len(w.buf)
}

// addInPlace adds b, a datagram's memory, to the pending segments.
func (w *pcapWriter) addInPlace(b []byte) {
	if len(b) == 0 {
		return
	}
	w.segs = append(w.segs, b)
	w.pend += len(b)
	w.bufRun = -1
	w.inPlace = true
}

// resetPending forgets what was pending, written or not.
func (w *pcapWriter) resetPending() {
	clear(w.segs) // no slice into a datagram stays behind
	w.buf, w.segs, w.recs = w.buf[:0], w.segs[:0], w.recs[:0]
	w.pend, w.bufEnd, w.bufRun, w.inPlace = 0, 0, -1, false
}

func (w *pcapWriter) Flush() error {
	if w.s.closed.Load() {
		return fmt.Errorf("can't flush %s: %w", w.s.Name(), ErrClosed)
	}
	if w.f == nil {
		return nil
	}
	if w.s.spec.MaxAge > 0 && time.Since(w.opened) >= w.s.spec.MaxAge {
		return w.finish()
	}
	return w.flushBuf()
}

// open starts a new file, unless the last one failed less than retryAfter
// ago.
func (w *pcapWriter) open(now time.Time) error {
	if now.Before(w.retryAt) {
		return fmt.Errorf("can't write to %s: dropping for %v after a failure", w.s.Name(), w.retryAt.Sub(now).Round(time.Millisecond))
	}
	stamp := now.UTC().Format(pcapTimeLayout)
	var f pcapFile
	var path string
	var err error
	// O_EXCL never overwrites: a name taken (same nanosecond, another
	// process on the directory) moves on to the next sequence number.
	for range 100 {
		w.seq++
		path = filepath.Join(w.s.spec.Dir, fmt.Sprintf("%sw%03d-%s-%06d%s%s", pcapPrefix, w.worker, stamp, w.seq, pcapSuffix, partSuffix))
		f, err = w.s.create(path)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		w.c.errors.Add(1)
		w.retryAt, w.retryReason = now.Add(w.s.retryAfter), pcapDropReason(err)
		w.failing.Store(true)
		w.s.log.Error("can't create pcap file", "worker", w.worker, "path", path, "err", err)
		return fmt.Errorf("can't create pcap file %s: %w: %s", path, err, w.hint(err))
	}
	w.f, w.path, w.opened = f, path, now
	w.failing.Store(false)
	w.resetPending()
	w.buf = pcapfile.AppendFileHeader(w.buf, pcapfile.MaxSnapLen, pcapfile.LinkTypeEthernet)
	w.addBuf()
	w.size, w.records = pcapfile.FileHeaderLen, 0
	w.taken, w.whole, w.kept = 0, 0, 0
	w.s.log.Debug("pcap file opened", "worker", w.worker, "path", path)
	return nil
}

// flushBuf writes what is pending to the file. The records writev(2) took
// whole are written, even when it failed after them; on failure the rest
// are dropped and the file is ended (abandon): a file with a failed write
// gets nothing more.
func (w *pcapWriter) flushBuf() error {
	if w.pend == 0 {
		return nil
	}
	n, err := w.f.Writev(w.segs)
	if err == nil && n < w.pend {
		err = io.ErrShortWrite
	}
	// What is pending starts with the file header when nothing was taken
	// yet.
	if w.taken == 0 && n >= pcapfile.FileHeaderLen {
		w.whole = pcapfile.FileHeaderLen
	}
	k := sort.Search(len(w.recs), func(i int) bool { return int(w.recs[i].end) > n })
	if k > 0 {
		w.whole = w.taken + int64(w.recs[k-1].end)
	}
	w.taken += int64(n)
	w.kept += k
	var bytes uint64
	for _, r := range w.recs[:k] {
		bytes += uint64(r.payload)
	}
	w.c.written.Add(uint64(k))
	w.c.writtenBytes.Add(bytes)
	w.c.inFlight.Add(-uint64(k))
	lost := uint64(len(w.recs) - k)
	w.resetPending()
	if err == nil {
		return nil
	}
	reason := pcapDropReason(err)
	w.c.drop(reason, lost)
	w.c.inFlight.Add(-lost)
	if pe := (*fs.PathError)(nil); !errors.As(err, &pe) {
		err = &fs.PathError{Op: "write", Path: w.path, Err: err}
	}
	return w.abandon(reason, fmt.Errorf("can't write pcap file: %w", err), lost)
}

// abandon ends the file after a failed write (cause) that dropped lost
// datagrams, and stops opening files for retryAfter.
func (w *pcapWriter) abandon(reason int, cause error, lost uint64) error {
	w.c.errors.Add(1)
	w.retryAt, w.retryReason = time.Now().Add(w.s.retryAfter), reason
	w.failing.Store(true)
	part, kept := w.path, w.kept
	where, err := w.closeFile()
	var what string
	switch where {
	case "":
		what = "no whole record reached the file, removed"
	case part:
		what = fmt.Sprintf("the %d records before are in %s", kept, part)
	default:
		what = fmt.Sprintf("the %d records before are in %s, which ends on a whole record", kept, where)
	}
	w.s.log.Error("pcap write failed", "worker", w.worker, "path", part, "kept", kept, "dropped", lost, "err", cause, "finish_err", err)
	return errors.Join(fmt.Errorf("%w: %d datagrams dropped; %s: %s", cause, lost, what, w.hint(cause)), err)
}

// finish flushes the buffer and ends the open file, if any.
func (w *pcapWriter) finish() error {
	if w.f == nil {
		return nil
	}
	if err := w.flushBuf(); err != nil {
		return err // flushBuf ended the file
	}
	records, size := w.kept, w.taken
	where, err := w.closeFile()
	if err != nil {
		// Its records were counted written when writev(2) took them; a file
		// that fails to finish is as good a sign of a sick disk as a
		// failed write.
		w.retryAt, w.retryReason = time.Now().Add(w.s.retryAfter), pcapWriteFailed
		w.failing.Store(true)
		w.s.log.Error("can't finish pcap file", "worker", w.worker, "path", where, "records", records, "err", err)
		return fmt.Errorf("can't finish pcap file with %d records: %w: %s", records, err, w.hint(err))
	}
	w.s.log.Debug("pcap file finished", "worker", w.worker, "path", where, "records", records, "bytes", size)
	return nil
}

// closeFile ends the open file: it cuts the file back to its last whole
// record if a write stopped inside one, fsyncs and closes it, renames it to
// its final name and fsyncs the directory, so that the rename survives a
// crash. A file that can't be cut back, fsynced or closed keeps its .part
// name: it is not claimed complete. A file without a whole record is
// removed. It returns where the file is now ("" when removed) and the
// errors of the steps that failed, each counted.
func (w *pcapWriter) closeFile() (string, error) {
	f, part := w.f, w.path
	final := strings.TrimSuffix(part, partSuffix)
	w.f, w.path = nil, ""
	var errs []error
	defer func() { w.c.errors.Add(uint64(len(errs))) }()
	if w.kept == 0 {
		f.Close()
		if err := os.Remove(part); err != nil {
			errs = append(errs, fmt.Errorf("can't remove %s, which holds no whole record: %w", part, err))
			return part, errors.Join(errs...)
		}
		return "", nil
	}
	if w.taken != w.whole {
		if err := f.Truncate(w.whole); err != nil {
			errs = append(errs, fmt.Errorf("can't cut %s back to its last whole record (%d bytes): %w", part, w.whole, err))
		}
	}
	if err := f.Sync(); err != nil {
		errs = append(errs, fmt.Errorf("can't fsync %s: %w", part, err))
	}
	if err := f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("can't close %s: %w", part, err))
	}
	if len(errs) > 0 {
		return part, fmt.Errorf("%w; kept it under its .part name, not known to be whole and durable", errors.Join(errs...))
	}
	if err := os.Rename(part, final); err != nil {
		errs = append(errs, fmt.Errorf("can't rename %s: %w", part, err))
		return part, errs[0]
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		errs = append(errs, fmt.Errorf("can't fsync the directory of %s: %w", final, err))
		return final, errs[0]
	}
	return final, nil
}

// pcapDropReason returns the drop reason for datagrams lost to err.
func pcapDropReason(err error) int {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return pcapNoSpace
	}
	return pcapWriteFailed
}

// hint says what to do about err.
func (w *pcapWriter) hint(err error) string {
	again := fmt.Sprintf("a new file is tried in %v", w.s.retryAfter)
	switch {
	case pcapDropReason(err) == pcapNoSpace:
		return "free space (or quota) on the file system of " + w.s.spec.Dir + "; " + again
	case errors.Is(err, syscall.EFBIG):
		return "the file system or the file size limit (ulimit -f) refuses a bigger file: lower max_mb; " + again
	}
	return "check the disk and the kernel log; " + again
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// PcapFiles returns the finished files the pcap sink wrote into dir, sorted
// by worker, then in the order they were written. With partial, it also
// returns the .part files of writers still running or that crashed (each
// after the finished files of its worker).
func PcapFiles(dir string, partial bool) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("can't list pcap directory: %w", err)
	}
	var out []string
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, pcapPrefix) {
			continue
		}
		if strings.HasSuffix(name, pcapSuffix) || (partial && strings.HasSuffix(name, pcapSuffix+partSuffix)) {
			out = append(out, filepath.Join(dir, name))
		}
	}
	// Names are wNNN-TIME-SEQ: sorting them sorts by worker, then time.
	slices.Sort(out)
	return out, nil
}
