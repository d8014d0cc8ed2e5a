package tuning_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/xdpingest/xdpingest/tuning"
	"github.com/xdpingest/xdpingest/tuning/tuningtest"
)

func placement(ws []tuning.WorkerCPU) string { return tuning.FormatWorkers(ws) }

func mustPlan(t *testing.T, qm tuning.QueueMap, queues []int, allowed string) []tuning.WorkerCPU {
	t.Helper()
	ws, err := tuning.PlanWorkers(qm, queues, tuning.MustParseCPUList(allowed))
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

func mlx5Tree(t *testing.T, ncpu int, effective []int) *tuningtest.Tree {
	tr := tuningtest.NewTree(t, ncpu)
	tr.NetDev(tuningtest.Dev{Name: "eth1", Driver: "mlx5_core", PCI: "0000:08:00.0", NUMA: "1", RxQueues: len(effective), TxQueues: len(effective)})
	for i, c := range effective {
		tr.IRQ(60+i, fmt.Sprintf("mlx5_comp%d@pci:0000:08:00.0", i), fmt.Sprint(c), fmt.Sprint(c))
	}
	return tr
}

func TestPlanWorkersIRQAffinity(t *testing.T) {
	tr := mlx5Tree(t, 8, []int{4, 5, 6, 7})
	qm, err := tuning.DiscoverQueues(tr.Roots(), "eth1")
	if err != nil {
		t.Fatal(err)
	}
	ws := mustPlan(t, qm, nil, "0-7")
	if got, want := placement(ws), "q0=cpu4(irq-affinity) q1=cpu5(irq-affinity) q2=cpu6(irq-affinity) q3=cpu7(irq-affinity)"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if ws[1].IRQs[0] != 61 {
		t.Errorf("worker 1 IRQs %v", ws[1].IRQs)
	}
	// A subset of queues.
	ws = mustPlan(t, qm, []int{3, 1}, "0-7")
	if got, want := placement(ws), "q3=cpu7(irq-affinity) q1=cpu5(irq-affinity)"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestPlanWorkersHonoursAllowed(t *testing.T) {
	// Queues 2 and 3 are served by CPUs 6 and 7, which taskset took away.
	tr := mlx5Tree(t, 8, []int{0, 1, 6, 7})
	qm, err := tuning.DiscoverQueues(tr.Roots(), "eth1")
	if err != nil {
		t.Fatal(err)
	}
	ws := mustPlan(t, qm, nil, "0-3")
	if got, want := placement(ws), "q0=cpu0(irq-affinity) q1=cpu1(irq-affinity) q2=cpu2(spread) q3=cpu3(spread)"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if ws[2].Note == "" {
		t.Error("no note on a worker moved off its IRQ's CPU")
	}
	for _, w := range ws {
		if !tuning.MustParseCPUList("0-3").Has(w.CPU) {
			t.Errorf("worker on cpu %d outside the allowed set", w.CPU)
		}
	}
}

func TestPlanWorkersSpreadAndNUMA(t *testing.T) {
	tr := tuningtest.NewTree(t, 8)
	tr.Node(0, "0-3")
	tr.Node(1, "4-7")
	// Hyperthreads: 4/6 and 5/7 share cores, so "one per core" goes 4,5
	// before 6,7.
	for _, p := range [][2]int{{4, 6}, {5, 7}} {
		for _, c := range p {
			tr.Siblings(c, fmt.Sprintf("%d,%d", p[0], p[1]))
		}
	}
	tr.NetDev(tuningtest.Dev{Name: "vnode1", Driver: "virtio_net", PCI: "0000:00:04.0", Virtio: "virtio3", NUMA: "1", RxQueues: 4, TxQueues: 4})
	tr.NetDev(tuningtest.Dev{Name: "veth0", RxQueues: 3, TxQueues: 3})
	qm, err := tuning.DiscoverQueues(tr.Roots(), "vnode1")
	if err != nil {
		t.Fatal(err)
	}
	// No IRQs named for it: spread over node 1, one per core first.
	if got, want := placement(mustPlan(t, qm, nil, "0-7")), "q0=cpu4(numa) q1=cpu5(numa) q2=cpu6(numa) q3=cpu7(numa)"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// Allowed set without node 1: spread over what is allowed.
	if got, want := placement(mustPlan(t, qm, nil, "1-2")), "q0=cpu1(spread) q1=cpu2(spread) q2=cpu1(spread) q3=cpu2(spread)"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	ws := mustPlan(t, qm, nil, "0-7")
	if ws[0].Node != 1 {
		t.Errorf("worker node %d, want 1", ws[0].Node)
	}

	// veth: no NUMA node, round-robin over everything allowed.
	qm, err = tuning.DiscoverQueues(tr.Roots(), "veth0")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := placement(mustPlan(t, qm, nil, "0,1")), "q0=cpu0(spread) q1=cpu1(spread) q2=cpu0(spread)"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestPlanWorkersNUMAPreferenceAmongIRQCPUs(t *testing.T) {
	// One vector whose affinity spans both nodes and no effective list: the
	// worker goes to the NIC's node.
	tr := tuningtest.NewTree(t, 4)
	tr.Node(0, "0-1")
	tr.Node(1, "2-3")
	tr.NetDev(tuningtest.Dev{Name: "eth1", Driver: "ice", PCI: "0000:3b:00.0", NUMA: "1", RxQueues: 1, TxQueues: 1})
	tr.IRQ(50, "ice-eth1-TxRx-0", "0-3", "")
	qm, err := tuning.DiscoverQueues(tr.Roots(), "eth1")
	if err != nil {
		t.Fatal(err)
	}
	ws := mustPlan(t, qm, nil, "0-3")
	if ws[0].CPU != 2 || ws[0].Reason != tuning.ReasonIRQAffinity {
		t.Errorf("got %s, want cpu2 by irq-affinity", placement(ws))
	}
}

func TestPlanWorkersErrors(t *testing.T) {
	tr := tuningtest.NewTree(t, 2)
	tr.NetDev(tuningtest.Dev{Name: "veth0", RxQueues: 2})
	qm, err := tuning.DiscoverQueues(tr.Roots(), "veth0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tuning.PlanWorkers(qm, []int{5}, tuning.MustParseCPUList("0-1")); !errors.Is(err, tuning.ErrBadInput) {
		t.Errorf("queue 5: %v", err)
	}
	if _, err := tuning.PlanWorkers(qm, []int{0, 0}, tuning.MustParseCPUList("0-1")); !errors.Is(err, tuning.ErrBadInput) {
		t.Errorf("queue twice: %v", err)
	}
	if _, err := tuning.PlanWorkers(qm, nil, tuning.CPUSet{}); err == nil {
		t.Error("no allowed CPU accepted")
	}
}
