//go:build linux

package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/xdpingest/xdpingest/tuning"
)

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func settings(ss []tuning.Setting) string {
	var parts []string
	for _, s := range ss {
		switch {
		case s.Name == "":
			parts = append(parts, s.Note)
		case s.Value == "" && s.Note != "":
			parts = append(parts, s.Name+": "+s.Note)
		case s.Max != "":
			parts = append(parts, fmt.Sprintf("%s %s (max %s)", s.Name, s.Value, s.Max))
		case s.Note != "":
			parts = append(parts, fmt.Sprintf("%s %s [%s]", s.Name, s.Value, s.Note))
		default:
			parts = append(parts, s.Name+" "+s.Value)
		}
	}
	return strings.Join(parts, ", ")
}

func node(n int) string {
	if n < 0 {
		return "unknown"
	}
	return fmt.Sprint(n)
}

func printReport(w io.Writer, r *tuning.Report) {
	qm := r.Queues
	fmt.Fprintf(w, "%s: driver %s", r.Iface, orNone(r.Driver))
	if r.Version != "" {
		fmt.Fprintf(w, " %s", r.Version)
	}
	if r.BusInfo != "" {
		fmt.Fprintf(w, ", bus %s", r.BusInfo)
	}
	fmt.Fprintf(w, ", NUMA node %s\n", node(qm.NUMANode))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "channels\t%s\n", settings(r.Channels))
	fmt.Fprintf(tw, "rings\t%s\n", settings(r.Rings))
	fmt.Fprintf(tw, "coalesce\t%s\n", settings(r.Coalesce))
	fmt.Fprintf(tw, "features\t%s\n", settings(r.Features))
	fmt.Fprintf(tw, "napi\t%s\n", settings(r.NAPI))
	for i, s := range r.Sysctls {
		label := ""
		if i == 0 {
			label = "sysctls"
		}
		fmt.Fprintf(tw, "%s\t%s\n", label, settings([]tuning.Setting{s}))
	}
	tw.Flush()

	naming := qm.Naming
	if naming == "" {
		naming = "no per-queue IRQs"
	}
	fmt.Fprintf(w, "queues: %d rx, %d tx (%s)\n", len(qm.Queues), qm.TxQueues, naming)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, q := range qm.Queues {
		if len(q.IRQs) == 0 {
			fmt.Fprintf(tw, "  queue %d\t-\n", q.Index)
			continue
		}
		for i, irq := range q.IRQs {
			label := ""
			if i == 0 {
				label = fmt.Sprintf("  queue %d", q.Index)
			}
			eff := ""
			if !irq.Effective.IsEmpty() {
				eff = "effective " + irq.Effective.String()
			}
			fmt.Fprintf(tw, "%s\tIRQ %d\t%s\t%s\taffinity %s\t%s\n", label, irq.Num, irq.Name, irq.Kind, orNone(irq.Affinity.String()), eff)
		}
	}
	tw.Flush()
	if len(r.Workers) > 0 {
		fmt.Fprintf(w, "workers (allowed CPUs %s): %s\n", r.Allowed, tuning.FormatWorkers(r.Workers))
	}
	iso := r.Isolation
	fmt.Fprintf(w, "isolation: isolcpus %s, nohz_full %s, rcu_nocbs %s\n", orNone(iso.Isolated.String()), orNone(iso.NohzFull.String()), orNone(iso.RCUNoCBs.String()))
	for _, n := range r.IsolationNotes {
		fmt.Fprintf(w, "  %s\n", n)
	}
	if r.IRQBalance > 0 {
		fmt.Fprintf(w, "irqbalance: running (pid %d)\n", r.IRQBalance)
	} else {
		fmt.Fprintln(w, "irqbalance: not running")
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
}

func printPlan(w io.Writer, pl *tuning.Plan) {
	fmt.Fprintf(w, "profile %s on %s (driver %s), IRQ CPUs %s\n", pl.Profile, pl.Iface, orNone(pl.Driver), pl.CPUs)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SETTING\tCURRENT\t\tWANT\tACTION\tNOTE")
	for _, it := range pl.Items {
		arrow := "->"
		if it.Action != tuning.ActionChange {
			arrow = ""
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", it.Key, dash(it.Current), arrow, dash(it.Want), it.Action, it.Note)
	}
	tw.Flush()
	n, u := len(pl.Changes()), len(pl.Unsupported())
	fmt.Fprintf(w, "%d to change, %d already set, %d not supported by %s\n", n, len(pl.Items)-n-u, u, pl.Iface)
	printCmdline(w, pl.Cmdline, false)
	for _, warn := range pl.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printCmdline(w io.Writer, c *tuning.CmdlinePlan, applied bool) {
	if c == nil {
		return
	}
	fmt.Fprintf(w, "kernel command line wanted (set it in the boot loader; nictune can't): %s\n", c.Want)
	for _, p := range c.Parts {
		state := "not in effect"
		if p.InEffect {
			state = "in effect"
		}
		fmt.Fprintf(w, "  %s=%s: %s (now %s)\n", p.Param, p.Want, state, orNone(p.Current.String()))
	}
	_ = applied
}

func printApplied(w io.Writer, a *tuning.Applied) {
	pl := a.Plan
	fmt.Fprintf(w, "profile %s on %s (driver %s)\n", pl.Profile, pl.Iface, orNone(pl.Driver))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SETTING\tBEFORE\tWANT\tNOW\tRESULT\tNOTE")
	counts := map[tuning.Result]int{}
	for _, it := range pl.Items {
		counts[it.Result]++
		now := it.After
		if it.Result == tuning.ResultUnchanged {
			now = it.Current
		}
		note := it.Err
		if note == "" {
			note = it.Note
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", it.Key, dash(it.Current), dash(it.Want), dash(now), it.Result, note)
	}
	tw.Flush()
	fmt.Fprintf(w, "%s: %s\n", a.Outcome(), countLine(counts))
	printCmdline(w, pl.Cmdline, true)
	for _, warn := range pl.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	if a.StatePath != "" && len(a.Changed()) > 0 {
		fmt.Fprintf(w, "previous values saved in %s; undo with: nictune revert %s", a.StatePath, pl.Iface)
		if a.StatePath != tuning.DefaultStatePath(pl.Iface) {
			fmt.Fprintf(w, " --state %s", a.StatePath)
		}
		fmt.Fprintln(w)
	}
}

func countLine(counts map[tuning.Result]int) string {
	var parts []string
	for _, r := range []tuning.Result{tuning.ResultApplied, tuning.ResultRestored, tuning.ResultUnchanged, tuning.ResultUnsupported, tuning.ResultRefused, tuning.ResultNotInEffect, tuning.ResultRolledBack, tuning.ResultRollbackFailed, tuning.ResultSkipped} {
		if counts[r] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[r], r))
		}
	}
	if len(parts) == 0 {
		return "nothing to do"
	}
	return strings.Join(parts, ", ")
}

func printReverted(w io.Writer, r *tuning.Reverted) {
	fmt.Fprintf(w, "revert %s (profile %s) from %s\n", r.Iface, orNone(r.Profile), r.StatePath)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SETTING\tBEFORE\tSAVED\tNOW\tRESULT\tNOTE")
	counts := map[tuning.Result]int{}
	for _, it := range r.Items {
		counts[it.Result]++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", it.Key, dash(it.Current), dash(it.Want), dash(it.After), it.Result, it.Err)
	}
	tw.Flush()
	fmt.Fprintf(w, "%s: %s\n", r.Outcome(), countLine(counts))
	if r.Kept > 0 {
		fmt.Fprintf(w, "%d settings stay in %s for another try\n", r.Kept, r.StatePath)
	}
}
