package xdp

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/internal/frames"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// portsMoved is what moved per port between two readings of PortCounters:
// only ports whose counters changed, Other under key -1.
func portsMoved(before, after PortCounters) map[int]Counters {
	out := map[int]Counters{}
	for port, a := range after.Ports {
		if d := a.Sub(before.Ports[port]); d != (Counters{}) {
			out[int(port)] = d
		}
	}
	if d := after.Other.Sub(before.Other); d != (Counters{}) {
		out[-1] = d
	}
	return out
}

func portCountersT(tb testing.TB, p *Program) PortCounters {
	tb.Helper()
	pc, err := p.PortCounters()
	if err != nil {
		tb.Fatal(err)
	}
	return pc
}

// A matched frame counts in its own port's counters, in its outcome, and
// nowhere else; the totals (Counters) see it too. Every matched outcome,
// in both program variants, with three ports so that a frame must find its
// slot among others.
func TestPortCountersByOutcome(t *testing.T) {
	ports := []uint16{9000, 53, 4739}
	at := func(ap netip.AddrPort, port uint16) netip.AddrPort { return withPort(ap, port) }
	cases := []struct {
		name    string
		cfg     Config // Ports set below
		noXSK   bool
		frame   []byte
		port    int // -1: none of ours
		outcome Outcome
	}{
		{name: "ipv4 redirect", frame: udp(src4, at(dst4, 53)), port: 53, outcome: OutcomeRedirect},
		{name: "ipv6 redirect", frame: udp(src6, at(dst6, 4739)), port: 4739, outcome: OutcomeRedirect},
		{name: "ipv4 no socket", noXSK: true, frame: udp(src4, at(dst4, 4739)), port: 4739, outcome: OutcomeNoSocket},
		{name: "ipv6 pass mode", cfg: Config{Action: Pass}, frame: udp(src6, at(dst6, 9000)), port: 9000, outcome: OutcomePassMatch},
		{name: "ipv4 drop mode", cfg: Config{Action: Drop}, frame: udp(src4, at(dst4, 53)), port: 53, outcome: OutcomeDropMode},
		{name: "ipv4 denied", cfg: Config{Deny: pfxs("198.18.0.0/24")}, frame: udp(src4, at(dst4, 4739)), port: 4739, outcome: OutcomeDeny},
		{name: "ipv6 denied", cfg: Config{Deny: pfxs("2001:db8::/32")}, frame: udp(src6, at(dst6, 53)), port: 53, outcome: OutcomeDeny},
		{name: "ipv4 not allowed", cfg: Config{Allow: pfxs("198.19.0.0/16")}, frame: udp(src4, at(dst4, 9000)), port: 9000, outcome: OutcomeNotAllowed},
		{name: "ipv6 not allowed", cfg: Config{Allow: pfxs("2001:db8:1::/48")}, frame: udp(src6, at(dst6, 4739)), port: 4739, outcome: OutcomeNotAllowed},
		{name: "ipv4 oversize", cfg: Config{MaxRedirect: 1792}, frame: sized(src4, at(dst4, 53), 1793), port: 53, outcome: OutcomeOversize},
		{name: "ipv6 oversize", cfg: Config{MaxRedirect: 1792}, frame: sized(src6, at(dst6, 9000), 3000), port: 9000, outcome: OutcomeOversize},
		{name: "other port", frame: udp(src4, at(dst4, other)), port: -1, outcome: OutcomeOtherPort},
		{name: "fragment to our port", frame: frames.Build(frames.Spec{Src: src4, Dst: at(dst4, 53), MoreFrags: true, Payload: make([]byte, 16)}), port: -1, outcome: OutcomeFragment},
		{name: "tcp to our port", frame: frames.Build(frames.Spec{Src: src6, Dst: at(dst6, 53), Proto: frames.ProtoTCP}), port: -1, outcome: OutcomeTCP},
	}
	for _, v := range variants {
		for _, tc := range cases {
			t.Run(v.name+"/"+tc.name, func(t *testing.T) {
				cfg := tc.cfg
				cfg.Ports = ports
				p := loadVariant(t, cfg, v.single)
				if !tc.noXSK {
					xskT(t, p)
				}
				before := portCountersT(t, p)
				if len(before.Ports) != len(ports) || len(before.OtherPorts) != 0 {
					t.Fatalf("PortCounters before any frame: %+v, want the %d ports, at 0", before, len(ports))
				}
				for port, c := range before.Ports {
					if c != (Counters{}) {
						t.Fatalf("port %d starts at %v", port, nonzero(c))
					}
				}
				total0, err := p.Counters()
				if err != nil {
					t.Fatal(err)
				}
				run(t, p, tc.frame)
				run(t, p, tc.frame)
				moved := portsMoved(before, portCountersT(t, p))
				want := map[int]Counters{}
				if tc.port >= 0 {
					var c Counters
					c[tc.outcome] = Count{Packets: 2, Bytes: 2 * uint64(len(tc.frame))}
					want[tc.port] = c
				}
				if !reflect.DeepEqual(moved, want) {
					t.Errorf("port counters moved %v, want %v", moved, want)
				}
				total, err := p.Counters()
				if err != nil {
					t.Fatal(err)
				}
				if d := total.Sub(total0); d[tc.outcome] != (Count{Packets: 2, Bytes: 2 * uint64(len(tc.frame))}) || d.Total().Packets != 2 {
					t.Errorf("Counters moved %v, want 2 %s", nonzero(d), tc.outcome)
				}
			})
		}
	}
}

// A port keeps its slot for the life of the program: removed and added
// again it comes back with its counts, and no other port ever gets them,
// even a port added while it was away, or after an update that failed.
func TestPortSlotsStable(t *testing.T) {
	p := loadT(t, Config{Ports: []uint16{9000, 9001}, Action: Drop})
	send := func(port uint16, n int) {
		for range n {
			if got := run(t, p, udp(src4, withPort(dst4, port))); got != xdpDrop {
				t.Fatalf("frame to port %d: action %d, want drop", port, got)
			}
		}
	}
	drops := func(pc PortCounters) map[uint16]uint64 {
		m := map[uint16]uint64{}
		for port, c := range pc.Ports {
			m[port] = c[OutcomeDropMode].Packets
		}
		return m
	}
	update := func(ports ...uint16) {
		t.Helper()
		if err := p.Update(Config{Ports: ports, Action: Drop}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step string, want map[uint16]uint64, total uint64) {
		t.Helper()
		if got := drops(portCountersT(t, p)); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: port counters %v, want %v", step, got, want)
		}
		c, err := p.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if c[OutcomeDropMode].Packets != total {
			t.Errorf("%s: Counters()[drop_mode] = %d, want %d (every slot, configured or not)", step, c[OutcomeDropMode].Packets, total)
		}
	}

	send(9000, 3)
	send(9001, 1)
	check("start", map[uint16]uint64{9000: 3, 9001: 1}, 4)

	update(9001, 9002)
	send(9002, 5)
	if got := run(t, p, udp(src4, dst4)); got != xdpPass {
		t.Fatalf("frame to the removed port 9000: action %d, want pass", got)
	}
	check("9000 removed, 9002 added", map[uint16]uint64{9001: 1, 9002: 5}, 9)

	update(9000, 9001, 9002)
	check("9000 back", map[uint16]uint64{9000: 3, 9001: 1, 9002: 5}, 9)
	send(9000, 2)
	check("9000 back, counting", map[uint16]uint64{9000: 5, 9001: 1, 9002: 5}, 11)

	// An update that fails keeps the slot it gave its new port: a
	// rolled-back write may have let a frame count there.
	p.fault = func() error { return errors.New("injected failure") }
	if err := p.Update(Config{Ports: []uint16{7000, 9000, 9001, 9002}, Action: Drop}); err == nil {
		t.Fatal("the update with a failing write applied")
	}
	p.fault = nil
	update(8000, 9000, 9001, 9002)
	update(7000, 8000, 9000, 9001, 9002)
	send(7000, 1)
	send(8000, 2)
	check("7000 and 8000 added", map[uint16]uint64{7000: 1, 8000: 2, 9000: 5, 9001: 1, 9002: 5}, 14)
	want := map[uint16]uint16{9000: 1, 9001: 2, 9002: 3, 7000: 4, 8000: 5}
	if !reflect.DeepEqual(p.slots, want) {
		t.Errorf("slots %v, want %v (in the order ports were first configured)", p.slots, want)
	}
}

// Ports beyond the slots count together in the overflow slot, and stay
// there: a slot freed by a removed port goes to no one.
func TestPortCountersOverflow(t *testing.T) {
	testLoad := func(t *testing.T, ports []uint16, slots int) *Program {
		testutil.RequireBPF(t)
		p, err := Load(Config{Ports: ports, Action: Drop}, LoadOptions{MaxQueues: 4, MaxPrefixes: 16, MaxPortSlots: slots})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	t.Run("three slots", func(t *testing.T) {
		p := testLoad(t, []uint16{9003, 9000, 9002, 9001}, 3)
		for _, port := range []uint16{9000, 9001, 9002, 9002, 9003, 9003, 9003} {
			run(t, p, udp(src4, withPort(dst4, port)))
		}
		pc := portCountersT(t, p)
		if got := slices.Sorted(maps.Keys(pc.Ports)); !slices.Equal(got, []uint16{9000, 9001}) {
			t.Errorf("ports with a slot of their own: %v, want [9000 9001]", got)
		}
		if !slices.Equal(pc.OtherPorts, []uint16{9002, 9003}) || pc.Other[OutcomeDropMode].Packets != 5 {
			t.Errorf("overflow: ports %v with %v, want [9002 9003] with 5 drop_mode", pc.OtherPorts, nonzero(pc.Other))
		}
		if pc.Ports[9000][OutcomeDropMode].Packets != 1 || pc.Ports[9001][OutcomeDropMode].Packets != 1 {
			t.Errorf("ports 9000 and 9001: %v and %v, want 1 drop_mode each", nonzero(pc.Ports[9000]), nonzero(pc.Ports[9001]))
		}
		// 9000 leaves; 9004 comes and finds no slot free: 9000's is its own.
		if err := p.Update(Config{Ports: []uint16{9001, 9003, 9004}, Action: Drop}); err != nil {
			t.Fatal(err)
		}
		run(t, p, udp(src4, withPort(dst4, 9004)))
		pc = portCountersT(t, p)
		if got := slices.Sorted(maps.Keys(pc.Ports)); !slices.Equal(got, []uint16{9001}) {
			t.Errorf("after the update, ports with a slot of their own: %v, want [9001]", got)
		}
		if !slices.Equal(pc.OtherPorts, []uint16{9003, 9004}) || pc.Other[OutcomeDropMode].Packets != 6 {
			t.Errorf("after the update, overflow: ports %v with %v, want [9003 9004] with 6 drop_mode (9002's 2 stay in it)", pc.OtherPorts, nonzero(pc.Other))
		}
		c, err := p.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if c[OutcomeDropMode].Packets != 8 {
			t.Errorf("Counters()[drop_mode] = %d, want 8", c[OutcomeDropMode].Packets)
		}
	})
	t.Run("one slot", func(t *testing.T) {
		p := testLoad(t, []uint16{53, 9000}, 1)
		run(t, p, udp(src6, withPort(dst6, 53)))
		pc := portCountersT(t, p)
		if len(pc.Ports) != 0 || !slices.Equal(pc.OtherPorts, []uint16{53, 9000}) || pc.Other[OutcomeDropMode].Packets != 1 {
			t.Errorf("PortCounters %+v, want every port in the overflow slot, which has 1 drop_mode", pc)
		}
	})
	t.Run("no overflow", func(t *testing.T) {
		p := testLoad(t, []uint16{53, 9000}, 3)
		if pc := portCountersT(t, p); len(pc.Ports) != 2 || pc.OtherPorts != nil {
			t.Errorf("PortCounters %+v, want both ports with a slot and none in the overflow", pc)
		}
	})
	t.Run("refused sizes", func(t *testing.T) {
		for _, n := range []int{-1, 65536} {
			if _, err := Load(Config{}, LoadOptions{MaxPortSlots: n}); err == nil || !strings.Contains(err.Error(), "MaxPortSlots") {
				t.Errorf("MaxPortSlots %d: err = %v, want a refusal naming MaxPortSlots", n, err)
			}
		}
	})
}

// The readers sum every CPU's counters: frames counted on each CPU, by
// runs pinned to it, all show in PortCounters and Counters.
func TestPortCountersSumCPUs(t *testing.T) {
	p := loadT(t, Config{Ports: []uint16{9000}, Action: Drop})
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	var cpus []int
	for cpu := range 1024 {
		if set.IsSet(cpu) {
			cpus = append(cpus, cpu)
		}
	}
	if len(cpus) < 2 {
		t.Skipf("needs two CPUs to run on, has %v", cpus)
	}
	frame := udp(src4, dst4)
	for i, cpu := range cpus[:2] {
		errc := make(chan error)
		go func() {
			runtime.LockOSThread() // the thread ends with the goroutine
			var one unix.CPUSet
			one.Set(cpu)
			if err := unix.SchedSetaffinity(0, &one); err != nil {
				errc <- fmt.Errorf("pin to CPU %d: %w", cpu, err)
				return
			}
			for range 10 * (i + 1) {
				if _, err := p.objs.Xdpingest.Run(&ebpf.RunOptions{Data: frame}); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	// The test means something only if two CPUs counted.
	var per []ingestPortCounter
	if err := p.objs.PortCounters.Lookup(uint32(p.slots[9000]), &per); err != nil {
		t.Fatal(err)
	}
	counted := map[int]uint64{}
	for cpu, c := range per {
		if n := c.O[slices.Index(MatchedOutcomes[:], OutcomeDropMode)].Packets; n != 0 {
			counted[cpu] = n
		}
	}
	if want := map[int]uint64{cpus[0]: 10, cpus[1]: 20}; !reflect.DeepEqual(counted, want) {
		t.Fatalf("per-CPU drop_mode counts of port 9000: %v, want %v", counted, want)
	}
	want := Count{Packets: 30, Bytes: 30 * uint64(len(frame))}
	if got := portCountersT(t, p).Ports[9000][OutcomeDropMode]; got != want {
		t.Errorf("PortCounters: port 9000 drop_mode %+v, want %+v", got, want)
	}
	c, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c[OutcomeDropMode] != want {
		t.Errorf("Counters: drop_mode %+v, want %+v", c[OutcomeDropMode], want)
	}
}
