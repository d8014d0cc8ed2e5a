package pcapfile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// Magic numbers of the classic format, as written in the writer's byte order.
const (
	MagicMicro uint32 = 0xa1b2c3d4 // timestamps in microseconds
	MagicNano  uint32 = 0xa1b23c4d // timestamps in nanoseconds
)

// Sizes and constants of the format.
const (
	FileHeaderLen   = 24
	RecordHeaderLen = 16
	// LinkTypeEthernet is LINKTYPE_ETHERNET: records start at the Ethernet
	// destination address.
	LinkTypeEthernet uint32 = 1
	// MaxSnapLen is the snapshot length we write, libpcap's largest
	// (MAXIMUM_SNAPLEN) and tcpdump's default since 4.0: every frame is kept
	// whole, the largest UDP datagram (65,535 bytes of IP) with its
	// Ethernet and VLAN headers included, which a 65535 snapshot length
	// would cut.
	MaxSnapLen = 262144
	// VersionMajor and VersionMinor are the only version ever used (2.4).
	VersionMajor = 2
	VersionMinor = 4
)

// AppendFileHeader appends a file header for nanosecond timestamps, written
// little-endian, to dst.
func AppendFileHeader(dst []byte, snapLen, linkType uint32) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint32(dst, MagicNano)
	dst = le.AppendUint16(dst, VersionMajor)
	dst = le.AppendUint16(dst, VersionMinor)
	dst = le.AppendUint32(dst, 0) // thiszone: timestamps are UTC
	dst = le.AppendUint32(dst, 0) // sigfigs: always 0
	dst = le.AppendUint32(dst, snapLen)
	dst = le.AppendUint32(dst, linkType)
	return dst
}

// AppendRecordHeader appends the header of one record to dst: the time in
// nanoseconds since the Unix epoch (for a file written by AppendFileHeader;
// times before 1970 become 0, and the seconds wrap in 2106),
// the number of bytes that follow in the file (capLen) and the length of the
// frame on the wire (origLen >= capLen when the frame was cut at the snapshot
// length).
func AppendRecordHeader(dst []byte, unixNano int64, capLen, origLen int) []byte {
	le := binary.LittleEndian
	unixNano = max(unixNano, 0) // the format's seconds are unsigned
	sec, nsec := unixNano/1e9, unixNano%1e9
	dst = le.AppendUint32(dst, uint32(sec))
	dst = le.AppendUint32(dst, uint32(nsec))
	dst = le.AppendUint32(dst, uint32(capLen))
	dst = le.AppendUint32(dst, uint32(origLen))
	return dst
}

// FileHeader is the decoded header of a file.
type FileHeader struct {
	// Nano says the timestamps are in nanoseconds (else microseconds).
	Nano         bool
	ByteOrder    binary.ByteOrder
	VersionMajor uint16
	VersionMinor uint16
	SnapLen      uint32
	LinkType     uint32
}

// Record is one record of a file.
type Record struct {
	// UnixNano is the timestamp in nanoseconds since the Unix epoch (converted
	// from microseconds for microsecond files).
	UnixNano int64
	// OrigLen is the length of the frame on the wire; len(Data) <= OrigLen.
	OrigLen int
	// Data holds the captured bytes. It is valid until the next call to Next.
	Data []byte
}

// ErrFormat is returned (wrapped) for input that is not a classic pcap file or
// that breaks its rules.
var ErrFormat = errors.New("not a valid pcap file")

// Reader reads records one at a time.
type Reader struct {
	r   *bufio.Reader
	hdr FileHeader
	buf []byte
	n   int   // records returned so far, for error messages
	err error // the first error of Next, returned again by every later call
}

// maxRecordLen bounds a record's captured length so that a corrupt header
// can't make the reader allocate gigabytes. It is generous: files written
// with a snapshot length of 262144 (tcpdump's default) stay readable.
const maxRecordLen = 1 << 20

// minGrow is the least a record buffer grows by: the buffer grows with the
// bytes that arrive, not to the length a header claims, so that a lying
// header in a short file costs no more memory than the file.
const minGrow = 64 << 10

// NewReader reads the file header from r and returns a Reader positioned at
// the first record.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	var h [FileHeaderLen]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("can't read the pcap file header: file shorter than %d bytes: %w", FileHeaderLen, ErrFormat)
		}
		return nil, fmt.Errorf("can't read the pcap file header: %w", err)
	}
	var fh FileHeader
	switch le, be := binary.LittleEndian.Uint32(h[:]), binary.BigEndian.Uint32(h[:]); {
	case le == MagicMicro:
		fh.ByteOrder = binary.LittleEndian
	case le == MagicNano:
		fh.ByteOrder, fh.Nano = binary.LittleEndian, true
	case be == MagicMicro:
		fh.ByteOrder = binary.BigEndian
	case be == MagicNano:
		fh.ByteOrder, fh.Nano = binary.BigEndian, true
	default:
		return nil, fmt.Errorf("magic number %#08x is not a classic pcap magic (pcapng files are not supported): %w", le, ErrFormat)
	}
	bo := fh.ByteOrder
	fh.VersionMajor = bo.Uint16(h[4:])
	fh.VersionMinor = bo.Uint16(h[6:])
	fh.SnapLen = bo.Uint32(h[16:])
	fh.LinkType = bo.Uint32(h[20:])
	if fh.VersionMajor != VersionMajor {
		return nil, fmt.Errorf("pcap version %d.%d: %w", fh.VersionMajor, fh.VersionMinor, ErrFormat)
	}
	return &Reader{r: br, hdr: fh}, nil
}

// Header returns the file header.
func (r *Reader) Header() FileHeader { return r.hdr }

// Next returns the next record. It returns io.EOF after the last complete
// record, io.ErrUnexpectedEOF (wrapped) when the file ends inside a record,
// as a file does whose writer was killed, and ErrFormat (wrapped) for a
// record header that breaks the format's rules. After an error, every call
// returns the same error: what follows a bad record can't be trusted.
func (r *Reader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	rec, err := r.next()
	r.err = err
	return rec, err
}

func (r *Reader) next() (Record, error) {
	var h [RecordHeaderLen]byte
	if n, err := io.ReadFull(r.r, h[:]); err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return Record{}, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Record{}, fmt.Errorf("record %d: header cut short after %d bytes: %w", r.n, n, err)
		}
		return Record{}, fmt.Errorf("record %d: %w", r.n, err)
	}
	bo := r.hdr.ByteOrder
	sec, frac := int64(bo.Uint32(h[0:])), int64(bo.Uint32(h[4:]))
	capLen, origLen := bo.Uint32(h[8:]), bo.Uint32(h[12:])
	if capLen > maxRecordLen {
		return Record{}, fmt.Errorf("record %d: captured length %d exceeds %d: %w", r.n, capLen, maxRecordLen, ErrFormat)
	}
	if capLen > origLen {
		return Record{}, fmt.Errorf("record %d: captured length %d exceeds the frame's length %d: %w", r.n, capLen, origLen, ErrFormat)
	}
	data, err := r.read(int(capLen))
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Record{}, fmt.Errorf("record %d: data cut short at %d of %d bytes: %w", r.n, len(data), capLen, err)
	}
	rec := Record{OrigLen: int(origLen), Data: data}
	if r.hdr.Nano {
		rec.UnixNano = sec*1e9 + frac
	} else {
		rec.UnixNano = sec*1e9 + frac*1e3
	}
	r.n++
	return rec, nil
}

// read reads the next n bytes into r.buf, growing it (by at least minGrow,
// at most to n) as the bytes arrive. It returns what it read.
func (r *Reader) read(n int) ([]byte, error) {
	b := r.buf[:0]
	for len(b) < n {
		if len(b) == cap(b) {
			nb := make([]byte, len(b), min(n, len(b)+max(len(b), minGrow)))
			copy(nb, b)
			b = nb
			r.buf = nb
		}
		m, err := io.ReadFull(r.r, b[len(b):min(n, cap(b))])
		b = b[:len(b)+m]
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

// ReadFile calls fn for every record of the file at path, in order, and
// stops at the first error fn returns. rec.Data is valid only during the
// call. It does not look at the link type: use NewReader where that
// matters.
func ReadFile(path string, fn func(rec Record) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("can't open pcap file: %w", err)
	}
	defer f.Close()
	r, err := NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
}
