package kernel

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/datapath"
)

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{Ports: []uint16{5000}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Workers != 1 || cfg.Batch != defaultBatch || cfg.MaxPayload != defaultMaxPayload || cfg.Coalesce != defaultCoalesce {
		t.Errorf("defaults: %+v", cfg)
	}
	if len(cfg.Addrs) != 2 || cfg.Addrs[0] != netip.IPv4Unspecified() || cfg.Addrs[1] != netip.IPv6Unspecified() {
		t.Errorf("default addresses %v, want 0.0.0.0 and ::", cfg.Addrs)
	}
	if cfg, _ := (Config{Ports: []uint16{1}, Coalesce: -1}).withDefaults(); cfg.Coalesce != 0 {
		t.Errorf("negative Coalesce: %v, want off (0)", cfg.Coalesce)
	}
	cfg, err = Config{Ports: []uint16{1}, Addrs: []netip.Addr{netip.MustParseAddr("::ffff:198.18.0.2")}}.withDefaults()
	if err != nil || cfg.Addrs[0] != netip.MustParseAddr("198.18.0.2") {
		t.Errorf("v4-mapped bind address: %v %v, want it unmapped", cfg.Addrs, err)
	}
}

func TestConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "no UDP port"},
		{Config{Ports: []uint16{0}}, "port 0"},
		{Config{Ports: []uint16{1, 1}}, "twice"},
		{Config{Ports: []uint16{1}, Batch: 2000}, "recvmmsg limit"},
		{Config{Ports: []uint16{1}, MaxPayload: 70000}, "UDP maximum"},
		{Config{Ports: []uint16{1}, Addrs: []netip.Addr{{}}}, "invalid bind address"},
		{Config{Ports: []uint16{1}, Addrs: []netip.Addr{netip.MustParseAddr("fe80::1%eth0")}}, "zoned"},
		{Config{Ports: []uint16{1}, Workers: 2, CPUs: []int{0}}, "one CPU per worker"},
		{Config{Ports: []uint16{1}, Workers: 2, CPUs: []int{1, 1}}, "two workers"},
		{Config{Ports: []uint16{1}, CPUs: []int{-1}}, "out of range"},
		{Config{Ports: []uint16{1}, RcvBuf: -1}, "negative"},
		{Config{Ports: []uint16{1}, Coalesce: 2 * time.Second}, "coalescing"},
		{Config{Ports: []uint16{1}, Device: "a-name-far-too-long"}, "not an interface name"},
		{Config{Ports: []uint16{1}, Device: "eth0/x"}, "not an interface name"},
		{Config{Ports: []uint16{1}, Filter: fdFilter(^uintptr(0))}, "no file descriptor"},
	} {
		_, err := tc.cfg.withDefaults()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one saying %q", tc.cfg, err, tc.want)
		}
	}
}

func TestParseSockaddr(t *testing.T) {
	b := make([]byte, nameSize)
	binary.NativeEndian.PutUint16(b, unix.AF_INET)
	binary.BigEndian.PutUint16(b[2:], 4242)
	copy(b[4:], []byte{198, 18, 0, 1})
	got := parseSockaddr(b, unix.SizeofSockaddrInet4)
	if want := netip.MustParseAddrPort("198.18.0.1:4242"); got != want || !got.Addr().Is4() {
		t.Errorf("IPv4: got %v, want %v", got, want)
	}
	clear(b)
	binary.NativeEndian.PutUint16(b, unix.AF_INET6)
	binary.BigEndian.PutUint16(b[2:], 65535)
	a := netip.MustParseAddr("2001:db8::1").As16()
	copy(b[8:], a[:])
	got = parseSockaddr(b, unix.SizeofSockaddrInet6)
	if want := netip.MustParseAddrPort("[2001:db8::1]:65535"); got != want {
		t.Errorf("IPv6: got %v, want %v", got, want)
	}
	if got := parseSockaddr(b, 4); got.IsValid() {
		t.Errorf("short sockaddr parsed as %v", got)
	}
}

// putCmsg appends a control message as the kernel lays it out.
func putCmsg(b []byte, level, typ int32, data []byte) []byte {
	h := make([]byte, unix.SizeofCmsghdr)
	c := (*unix.Cmsghdr)(unsafe.Pointer(&h[0]))
	c.Level, c.Type = level, typ
	c.SetLen(unix.CmsgLen(len(data)))
	b = append(b, h...)
	b = append(b, data...)
	for len(b)%cmsgAlign(1) != 0 {
		b = append(b, 0)
	}
	return b
}

func TestParseCmsgs(t *testing.T) {
	var ts [16]byte
	binary.NativeEndian.PutUint64(ts[:], 1_700_000_000)
	binary.NativeEndian.PutUint64(ts[8:], 123)
	var ovfl [4]byte
	binary.NativeEndian.PutUint32(ovfl[:], 77)
	pi4 := make([]byte, 12)
	copy(pi4[4:], []byte{198, 18, 0, 9}) // ipi_spec_dst: not the header's address
	copy(pi4[8:], []byte{198, 18, 0, 2})
	b := putCmsg(nil, unix.IPPROTO_IP, unix.IP_PKTINFO, pi4)
	b = putCmsg(b, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS_NEW, ts[:])
	b = putCmsg(b, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, ovfl[:])
	buf := make([]byte, ctrlSize) // 8-aligned, like the Receiver's
	b = append(buf[:0], b...)

	d := datapath.Datagram{Dst: netip.MustParseAddrPort("0.0.0.0:5000")}
	var m cmsgMeta
	parseCmsgs(b, &d, &m)
	if want := netip.MustParseAddrPort("198.18.0.2:5000"); d.Dst != want {
		t.Errorf("Dst %v, want %v", d.Dst, want)
	}
	if d.RxTime != 1_700_000_000*1e9+123 {
		t.Errorf("RxTime %d", d.RxTime)
	}
	if !m.hasDrops || m.drops != 77 {
		t.Errorf("drops %d %v, want 77", m.drops, m.hasDrops)
	}
	// ipi_ifindex 0: the kernel computed no ipi_spec_dst.
	if m.shared {
		t.Error("shared without an interface index")
	}
	binary.NativeEndian.PutUint32(pi4, 2)
	for _, tc := range []struct {
		spec   byte
		shared bool
	}{{2, false}, {9, true}} {
		pi4[7] = tc.spec
		b := append(buf[:0], putCmsg(nil, unix.IPPROTO_IP, unix.IP_PKTINFO, pi4)...)
		m = cmsgMeta{}
		parseCmsgs(b, &d, &m)
		if m.shared != tc.shared {
			t.Errorf("ipi_spec_dst 198.18.0.%d, ipi_addr 198.18.0.2: shared %v, want %v", tc.spec, m.shared, tc.shared)
		}
	}

	pi6 := make([]byte, 20)
	a := netip.MustParseAddr("2001:db8::2").As16()
	copy(pi6, a[:])
	b = putCmsg(buf[:0], unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, pi6)
	d = datapath.Datagram{Dst: netip.MustParseAddrPort("[::]:6000")}
	m = cmsgMeta{}
	parseCmsgs(b, &d, &m)
	if want := netip.MustParseAddrPort("[2001:db8::2]:6000"); d.Dst != want || m.hasDrops || m.shared {
		t.Errorf("IPv6: Dst %v (want %v), drops reported %v, shared %v", d.Dst, want, m.hasDrops, m.shared)
	}
	pi6[0], pi6[1] = 0xff, 0x02
	b = putCmsg(buf[:0], unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, pi6)
	parseCmsgs(b, &d, &m)
	if !m.shared {
		t.Errorf("IPv6 multicast %v: not shared", d.Dst)
	}
	// A truncated or corrupt message stops the walk without a panic.
	parseCmsgs(b[:len(b)-8], &d, &m)
	parseCmsgs(b[:5], &d, &m)
}

func TestNoteDrops(t *testing.T) {
	s := newSock(-1, netip.AddrPort{}, 0)
	if got := s.noteDrops(5); got != 5 {
		t.Errorf("first reading: %d", got)
	}
	if got := s.noteDrops(3); got != 0 {
		t.Errorf("an older reading counted %d", got)
	}
	s.drops = 1<<32 - 2
	if got := s.noteDrops(3); got != 5 {
		t.Errorf("across the 32-bit wrap: %d, want 5", got)
	}
	if got := s.st.drops.Load(); got != 10 {
		t.Errorf("the socket's stats count %d drops, want 10", got)
	}
}

// fakeRefusals is a RefusalCounter with counts set by the test.
type fakeRefusals struct {
	mu      sync.Mutex
	refused map[uint64]uint64
	err     error
	lookups int
	forgot  []uint64
}

func (f *fakeRefusals) RefusedBuffers(cookie uint64) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	return f.refused[cookie], f.err
}

func (f *fakeRefusals) ForgetSocket(cookie uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgot = append(f.forgot, cookie)
	return nil
}

// Overflows are drops minus the filter's refusals, read after the drops,
// never going down, read only when the drops moved; a closed socket keeps
// its count and is forgotten by the filter.
func TestSocketOverflowsSubtractRefusals(t *testing.T) {
	f := &fakeRefusals{refused: map[uint64]uint64{}}
	r := &Receiver{refusals: f}
	a, b := newSock(-1, netip.AddrPort{}, 7), newSock(-1, netip.AddrPort{}, 8)
	plain := newSock(-1, netip.AddrPort{}, 0) // no cookie: drops are overflows
	r.tracked = []*sockStat{a.st, b.st, plain.st}
	step := func(name string, want uint64) {
		t.Helper()
		if got := r.Stats().SocketOverflows; got != want {
			t.Errorf("%s: %d overflows, want %d", name, got, want)
		}
	}
	step("nothing dropped", 0)
	if f.lookups != 0 {
		t.Errorf("%d lookups with no drops", f.lookups)
	}
	// 10 drops on a: 8 refusals, 2 overflows.
	a.noteDrops(10)
	f.refused[7] = 8
	step("a: 10 drops, 8 refused", 2)
	// Refusals counted whose drops the receiver has not seen yet: the
	// difference would shrink, the count stays.
	f.refused[7] = 10
	a.noteDrops(11)
	step("a: 11 drops seen, 10 refused", 2)
	lookups := f.lookups
	step("a: no new drops", 2)
	if f.lookups != lookups {
		t.Errorf("refusals read again though no drop moved")
	}
	a.noteDrops(15)
	step("a: 15 drops, 10 refused", 5)
	// More refused than dropped (seen): nothing is subtracted below zero.
	b.noteDrops(3)
	f.refused[8] = 6
	step("b: 3 drops, 6 refused", 5)
	plain.noteDrops(4)
	step("plain: 4 drops", 9)
	// A failed read leaves the count and is retried.
	f.err = errors.New("map gone")
	a.noteDrops(20)
	step("a: read fails", 9)
	f.err = nil
	step("a: 20 drops, 10 refused", 14)
	if err := r.untrack([]*sockStat{a.st}); err != nil {
		t.Fatal(err)
	}
	step("a closed", 14)
	if len(r.tracked) != 2 || !slices.Equal(f.forgot, []uint64{7}) {
		t.Errorf("tracked %d sockets, forgot %v: want 2 and [7]", len(r.tracked), f.forgot)
	}
}

func TestSteeringProgram(t *testing.T) {
	// Interpret the program for each CPU.
	run := func(prog []unix.SockFilter, cpu uint32) uint32 {
		var a uint32
		for pc := 0; pc < len(prog); pc++ {
			in := prog[pc]
			switch in.Code {
			case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
				if in.K != ldCPU {
					t.Fatalf("load of %#x, want the CPU", in.K)
				}
				a = cpu
			case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
				if a == in.K {
					pc += int(in.Jt)
				} else {
					pc += int(in.Jf)
				}
			case unix.BPF_RET | unix.BPF_K:
				return in.K
			default:
				t.Fatalf("unexpected opcode %#x", in.Code)
			}
		}
		t.Fatal("program fell off its end")
		return 0
	}
	prog := steeringProgram([]int{3, 1, 7})
	for cpu, want := range map[uint32]uint32{3: 0, 1: 1, 7: 2, 0: 3, 2: 3, 100: 3} {
		if got := run(prog, cpu); got != want {
			t.Errorf("CPU %d: socket %d, want %d", cpu, got, want)
		}
	}
}

// A buffer the kernel filled with UDP GRO (a UDP_GRO control message with
// the segment size) is split into its datagrams; when the batch fills in
// the middle, the rest comes with the next read, before anything else.
func TestGROSplit(t *testing.T) {
	cfg, err := Config{Ports: []uint16{5000}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	r, err := newReceiver(0, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(r.efd)
	dst := netip.MustParseAddrPort("198.18.0.2:5000")
	r.socks = []sock{newSock(-1, dst, 0)}
	src := netip.MustParseAddrPort("198.18.0.1:4000")
	sa := make([]byte, nameSize)
	binary.NativeEndian.PutUint16(sa, unix.AF_INET)
	binary.BigEndian.PutUint16(sa[2:], 4000)
	copy(sa[4:], []byte{198, 18, 0, 1})
	// Slot 0: five 200-byte datagrams and a 120-byte one, merged; slot 1:
	// one 50-byte datagram.
	fill := func(slot int, sizes []int, seg int, first byte) {
		off, v := slot*r.stride, first
		for _, n := range sizes {
			for j := 0; j < n; j++ {
				r.bufs[off+j] = v
			}
			off += n
			v++
		}
		h := &r.hdrs[slot]
		total := 0
		for _, n := range sizes {
			total += n
		}
		h.Len = uint32(total)
		copy(r.names[slot*nameSize:], sa)
		h.Hdr.Namelen = unix.SizeofSockaddrInet4
		var ctrl []byte
		if seg > 0 {
			var b [4]byte
			binary.NativeEndian.PutUint32(b[:], uint32(seg))
			ctrl = putCmsg(nil, unix.SOL_UDP, unix.UDP_GRO, b[:])
		}
		copy(r.ctrl[slot*ctrlSize:], ctrl)
		h.Hdr.SetControllen(len(ctrl))
		r.slotSock[slot] = 0
	}
	fill(0, []int{200, 200, 200, 200, 200, 120}, 200, 10)
	fill(1, []int{50}, 0, 20)
	r.pend, r.pendEnd, r.pendOff = 0, 2, 0

	var got []datapath.Datagram
	batch := make([]datapath.Datagram, 4)
	for _, want := range []int{4, 3} {
		n, err := r.read(batch)
		if err != nil || n != want {
			t.Fatalf("read: %d, %v; want %d", n, err, want)
		}
		for _, d := range batch[:n] {
			d.Payload = append([]byte(nil), d.Payload...)
			got = append(got, d)
		}
	}
	if r.pend != r.pendEnd {
		t.Fatalf("still pending: %d..%d", r.pend, r.pendEnd)
	}
	wantSizes := []int{200, 200, 200, 200, 200, 120, 50}
	wantFirst := []byte{10, 11, 12, 13, 14, 15, 20}
	for i, d := range got {
		if len(d.Payload) != wantSizes[i] || d.Payload[0] != wantFirst[i] || d.Payload[len(d.Payload)-1] != wantFirst[i] {
			t.Errorf("datagram %d: %d bytes starting %d, want %d bytes of %d", i, len(d.Payload), d.Payload[0], wantSizes[i], wantFirst[i])
		}
		if d.Src != src || d.Dst != dst {
			t.Errorf("datagram %d: %v -> %v", i, d.Src, d.Dst)
		}
	}
	if st := r.Stats(); st.Packets != 7 || st.Bytes != 1170 || r.Buffers() != 2 {
		t.Errorf("stats %+v, %d buffers; want 7 datagrams, 1170 bytes, 2 buffers", st, r.Buffers())
	}
	// The slots are reset for the next recvmmsg.
	for slot := 0; slot < 2; slot++ {
		if h := r.hdrs[slot].Hdr; h.Namelen != nameSize || h.Controllen != ctrlSize {
			t.Errorf("slot %d not reset: %+v", slot, h)
		}
	}
}
