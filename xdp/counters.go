package xdp

import (
	"fmt"
)

// Outcome is what happened to one frame in the program. Every frame ends in
// exactly one outcome.
type Outcome uint32

// Keep in step with enum outcome in bpf/ingest.c.
const (
	OutcomeRedirect   Outcome = iota // matched, allowed: redirected to the queue's AF_XDP socket
	OutcomePassMatch                 // matched, allowed, Pass action: to the kernel socket path
	OutcomeNoSocket                  // matched, allowed, but the queue has no AF_XDP socket: passed
	OutcomeDeny                      // matched, source in a deny list: dropped
	OutcomeNotAllowed                // matched, source outside the allow list: dropped
	OutcomeDropMode                  // matched, allowed, Drop action: dropped
	OutcomeOtherPort                 // UDP to another port: passed
	OutcomeTCP                       // TCP: passed
	OutcomeICMP                      // ICMP or ICMPv6: passed
	OutcomeARP                       // ARP: passed
	OutcomeOtherL3                   // neither IPv4, IPv6 nor ARP: passed
	OutcomeOtherL4                   // another IP protocol: passed
	OutcomeFragment                  // IPv4 fragment: passed
	OutcomeIPv6Ext                   // IPv6 extension header before UDP: passed
	OutcomeVLANDepth                 // more than two VLAN tags: passed
	OutcomeMalformed                 // impossible header values: passed
	OutcomeTruncated                 // frame shorter than its headers: passed
	NumOutcomes
)

var outcomeNames = [NumOutcomes]string{
	"redirect", "pass_match", "no_socket", "deny", "not_allowed", "drop_mode",
	"other_port", "tcp", "icmp", "arp", "other_l3", "other_l4", "fragment",
	"ipv6_ext", "vlan_depth", "malformed", "truncated",
}

func (o Outcome) String() string {
	if o < NumOutcomes {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", uint32(o))
}

// Verdict is the XDP action an outcome returns: "redirect", "drop" or "pass".
func (o Outcome) Verdict() string {
	switch o {
	case OutcomeRedirect:
		return "redirect"
	case OutcomeDeny, OutcomeNotAllowed, OutcomeDropMode:
		return "drop"
	}
	return "pass"
}

// Count is packets and bytes (whole frames) of one outcome.
type Count struct {
	Packets, Bytes uint64
}

// Counters are the program's counters, summed over CPUs, indexed by Outcome.
type Counters [NumOutcomes]Count

// Total is the sum over all outcomes: every frame the program saw.
func (c Counters) Total() Count {
	var t Count
	for _, x := range c {
		t.Packets += x.Packets
		t.Bytes += x.Bytes
	}
	return t
}

// Sub returns c - o, field by field: the counts between two readings.
func (c Counters) Sub(o Counters) Counters {
	for i := range c {
		c[i].Packets -= o[i].Packets
		c[i].Bytes -= o[i].Bytes
	}
	return c
}

// Counters reads the per-CPU counters and sums them: one syscall per
// outcome, which returns every CPU's slot. CPUs keep counting while it runs,
// so the sum is an exact total only once traffic has stopped.
func (p *Program) Counters() (Counters, error) {
	var out Counters
	var per []ingestCounter
	for o := Outcome(0); o < NumOutcomes; o++ {
		if err := p.objs.Counters.Lookup(uint32(o), &per); err != nil {
			return out, fmt.Errorf("can't read XDP counter %s: %w", o, err)
		}
		for _, c := range per {
			out[o].Packets += c.Packets
			out[o].Bytes += c.Bytes
		}
	}
	return out, nil
}
