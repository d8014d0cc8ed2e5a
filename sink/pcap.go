package sink

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/sink/pcapfile"
)

// The pcap sink writes one file at a time per worker, so workers never share
// a file or a lock. A file is opened at the first record after the previous
// one was finished (so idle workers leave no empty files), written through a
// 1 MiB buffer, and finished when the next record would pass max_mb, when it
// is older than max_age (checked on Write and Flush), or on Close. Finishing
// flushes the buffer, fsyncs the file, renames it from NAME.pcap.part to
// NAME.pcap and fsyncs the directory: a .pcap file is complete and durable,
// a .part file is being written, or was left by a writer that crashed (it is
// valid up to its last whole record).
//
// A failed write (short; ENOSPC, EDQUOT, EFBIG, EIO) ends the file at once:
// it is cut back (ftruncate) to the last whole record write(2) took, then
// finished as above, so a .pcap holds whole records only. Those records
// count as written, the rest of the buffer as dropped (no_space or
// write_failed). A file with no whole record is removed; one that can't be
// cut back, fsynced or closed (also when finished normally) keeps its .part
// name. The writer then drops for pcapRetryAfter and opens a new file,
// never appending to a failed one.

const (
	pcapBufSize = 1 << 20
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
	// pcapRetryAfter. Tests change them, to fail writes on cue and to
	// resume without waiting a second.
	create     func(path string) (pcapFile, error)
	retryAfter time.Duration
}

// pcapFile is what a writer needs of its file: an *os.File, or in tests a
// wrapper that fails at a chosen byte.
type pcapFile interface {
	Write(b []byte) (int, error)
	Truncate(size int64) error
	Sync() error
	Close() error
}

// createPcapFile creates path, never overwriting a file (O_EXCL).
func createPcapFile(path string) (pcapFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, err
	}
	return f, nil
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

	// What write(2) took of the file: taken bytes, of which the first whole
	// end after the file header or the last whole record (kept records
	// in all). A failed file is cut back to whole.
	taken, whole int64
	kept         int

	buf  []byte    // unwritten bytes; cap pcapBufSize
	recs []pcapRec // the records in buf, all in flight

	retryAt     time.Time   // no new file before this, after a failure
	failing     atomic.Bool // the last file failed and no new one opened since: see Connected
	retryReason int         // why datagrams are dropped until then
}

// pcapRec is one record in a writer's buffer.
type pcapRec struct {
	end     uint32 // offset in buf just after the record
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

	s := &pcapSink{spec: spec, log: opts.Logger.With("sink", "pcap:"+spec.Dir), create: createPcapFile, retryAfter: pcapRetryAfter}
	s.writers = make([]*pcapWriter, opts.Workers)
	for i := range s.writers {
		s.writers[i] = &pcapWriter{s: s, worker: i, buf: make([]byte, 0, pcapBufSize), recs: make([]pcapRec, 0, pcapRecsCap)}
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
			// Every failure on the way set retryReason.
			left := n - uint64(i)
			w.c.drop(w.retryReason, left)
			w.c.inFlight.Add(-left)
			if err == nil {
				err = werr
			}
			return err
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
	// Room for the whole frame: a synthesized frame is built whole, then
	// cut at the snapshot length.
	if len(w.buf)+pcapfile.RecordHeaderLen+flen > cap(w.buf) {
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
	if d.Frame != nil {
		w.buf = append(w.buf, d.Frame[:capLen]...)
	} else {
		w.buf = appendSynthHeaders(w.buf, d)
		w.buf = append(w.buf, d.Payload...)
		w.buf = w.buf[:start+int(recLen)]
	}
	w.recs = append(w.recs, pcapRec{end: uint32(len(w.buf)), payload: uint32(len(d.Payload))})
	w.size += recLen
	w.records++
	return nil
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
	w.buf = pcapfile.AppendFileHeader(w.buf[:0], pcapfile.MaxSnapLen, pcapfile.LinkTypeEthernet)
	w.recs = w.recs[:0]
	w.size, w.records = pcapfile.FileHeaderLen, 0
	w.taken, w.whole, w.kept = 0, 0, 0
	w.s.log.Debug("pcap file opened", "worker", w.worker, "path", path)
	return nil
}

// flushBuf writes the buffer to the file. The records write(2) took whole
// are written, even when it failed after them; on failure the rest are
// dropped and the file is ended (abandon): a file with a failed write gets
// nothing more.
func (w *pcapWriter) flushBuf() error {
	if len(w.buf) == 0 {
		return nil
	}
	n, err := w.f.Write(w.buf)
	if err == nil && n < len(w.buf) {
		err = io.ErrShortWrite
	}
	// The buffer starts with the file header when nothing was taken yet.
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
	w.buf, w.recs = w.buf[:0], w.recs[:0]
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
		// Its records were counted written when write(2) took them; a file
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
