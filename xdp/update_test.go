package xdp

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/xdpingest/xdpingest/internal/testutil"
)

// mapState is what the program's maps hold, read from the kernel.
type mapState struct {
	Ports    []uint16 // the port set; dumpMaps checks each port's slot
	Conf     ingestConfig
	Prefixes map[string][]netip.Prefix
}

func dumpMaps(t *testing.T, p *Program) mapState {
	t.Helper()
	var s mapState
	words := p.objs.ports.read()
	for port := range 65536 {
		v := words.get(uint16(port))
		if v == 0 {
			continue
		}
		s.Ports = append(s.Ports, uint16(port))
		// A port's slot never changes once given (TestPortSlotsStable).
		if slot, ok := p.slots[uint16(port)]; !ok || v != slot+1 {
			t.Fatalf("port %d is in the map with slot %d, but the program gave it slot %d (given: %v)", port, int(v)-1, slot, ok)
		}
	}
	if err := p.objs.Config.Lookup(uint32(0), &s.Conf); err != nil {
		t.Fatal(err)
	}
	s.Prefixes = map[string][]netip.Prefix{}
	var v uint8
	for _, name := range listNames {
		var got []netip.Prefix
		if strings.HasSuffix(name, "4") {
			var k ingestLpm4Key
			for it := p.listMap(name).Iterate(); it.Next(&k, &v); {
				got = append(got, netip.PrefixFrom(netip.AddrFrom4(k.Addr), int(k.Prefixlen)))
			}
		} else {
			var k ingestLpm6Key
			for it := p.listMap(name).Iterate(); it.Next(&k, &v); {
				got = append(got, netip.PrefixFrom(netip.AddrFrom16(k.Addr), int(k.Prefixlen)))
			}
		}
		s.Prefixes[name] = sortedPrefixes(got)
	}
	return s
}

func loadWith(t *testing.T, cfg Config, maxPrefixes int) *Program {
	t.Helper()
	testutil.RequireBPF(t)
	p, err := Load(cfg, LoadOptions{MaxQueues: 4, MaxPrefixes: maxPrefixes})
	if errors.Is(err, errors.ErrUnsupported) {
		testutil.Skip(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func pfxs(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

// Two configurations that differ in every part: ports, each of the four
// lists (entries added, kept and removed), flags and action.
var (
	oldCfg = Config{Ports: []uint16{9000, 9001}, Action: Redirect,
		Allow: pfxs("198.18.0.0/24", "198.18.1.0/24", "2001:db8::/48"),
		Deny:  pfxs("198.18.0.128/25", "2001:db8::1/128")}
	newCfg = Config{Ports: []uint16{9001, 9002, 40000}, Action: Pass, MaxRedirect: 1792,
		Allow: pfxs("198.18.1.0/24", "198.18.2.0/24", "198.19.0.0/16"),
		Deny:  pfxs("198.18.2.7/32", "2001:db8::/64", "2001:db8:1::/48")}
)

// A configuration larger than the maps is refused before any map is
// written.
func TestUpdateRefusesTooManyPrefixes(t *testing.T) {
	p := loadWith(t, oldCfg, 4)
	before := dumpMaps(t, p)

	tooMany := newCfg
	tooMany.Allow = pfxs("198.19.0.0/24", "198.19.1.0/24", "198.19.2.0/24", "198.19.3.0/24", "198.19.4.0/24")
	err := p.Update(tooMany)
	if err == nil || !strings.Contains(err.Error(), "MaxPrefixes") || !strings.Contains(err.Error(), "unchanged") {
		t.Fatalf("Update with 5 prefixes in maps of 4: err = %v, want a refusal naming MaxPrefixes and saying nothing changed", err)
	}
	if after := dumpMaps(t, p); !reflect.DeepEqual(after, before) {
		t.Fatalf("a refused update changed the maps:\nbefore %+v\nafter  %+v", before, after)
	}

	// Each list alone fits, but not the old and new entries together.
	switching := newCfg
	switching.Allow = pfxs("198.19.0.0/24", "198.19.1.0/24", "198.19.2.0/24", "198.19.3.0/24")
	err = p.Update(switching)
	if err == nil || !strings.Contains(err.Error(), "allow4") || !strings.Contains(err.Error(), "unchanged") {
		t.Fatalf("Update switching 2 for 4 allow4 prefixes in maps of 4: err = %v, want a refusal naming allow4", err)
	}
	if after := dumpMaps(t, p); !reflect.DeepEqual(after, before) {
		t.Fatalf("a refused update changed the maps:\nbefore %+v\nafter  %+v", before, after)
	}
	if got := p.Config(); !reflect.DeepEqual(got.Ports, []uint16{9000, 9001}) || got.Action != Redirect {
		t.Fatalf("Config() after refused updates: %+v", got)
	}
	// The program still works, and a fitting update applies.
	if err := p.Update(newCfg); err != nil {
		t.Fatal(err)
	}
	if want := dumpMaps(t, loadWith(t, newCfg, 4)); !reflect.DeepEqual(dumpMaps(t, p), want) {
		t.Fatal("maps after the update differ from a program loaded with the new configuration")
	}
}

// A write that fails midway leaves the maps exactly as they were, whichever
// write it is.
func TestUpdateRollsBack(t *testing.T) {
	probe := loadWith(t, oldCfg, 64)
	writes := 0
	probe.fault = func() error { writes++; return nil }
	if err := probe.Update(newCfg); err != nil {
		t.Fatal(err)
	}
	if writes < 10 {
		t.Fatalf("the update made only %d writes; the test needs one that touches every part", writes)
	}
	wantNew := dumpMaps(t, probe)

	for fail := 1; fail <= writes; fail++ {
		t.Run(fmt.Sprintf("write %d of %d fails", fail, writes), func(t *testing.T) {
			p := loadWith(t, oldCfg, 64)
			before := dumpMaps(t, p)
			n := 0
			p.fault = func() error {
				if n++; n == fail {
					return errors.New("injected failure")
				}
				return nil
			}
			err := p.Update(newCfg)
			if err == nil || !strings.Contains(err.Error(), "injected failure") || !strings.Contains(err.Error(), "unchanged") {
				t.Fatalf("err = %v, want the injected failure and \"unchanged\"", err)
			}
			if after := dumpMaps(t, p); !reflect.DeepEqual(after, before) {
				t.Fatalf("maps after the rollback:\n%+v\nwant, as before the update:\n%+v", after, before)
			}
			if !reflect.DeepEqual(p.Config(), appliedConfig(oldCfg)) {
				t.Fatalf("Config() = %+v after a failed update", p.Config())
			}
			// The mirrors are right: the same update applies now.
			p.fault = nil
			if err := p.Update(newCfg); err != nil {
				t.Fatal(err)
			}
			if got := dumpMaps(t, p); !reflect.DeepEqual(got, wantNew) {
				t.Fatalf("maps after retrying:\n%+v\nwant\n%+v", got, wantNew)
			}
		})
	}
}

// appliedConfig is what Config() reports after cfg was applied.
func appliedConfig(cfg Config) Config {
	ports := slices.Clone(cfg.Ports)
	slices.Sort(ports)
	return Config{Ports: slices.Compact(ports), Allow: sortedPrefixes(cfg.Allow), Deny: sortedPrefixes(cfg.Deny), Action: cfg.Action, MaxRedirect: cfg.MaxRedirect}
}

// When the rollback fails too, the error says so loudly, and the next
// update starts from what the maps really hold.
func TestUpdateRollbackFails(t *testing.T) {
	wantNew := dumpMaps(t, loadWith(t, newCfg, 64))
	for _, fail := range []int{3, 8, 12} {
		t.Run(fmt.Sprintf("from write %d on", fail), func(t *testing.T) {
			p := loadWith(t, oldCfg, 64)
			n := 0
			p.fault = func() error {
				if n++; n >= fail {
					return errors.New("injected failure")
				}
				return nil
			}
			err := p.Update(newCfg)
			if err == nil || !strings.Contains(err.Error(), "rolling it back failed") || !strings.Contains(err.Error(), "MIX") {
				t.Fatalf("err = %v, want one saying the rollback failed and the program runs a mix", err)
			}
			if strings.Contains(err.Error(), "unchanged") {
				t.Fatalf("err = %v claims nothing changed", err)
			}
			p.fault = nil
			if err := p.Update(newCfg); err != nil {
				t.Fatal(err)
			}
			if got := dumpMaps(t, p); !reflect.DeepEqual(got, wantNew) {
				t.Fatalf("maps after the next update:\n%+v\nwant\n%+v", got, wantNew)
			}
		})
	}
}
