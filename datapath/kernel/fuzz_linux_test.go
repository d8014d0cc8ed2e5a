package kernel

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/datapath"
)

// cmsgResult is what parseCmsgs takes out of a control area.
type cmsgResult struct {
	dst      netip.AddrPort
	rxTime   int64
	drops    uint32
	hasDrops bool
	shared   bool
	seg      int
}

// referenceCmsgs reads a control area with x/sys/unix's walker, which stops
// at the first malformed message, applying the rules parseCmsgs documents:
// the last message of each kind wins.
func referenceCmsgs(ctrl []byte, d datapath.Datagram) cmsgResult {
	r := cmsgResult{dst: d.Dst, rxTime: d.RxTime}
	for len(ctrl) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(ctrl)
		if err != nil {
			break
		}
		switch {
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SO_TIMESTAMPNS_NEW && len(data) >= 16:
			r.rxTime = int64(binary.NativeEndian.Uint64(data))*1e9 + int64(binary.NativeEndian.Uint64(data[8:]))
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SO_TIMESTAMPNS && len(data) >= int(unsafe.Sizeof(unix.Timespec{})):
			r.rxTime = (*unix.Timespec)(unsafe.Pointer(&data[0])).Nano() // a native struct timespec
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SO_RXQ_OVFL && len(data) >= 4:
			r.drops, r.hasDrops = binary.NativeEndian.Uint32(data), true
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= 12:
			r.dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(data[8:12])), r.dst.Port())
			r.shared = binary.NativeEndian.Uint32(data) != 0 && string(data[4:8]) != string(data[8:12])
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= 16:
			r.dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(data[:16])), r.dst.Port())
			r.shared = netip.AddrFrom16([16]byte(data[:16])).IsMulticast()
		case h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && len(data) >= 4:
			r.seg = int(int32(binary.NativeEndian.Uint32(data)))
		}
		ctrl = rest
	}
	return r
}

// aligned copies b into memory aligned as the Receiver's control area is
// (each slot's area starts 8-byte aligned).
func aligned(b []byte) []byte {
	words := make([]uint64, (len(b)+7)/8+1)
	out := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)[:len(b)]
	copy(out, b)
	return out
}

// cmsgSeeds are control areas as the kernel writes them.
func cmsgSeeds() [][]byte {
	var ts [16]byte
	binary.NativeEndian.PutUint64(ts[:], 1_700_000_000)
	binary.NativeEndian.PutUint64(ts[8:], 123)
	var four [4]byte
	binary.NativeEndian.PutUint32(four[:], 1472)
	pi4 := make([]byte, 12)
	binary.NativeEndian.PutUint32(pi4, 2)
	copy(pi4[4:], []byte{198, 18, 0, 2})
	copy(pi4[8:], []byte{198, 18, 0, 2})
	bc4 := append([]byte(nil), pi4...)
	copy(bc4[8:], []byte{198, 18, 0, 255})
	pi6 := make([]byte, 20)
	a := netip.MustParseAddr("2001:db8::2").As16()
	copy(pi6, a[:])
	all := putCmsg(nil, unix.IPPROTO_IP, unix.IP_PKTINFO, pi4)
	all = putCmsg(all, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS_NEW, ts[:])
	all = putCmsg(all, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, four[:])
	all = putCmsg(all, unix.SOL_UDP, unix.UDP_GRO, four[:])
	mc6 := append([]byte(nil), pi6...)
	mc6[0], mc6[1] = 0xff, 0x02
	return [][]byte{
		all,
		putCmsg(nil, unix.IPPROTO_IP, unix.IP_PKTINFO, bc4),
		putCmsg(nil, unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, mc6),
		putCmsg(putCmsg(nil, unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, pi6), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, ts[:]),
		putCmsg(nil, unix.SOL_UDP, unix.UDP_GRO, four[:]),
		all[:len(all)-3],
		{},
	}
}

// FuzzParseCmsgs feeds arbitrary control areas to parseCmsgs: no panic, the
// destination port kept, and the same result as x/sys/unix's walker with
// the documented rules.
func FuzzParseCmsgs(f *testing.F) {
	for _, s := range cmsgSeeds() {
		f.Add(s, uint16(5000), false)
		f.Add(s, uint16(1), true)
	}
	f.Fuzz(func(t *testing.T, ctrl []byte, port uint16, v6 bool) {
		ctrl = aligned(ctrl)
		d := datapath.Datagram{Dst: netip.AddrPortFrom(netip.IPv4Unspecified(), port), RxTime: -7}
		if v6 {
			d.Dst = netip.AddrPortFrom(netip.IPv6Unspecified(), port)
		}
		want := referenceCmsgs(ctrl, d)
		var got cmsgResult
		var m cmsgMeta
		got.seg = parseCmsgs(ctrl, &d, &m)
		got.dst, got.rxTime, got.drops, got.hasDrops, got.shared = d.Dst, d.RxTime, m.drops, m.hasDrops, m.shared
		if got != want {
			t.Fatalf("parseCmsgs % x:\n got %+v\nwant %+v", ctrl, got, want)
		}
		if d.Dst.Port() != port {
			t.Fatalf("port %d became %d", port, d.Dst.Port())
		}
	})
}

// FuzzGROSplit drives a Receiver's emit and pending logic without sockets,
// as TestGROSplit does, over slots of arbitrary lengths, truncation flags,
// GRO segment sizes and control bytes, read in batches of an arbitrary
// size. Every slot that is not truncated comes out as datagrams that tile
// its buffer exactly, in order, each segment-sized but the last; truncated
// slots are counted malformed; the counters add up; the slots are reset.
func FuzzGROSplit(f *testing.F) {
	cfg, err := Config{Ports: []uint16{5000}, Batch: 8}.withDefaults()
	if err != nil {
		f.Fatal(err)
	}
	r, err := newReceiver(0, &cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { unix.Close(r.efd) })
	local := netip.MustParseAddrPort("198.18.0.2:5000")
	r.socks = []sock{newSock(-1, local, 0)}
	sa := make([]byte, nameSize)
	binary.NativeEndian.PutUint16(sa, unix.AF_INET)
	binary.BigEndian.PutUint16(sa[2:], 4000)
	copy(sa[4:], []byte{198, 18, 0, 1})
	src := netip.MustParseAddrPort("198.18.0.1:4000")

	// A slot is 8 bytes of the input: length (uint16, modulo MaxPayload+1),
	// flags (bit 0 MSG_TRUNC, bit 1 a UDP_GRO message, bit 2 raw control
	// bytes after it), the segment size (int32), and a count of raw
	// control bytes taken from the input's tail.
	slot := func(ln uint16, flags byte, seg int32, raw byte) []byte {
		b := binary.BigEndian.AppendUint16(nil, ln)
		b = append(b, flags)
		b = binary.BigEndian.AppendUint32(b, uint32(seg))
		return append(b, raw)
	}
	cat := func(bs ...[]byte) (out []byte) {
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	f.Add(uint8(4), cat(slot(1120, 2, 200, 0), slot(50, 0, 0, 0)))
	f.Add(uint8(1), cat(slot(65535, 2, 1, 0), slot(0, 2, 7, 0), slot(9000, 1, 1472, 0), slot(3, 2, -1, 0)))
	f.Add(uint8(8), cat(slot(65535, 2, 65535, 0), slot(65534, 2, 65536, 0), slot(1, 6, 1, 40)))
	f.Add(uint8(3), cat(slot(1472*8, 2, 1472, 0), slot(100, 3, 10, 0), slot(100, 4, 0, 16), slot(7, 2, 0, 0)))

	f.Fuzz(func(t *testing.T, batchSize uint8, spec []byte) {
		const per = 8
		nslots := min(len(spec)/per, len(r.hdrs))
		if nslots == 0 {
			return
		}
		raw := spec[nslots*per:]
		type slotSpec struct {
			ln    int
			trunc bool
			seg   int // what the GRO split must use
		}
		slots := make([]slotSpec, nslots)
		for i := range nslots {
			s := spec[i*per : (i+1)*per]
			ln := int(binary.BigEndian.Uint16(s)) % (cfg.MaxPayload + 1)
			flags, seg, nraw := s[2], int32(binary.BigEndian.Uint32(s[3:])), int(s[7])
			var ctrl []byte
			if flags&2 != 0 {
				var b [4]byte
				binary.NativeEndian.PutUint32(b[:], uint32(seg))
				ctrl = putCmsg(nil, unix.SOL_UDP, unix.UDP_GRO, b[:])
			}
			if flags&4 != 0 {
				n := min(nraw, len(raw))
				ctrl = append(ctrl, raw[:n]...)
				raw = raw[n:]
			}
			ctrl = ctrl[:min(len(ctrl), ctrlSize)]
			area := r.ctrl[i*ctrlSize : (i+1)*ctrlSize]
			clear(area)
			copy(area, ctrl)

			h := &r.hdrs[i]
			h.Len = uint32(ln)
			h.Hdr.Flags = 0
			if flags&1 != 0 {
				h.Hdr.Flags = unix.MSG_TRUNC
			}
			h.Hdr.SetControllen(len(ctrl))
			copy(r.names[i*nameSize:], sa)
			h.Hdr.Namelen = unix.SizeofSockaddrInet4
			r.slotSock[i] = 0
			buf := r.bufs[i*r.stride : i*r.stride+ln]
			for j := range buf {
				buf[j] = byte(i*7 + j)
			}

			var scratch datapath.Datagram
			var m cmsgMeta
			sg := parseCmsgs(aligned(ctrl), &scratch, &m)
			if sg <= 0 || sg > ln {
				sg = ln
			}
			slots[i] = slotSpec{ln: ln, trunc: flags&1 != 0, seg: sg}
		}
		r.pend, r.pendEnd, r.pendOff, r.pendNow = 0, nslots, 0, 0
		before := r.Stats()
		buffersBefore := r.Buffers()

		bs := int(batchSize)%len(r.hdrs) + 1
		batch := make([]datapath.Datagram, bs)
		type piece struct{ slot, off, n int }
		var got []piece
		for calls := 0; r.pend < r.pendEnd; calls++ {
			if calls > 2*cfg.MaxPayload*nslots+nslots+1 {
				t.Fatalf("no progress after %d reads", calls)
			}
			n, err := r.read(batch)
			if err != nil || n < 0 || n > bs {
				t.Fatalf("read: %d, %v (batch of %d)", n, err, bs)
			}
			for _, d := range batch[:n] {
				if d.Src != src || d.Dst != local || d.Queue != 0 {
					t.Fatalf("datagram %v -> %v queue %d", d.Src, d.Dst, d.Queue)
				}
				if cap(d.Payload) != len(d.Payload) {
					t.Fatalf("payload of %d bytes with capacity %d: a consumer could append into the next", len(d.Payload), cap(d.Payload))
				}
				if len(d.Payload) == 0 {
					got = append(got, piece{-1, 0, 0})
					continue
				}
				at := int(uintptr(unsafe.Pointer(unsafe.SliceData(d.Payload))) - uintptr(unsafe.Pointer(&r.bufs[0])))
				if at < 0 || at+len(d.Payload) > len(r.bufs) {
					t.Fatalf("payload outside the buffers: offset %d, %d bytes", at, len(d.Payload))
				}
				got = append(got, piece{at / r.stride, at % r.stride, len(d.Payload)})
			}
		}

		var want []piece
		var bytes, malformed, buffers uint64
		for i, s := range slots {
			switch {
			case s.trunc:
				malformed++
				continue
			case s.ln == 0:
				want = append(want, piece{-1, 0, 0})
			default:
				for off := 0; off < s.ln; off += s.seg {
					want = append(want, piece{i, off, min(s.seg, s.ln-off)})
				}
			}
			bytes += uint64(s.ln)
			buffers++
		}
		if len(got) != len(want) {
			t.Fatalf("%d datagrams, want %d (slots %+v)", len(got), len(want), slots)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("datagram %d: slot %d bytes %d..%d, want slot %d bytes %d..%d (slots %+v)",
					i, got[i].slot, got[i].off, got[i].off+got[i].n, want[i].slot, want[i].off, want[i].off+want[i].n, slots)
			}
		}
		after := r.Stats()
		if p, b, m, nb := after.Packets-before.Packets, after.Bytes-before.Bytes, after.Malformed-before.Malformed, r.Buffers()-buffersBefore; p != uint64(len(want)) || b != bytes || m != malformed || nb != buffers {
			t.Fatalf("counted %d datagrams, %d bytes, %d malformed, %d buffers; want %d, %d, %d, %d", p, b, m, nb, len(want), bytes, malformed, buffers)
		}
		for i := range nslots {
			if h := r.hdrs[i].Hdr; h.Namelen != nameSize || h.Controllen != ctrlSize {
				t.Fatalf("slot %d not reset: %+v", i, h)
			}
		}
	})
}
