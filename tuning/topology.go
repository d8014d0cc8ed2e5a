package tuning

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Topology is what the scheduler sees of the CPUs: which are online, which
// NUMA node each belongs to, and which are hyperthread siblings.
type Topology struct {
	// Online CPUs, from /sys/devices/system/cpu/online.
	Online CPUSet `json:"online"`
	// NodeOf maps a CPU to its NUMA node, from
	// /sys/devices/system/node/nodeN/cpulist. CPUs missing from it (a kernel
	// without NUMA) have no known node.
	NodeOf map[int]int `json:"node_of,omitempty"`
	// Siblings maps a CPU to the CPUs sharing its core (itself included),
	// from /sys/devices/system/cpu/cpuN/topology/thread_siblings_list.
	Siblings map[int]CPUSet `json:"-"`
}

// NodeCPUs returns the CPUs of NUMA node n.
func (t Topology) NodeCPUs(n int) CPUSet {
	var s CPUSet
	for c, node := range t.NodeOf {
		if node == n {
			s.Add(c)
		}
	}
	return s
}

// Node returns the NUMA node of cpu, or -1 when unknown.
func (t Topology) Node(cpu int) int {
	if n, ok := t.NodeOf[cpu]; ok {
		return n
	}
	return -1
}

// ReadTopology reads the CPU topology under r.
func ReadTopology(r Roots) (Topology, error) {
	t := Topology{NodeOf: map[int]int{}, Siblings: map[int]CPUSet{}}
	online, err := readCPUList(r.sys("devices/system/cpu/online"))
	if err != nil {
		return t, fmt.Errorf("can't read the online CPUs: %w", err)
	}
	t.Online = online
	nodes, err := os.ReadDir(r.sys("devices/system/node"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return t, fmt.Errorf("can't list NUMA nodes: %w", err)
	}
	for _, e := range nodes {
		n, ok := strings.CutPrefix(e.Name(), "node")
		id, err := strconv.Atoi(n)
		if !ok || err != nil {
			continue
		}
		cpus, err := readCPUList(r.sys("devices/system/node", e.Name(), "cpulist"))
		if err != nil {
			return t, fmt.Errorf("can't read the CPUs of NUMA node %d: %w", id, err)
		}
		for _, c := range cpus.List() {
			t.NodeOf[c] = id
		}
	}
	for _, c := range online.List() {
		sib, err := readCPUList(r.sys("devices/system/cpu", "cpu"+strconv.Itoa(c), "topology/thread_siblings_list"))
		if err != nil || sib.IsEmpty() {
			sib = NewCPUSet(c)
		}
		t.Siblings[c] = sib
	}
	return t, nil
}

// coreOrder orders cpus so that one CPU of every physical core comes before
// any second hyperthread: spreading IRQs or workers "one per core" walks this
// order.
func (t Topology) coreOrder(cpus CPUSet) []int {
	type ranked struct{ cpu, rank int }
	var rs []ranked
	for _, c := range cpus.List() {
		rank := 0
		if sib, ok := t.Siblings[c]; ok {
			// Rank is the CPU's position among its own siblings within cpus.
			for _, s := range sib.Intersect(cpus).List() {
				if s == c {
					break
				}
				rank++
			}
		}
		rs = append(rs, ranked{c, rank})
	}
	slices.SortStableFunc(rs, func(a, b ranked) int {
		if a.rank != b.rank {
			return a.rank - b.rank
		}
		return a.cpu - b.cpu
	})
	out := make([]int, len(rs))
	for i, r := range rs {
		out[i] = r.cpu
	}
	return out
}

// Isolation is how the kernel command line set CPUs apart from the general
// scheduler, timer tick and RCU callbacks.
type Isolation struct {
	// Isolated CPUs (isolcpus=), from /sys/devices/system/cpu/isolated.
	Isolated CPUSet `json:"isolated"`
	// IsolFlags are the isolcpus= flags (domain, managed_irq, nohz).
	IsolFlags []string `json:"isolcpus_flags,omitempty"`
	// NohzFull CPUs (nohz_full=), from /sys/devices/system/cpu/nohz_full.
	NohzFull CPUSet `json:"nohz_full"`
	// RCUNoCBs CPUs (rcu_nocbs=), from /proc/cmdline: the kernel exports no
	// file for it.
	RCUNoCBs CPUSet `json:"rcu_nocbs"`
	// Cmdline is the kernel's part of /proc/cmdline (before any " -- ").
	Cmdline string `json:"cmdline"`
}

// ReadIsolation reads the CPU isolation in effect under r.
func ReadIsolation(r Roots) (Isolation, error) {
	var iso Isolation
	cmd, err := readTrim(r.proc("cmdline"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return iso, fmt.Errorf("can't read the kernel command line: %w", err)
	}
	// Arguments after "--" belong to init, not to the kernel.
	if k, _, ok := strings.Cut(" "+cmd+" ", " -- "); ok {
		cmd = strings.TrimSpace(k)
	}
	iso.Cmdline = cmd
	params := parseCmdline(cmd)
	if v, ok := params["isolcpus"]; ok {
		_, flags := splitIsolcpus(v)
		iso.IsolFlags = flags
	}
	if v, ok := params["rcu_nocbs"]; ok {
		// A bare rcu_nocbs (no list) offloads nothing by itself.
		if iso.RCUNoCBs, err = ParseCPUList(v); err != nil {
			return iso, fmt.Errorf("can't parse rcu_nocbs=%s on the kernel command line: %w", v, err)
		}
	}
	if iso.Isolated, err = readCPUList(r.sys("devices/system/cpu/isolated")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return iso, fmt.Errorf("can't read isolated CPUs: %w", err)
	}
	if iso.NohzFull, err = readCPUList(r.sys("devices/system/cpu/nohz_full")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return iso, fmt.Errorf("can't read nohz_full CPUs: %w", err)
	}
	return iso, nil
}

// parseCmdline splits a kernel command line into key=value parameters (the
// last occurrence wins, as for the kernel's early params).
func parseCmdline(cmd string) map[string]string {
	m := map[string]string{}
	for f := range strings.FieldsSeq(cmd) {
		k, v, _ := strings.Cut(f, "=")
		m[k] = v
	}
	return m
}

// splitIsolcpus separates "managed_irq,domain,2-7" into its CPU list and flags.
func splitIsolcpus(v string) (string, []string) {
	var flags, cpus []string
	for p := range strings.SplitSeq(v, ",") {
		switch p {
		case "domain", "managed_irq", "nohz":
			flags = append(flags, p)
		default:
			cpus = append(cpus, p)
		}
	}
	return strings.Join(cpus, ","), flags
}
