//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"strings"

	"github.com/xdpingest/xdpingest/bench/measure"
	"github.com/xdpingest/xdpingest/internal/completion"
)

// subFlags reads the flags of a subcommand from its -h output: gen, rx,
// compare and latency make their flag sets where they run, and -h returns before
// anything else happens.
func subFlags(cmd func(context.Context, []string, io.Writer, io.Writer) int, hints map[string]completion.Value) []completion.Flag {
	var help bytes.Buffer
	cmd(context.Background(), []string{"-h"}, io.Discard, &help)
	return completion.FlagsFromHelp(help.String(), hints)
}

// completionSpec is pktbench as the shells see it.
func completionSpec() completion.Command {
	file := completion.Value{Kind: completion.File}
	hints := map[string]completion.Value{
		"iface":     {Kind: completion.Iface},
		"netns":     {Kind: completion.Netns},
		"path":      completion.OneOf(measure.KnownPaths()...),
		"paths":     completion.OneOf(measure.KnownPaths()...),
		"gen":       completion.OneOf(measure.GenLive, measure.GenAFXDP, measure.GenSendmmsg),
		"xdp-mode":  completion.OneOf("native", "generic", "auto"),
		"xdpingest": file,
		"json":      file,
		"svg":       file,
		"png":       file,
		"pcap-dir":  {Kind: completion.Dir},
	}
	latHints := maps.Clone(hints)
	latHints["paths"] = completion.OneOf(measure.LatencyPaths()...)
	latHints["gen"] = completion.OneOf(measure.GenAFXDP, measure.GenSendmmsg)
	return completion.Command{Name: "pktbench", Subs: []completion.Sub{
		{Name: "gen", Help: "send sequence-numbered UDP", Flags: subFlags(cmdGen, hints)},
		{Name: "rx", Help: "count what arrives on one receive path", Flags: subFlags(cmdRx, hints)},
		{Name: "compare", Help: "every path side by side on a test bed of its own", Flags: subFlags(cmdCompare, hints)},
		{Name: "latency", Help: "one-way latency percentiles per path and rate", Flags: subFlags(cmdLatency, latHints)},
		{Name: "version", Help: "print the version"},
		{Name: "completion", Help: "print a shell completion script", Args: completion.OneOf(completion.Shells...)},
		{Name: "help", Help: "print the usage"},
	}}
}

func cmdCompletion(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintf(stderr, "usage: pktbench completion %s\n", strings.Join(completion.Shells, "|"))
		return exitUsage
	}
	if err := completion.Write(stdout, args[0], completionSpec()); err != nil {
		fmt.Fprintf(stderr, "pktbench completion: %v\n", err)
		return exitUsage
	}
	return exitOK
}
