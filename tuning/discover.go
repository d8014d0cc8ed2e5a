package tuning

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// IRQ kinds: what traffic an interrupt vector serves.
const (
	KindRx   = "rx"
	KindTx   = "tx"
	KindTxRx = "txrx"
)

// IRQ is one interrupt vector of a device and where the kernel delivers it.
type IRQ struct {
	Num  int    `json:"irq"`
	Name string `json:"name"`
	// Kind is KindRx, KindTx or KindTxRx.
	Kind string `json:"kind"`
	// Affinity is /proc/irq/N/smp_affinity_list: where the IRQ may go.
	Affinity CPUSet `json:"affinity"`
	// Effective is /proc/irq/N/effective_affinity_list: where it does go
	// (the interrupt controller picks one CPU of Affinity). Empty when the
	// kernel does not export it.
	Effective CPUSet `json:"effective,omitzero"`
}

// CPUs returns the CPUs that serve the IRQ: the effective affinity when the
// kernel exports it, else the configured affinity.
func (q IRQ) CPUs() CPUSet {
	if !q.Effective.IsEmpty() {
		return q.Effective
	}
	return q.Affinity
}

// Queue is one RX queue of a device with the IRQs that serve it (for
// combined channels the same vector serves RX and TX).
type Queue struct {
	Index int   `json:"queue"`
	IRQs  []IRQ `json:"irqs,omitempty"`
}

// RxCPUs returns the CPUs that serve the queue's receive interrupts: where its
// NAPI poll, and so the kernel's share of receiving, runs.
func (q Queue) RxCPUs() CPUSet {
	var s CPUSet
	for _, irq := range q.IRQs {
		if irq.Kind != KindTx {
			s = s.Union(irq.CPUs())
		}
	}
	return s
}

// QueueMap is a device's receive queues and the CPUs that serve them.
type QueueMap struct {
	Iface string `json:"iface"`
	// Driver is the kernel driver (the device's driver link), "" for
	// virtual devices without one.
	Driver string `json:"driver,omitempty"`
	// Device is the name of the device behind the interface: a PCI address
	// (0000:08:00.0), virtioN, or "" for a virtual device.
	Device string `json:"device,omitempty"`
	// Bus is the PCI address of the device or of its virtio transport.
	Bus string `json:"bus,omitempty"`
	// NUMANode of the device, -1 when unknown.
	NUMANode int `json:"numa_node"`
	// Naming is the IRQ naming convention that matched: "mlx5", "mlx4",
	// "intel" (ixgbe, i40e, ice, iavf, igb, bnxt), "virtio", "generic", or ""
	// when the device has no per-queue IRQs (veth, a device that is down).
	Naming string  `json:"naming,omitempty"`
	Queues []Queue `json:"queues"`
	// TxQueues is the number of TX queues.
	TxQueues int `json:"tx_queues"`
	// Other IRQs of the device that serve no RX queue: TX-only vectors of
	// queues past the RX count, control and async vectors.
	Other []IRQ `json:"other_irqs,omitempty"`
	// Topology of the host, read with the map.
	Topology Topology `json:"-"`
}

// HasQueueIRQs says whether any queue has its own IRQ.
func (qm QueueMap) HasQueueIRQs() bool {
	for _, q := range qm.Queues {
		if len(q.IRQs) > 0 {
			return true
		}
	}
	return false
}

// Queue returns the queue with index i.
func (qm QueueMap) Queue(i int) (Queue, bool) {
	for _, q := range qm.Queues {
		if q.Index == i {
			return q, true
		}
	}
	return Queue{}, false
}

// QueueIRQs returns every IRQ serving queue i, RX and TX, in /proc/interrupts
// order: the IRQs an affinity spread moves together.
func (qm QueueMap) QueueIRQs() map[int][]IRQ {
	m := map[int][]IRQ{}
	for _, q := range qm.Queues {
		m[q.Index] = append(m[q.Index], q.IRQs...)
	}
	return m
}

// DiscoverQueues reads iface's RX queues from /sys/class/net/IFACE/queues and
// matches each to its IRQs in /proc/interrupts by the driver's naming
// convention, with the affinity of each IRQ from /proc/irq/N.
//
// Conventions understood: mlx5 (mlx5_compN@pci:BUS), mlx4 (mlx4-N@BUS),
// Intel and alike (ixgbe eth0-TxRx-N, i40e-eth0-TxRx-N, ice-eth0-TxRx-N,
// eth0-rx-N / eth0-tx-N), virtio (virtioK-input.N, virtioK-output.N, with
// virtioK found from /sys/class/net/IFACE/device), and eth0-N. A device with
// no per-queue IRQs (veth) gets queues without IRQs.
//
// An interrupt named after the interface keeps its old name when the
// interface is renamed until the driver requests it again (link down/up); such
// a device shows no per-queue IRQs until then.
func DiscoverQueues(r Roots, iface string) (QueueMap, error) {
	qm := QueueMap{Iface: iface, NUMANode: -1}
	if err := checkIfaceName(iface); err != nil {
		return qm, err
	}
	dev := r.sys("class/net", iface)
	if _, err := os.Stat(dev); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return qm, badInput("unknown interface %s: no %s (an interface in another network namespace is visible only under `ip netns exec`)", iface, dev)
		}
		return qm, fmt.Errorf("can't read %s: %w", dev, err)
	}
	rx, tx, err := listQueues(filepath.Join(dev, "queues"))
	if err != nil {
		return qm, fmt.Errorf("can't list the queues of %s: %w", iface, err)
	}
	qm.TxQueues = tx
	for _, i := range rx {
		qm.Queues = append(qm.Queues, Queue{Index: i})
	}
	readDevice(&qm, dev)
	if qm.Topology, err = ReadTopology(r); err != nil {
		return qm, err
	}

	irqs, err := readInterrupts(r)
	if err != nil {
		return qm, err
	}
	namers := irqNamers(qm)
	for _, ir := range irqs {
		for _, n := range namers {
			queue, kind, ok := n.match(ir.names)
			if !ok {
				continue
			}
			if qm.Naming == "" {
				qm.Naming = n.convention
			}
			irq := IRQ{Num: ir.num, Name: ir.nameFor(n), Kind: kind}
			if irq.Affinity, err = readCPUList(r.proc("irq", strconv.Itoa(ir.num), "smp_affinity_list")); err != nil {
				return qm, fmt.Errorf("can't read the affinity of IRQ %d (%s): %w", ir.num, irq.Name, err)
			}
			// effective_affinity_list exists on kernels with generic IRQ
			// effective affinity (x86 since 4.15); its absence is fine.
			if eff, err := readCPUList(r.proc("irq", strconv.Itoa(ir.num), "effective_affinity_list")); err == nil {
				irq.Effective = eff
			}
			placed := false
			for qi := range qm.Queues {
				if qm.Queues[qi].Index == queue {
					qm.Queues[qi].IRQs = append(qm.Queues[qi].IRQs, irq)
					placed = true
				}
			}
			if !placed {
				qm.Other = append(qm.Other, irq)
			}
			break
		}
	}
	return qm, nil
}

// checkIfaceName refuses names that are not interface names, before they
// become paths.
func checkIfaceName(iface string) error {
	if iface == "" || len(iface) > 15 || strings.ContainsAny(iface, "/ \t\n:") || iface == "." || iface == ".." {
		return badInput("%q is not a network interface name", iface)
	}
	return nil
}

// listQueues returns the RX queue indices (sorted) and the TX queue count.
func listQueues(dir string) ([]int, int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, err
	}
	var rx []int
	tx := 0
	for _, e := range ents {
		if n, ok := strings.CutPrefix(e.Name(), "rx-"); ok {
			if i, err := strconv.Atoi(n); err == nil {
				rx = append(rx, i)
			}
		} else if strings.HasPrefix(e.Name(), "tx-") {
			tx++
		}
	}
	slices.Sort(rx)
	return rx, tx, nil
}

var pciAddr = regexp.MustCompile(`^[0-9a-f]{4,}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)

// readDevice fills the driver, device, bus and NUMA node from the device link.
func readDevice(qm *QueueMap, dev string) {
	real, err := filepath.EvalSymlinks(filepath.Join(dev, "device"))
	if err != nil {
		return // virtual device: no parent
	}
	qm.Device = filepath.Base(real)
	if drv, err := filepath.EvalSymlinks(filepath.Join(real, "driver")); err == nil {
		qm.Driver = filepath.Base(drv)
	}
	parent := filepath.Dir(real)
	switch {
	case pciAddr.MatchString(qm.Device):
		qm.Bus = qm.Device
	case pciAddr.MatchString(filepath.Base(parent)):
		// virtioN sits below the PCI function of its transport.
		qm.Bus = filepath.Base(parent)
	}
	for _, d := range []string{real, parent} {
		if n, err := readInt(filepath.Join(d, "numa_node")); err == nil {
			if n >= 0 {
				qm.NUMANode = n
			}
			return
		}
	}
}

// irqLine is one numbered line of /proc/interrupts.
type irqLine struct {
	num int
	// names are the fields after the per-CPU counts: chip, hwirq and the
	// action names (several when the line is shared).
	names []string
}

func (l irqLine) nameFor(n irqNamer) string {
	for _, s := range l.names {
		if _, _, ok := n.match([]string{s}); ok {
			return s
		}
	}
	return ""
}

func readInterrupts(r Roots) ([]irqLine, error) {
	path := r.proc("interrupts")
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("can't read IRQs: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	ncpu := -1
	var out []irqLine
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if ncpu < 0 {
			// The header names one column per CPU.
			ncpu = len(fields)
			continue
		}
		if len(fields) == 0 {
			continue
		}
		n, ok := strings.CutSuffix(fields[0], ":")
		num, err := strconv.Atoi(n)
		if !ok || err != nil {
			continue // NMI, LOC and other architecture counters
		}
		rest := fields[1:]
		if len(rest) > ncpu {
			rest = rest[ncpu:]
		} else {
			rest = nil
		}
		for i := range rest {
			rest[i] = strings.TrimSuffix(rest[i], ",")
		}
		out = append(out, irqLine{num: num, names: rest})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("can't read %s: %w", path, err)
	}
	return out, nil
}

// irqNamer recognises one driver family's IRQ names.
type irqNamer struct {
	convention string
	re         *regexp.Regexp
	// kind returns the IRQ kind from the submatches.
	kind func(m []string) string
	// queue is the index of the submatch holding the queue number.
	queue int
}

func (n irqNamer) match(names []string) (queue int, kind string, ok bool) {
	for _, s := range names {
		m := n.re.FindStringSubmatch(s)
		if m == nil {
			continue
		}
		q, err := strconv.Atoi(m[n.queue])
		if err != nil {
			continue
		}
		return q, n.kind(m), true
	}
	return 0, "", false
}

func txrx([]string) string { return KindTxRx }

func irqNamers(qm QueueMap) []irqNamer {
	iface := regexp.QuoteMeta(qm.Iface)
	var ns []irqNamer
	if qm.Bus != "" {
		bus := regexp.QuoteMeta(qm.Bus)
		ns = append(ns,
			irqNamer{"mlx5", regexp.MustCompile(`^mlx5_comp(\d+)@pci:` + bus + `$`), txrx, 1},
			irqNamer{"mlx4", regexp.MustCompile(`^mlx4-(\d+)@(?:pci:)?` + bus + `$`), txrx, 1},
		)
	}
	if strings.HasPrefix(qm.Device, "virtio") {
		dev := regexp.QuoteMeta(qm.Device)
		ns = append(ns, irqNamer{"virtio", regexp.MustCompile(`^` + dev + `-(input|output)\.(\d+)$`), func(m []string) string {
			if m[1] == "input" {
				return KindRx
			}
			return KindTx
		}, 2})
	}
	// Intel drivers prefix the driver name (i40e-eth0-TxRx-3, ice-...,
	// iavf-...); ixgbe, igb and bnxt use the bare interface name.
	prefix := `(?:[A-Za-z0-9_]+-)?`
	if qm.Driver != "" {
		prefix = `(?:` + regexp.QuoteMeta(qm.Driver) + `-)?`
	}
	ns = append(ns,
		irqNamer{"intel", regexp.MustCompile(`^` + prefix + iface + `-(TxRx|rx|tx|Rx|Tx|RxTx)-(\d+)$`), func(m []string) string {
			switch strings.ToLower(m[1]) {
			case "rx":
				return KindRx
			case "tx":
				return KindTx
			}
			return KindTxRx
		}, 2},
		irqNamer{"generic", regexp.MustCompile(`^` + iface + `-(\d+)$`), txrx, 1},
	)
	return ns
}
