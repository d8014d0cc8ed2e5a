package hostile

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/xdpingest/xdpingest/internal/testbed"
)

func TestPolicyRefuses(t *testing.T) {
	p := DefaultPolicy()
	for a, want := range map[string]string{
		"198.18.0.1": "", "198.18.1.10": "", "198.18.10.1": "",
		"198.18.0.200": RefusedDeny, "198.18.1.255": RefusedDeny,
		"198.19.0.10": RefusedNotAllowed,
		"2001:db8::1": "", "2001:db8:0:a::1": "",
		"2001:db8::200": RefusedDeny, "2001:db8:0:1::2ff": RefusedDeny,
		"2001:db8:1::10":      RefusedNotAllowed,
		"::ffff:198.18.0.200": RefusedDeny,
	} {
		if got := p.Refuses(netip.MustParseAddr(a)); got != want {
			t.Errorf("Refuses(%s) = %q, want %q", a, got, want)
		}
	}
	// An IPv4-only allow list leaves IPv6 alone.
	v4only := Policy{Allow: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}}
	if v4only.Refuses(netip.MustParseAddr("2001:db8:1::1")) != "" || v4only.Refuses(netip.MustParseAddr("198.18.1.1")) != RefusedNotAllowed {
		t.Error("an allow list is in force only for its own family")
	}
	if got := strings.Join(v4only.Args(), " "); got != "--allow 198.18.0.0/24" {
		t.Errorf("Args() = %q", got)
	}
	if (Policy{}).Refuses(netip.MustParseAddr("198.19.0.1")) != "" {
		t.Error("the zero policy refuses")
	}
}

// fakeEnv is an Env for building mixes without a bed: building needs the
// addresses and MACs, not the namespaces.
func fakeEnv(mtu int) *Env {
	mac := func(b byte) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 0, b} }
	b := &testbed.Bed{MTU: mtu,
		Gen: &testbed.Side{Link: "g", MAC: mac(1), IPv4: testbed.GenIPv4, IPv6: testbed.GenIPv6},
		Rx:  &testbed.Side{Link: "r", MAC: mac(2), IPv4: testbed.RxIPv4, IPv6: testbed.RxIPv6}}
	v4, v6 := testbed.PeerPrefixes(0)
	p := &testbed.Peer{
		Side:  &testbed.Side{Link: "p", MAC: mac(3), IPv4: v4.Addr().Next(), IPv6: v6.Addr().Next()},
		RxEnd: &testbed.Side{Link: "q", MAC: mac(4), IPv4: v4.Addr().Next().Next(), IPv6: v6.Addr().Next().Next()}}
	return &Env{Bed: b, Peer: p, Sources: slices.Clone(sourcePool)}
}

// The mix is well formed: unique case names, datagrams a receiver can tell
// apart, every size of the sweep in both families, both refusal classes in
// both families, and cases where the two paths differ.
func TestMixShape(t *testing.T) {
	e := fakeEnv(9000)
	m, err := e.Mix(Config{Ports: []uint16{9000, 9001}, Policy: DefaultPolicy(), Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	keys := map[matchKey]*Datagram{}
	sizes := map[[2]int]bool{}
	refused := map[string]int{}
	var xdpOnly, kernelOnly int
	for _, c := range m.Cases {
		if names[c.Name] {
			t.Errorf("two cases named %s", c.Name)
		}
		names[c.Name] = true
		if len(c.Datagrams) == 0 {
			t.Errorf("case %s has no datagrams", c.Name)
		}
		if (c.Via == ViaRaw) != (len(c.Frames) > 0) {
			t.Errorf("case %s sent %v has %d frames", c.Name, c.Via, len(c.Frames))
		}
		for _, f := range c.Frames {
			if len(f) > 14+4+9000 {
				t.Errorf("case %s: a %d-byte frame for MTU 9000", c.Name, len(f))
			}
		}
		for _, d := range c.Datagrams {
			k := keyOf(d.Src, d.Dst.Port(), d.Payload)
			if o := keys[k]; o != nil {
				t.Errorf("%v and %v can't be told apart", d, o)
			}
			keys[k] = d
			if c.Kind == KindSizes {
				f := 0
				if d.Src.Addr().Is6() {
					f = 1
				}
				sizes[[2]int{f, len(d.Payload)}] = true
			}
			if d.Kernel {
				refused[famNames[btoi(d.Src.Addr().Is6())]+"/"+d.Refused]++
			}
			if d.XDP && !d.Kernel {
				xdpOnly++
			}
			if d.Delivered(Kernel) && !d.Delivered(AFXDP) {
				kernelOnly++
			}
			if c.Kind != KindOtherPort && !slices.Contains([]uint16{9000, 9001}, d.Dst.Port()) {
				t.Errorf("%v is not for an ingest port", d)
			}
		}
	}
	for _, s := range DefaultSizes {
		for f := range 2 {
			if s <= maxPayload(f) && !sizes[[2]int{f, s}] {
				t.Errorf("size %d over %s is missing", s, famNames[f])
			}
		}
	}
	for _, k := range []string{"v4/", "v4/deny", "v4/not_allowed", "v4/local", "v6/", "v6/deny", "v6/not_allowed", "v6/local"} {
		if refused[k] == 0 {
			t.Errorf("no datagram the kernel hands over in class %q", k)
		}
	}
	if xdpOnly == 0 || kernelOnly != 0 {
		t.Errorf("%d datagrams only the program takes (want some), %d only the kernel path delivers (want none)", xdpOnly, kernelOnly)
	}
	// Another mix from the same Env shares no identification or case.
	m2, err := e.Mix(Config{Ports: []uint16{9000}, Policy: DefaultPolicy(), Seed: 7, Kinds: []Kind{KindFragments}})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[int]bool{}
	for _, c := range m.Cases {
		ids[c.ID] = true
	}
	for _, c := range m2.Cases {
		if ids[c.ID] {
			t.Fatalf("a second mix reuses case ID %d", c.ID)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestMixRefusesBadConfig(t *testing.T) {
	e := fakeEnv(1500)
	for name, cfg := range map[string]Config{
		"no ports":      {},
		"port 0":        {Ports: []uint16{0}},
		"unknown kind":  {Ports: []uint16{1}, Kinds: []Kind{"nope"}},
		"no usable MTU": {Ports: []uint16{1}, FragMTUs: []int{9000}},
		"all refused":   {Ports: []uint16{1}, Policy: Policy{Allow: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}}},
	} {
		if _, err := e.Mix(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Check finds what is missing, duplicated, unexpected and unknown.
func TestCheck(t *testing.T) {
	m, err := fakeEnv(1500).Mix(Config{Ports: []uint16{9000}, Policy: DefaultPolicy(), Kinds: []Kind{KindChecksum}})
	if err != nil {
		t.Fatal(err)
	}
	want := DeliveredOn(Kernel)
	var got []Received
	for _, d := range m.Select(want) {
		got = append(got, Received{Src: d.Src, DstPort: d.Dst.Port(), Payload: d.Payload})
	}
	if err := m.Check(got, want); err != nil {
		t.Fatalf("exactly the expected datagrams: %v", err)
	}
	if m.Check(got[1:], want) == nil {
		t.Error("a missing datagram passed")
	}
	if m.Check(append(got, got[0]), want) == nil {
		t.Error("a duplicate passed")
	}
	if m.Check(append(got[:len(got):len(got)], Received{Src: got[0].Src, DstPort: 9000, Payload: []byte("x")}), want) == nil {
		t.Error("an unknown datagram passed")
	}
	if err := m.Check(got, DeliveredOn(AFXDP)); err == nil {
		t.Error("the kernel's datagrams passed as the AF_XDP path's (bad checksums are delivered there)")
	}
	changed := append([]byte(nil), got[0].Payload...)
	changed[len(changed)-1] ^= 1
	if m.Check(append(got[1:len(got):len(got)], Received{Src: got[0].Src, DstPort: got[0].DstPort, Payload: changed}), want) == nil {
		t.Error("a changed byte passed")
	}
}
