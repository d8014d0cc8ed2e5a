package pcapfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	b := AppendFileHeader(nil, MaxSnapLen, LinkTypeEthernet)
	times := []int64{0, 1, 1_700_000_000_999_999_999, 4_294_967_295_999_999_999}
	for i, ts := range times {
		data := bytes.Repeat([]byte{byte(i)}, i*10)
		b = AppendRecordHeader(b, ts, len(data), len(data)+i)
		b = append(b, data...)
	}
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	h := r.Header()
	if !h.Nano || h.ByteOrder != binary.LittleEndian || h.SnapLen != MaxSnapLen || h.LinkType != LinkTypeEthernet || h.VersionMajor != 2 || h.VersionMinor != 4 {
		t.Fatalf("header %+v", h)
	}
	for i, ts := range times {
		rec, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if rec.UnixNano != ts || len(rec.Data) != i*10 || rec.OrigLen != i*10+i {
			t.Errorf("record %d: %+v", i, rec)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last record: %v, want io.EOF", err)
	}
}

// A big-endian microsecond file, as a SPARC or an old tool writes it.
func TestBigEndianMicro(t *testing.T) {
	be := binary.BigEndian
	var b []byte
	b = be.AppendUint32(b, MagicMicro)
	b = be.AppendUint16(b, 2)
	b = be.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...)
	b = be.AppendUint32(b, 262144)
	b = be.AppendUint32(b, LinkTypeEthernet)
	b = be.AppendUint32(b, 10)     // sec
	b = be.AppendUint32(b, 500000) // usec
	b = be.AppendUint32(b, 3)
	b = be.AppendUint32(b, 3)
	b = append(b, "abc"...)
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if h := r.Header(); h.Nano || h.ByteOrder != binary.BigEndian || h.SnapLen != 262144 {
		t.Fatalf("header %+v", h)
	}
	rec, err := r.Next()
	if err != nil || rec.UnixNano != 10_500_000_000 || string(rec.Data) != "abc" {
		t.Fatalf("%+v %v", rec, err)
	}
}

func TestBadInput(t *testing.T) {
	good := AppendFileHeader(nil, MaxSnapLen, LinkTypeEthernet)
	good = AppendRecordHeader(good, 5, 4, 4)
	good = append(good, "abcd"...)

	if _, err := NewReader(bytes.NewReader(good[:10])); !errors.Is(err, ErrFormat) {
		t.Errorf("short header: %v", err)
	}
	pcapng := append([]byte{0x0a, 0x0d, 0x0d, 0x0a}, good[4:]...)
	if _, err := NewReader(bytes.NewReader(pcapng)); !errors.Is(err, ErrFormat) {
		t.Errorf("pcapng magic: %v", err)
	}
	for _, cut := range []int{FileHeaderLen + 3, len(good) - 1} {
		r, err := NewReader(bytes.NewReader(good[:cut]))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("cut at %d: %v, want io.ErrUnexpectedEOF", cut, err)
		}
	}
	huge := AppendFileHeader(nil, MaxSnapLen, LinkTypeEthernet)
	huge = AppendRecordHeader(huge, 0, 1<<30, 1<<30)
	r, _ := NewReader(bytes.NewReader(huge))
	if _, err := r.Next(); !errors.Is(err, ErrFormat) {
		t.Errorf("1 GiB record: %v", err)
	}
}

func TestReadFile(t *testing.T) {
	b := AppendFileHeader(nil, MaxSnapLen, LinkTypeEthernet)
	for i := range 3 {
		b = AppendRecordHeader(b, int64(i), 1, 1)
		b = append(b, byte(i))
	}
	path := filepath.Join(t.TempDir(), "x.pcap")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := ReadFile(path, func(rec Record) error { got = append(got, rec.Data...); return nil }); err != nil {
		t.Fatal(err)
	}
	if string(got) != "\x00\x01\x02" {
		t.Fatalf("%q", got)
	}
	stop := errors.New("stop")
	if err := ReadFile(path, func(Record) error { return stop }); err != stop {
		t.Fatalf("fn's error: %v", err)
	}
	if err := ReadFile(filepath.Join(t.TempDir(), "none"), func(Record) error { return nil }); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}
