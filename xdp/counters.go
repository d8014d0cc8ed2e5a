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
	OutcomeFragment                  // IPv4 fragment, or IPv6 with a fragment header first: passed
	OutcomeIPv6Ext                   // IPv6 with another extension header before UDP: passed
	OutcomeVLANDepth                 // more than two VLAN tags: passed
	OutcomeMalformed                 // impossible header values: passed
	OutcomeTruncated                 // frame shorter than its headers or its IP length: passed
	OutcomeOversize                  // matched, allowed, Redirect, larger than Config.MaxRedirect: passed
	NumOutcomes
)

// MatchedOutcomes are the outcomes of a frame for one of Config.Ports,
// which the program counts per port ([Program.PortCounters]). Keep in step
// with enum port_outcome in bpf/ingest.c.
var MatchedOutcomes = [...]Outcome{OutcomeRedirect, OutcomePassMatch, OutcomeNoSocket, OutcomeDeny, OutcomeNotAllowed, OutcomeDropMode, OutcomeOversize}

var outcomeNames = [NumOutcomes]string{
	"redirect", "pass_match", "no_socket", "deny", "not_allowed", "drop_mode",
	"other_port", "tcp", "icmp", "arp", "other_l3", "other_l4", "fragment",
	"ipv6_ext", "vlan_depth", "malformed", "truncated", "oversize",
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

// Count is packets and bytes (whole frames) of one outcome. The program
// learns a multi-buffer frame's whole length only when its IP length runs
// past the first buffer, or when it checks a matched frame against
// Config.MaxRedirect; any other multi-buffer frame (not IPv4 or IPv6,
// headers beyond the first buffer, a trailer after the datagram) counts
// the bytes of its first buffer.
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
// outcome, and one per port counter slot in use, each returning every
// CPU's value. The matched outcomes are the sums over every slot,
// including those of ports no longer configured. CPUs keep counting while
// it runs, so the sum is an exact total only once traffic has stopped.
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
	var pc []ingestPortCounter
	for s := range p.usedSlots.Load() {
		if err := p.readSlot(s, &out, &pc); err != nil {
			return out, err
		}
	}
	return out, nil
}

// readSlot adds the counts of a port counter slot to c. per is a buffer.
func (p *Program) readSlot(slot uint32, c *Counters, per *[]ingestPortCounter) error {
	if err := p.objs.PortCounters.Lookup(slot, per); err != nil {
		return fmt.Errorf("can't read XDP port counter slot %d: %w", slot, err)
	}
	for _, pc := range *per {
		for i, o := range MatchedOutcomes {
			c[o].Packets += pc.O[i].Packets
			c[o].Bytes += pc.O[i].Bytes
		}
	}
	return nil
}

// PortCounters are the frames for each configured port, by outcome: only
// the MatchedOutcomes count. A port keeps its counts when it is removed and
// added again.
type PortCounters struct {
	// Ports holds each configured port that has a counter slot of its own.
	Ports map[uint16]Counters
	// Other counts together the ports that found no slot of their own
	// (more were configured over the program's life than
	// LoadOptions.MaxPortSlots - 1), those configured now and those
	// configured before; OtherPorts lists the ones configured now.
	Other      Counters
	OtherPorts []uint16
}

// PortCounters reads the counters of the configured ports: one syscall per
// port (and one for the overflow slot if a configured port counts there),
// summing every CPU's values. Like Counters, it is exact once traffic
// has stopped.
func (p *Program) PortCounters() (PortCounters, error) {
	view := *p.view.Load()
	out := PortCounters{Ports: make(map[uint16]Counters, len(view))}
	var per []ingestPortCounter
	other := false
	for _, ps := range view {
		if ps.slot == 0 {
			out.OtherPorts = append(out.OtherPorts, ps.port)
			other = true
			continue
		}
		var c Counters
		if err := p.readSlot(uint32(ps.slot), &c, &per); err != nil {
			return out, err
		}
		out.Ports[ps.port] = c
	}
	if other {
		if err := p.readSlot(0, &out.Other, &per); err != nil {
			return out, err
		}
	}
	return out, nil
}

// SocketOutcome is what the socket filter ([Program.SocketFilter]) did with
// a datagram the kernel delivered to a socket.
type SocketOutcome uint32

// Keep in step with enum sock_outcome in bpf/ingest.c.
const (
	SocketAccepted   SocketOutcome = iota // allowed, or no list in force for its family: kept
	SocketDenied                          // source in a deny list: dropped
	SocketNotAllowed                      // an allow list is in force and the source is not in it: dropped
	SocketUnreadable                      // lists in force but no IPv4 or IPv6 source to check: dropped
	SocketOtherIface                      // came in over another interface than Config.SocketIfindex: dropped
	NumSocketOutcomes
)

var socketOutcomeNames = [NumSocketOutcomes]string{"accepted", "denied", "not_allowed", "unreadable", "other_iface"}

func (o SocketOutcome) String() string {
	if o < NumSocketOutcomes {
		return socketOutcomeNames[o]
	}
	return fmt.Sprintf("socket_outcome(%d)", uint32(o))
}

// SocketCount is what the socket filter counted for one outcome:
// datagrams (Packets; a buffer that UDP GRO merged counts as the datagrams
// it holds), Bytes as the socket layer saw them (UDP header and payload,
// one UDP header for a merged buffer), and Buffers, the socket buffers
// (skbs) the filter ran on.
type SocketCount struct {
	Packets, Bytes, Buffers uint64
}

// SocketCounters are the socket filter's counters, summed over CPUs,
// indexed by SocketOutcome.
type SocketCounters [NumSocketOutcomes]SocketCount

// Refused is what the filter dropped. The kernel counts each buffer the
// filter drops as a drop of the socket too (sk_drops, which SO_RXQ_OVFL
// and SO_MEMINFO report); the filter also counts them per socket
// ([SocketFilter.RefusedBuffers]), which the kernel path's receivers
// subtract, so that their socket overflows count only full buffers.
func (c SocketCounters) Refused() SocketCount {
	var t SocketCount
	for _, o := range []SocketOutcome{SocketDenied, SocketNotAllowed, SocketUnreadable, SocketOtherIface} {
		t.Packets += c[o].Packets
		t.Bytes += c[o].Bytes
		t.Buffers += c[o].Buffers
	}
	return t
}

// Sub returns c - o, field by field.
func (c SocketCounters) Sub(o SocketCounters) SocketCounters {
	for i := range c {
		c[i].Packets -= o[i].Packets
		c[i].Bytes -= o[i].Bytes
		c[i].Buffers -= o[i].Buffers
	}
	return c
}

// SocketCounters reads the socket filter's per-CPU counters and sums them,
// like Counters.
func (p *Program) SocketCounters() (SocketCounters, error) {
	var out SocketCounters
	var per []ingestSockCounter
	for o := SocketOutcome(0); o < NumSocketOutcomes; o++ {
		if err := p.objs.SockCounters.Lookup(uint32(o), &per); err != nil {
			return out, fmt.Errorf("can't read socket filter counter %s: %w", o, err)
		}
		for _, c := range per {
			out[o].Packets += c.Packets
			out[o].Bytes += c.Bytes
			out[o].Buffers += c.Buffers
		}
	}
	return out, nil
}
