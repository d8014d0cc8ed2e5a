package xdp

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xdpingest/xdpingest/internal/frames"
)

// TestProgramMatchesAB runs the same frames through this build and the one
// given with -xdp.ab (as for BenchmarkProgramAB) and fails on any frame
// whose action, outcome or byte count differs: the check that a change
// made for speed changed nothing else. The frames are every kind the
// program tells apart, whole, cut anywhere, and with random bytes in their
// headers, in several configurations, through both program variants, with
// and without a socket.
//
//	git show REV:xdp/ingest_bpfel.o > /tmp/base.o
//	go test ./xdp -run MatchesAB -xdp.ab=/tmp/base.o
func TestProgramMatchesAB(t *testing.T) {
	if *abObject == "" {
		t.Skip("needs -xdp.ab=FILE, another build of ingest_bpfel.o")
	}
	cfgs := []Config{
		{Ports: []uint16{9000, 53}},
		{Ports: []uint16{9000}, MaxRedirect: 1792},
		{Ports: []uint16{9000}, Action: Pass},
		{Ports: []uint16{9000}, Action: Drop},
		{Ports: []uint16{9000, 53}, Allow: pfxs("198.18.0.0/15", "2001:db8::/32"), Deny: pfxs("198.18.0.128/25", "2001:db8::/127")},
		{Ports: []uint16{9000}, Allow: pfxs("198.18.0.0/24")},
		{Ports: []uint16{9000}, Deny: pfxs("2001:db8::/64"), MaxRedirect: 100},
	}
	seeds := [][]byte{
		udp(src4, dst4), udp(src6, dst6), udp(src4, dst4, ad, q), udp(src6, dst6, q), udp(src4, dst4, ad, q, q),
		udp(src4, withPort(dst4, 53)), udp(src6, withPort(dst6, 53)),
		frames.Build(frames.Spec{Src: src4, Dst: dst4, MoreFrags: true, Payload: make([]byte, 16)}),
		frames.Build(frames.Spec{Src: src6, Dst: dst6, HopByHop: true, Payload: []byte("x")}),
		frames.Build(frames.Spec{Src: src4, Dst: dst4, IPOptions: []byte{0x94, 4, 0, 0, 1, 1, 1, 1}, Payload: []byte("x")}),
		frames.Build(frames.Spec{Src: src4, Dst: dst4, Proto: frames.ProtoTCP}),
		frames.Build(frames.Spec{Src: src6, Dst: dst6, Proto: frames.ProtoICMPv6}),
		frames.Build(frames.Spec{Src: netip.MustParseAddrPort("198.18.0.200:1"), Dst: dst4, Payload: []byte("y")}),
		frames.ARP(nil, src4.Addr(), dst4.Addr()),
		sized(src4, dst4, 1800), sized(src6, dst6, 3000),
	}
	// The header bytes whose values the program decides on.
	fields := []int{12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 14 + 6, 14 + 9, 14 + 20 + 4, 14 + 20 + 5, 14 + 40 + 4, 14 + 40 + 5}
	rng := rand.New(rand.NewPCG(14, 6))
	n := 0
	for ci, cfg := range cfgs {
		for _, v := range variants {
			for _, xsk := range []bool{true, false} {
				p := loadVariant(t, cfg, v.single)
				if xsk {
					xskT(t, p)
				}
				o, err := loadAB(t, *abObject, cfg)
				if err != nil {
					t.Fatalf("load %s: %v", *abObject, err)
				}
				if !xsk {
					if err := o.coll.Maps["xsks"].Delete(uint32(0)); err != nil {
						t.Fatal(err)
					}
				}
				old := o.xdp
				if v.single {
					old = o.coll.Programs["xdpingest_sb"]
				}
				for range 2000 {
					f := append([]byte(nil), seeds[rng.IntN(len(seeds))]...)
					switch rng.IntN(4) {
					case 1:
						for k := rng.IntN(4) + 1; k > 0; k-- {
							f[rng.IntN(min(len(f), 80))] = byte(rng.IntN(256))
						}
					case 2:
						f = f[:14+rng.IntN(len(f)-13)]
					case 3:
						for k := rng.IntN(3) + 1; k > 0; k-- {
							if off := fields[rng.IntN(len(fields))]; off < len(f) {
								f[off] = byte(rng.IntN(256))
							}
						}
					}
					nb, ob := countersT(t, p), abCounters(t, o.coll)
					got := run(t, p, f)
					want, err := old.Run(&ebpf.RunOptions{Data: f})
					if err != nil {
						t.Fatal(err)
					}
					nd, od := countersT(t, p).Sub(nb), abCounters(t, o.coll).Sub(ob)
					if got != want || nd != od {
						t.Fatalf("config %d, %s, socket %v, frame %x: action %d, counters %v; the other build: action %d, counters %v",
							ci, v.name, xsk, f, got, nonzero(nd), want, nonzero(od))
					}
					n++
				}
			}
		}
	}
	t.Logf("%d frames alike", n)
}

func countersT(t *testing.T, p *Program) Counters {
	t.Helper()
	c, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// abCounters sums a build's outcome counters and its port slots 0 to 3
// (loadAB's ports), as Program.Counters does.
func abCounters(t *testing.T, coll *ebpf.Collection) Counters {
	t.Helper()
	var out Counters
	var per []ingestCounter
	for o := Outcome(0); o < NumOutcomes; o++ {
		if err := coll.Maps["counters"].Lookup(uint32(o), &per); err != nil {
			t.Fatal(err)
		}
		for _, c := range per {
			out[o].Packets += c.Packets
			out[o].Bytes += c.Bytes
		}
	}
	var pc []ingestPortCounter
	for s := range uint32(4) {
		if err := coll.Maps["port_counters"].Lookup(s, &pc); err != nil {
			t.Fatal(err)
		}
		for _, c := range pc {
			for i, o := range MatchedOutcomes {
				out[o].Packets += c.O[i].Packets
				out[o].Bytes += c.O[i].Bytes
			}
		}
	}
	return out
}
