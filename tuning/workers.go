package tuning

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Reasons a worker got its CPU.
const (
	// ReasonIRQAffinity: the CPU serves the queue's receive IRQ, so the
	// worker reads where the kernel's NAPI poll wrote (warm caches, no
	// cross-CPU wakeups).
	ReasonIRQAffinity = "irq-affinity"
	// ReasonSpread: the queue has no IRQ of its own (veth) or its IRQ's CPU
	// is not allowed; workers go round-robin over the allowed CPUs.
	ReasonSpread = "spread"
	// ReasonNUMA: like spread, restricted to the allowed CPUs of the NIC's
	// NUMA node.
	ReasonNUMA = "numa"
)

// WorkerCPU is the CPU chosen for the worker of one queue, and why.
type WorkerCPU struct {
	Queue  int    `json:"queue"`
	CPU    int    `json:"cpu"`
	Reason string `json:"reason"`
	// Node is the NUMA node of CPU, -1 when unknown.
	Node int `json:"node"`
	// IRQs serving the queue's receive side, if any.
	IRQs []int `json:"irqs,omitempty"`
	// Note explains a fallback, e.g. an IRQ served outside the allowed set.
	Note string `json:"note,omitempty"`
}

// PlanWorkers chooses a CPU for the worker of each queue in queues (all of
// qm's queues when nil), within allowed (typically [AllowedCPUs], or its
// intersection with a --cpus list):
//
//   - a queue whose receive IRQ is served by an allowed CPU gets that CPU
//     (irq-affinity); when the IRQ may go to several, the least loaded one,
//     on the NIC's NUMA node if possible;
//   - other queues (veth has no per-queue IRQs) are spread round-robin, one
//     per core first, over the allowed CPUs of the NIC's NUMA node when it is
//     known and has any (numa), else over all allowed CPUs (spread).
//
// Two workers share a CPU only when there are more workers than CPUs.
func PlanWorkers(qm QueueMap, queues []int, allowed CPUSet) ([]WorkerCPU, error) {
	if allowed.IsEmpty() {
		return nil, fmt.Errorf("can't place workers for %s: no allowed CPU", qm.Iface)
	}
	if queues == nil {
		for _, q := range qm.Queues {
			queues = append(queues, q.Index)
		}
	}
	if len(queues) == 0 {
		return nil, fmt.Errorf("can't place workers for %s: it has no RX queue", qm.Iface)
	}
	seen := map[int]bool{}
	for _, qi := range queues {
		if _, ok := qm.Queue(qi); !ok {
			return nil, badInput("can't place a worker on queue %d of %s: the device has queues %s", qi, qm.Iface, queueList(qm))
		}
		if seen[qi] {
			return nil, badInput("queue %d of %s listed twice", qi, qm.Iface)
		}
		seen[qi] = true
	}

	topo := qm.Topology
	local := CPUSet{}
	if qm.NUMANode >= 0 {
		local = allowed.Intersect(topo.NodeCPUs(qm.NUMANode))
	}
	load := map[int]int{}
	out := make([]WorkerCPU, len(queues))
	pending := []int{}

	// Pass 1: queues whose IRQ lands on an allowed CPU.
	for i, qi := range queues {
		q, _ := qm.Queue(qi)
		w := WorkerCPU{Queue: qi, CPU: -1}
		for _, irq := range q.IRQs {
			if irq.Kind != KindTx {
				w.IRQs = append(w.IRQs, irq.Num)
			}
		}
		irqCPUs := q.RxCPUs()
		cands := irqCPUs.Intersect(allowed)
		if c := cands.Intersect(local); !c.IsEmpty() {
			cands = c
		}
		if !cands.IsEmpty() {
			w.CPU = leastLoaded(topo.coreOrder(cands), load, 0)
			w.Reason = ReasonIRQAffinity
			load[w.CPU]++
		} else if !irqCPUs.IsEmpty() {
			w.Note = fmt.Sprintf("IRQ %s served by cpu %s, outside the allowed CPUs %s", joinInts(w.IRQs), irqCPUs, allowed)
		}
		out[i] = w
		if w.CPU < 0 {
			pending = append(pending, i)
		}
	}

	// Pass 2: spread the rest.
	pool, reason := allowed, ReasonSpread
	if !local.IsEmpty() && !local.Equal(allowed) {
		pool, reason = local, ReasonNUMA
	}
	order := topo.coreOrder(pool)
	cursor := 0
	for _, i := range pending {
		c := leastLoaded(order, load, cursor)
		cursor = (slices.Index(order, c) + 1) % len(order)
		out[i].CPU, out[i].Reason = c, reason
		load[c]++
	}
	for i := range out {
		out[i].Node = topo.Node(out[i].CPU)
	}
	return out, nil
}

// leastLoaded returns the CPU of order with the fewest workers, the first
// such from cursor on (so that ties go round-robin).
func leastLoaded(order []int, load map[int]int, cursor int) int {
	best := -1
	for k := range order {
		c := order[(cursor+k)%len(order)]
		if best < 0 || load[c] < load[best] {
			best = c
		}
	}
	return best
}

// FormatWorkers renders a plan for a log line: "q0=cpu1(irq-affinity)
// q1=cpu0(spread)".
func FormatWorkers(ws []WorkerCPU) string {
	var b strings.Builder
	for i, w := range ws {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "q%d=cpu%d(%s)", w.Queue, w.CPU, w.Reason)
	}
	return b.String()
}

// WorkerCPUs returns the set of CPUs a plan uses.
func WorkerCPUs(ws []WorkerCPU) CPUSet {
	var s CPUSet
	for _, w := range ws {
		s.Add(w.CPU)
	}
	return s
}

func queueList(qm QueueMap) string {
	var s CPUSet // same list syntax, "0-3"
	for _, q := range qm.Queues {
		s.Add(q.Index)
	}
	if s.IsEmpty() {
		return "none"
	}
	return s.String()
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
