package natsmsg

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/xdpingest/xdpingest/datapath"
)

// minRecordLen is the shortest record: IPv4, no tags, empty payload.
const minRecordLen = recordFixedLen + 2*4

// FuzzDecode feeds hostile messages (headers and data) to Decode. It never
// panics, refuses with ErrFormat and leaves dst as it was, never decodes
// more datagrams than the data can hold, and a batch it accepts decodes
// without allocating into a dst sized for the data and encodes back to the
// same bytes (the framing has one encoding per datagram list).
func FuzzDecode(f *testing.F) {
	in := datagrams()
	for _, ds := range [][]datapath.Datagram{in[:1], in[:3], in[3:6], in[:0]} {
		msg := AppendBatchHeader(nil)
		for i := range ds {
			msg = AppendRecord(msg, &ds[i])
		}
		SetBatchCount(msg, len(ds))
		f.Add(true, fmt.Sprint(len(ds)), "", "", "", "", msg)
	}
	f.Add(true, "1", "", "", "", "", []byte("XDPB\x01\x00\xff\xff"))
	f.Add(true, "1", "", "", "", "", []byte("XDPB\x01\x00\x00\x01\xff\xff\x06\x02"))
	f.Add(false, "", "198.18.0.1:40000", "198.18.0.2:9000", "1700000000000000000", "100,7", []byte("hi"))
	f.Add(false, "", "[2001:db8::1]:1", "[::ffff:198.18.0.2]:2", "-1", "", []byte{})
	f.Add(false, "", "[fe80::1%eth0]:1", "198.18.0.2:2", "1", "4095,", []byte{0})
	f.Fuzz(func(t *testing.T, batch bool, count, src, dst, rxtime, vlan string, data []byte) {
		h := nats.Header{}
		for k, v := range map[string]string{HeaderSrc: src, HeaderDst: dst, HeaderRxTime: rxtime, HeaderVLAN: vlan} {
			if v != "" {
				h.Set(k, v)
			}
		}
		if batch {
			h.Set(HeaderBatch, count)
		}
		prefix := []datapath.Datagram{{RxTime: 42}}
		out, err := Decode(h, data, prefix)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("refusal %v does not match ErrFormat", err)
			}
			if len(out) != 1 || out[0].RxTime != 42 {
				t.Fatalf("dst changed on error: %d datagrams", len(out))
			}
			return
		}
		if len(out) < 1 || out[0].RxTime != 42 {
			t.Fatal("dst's first datagram lost")
		}
		out = out[1:]
		if !IsBatch(h) {
			if len(out) != 1 || !bytes.Equal(out[0].Payload, data) || out[0].NVLAN > 2 {
				t.Fatalf("one-datagram message decoded as %+v", out)
			}
			return
		}
		if len(out) > len(data)/minRecordLen {
			t.Fatalf("%d datagrams from %d bytes", len(out), len(data))
		}
		for i := range out {
			d := &out[i]
			if d.NVLAN > 2 || len(d.Payload) > 0xffff || cap(d.Payload) != len(d.Payload) {
				t.Fatalf("datagram %d: %d tags, payload %d bytes (cap %d)", i, d.NVLAN, len(d.Payload), cap(d.Payload))
			}
		}
		re := AppendBatchHeader(nil)
		for i := range out {
			n := len(re)
			re = AppendRecord(re, &out[i])
			if got := len(re) - n; got != RecordLen(&out[i]) {
				t.Fatalf("record %d: %d bytes, RecordLen says %d", i, got, RecordLen(&out[i]))
			}
		}
		SetBatchCount(re, len(out))
		if !bytes.Equal(re, data) {
			t.Fatalf("decoded and encoded again, the batch differs:\n% x\n% x", data, re)
		}
		sized := make([]datapath.Datagram, 0, len(data)/minRecordLen)
		if a := testing.AllocsPerRun(1, func() {
			if _, err := DecodeBatch(data, sized); err != nil {
				t.Fatal(err)
			}
		}); a != 0 {
			t.Fatalf("decoding into a dst sized for the data: %v allocations", a)
		}
	})
}

// FuzzRoundTrip builds a datagram as a receiver can deliver it (both
// addresses IPv4, or both IPv6, of any content; up to two VLAN tags; a UDP
// payload) and checks that both message kinds decode to the same datagram.
func FuzzRoundTrip(f *testing.F) {
	for _, d := range datagrams() {
		a, b := d.Src.Addr().As16(), d.Dst.Addr().As16()
		f.Add(d.Payload, a[:], b[:], d.Src.Addr().Is6(), d.Src.Port(), d.Dst.Port(), d.RxTime, d.NVLAN, d.VLAN[0], d.VLAN[1])
	}
	mapped := netip.MustParseAddr("::ffff:198.18.0.1").As16()
	f.Add([]byte("x"), mapped[:], mapped[:], true, uint16(1), uint16(2), int64(-1), uint8(2), uint16(0), uint16(0xffff))
	f.Fuzz(func(t *testing.T, payload, src, dst []byte, v6 bool, sport, dport uint16, rxtime int64, nvlan uint8, vlan0, vlan1 uint16) {
		if len(payload) > 0xffff || len(src) < 16 || len(dst) < 16 || nvlan > 2 {
			return // not a datagram a receiver delivers
		}
		addr := func(b []byte) netip.Addr {
			if v6 {
				return netip.AddrFrom16([16]byte(b))
			}
			return netip.AddrFrom4([4]byte(b))
		}
		d := datapath.Datagram{
			Payload: payload,
			Src:     netip.AddrPortFrom(addr(src), sport),
			Dst:     netip.AddrPortFrom(addr(dst), dport),
			RxTime:  rxtime,
			NVLAN:   nvlan,
		}
		copy(d.VLAN[:nvlan], []uint16{vlan0, vlan1})

		check := func(kind string, out []datapath.Datagram, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: %v", kind, err)
			}
			if len(out) != 1 {
				t.Fatalf("%s: %d datagrams", kind, len(out))
			}
			g := out[0]
			if !bytes.Equal(g.Payload, d.Payload) || g.Src != d.Src || g.Dst != d.Dst || g.RxTime != d.RxTime || g.NVLAN != d.NVLAN || g.VLAN != d.VLAN {
				t.Fatalf("%s: decoded\n%v -> %v t=%d vlan %d %v\nwant\n%v -> %v t=%d vlan %d %v", kind,
					g.Src, g.Dst, g.RxTime, g.NVLAN, g.VLAN, d.Src, d.Dst, d.RxTime, d.NVLAN, d.VLAN)
			}
		}

		msg := AppendRecord(AppendBatchHeader(nil), &d)
		SetBatchCount(msg, 1)
		if len(msg) != BatchHeaderLen+RecordLen(&d) {
			t.Fatalf("record of %d bytes, RecordLen says %d", len(msg)-BatchHeaderLen, RecordLen(&d))
		}
		out, err := Decode(nats.Header{HeaderBatch: {"1"}}, msg, nil)
		check("batch", out, err)

		h := nats.Header{}
		SetHeaders(h, &d)
		out, err = Decode(h, d.Payload, nil)
		check("headers", out, err)
	})
}
