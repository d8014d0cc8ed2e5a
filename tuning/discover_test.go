package tuning_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/xdpingest/xdpingest/tuning"
	"github.com/xdpingest/xdpingest/tuning/tuningtest"
)

// queueIRQs summarises a map as queue -> "irq:kind@cpus" strings.
func queueIRQs(qm tuning.QueueMap) map[int][]string {
	m := map[int][]string{}
	for _, q := range qm.Queues {
		m[q.Index] = []string{}
		for _, irq := range q.IRQs {
			m[q.Index] = append(m[q.Index], fmt.Sprintf("%d:%s@%s", irq.Num, irq.Kind, irq.CPUs()))
		}
	}
	return m
}

func checkMap(t *testing.T, qm tuning.QueueMap, want map[int][]string) {
	t.Helper()
	got := queueIRQs(qm)
	if len(got) != len(want) {
		t.Fatalf("queues = %v, want %v", got, want)
	}
	for q, w := range want {
		if !slices.Equal(got[q], w) {
			t.Errorf("queue %d: IRQs %v, want %v", q, got[q], w)
		}
	}
}

func TestDiscoverMlx5(t *testing.T) {
	tr := tuningtest.NewTree(t, 8)
	tr.NetDev(tuningtest.Dev{Name: "ens1f0np0", Driver: "mlx5_core", PCI: "0000:08:00.0", NUMA: "0", RxQueues: 4, TxQueues: 4})
	tr.IRQ(60, "mlx5_async0@pci:0000:08:00.0", "0-7", "0")
	for i := range 4 {
		tr.IRQ(61+i, fmt.Sprintf("mlx5_comp%d@pci:0000:08:00.0", i), "0-7", fmt.Sprint(i*2))
		// The second port's vectors must not be taken for the first's.
		tr.IRQ(71+i, fmt.Sprintf("mlx5_comp%d@pci:0000:08:00.1", i), "0-7", "7")
	}
	qm, err := tuning.DiscoverQueues(tr.Roots(), "ens1f0np0")
	if err != nil {
		t.Fatal(err)
	}
	if qm.Naming != "mlx5" || qm.Driver != "mlx5_core" || qm.Bus != "0000:08:00.0" || qm.NUMANode != 0 {
		t.Errorf("naming %q driver %q bus %q node %d", qm.Naming, qm.Driver, qm.Bus, qm.NUMANode)
	}
	checkMap(t, qm, map[int][]string{0: {"61:txrx@0"}, 1: {"62:txrx@2"}, 2: {"63:txrx@4"}, 3: {"64:txrx@6"}})
	if qm.Queues[2].IRQs[0].Affinity.String() != "0-7" {
		t.Errorf("affinity %s, want 0-7", qm.Queues[2].IRQs[0].Affinity)
	}
}

func TestDiscoverIntel(t *testing.T) {
	for _, tc := range []struct{ driver, format string }{
		{"i40e", "i40e-%s-TxRx-%d"},
		{"ice", "ice-%s-TxRx-%d"},
		{"ixgbe", "%s-TxRx-%d"},
	} {
		t.Run(tc.driver, func(t *testing.T) {
			tr := tuningtest.NewTree(t, 4)
			tr.NetDev(tuningtest.Dev{Name: "eth1", Driver: tc.driver, PCI: "0000:3b:00.0", NUMA: "-1", RxQueues: 3, TxQueues: 3})
			tr.NetDev(tuningtest.Dev{Name: "eth10", Driver: tc.driver, PCI: "0000:3b:00.1", RxQueues: 3, TxQueues: 3})
			tr.IRQ(40, tc.driver+"-0000:3b:00.0:misc", "0-3", "0")
			for i := range 3 {
				tr.IRQ(41+i, fmt.Sprintf(tc.format, "eth1", i), "0-3", fmt.Sprint(3-i))
				tr.IRQ(51+i, fmt.Sprintf(tc.format, "eth10", i), "0-3", "0")
			}
			qm, err := tuning.DiscoverQueues(tr.Roots(), "eth1")
			if err != nil {
				t.Fatal(err)
			}
			if qm.Naming != "intel" || qm.NUMANode != -1 {
				t.Errorf("naming %q node %d", qm.Naming, qm.NUMANode)
			}
			checkMap(t, qm, map[int][]string{0: {"41:txrx@3"}, 1: {"42:txrx@2"}, 2: {"43:txrx@1"}})
		})
	}
	t.Run("separate rx and tx vectors", func(t *testing.T) {
		tr := tuningtest.NewTree(t, 4)
		tr.NetDev(tuningtest.Dev{Name: "eth3", Driver: "ixgbe", PCI: "0000:05:00.0", RxQueues: 2, TxQueues: 2})
		tr.IRQ(30, "eth3-rx-0", "0", "")
		tr.IRQ(31, "eth3-rx-1", "1", "")
		tr.IRQ(32, "eth3-tx-0", "2", "")
		tr.IRQ(33, "eth3-tx-1", "3", "")
		qm, err := tuning.DiscoverQueues(tr.Roots(), "eth3")
		if err != nil {
			t.Fatal(err)
		}
		// Without effective_affinity_list, the configured affinity counts.
		checkMap(t, qm, map[int][]string{0: {"30:rx@0", "32:tx@2"}, 1: {"31:rx@1", "33:tx@3"}})
		if got := qm.Queues[1].RxCPUs().String(); got != "1" {
			t.Errorf("queue 1 RX CPUs %s, want 1 (the TX vector does not count)", got)
		}
	})
}

func TestDiscoverVirtio(t *testing.T) {
	tr := tuningtest.NewTree(t, 2)
	tr.Node(0, "0")
	tr.Node(1, "1")
	tr.NetDev(tuningtest.Dev{Name: "eth0", Driver: "virtio_net", PCI: "0000:00:03.0", Virtio: "virtio2", NUMA: "1", RxQueues: 2, TxQueues: 2})
	tr.IRQ(37, "virtio2-config", "0-1", "0")
	tr.IRQ(38, "virtio2-input.0", "0-1", "1")
	tr.IRQ(39, "virtio2-output.0", "0-1", "0")
	tr.IRQ(40, "virtio2-input.1", "0-1", "0")
	tr.IRQ(41, "virtio2-output.1", "0-1", "1")
	tr.IRQ(42, "virtio3-input.0", "0-1", "1") // another virtio NIC
	qm, err := tuning.DiscoverQueues(tr.Roots(), "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if qm.Naming != "virtio" || qm.Device != "virtio2" || qm.Bus != "0000:00:03.0" || qm.Driver != "virtio_net" {
		t.Errorf("naming %q device %q bus %q driver %q", qm.Naming, qm.Device, qm.Bus, qm.Driver)
	}
	if qm.NUMANode != 1 {
		t.Errorf("NUMA node %d, want 1 (from the PCI function above virtio2)", qm.NUMANode)
	}
	checkMap(t, qm, map[int][]string{0: {"38:rx@1", "39:tx@0"}, 1: {"40:rx@0", "41:tx@1"}})
	if qm.Topology.Node(1) != 1 || qm.Topology.Node(0) != 0 {
		t.Errorf("CPU nodes %v", qm.Topology.NodeOf)
	}
}

func TestDiscoverVeth(t *testing.T) {
	tr := tuningtest.NewTree(t, 2)
	tr.NetDev(tuningtest.Dev{Name: "xr1", RxQueues: 4, TxQueues: 4})
	qm, err := tuning.DiscoverQueues(tr.Roots(), "xr1")
	if err != nil {
		t.Fatal(err)
	}
	checkMap(t, qm, map[int][]string{0: {}, 1: {}, 2: {}, 3: {}})
	if qm.HasQueueIRQs() || qm.Naming != "" || qm.NUMANode != -1 || qm.TxQueues != 4 {
		t.Errorf("veth: irqs %v naming %q node %d tx %d", qm.HasQueueIRQs(), qm.Naming, qm.NUMANode, qm.TxQueues)
	}
}

func TestDiscoverUnknownInterface(t *testing.T) {
	tr := tuningtest.NewTree(t, 2)
	for _, name := range []string{"nope0", "../etc", ""} {
		_, err := tuning.DiscoverQueues(tr.Roots(), name)
		if !errors.Is(err, tuning.ErrBadInput) {
			t.Errorf("DiscoverQueues(%q) = %v, want ErrBadInput", name, err)
		}
	}
}

// TestDiscoverHost reads the real tree: it must not fail on this machine's
// eth0 (virtio_net), whatever its IRQ layout.
func TestDiscoverHost(t *testing.T) {
	qm, err := tuning.DiscoverQueues(tuning.DefaultRoots(), "lo")
	if err != nil {
		t.Fatalf("lo: %v", err)
	}
	if len(qm.Queues) == 0 || qm.HasQueueIRQs() {
		t.Errorf("lo: %+v", qm)
	}
	if _, err := tuning.DiscoverQueues(tuning.DefaultRoots(), "eth0"); err != nil && !errors.Is(err, tuning.ErrBadInput) {
		t.Errorf("eth0: %v", err)
	}
}
