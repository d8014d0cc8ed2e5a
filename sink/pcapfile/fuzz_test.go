package pcapfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// FuzzReader reads arbitrary bytes as a pcap file. The reader must not
// panic, must not hold more memory than the input justifies whatever its
// length fields claim, and what it returns must be the input: each record's
// bytes where the headers put them, io.EOF exactly at the end, a cut-short
// or format error only where the input says so, and the same error again
// after one.
func FuzzReader(f *testing.F) {
	good := AppendFileHeader(nil, MaxSnapLen, LinkTypeEthernet)
	for i := range 4 {
		data := bytes.Repeat([]byte{byte(i)}, i*7)
		good = AppendRecordHeader(good, int64(i)*1_000_000_001, len(data), len(data)+i)
		good = append(good, data...)
	}
	f.Add(good)
	f.Add(good[:len(good)-3])        // cut inside the last record's data
	f.Add(good[:FileHeaderLen+5])    // cut inside the first record's header
	f.Add(good[:FileHeaderLen])      // header only
	f.Add(good[:FileHeaderLen-1])    // short header
	f.Add([]byte{})                  // empty
	f.Add(swapped(good, MagicMicro)) // big-endian, microseconds
	huge := AppendRecordHeader(good[:FileHeaderLen:FileHeaderLen], 0, maxRecordLen, maxRecordLen)
	f.Add(append(huge, "a few bytes of a record that claims a mebibyte"...))
	f.Add(AppendRecordHeader(good[:FileHeaderLen:FileHeaderLen], 0, maxRecordLen+1, maxRecordLen+1))
	f.Add(append(AppendRecordHeader(good[:FileHeaderLen:FileHeaderLen], 0, 4, 2), "abcd"...)) // captured > original
	f.Add(append([]byte{0x0a, 0x0d, 0x0d, 0x0a}, good[4:]...))                                // pcapng

	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("NewReader: %v, want ErrFormat", err)
			}
			if len(data) >= FileHeaderLen && validHeader(data) {
				t.Fatalf("NewReader refused a valid header: %v", err)
			}
			return
		}
		if !validHeader(data) {
			t.Fatalf("NewReader took an invalid header: %+v", r.Header())
		}
		bo := r.Header().ByteOrder
		off := FileHeaderLen
		for i := 0; ; i++ {
			rec, err := r.Next()
			if err != nil {
				rest := data[off:]
				switch {
				case err == io.EOF:
					if len(rest) != 0 {
						t.Fatalf("io.EOF with %d bytes left", len(rest))
					}
				case errors.Is(err, io.ErrUnexpectedEOF):
					if len(rest) == 0 || len(rest) >= RecordHeaderLen && len(rest) >= RecordHeaderLen+int(bo.Uint32(rest[8:])) {
						t.Fatalf("record %d cut short with %d bytes left: %v", i, len(rest), err)
					}
				case errors.Is(err, ErrFormat):
					if len(rest) < RecordHeaderLen {
						t.Fatalf("format error on a short record: %v", err)
					}
					if c, o := bo.Uint32(rest[8:]), bo.Uint32(rest[12:]); c <= maxRecordLen && c <= o {
						t.Fatalf("format error on captured length %d, original %d: %v", c, o, err)
					}
				default:
					t.Fatalf("record %d: %v", i, err)
				}
				if _, err2 := r.Next(); err2 != err {
					t.Fatalf("after %v, Next returned %v", err, err2)
				}
				return
			}
			h := data[off : off+RecordHeaderLen]
			sec, frac := int64(bo.Uint32(h[0:])), int64(bo.Uint32(h[4:]))
			want := sec*1e9 + frac
			if !r.Header().Nano {
				want = sec*1e9 + frac*1e3
			}
			if rec.UnixNano != want || rec.OrigLen != int(bo.Uint32(h[12:])) || len(rec.Data) != int(bo.Uint32(h[8:])) {
				t.Fatalf("record %d: %d %d %d bytes, header %x", i, rec.UnixNano, rec.OrigLen, len(rec.Data), h)
			}
			if len(rec.Data) > rec.OrigLen || len(rec.Data) > maxRecordLen {
				t.Fatalf("record %d: %d bytes of %d", i, len(rec.Data), rec.OrigLen)
			}
			off += RecordHeaderLen
			if !bytes.Equal(rec.Data, data[off:off+len(rec.Data)]) {
				t.Fatalf("record %d: data is not the input's", i)
			}
			off += len(rec.Data)
			if c := cap(r.buf); c > 2*len(data)+minGrow {
				t.Fatalf("record %d: a %d-byte buffer for %d bytes of input", i, c, len(data))
			}
		}
	})
}

// validHeader says whether data starts with a file header NewReader must
// take: a classic magic in either byte order, version 2.
func validHeader(data []byte) bool {
	if len(data) < FileHeaderLen {
		return false
	}
	for _, bo := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		if m := bo.Uint32(data); (m == MagicMicro || m == MagicNano) && bo.Uint16(data[4:]) == VersionMajor {
			return true
		}
	}
	return false
}

// swapped returns the little-endian file b rewritten big-endian, with magic.
func swapped(b []byte, magic uint32) []byte {
	le, be := binary.LittleEndian, binary.BigEndian
	out := be.AppendUint32(nil, magic)
	out = be.AppendUint16(out, le.Uint16(b[4:]))
	out = be.AppendUint16(out, le.Uint16(b[6:]))
	for i := 8; i < FileHeaderLen; i += 4 {
		out = be.AppendUint32(out, le.Uint32(b[i:]))
	}
	for off := FileHeaderLen; off+RecordHeaderLen <= len(b); {
		for i := 0; i < RecordHeaderLen; i += 4 {
			out = be.AppendUint32(out, le.Uint32(b[off+i:]))
		}
		n := int(le.Uint32(b[off+8:]))
		off += RecordHeaderLen
		out = append(out, b[off:off+n]...)
		off += n
	}
	return out
}
