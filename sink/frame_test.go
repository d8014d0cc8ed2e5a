package sink

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/xdpingest/xdpingest/datapath"
)

// naiveSum is the textbook one's-complement sum of 16-bit words, to check
// the fast one against.
func naiveSum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return s
}

func TestSumMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 300; n++ {
		for _, fill := range []byte{0x00, 0xff, 0} {
			b := make([]byte, n)
			for i := range b {
				if fill == 0 {
					b[i] = byte(r.Uint32())
				} else {
					b[i] = fill
				}
			}
			got, want := uint32(fold(sum(0, b))), naiveSum(b)
			// 0x0000 and 0xffff are both zero in one's complement.
			if got != want && !(got%0xffff == 0 && want%0xffff == 0) {
				t.Fatalf("len %d fill %#x: sum %#04x, naive %#04x", n, fill, got, want)
			}
		}
	}
	// A running accumulator near overflow must not lose carries.
	if got := fold(add(^uint64(0), ^uint64(0))); got != 0xffff {
		t.Fatalf("add at overflow: %#x", got)
	}
}

// parsedFrame is what the test's own header walk finds in a frame.
type parsedFrame struct {
	vlans        []uint16
	tpids        []uint16
	src, dst     netip.AddrPort
	payload      []byte
	ipv4Csum     bool // header checksum verifies
	udpCsum      uint16
	udpCsumOK    bool // zero over IPv4, or verifies
	ipLen        int  // IPv4 total length or IPv6 payload length
	udpLen       int
	ttl, df, ver int
}

// parseTestFrame walks Ethernet, up to two VLAN tags, IPv4 or IPv6 and UDP.
func parseTestFrame(f []byte) (p parsedFrame, err error) {
	be := binary.BigEndian
	if len(f) < 14 {
		return p, fmt.Errorf("frame of %d bytes", len(f))
	}
	et := be.Uint16(f[12:])
	off := 14
	for et == 0x8100 || et == 0x88a8 {
		p.tpids = append(p.tpids, et)
		p.vlans = append(p.vlans, be.Uint16(f[off:])&0xfff)
		et = be.Uint16(f[off+2:])
		off += 4
	}
	ip := f[off:]
	var udp []byte
	var pseudo uint32
	switch et {
	case 0x0800:
		p.ver = 4
		ihl := int(ip[0]&0xf) * 4
		p.ipLen = int(be.Uint16(ip[2:]))
		p.df = int(be.Uint16(ip[6:]) >> 14 & 1)
		p.ttl = int(ip[8])
		if ip[9] != 17 {
			return p, fmt.Errorf("protocol %d", ip[9])
		}
		p.ipv4Csum = naiveSum(ip[:ihl]) == 0xffff
		s, d := netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		udp = ip[ihl:p.ipLen]
		p.src = netip.AddrPortFrom(s, be.Uint16(udp[0:]))
		p.dst = netip.AddrPortFrom(d, be.Uint16(udp[2:]))
	case 0x86dd:
		p.ver = 6
		p.ipLen = int(be.Uint16(ip[4:]))
		p.ttl = int(ip[7])
		if ip[6] != 17 {
			return p, fmt.Errorf("next header %d", ip[6])
		}
		s, d := netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		udp = ip[40 : 40+p.ipLen]
		p.src = netip.AddrPortFrom(s, be.Uint16(udp[0:]))
		p.dst = netip.AddrPortFrom(d, be.Uint16(udp[2:]))
		pseudo = naiveSum(ip[8:40]) + uint32(len(udp)) + 17
	default:
		return p, fmt.Errorf("ethertype %#04x", et)
	}
	p.udpLen = int(be.Uint16(udp[4:]))
	p.udpCsum = be.Uint16(udp[6:])
	p.payload = udp[8:p.udpLen]
	switch {
	case p.ver == 4 && p.udpCsum == 0:
		p.udpCsumOK = true
	case p.udpCsum != 0:
		s := pseudo + naiveSum(udp)
		for s>>16 != 0 {
			s = s&0xffff + s>>16
		}
		p.udpCsumOK = s == 0xffff
	}
	return p, nil
}

func testDatagram(v6 bool, nvlan int, payload []byte) datapath.Datagram {
	d := datapath.Datagram{
		Payload: payload,
		Src:     netip.MustParseAddrPort("198.18.0.1:40000"),
		Dst:     netip.MustParseAddrPort("198.18.0.2:9000"),
		RxTime:  1_700_000_000_123_456_789,
		NVLAN:   uint8(nvlan),
		VLAN:    [2]uint16{100, 4000},
	}
	if v6 {
		d.Src = netip.MustParseAddrPort("[2001:db8::1]:40000")
		d.Dst = netip.MustParseAddrPort("[2001:db8::2]:9000")
	}
	return d
}

func TestAppendFrame(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for nvlan := 0; nvlan <= 2; nvlan++ {
			for _, size := range []int{0, 1, 2, 3, 17, 64, 1472, 8000, 65000} {
				t.Run(fmt.Sprintf("v6=%v/vlan=%d/size=%d", v6, nvlan, size), func(t *testing.T) {
					payload := make([]byte, size)
					for i := range payload {
						payload[i] = byte(i*7 + size)
					}
					d := testDatagram(v6, nvlan, payload)
					f := AppendFrame([]byte{0xee}, &d)[1:]
					if len(f) != FrameLen(&d) {
						t.Fatalf("frame of %d bytes, FrameLen says %d", len(f), FrameLen(&d))
					}
					p, err := parseTestFrame(f)
					if err != nil {
						t.Fatal(err)
					}
					if p.src != d.Src || p.dst != d.Dst {
						t.Errorf("addresses %v -> %v, want %v -> %v", p.src, p.dst, d.Src, d.Dst)
					}
					if string(p.payload) != string(payload) {
						t.Errorf("payload differs")
					}
					if len(p.vlans) != nvlan {
						t.Fatalf("%d VLAN tags, want %d", len(p.vlans), nvlan)
					}
					for i := range nvlan {
						if p.vlans[i] != d.VLAN[i] {
							t.Errorf("VLAN %d: %d, want %d", i, p.vlans[i], d.VLAN[i])
						}
					}
					if nvlan == 2 && (p.tpids[0] != 0x88a8 || p.tpids[1] != 0x8100) {
						t.Errorf("QinQ TPIDs %#x", p.tpids)
					}
					if p.udpLen != 8+size {
						t.Errorf("UDP length %d, want %d", p.udpLen, 8+size)
					}
					if v6 {
						if p.ver != 6 || p.ipLen != 8+size || p.udpCsum == 0 || !p.udpCsumOK {
							t.Errorf("IPv6: %+v", p)
						}
					} else if p.ver != 4 || p.ipLen != 28+size || !p.ipv4Csum || p.udpCsum != 0 || p.df != 1 || p.ttl != 64 {
						t.Errorf("IPv4: ver %d len %d csum ok %v udp csum %#x df %d ttl %d", p.ver, p.ipLen, p.ipv4Csum, p.udpCsum, p.df, p.ttl)
					}
				})
			}
		}
	}
}

// A frame handed in is copied unchanged.
func TestAppendFrameKeepsFrame(t *testing.T) {
	d := testDatagram(false, 0, []byte("hello"))
	d.Frame = []byte("not even a frame")
	if got := AppendFrame(nil, &d); string(got) != "not even a frame" || FrameLen(&d) != len(d.Frame) {
		t.Fatalf("got %q", got)
	}
}

// IPv4-mapped addresses (outside the datapath contract) still give IPv4.
func TestAppendFrameMapped(t *testing.T) {
	d := testDatagram(false, 0, []byte("x"))
	d.Src = netip.AddrPortFrom(netip.AddrFrom16(d.Src.Addr().As16()), d.Src.Port())
	p, err := parseTestFrame(AppendFrame(nil, &d))
	if err != nil || p.ver != 4 || p.src.Addr() != netip.MustParseAddr("198.18.0.1") {
		t.Fatalf("%+v %v", p, err)
	}
}

func TestAppendFrameAllocs(t *testing.T) {
	buf := make([]byte, 0, 2048)
	for _, v6 := range []bool{false, true} {
		d := testDatagram(v6, 2, make([]byte, 1400))
		if a := testing.AllocsPerRun(100, func() { buf = AppendFrame(buf[:0], &d) }); a != 0 {
			t.Errorf("v6=%v: %v allocations per frame", v6, a)
		}
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	for _, c := range []struct {
		name string
		v6   bool
		size int
	}{{"v4/22", false, 22}, {"v6/2", true, 2}, {"v6/1400", true, 1400}} {
		b.Run(c.name, func(b *testing.B) {
			d := testDatagram(c.v6, 0, make([]byte, c.size))
			buf := make([]byte, 0, 2048)
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendFrame(buf[:0], &d)
			}
		})
	}
}

// The datapath's header walk reads synthesized frames back to the datagram
// they came from: what the server's end-to-end tests rely on when they read
// pcap files.
func TestAppendFrameParseFrame(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for nvlan := 0; nvlan <= 2; nvlan++ {
			for _, size := range []int{0, 1, 1472} {
				d := testDatagram(v6, nvlan, make([]byte, size))
				d.RxTime = 0
				for k := nvlan; k < 2; k++ {
					d.VLAN[k] = 0
				}
				f := AppendFrame(nil, &d)
				var got datapath.Datagram
				if err := datapath.ParseFrame(f, &got); err != nil {
					t.Fatalf("v6=%v vlan=%d size=%d: %v", v6, nvlan, size, err)
				}
				if got.Src != d.Src || got.Dst != d.Dst || got.NVLAN != d.NVLAN || got.VLAN != d.VLAN || len(got.Payload) != size {
					t.Errorf("v6=%v vlan=%d size=%d: parsed %+v, want %+v", v6, nvlan, size, got, d)
				}
			}
		}
	}
}
