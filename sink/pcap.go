package sink

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
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

const (
	pcapBufSize = 1 << 20
	// pcapRetryAfter is how long a writer whose file failed waits before it
	// opens another, dropping ("write_failed") meanwhile, so that a full disk
	// costs one failed open per second rather than one per batch.
	pcapRetryAfter = time.Second
	pcapPrefix     = "xdpingest-"
	pcapSuffix     = ".pcap"
	partSuffix     = ".part"
	pcapTimeLayout = "20060102T150405.000000000Z"
)

var pcapReasons = reasons{"write_failed", "closed"}

const (
	pcapWriteFailed = iota
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

	f       pcapFile
	path    string // of the .part file
	opened  time.Time
	size    int64 // bytes in the file, buffer included
	records int   // records in the file, buffer included
	seq     int   // files opened so far, part of the name

	buf          []byte // unwritten bytes; cap pcapBufSize
	pending      uint64 // records in buf (InFlight)
	pendingBytes uint64 // their payload bytes

	retryAt time.Time // no new file before this, after a failure
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
		s.writers[i] = &pcapWriter{s: s, worker: i, buf: make([]byte, 0, pcapBufSize)}
	}
	return s, nil
}

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
			left := n - uint64(i)
			w.c.drop(pcapWriteFailed, left)
			w.c.inFlight.Add(-left)
			return werr
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
	w.size += recLen
	w.records++
	w.pending++
	w.pendingBytes += uint64(len(d.Payload))
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

// open starts a new file, unless the last one failed less than
// pcapRetryAfter ago.
func (w *pcapWriter) open(now time.Time) error {
	if now.Before(w.retryAt) {
		return fmt.Errorf("can't write to %s: waiting %v after a failure", w.s.Name(), w.retryAt.Sub(now).Round(time.Millisecond))
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
		w.retryAt = now.Add(w.s.retryAfter)
		w.s.log.Error("can't open pcap file", "worker", w.worker, "err", err)
		return fmt.Errorf("can't open pcap file: %w", err)
	}
	w.f, w.path, w.opened = f, path, now
	w.buf = pcapfile.AppendFileHeader(w.buf[:0], pcapfile.MaxSnapLen, pcapfile.LinkTypeEthernet)
	w.size, w.records = pcapfile.FileHeaderLen, 0
	w.s.log.Debug("pcap file opened", "worker", w.worker, "path", path)
	return nil
}

// flushBuf writes the buffer to the file. On failure the buffered records
// are dropped and the file is finished: a file with a failed write may have
// a hole, and nothing more goes into it.
func (w *pcapWriter) flushBuf() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.f.Write(w.buf)
	w.buf = w.buf[:0]
	pending, pendingBytes := w.pending, w.pendingBytes
	w.pending, w.pendingBytes = 0, 0
	if err != nil {
		w.c.errors.Add(1)
		w.c.drop(pcapWriteFailed, pending)
		w.c.inFlight.Add(-pending)
		w.retryAt = time.Now().Add(w.s.retryAfter)
		w.s.log.Error("can't write pcap file", "worker", w.worker, "path", w.path, "dropped", pending, "err", err)
		w.closeFile()
		return fmt.Errorf("can't write pcap file %s: %w", w.path, err)
	}
	w.c.written.Add(pending)
	w.c.writtenBytes.Add(pendingBytes)
	w.c.inFlight.Add(-pending)
	return nil
}

// finish flushes, fsyncs and closes the open file, if any, and gives it its
// final name.
func (w *pcapWriter) finish() error {
	if w.f == nil {
		return nil
	}
	if err := w.flushBuf(); err != nil {
		return err // flushBuf closed the file
	}
	err := w.f.Sync()
	if err != nil {
		w.c.errors.Add(1)
		err = fmt.Errorf("can't fsync pcap file %s: %w", w.path, err)
		w.s.log.Error("can't fsync pcap file", "worker", w.worker, "path", w.path, "err", err)
	}
	w.s.log.Debug("pcap file finished", "worker", w.worker, "path", strings.TrimSuffix(w.path, partSuffix), "records", w.records, "bytes", w.size)
	return errors.Join(err, w.closeFile())
}

// closeFile closes the file, renames it to its final name and fsyncs the
// directory so that the rename survives a crash.
func (w *pcapWriter) closeFile() error {
	f, path := w.f, w.path
	w.f, w.path = nil, ""
	var errs []error
	if err := f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("can't close pcap file %s: %w", path, err))
	}
	final := strings.TrimSuffix(path, partSuffix)
	if err := os.Rename(path, final); err != nil {
		errs = append(errs, fmt.Errorf("can't rename pcap file %s: %w", path, err))
	} else if err := syncDir(filepath.Dir(final)); err != nil {
		errs = append(errs, fmt.Errorf("can't fsync directory of %s: %w", final, err))
	}
	for _, err := range errs {
		w.c.errors.Add(1)
		w.s.log.Error("can't finish pcap file", "worker", w.worker, "err", err)
	}
	return errors.Join(errs...)
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
