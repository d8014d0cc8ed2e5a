package natsmsg

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/xdpingest/xdpingest/datapath"
)

func datagrams() []datapath.Datagram {
	var out []datapath.Datagram
	for i, size := range []int{0, 1, 22, 1472, 9000, 65535} {
		for v6 := range 2 {
			for nv := range 3 {
				p := bytes.Repeat([]byte{byte(i + 10*v6 + nv)}, size)
				d := datapath.Datagram{
					Payload: p,
					Src:     netip.MustParseAddrPort("198.18.0.1:40000"),
					Dst:     netip.MustParseAddrPort("198.18.0.2:9000"),
					RxTime:  1_700_000_000_000_000_000 + int64(i),
					NVLAN:   uint8(nv),
				}
				if v6 == 1 {
					d.Src = netip.MustParseAddrPort("[2001:db8::1]:40001")
					d.Dst = netip.MustParseAddrPort("[2001:db8::2]:65535")
				}
				for k := range nv {
					d.VLAN[k] = uint16(4094 - k)
				}
				out = append(out, d)
			}
		}
	}
	return out
}

func TestBatchRoundTrip(t *testing.T) {
	in := datagrams()
	msg := AppendBatchHeader(nil)
	want := BatchHeaderLen
	for i := range in {
		msg = AppendRecord(msg, &in[i])
		want += RecordLen(&in[i])
	}
	SetBatchCount(msg, len(in))
	if len(msg) != want {
		t.Fatalf("batch of %d bytes, RecordLen adds up to %d", len(msg), want)
	}
	h := nats.Header{}
	h.Set(HeaderBatch, fmt.Sprint(len(in)))
	out, err := Decode(h, msg, []datapath.Datagram{{}})
	if err != nil {
		t.Fatal(err)
	}
	out = out[1:]
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("decoded datagrams differ")
	}
	// The fixed sizes the documentation gives.
	v4, v6 := in[0], in[3]
	if RecordLen(&v4) != 24 || RecordLen(&v6) != 48 {
		t.Errorf("record header lengths %d and %d, want 24 and 48", RecordLen(&v4), RecordLen(&v6))
	}
}

// The framing, byte by byte, as docs/SINKS.md shows it.
func TestBatchBytes(t *testing.T) {
	d := datapath.Datagram{
		Payload: []byte("hi"),
		Src:     netip.MustParseAddrPort("198.18.0.1:40000"),
		Dst:     netip.MustParseAddrPort("198.18.0.2:9000"),
		RxTime:  0x0102030405060708,
		NVLAN:   1, VLAN: [2]uint16{100},
	}
	msg := AppendRecord(AppendBatchHeader(nil), &d)
	SetBatchCount(msg, 1)
	want := []byte{
		'X', 'D', 'P', 'B', 1, 0, 0, 1, // header: magic, version, flags, count
		0, 2, 4, 1, // payload length, family, nvlan
		1, 2, 3, 4, 5, 6, 7, 8, // rxtime
		0x9c, 0x40, 0x23, 0x28, // sport 40000, dport 9000
		198, 18, 0, 1, 198, 18, 0, 2, // src, dst
		0, 100, // VLAN ID
		'h', 'i',
	}
	if !bytes.Equal(msg, want) {
		t.Fatalf("batch\n% x\nwant\n% x", msg, want)
	}
}

func TestSingleRoundTrip(t *testing.T) {
	for _, d := range datagrams() {
		h := nats.Header{}
		SetHeaders(h, &d)
		if h.Get(HeaderDport) != fmt.Sprint(d.Dst.Port()) {
			t.Errorf("%s = %q", HeaderDport, h.Get(HeaderDport))
		}
		out, err := Decode(h, d.Payload, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != 1 || !reflect.DeepEqual(out[0], d) {
			t.Fatalf("decoded %+v, want %+v", out, d)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	in := datagrams()[:4]
	good := AppendBatchHeader(nil)
	for i := range in {
		good = AppendRecord(good, &in[i])
	}
	SetBatchCount(good, len(in))
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	batch := nats.Header{HeaderBatch: {"4"}}
	for _, c := range []struct {
		name string
		h    nats.Header
		data []byte
	}{
		{"magic", batch, mod(func(b []byte) []byte { b[0] = 'Y'; return b })},
		{"version", batch, mod(func(b []byte) []byte { b[4] = 2; return b })},
		{"flags", batch, mod(func(b []byte) []byte { b[5] = 1; return b })},
		{"count too high", batch, mod(func(b []byte) []byte { b[7] = 5; return b })},
		{"count too low", batch, mod(func(b []byte) []byte { b[7] = 3; return b })},
		{"cut", batch, good[:len(good)-1]},
		{"trailing", batch, append(bytes.Clone(good), 0)},
		{"family", batch, mod(func(b []byte) []byte { b[BatchHeaderLen+2] = 5; return b })},
		{"vlans", batch, mod(func(b []byte) []byte { b[BatchHeaderLen+3] = 3; return b })},
		{"header count", nats.Header{HeaderBatch: {"3"}}, good},
		{"header count text", nats.Header{HeaderBatch: {"x"}}, good},
		{"empty", batch, nil},
		{"no src", nats.Header{HeaderDst: {"198.18.0.2:1"}, HeaderRxTime: {"1"}}, nil},
		{"bad time", nats.Header{HeaderSrc: {"198.18.0.1:1"}, HeaderDst: {"198.18.0.2:1"}, HeaderRxTime: {"soon"}}, nil},
		{"bad vlan", nats.Header{HeaderSrc: {"198.18.0.1:1"}, HeaderDst: {"198.18.0.2:1"}, HeaderRxTime: {"1"}, HeaderVLAN: {"1,2,3"}}, nil},
	} {
		prefix := []datapath.Datagram{{RxTime: 42}}
		out, err := Decode(c.h, c.data, prefix)
		if !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v, want ErrFormat", c.name, err)
		}
		if len(out) != 1 || out[0].RxTime != 42 {
			t.Errorf("%s: dst changed on error: %d datagrams", c.name, len(out))
		}
	}
}

func TestNoAllocs(t *testing.T) {
	in := datagrams()
	buf := make([]byte, 0, 1<<20)
	dst := make([]datapath.Datagram, 0, len(in))
	var msg []byte
	if a := testing.AllocsPerRun(10, func() {
		msg = AppendBatchHeader(buf[:0])
		for i := range in {
			msg = AppendRecord(msg, &in[i])
		}
		SetBatchCount(msg, len(in))
	}); a != 0 {
		t.Errorf("encoding: %v allocations", a)
	}
	if a := testing.AllocsPerRun(10, func() {
		if _, err := DecodeBatch(msg, dst[:0]); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("decoding: %v allocations", a)
	}
}
