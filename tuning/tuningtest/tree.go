package tuningtest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/xdpingest/xdpingest/tuning"
)

// Tree is a fake /proc and /sys under a temporary directory. Only what the
// tuning package reads is there: online CPUs and NUMA nodes, isolation,
// the kernel command line, net.core sysctls, network devices with their
// queues, NAPI knobs and device links, and IRQs with /proc/interrupts.
type Tree struct {
	Root string
	tb   testing.TB
	ncpu int
	irqs []irqEntry
}

type irqEntry struct {
	num        int
	chip, name string
}

// DefaultSysctls are the net.core values a fresh Tree has (the kernel's
// defaults).
var DefaultSysctls = map[string]string{
	"net.core.busy_poll":           "0",
	"net.core.busy_read":           "0",
	"net.core.netdev_budget":       "300",
	"net.core.netdev_budget_usecs": "2000",
	"net.core.netdev_max_backlog":  "1000",
	"net.core.rmem_max":            "212992",
	"net.core.rmem_default":        "212992",
}

// NewTree makes a tree with CPUs 0..ncpu-1 online on NUMA node 0, no
// isolation, default sysctls and no devices.
func NewTree(tb testing.TB, ncpu int) *Tree {
	tb.Helper()
	t := &Tree{Root: tb.TempDir(), tb: tb, ncpu: ncpu}
	all := fmt.Sprintf("0-%d", ncpu-1)
	if ncpu == 1 {
		all = "0"
	}
	t.Write("sys/devices/system/cpu/online", all)
	t.Write("sys/devices/system/cpu/possible", all)
	t.Write("sys/devices/system/cpu/isolated", "")
	t.Write("sys/devices/system/node/online", "0")
	t.Node(0, all)
	t.Write("proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro quiet")
	t.Write("proc/sys/kernel/random/boot_id", "3f0c7e2a-8d1b-4f7e-9a55-1c2d3e4f5a6b")
	for k, v := range DefaultSysctls {
		t.Sysctl(k, v)
	}
	t.writeInterrupts()
	return t
}

// Roots points tuning at the tree.
func (t *Tree) Roots() tuning.Roots {
	return tuning.Roots{Proc: filepath.Join(t.Root, "proc"), Sys: filepath.Join(t.Root, "sys")}
}

// Path returns the absolute path of rel ("proc/sys/net/core/busy_poll").
func (t *Tree) Path(rel string) string { return filepath.Join(t.Root, rel) }

// Write creates or replaces a file, with a trailing newline as the kernel
// prints.
func (t *Tree) Write(rel, content string) {
	t.tb.Helper()
	p := t.Path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.tb.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content+"\n"), 0o644); err != nil {
		t.tb.Fatal(err)
	}
}

// Read returns a file's content without the trailing newline.
func (t *Tree) Read(rel string) string {
	t.tb.Helper()
	b, err := os.ReadFile(t.Path(rel))
	if err != nil {
		t.tb.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// Remove deletes a file (to make a knob unsupported).
func (t *Tree) Remove(rel string) {
	t.tb.Helper()
	if err := os.RemoveAll(t.Path(rel)); err != nil {
		t.tb.Fatal(err)
	}
}

// Symlink makes rel a symbolic link to target (relative to rel's directory
// when not absolute, as sysfs links are).
func (t *Tree) Symlink(rel, target string) {
	t.tb.Helper()
	p := t.Path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.tb.Fatal(err)
	}
	_ = os.Remove(p)
	if err := os.Symlink(target, p); err != nil {
		t.tb.Fatal(err)
	}
}

// Node sets the CPUs of NUMA node n.
func (t *Tree) Node(n int, cpulist string) {
	t.Write(fmt.Sprintf("sys/devices/system/node/node%d/cpulist", n), cpulist)
}

// Siblings sets a CPU's hyperthread siblings.
func (t *Tree) Siblings(cpu int, cpulist string) {
	t.Write(fmt.Sprintf("sys/devices/system/cpu/cpu%d/topology/thread_siblings_list", cpu), cpulist)
}

// Sysctl sets a sysctl by its dotted name.
func (t *Tree) Sysctl(name, value string) {
	t.Write("proc/sys/"+strings.ReplaceAll(name, ".", "/"), value)
}

// SysctlValue reads a sysctl by its dotted name.
func (t *Tree) SysctlValue(name string) string {
	return t.Read("proc/sys/" + strings.ReplaceAll(name, ".", "/"))
}

// Dev describes a fake network device.
type Dev struct {
	Name string
	// Driver is the driver link's name (mlx5_core, i40e, ice, ixgbe,
	// virtio_net); empty for a virtual device without a device link.
	Driver string
	// PCI is the PCI address of the function ("0000:08:00.0").
	PCI string
	// Virtio, when set ("virtio2"), puts a virtio device between the PCI
	// function and the interface, as virtio_net has.
	Virtio string
	// NUMA is the device's numa_node content; "" leaves the file out.
	NUMA string
	// RxQueues and TxQueues default to 1.
	RxQueues, TxQueues int
}

// NetDev adds a device under sys/class/net with its queues, NAPI knobs and
// device link.
func (t *Tree) NetDev(d Dev) {
	t.tb.Helper()
	if d.RxQueues == 0 {
		d.RxQueues = 1
	}
	if d.TxQueues == 0 {
		d.TxQueues = 1
	}
	base := "sys/class/net/" + d.Name
	for i := range d.RxQueues {
		t.Write(fmt.Sprintf("%s/queues/rx-%d/rps_cpus", base, i), "0")
	}
	for i := range d.TxQueues {
		t.Write(fmt.Sprintf("%s/queues/tx-%d/xps_cpus", base, i), "0")
	}
	t.Write(base+"/napi_defer_hard_irqs", "0")
	t.Write(base+"/gro_flush_timeout", "0")
	t.Write(base+"/ifindex", strconv.Itoa(2+len(d.Name)))
	if d.PCI == "" && d.Virtio == "" {
		return
	}
	pci := "sys/devices/pci0000:00/" + d.PCI
	dev := pci
	if d.Virtio != "" {
		dev = pci + "/" + d.Virtio
	}
	t.Write(dev+"/uevent", "")
	if d.NUMA != "" {
		// virtio devices have no numa_node of their own: it sits on the
		// PCI function, which is where the real tree has it.
		t.Write(pci+"/numa_node", d.NUMA)
	}
	if d.Driver != "" {
		t.Write("sys/bus/drivers/"+d.Driver+"/uevent", "")
		rel, _ := filepath.Rel(t.Path(dev), t.Path("sys/bus/drivers/"+d.Driver))
		t.Symlink(dev+"/driver", rel)
	}
	rel, _ := filepath.Rel(t.Path(base), t.Path(dev))
	t.Symlink(base+"/device", rel)
}

// IRQ adds an interrupt with its name, affinity and (unless empty) effective
// affinity, and rewrites /proc/interrupts.
func (t *Tree) IRQ(num int, name, affinity, effective string) {
	t.tb.Helper()
	t.irqs = slices.DeleteFunc(t.irqs, func(e irqEntry) bool { return e.num == num })
	t.irqs = append(t.irqs, irqEntry{num: num, chip: "PCI-MSIX-0000:00:00.0", name: name})
	slices.SortFunc(t.irqs, func(a, b irqEntry) int { return a.num - b.num })
	d := fmt.Sprintf("proc/irq/%d/", num)
	t.Write(d+"smp_affinity_list", affinity)
	if effective != "" {
		t.Write(d+"effective_affinity_list", effective)
	}
	t.writeInterrupts()
}

// IRQAffinity reads an IRQ's smp_affinity_list.
func (t *Tree) IRQAffinity(num int) string {
	return t.Read(fmt.Sprintf("proc/irq/%d/smp_affinity_list", num))
}

func (t *Tree) writeInterrupts() {
	var b strings.Builder
	b.WriteString("     ")
	for c := range t.ncpu {
		fmt.Fprintf(&b, "      CPU%d", c)
	}
	b.WriteString("\n  0:")
	for range t.ncpu {
		b.WriteString("         12")
	}
	b.WriteString("   IO-APIC   2-edge      timer\n")
	for i, e := range t.irqs {
		fmt.Fprintf(&b, "%3d:", e.num)
		for range t.ncpu {
			b.WriteString("       1234")
		}
		fmt.Fprintf(&b, "  %s %d-edge      %s\n", e.chip, i, e.name)
	}
	b.WriteString("NMI:")
	for range t.ncpu {
		b.WriteString("          0")
	}
	b.WriteString("   Non-maskable interrupts\nERR:          0\n")
	t.Write("proc/interrupts", strings.TrimSuffix(b.String(), "\n"))
}

// Process adds /proc/PID/comm (to fake a running irqbalance).
func (t *Tree) Process(pid int, comm string) {
	t.Write(fmt.Sprintf("proc/%d/comm", pid), comm)
}

// RemoveIRQ takes an interrupt away (a driver freeing a vector) and rewrites
// /proc/interrupts.
func (t *Tree) RemoveIRQ(num int) {
	t.tb.Helper()
	t.irqs = slices.DeleteFunc(t.irqs, func(e irqEntry) bool { return e.num == num })
	t.Remove(fmt.Sprintf("proc/irq/%d", num))
	t.writeInterrupts()
}

// SetQueues changes a device's RX and TX queue directories to n each.
func (t *Tree) SetQueues(dev string, n int) {
	t.tb.Helper()
	base := "sys/class/net/" + dev + "/queues"
	t.Remove(base)
	for i := range n {
		t.Write(fmt.Sprintf("%s/rx-%d/rps_cpus", base, i), "0")
		t.Write(fmt.Sprintf("%s/tx-%d/xps_cpus", base, i), "0")
	}
}
