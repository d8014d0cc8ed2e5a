//go:build linux

package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/xdpingest/xdpingest/internal/completion"
	"github.com/xdpingest/xdpingest/internal/config"
	"github.com/xdpingest/xdpingest/tuning"
)

// completionSpec is xdpingest as the shells see it, from the flag sets
// that run and check parse.
func completionSpec() completion.Command {
	hints := map[string]completion.Value{
		"config":     {Kind: completion.File},
		"iface":      {Kind: completion.Iface},
		"path":       completion.OneOf(string(config.PathAuto), string(config.PathAFXDP), string(config.PathKernel)),
		"queues":     completion.OneOf("all"),
		"xdp-mode":   completion.OneOf("native", "generic", "auto"),
		"on-full":    completion.OneOf("drop", "block"),
		"log-format": completion.OneOf("text", "json"),
		"latency":    completion.OneOf("default", "low"),
		"frame-size": completion.OneOf("2048", "4096"),
		"tune":       completion.OneOf(tuning.BuiltinProfiles()...),
		"sink":       completion.OneOf("pcap:", "nats://", "tls://", "kafka://", "udp://", "discard"),
	}
	flags := func(name string) []completion.Flag {
		return completion.FlagsOf(config.NewFlagSet(name, io.Discard).FlagSet, hints)
	}
	topFlags, _ := topFlagSet(io.Discard)
	return completion.Command{Name: "xdpingest", Subs: []completion.Sub{
		{Name: "run", Help: "take UDP off an interface", Flags: flags("run")},
		{Name: "check", Help: "validate a configuration without touching the interface", Flags: flags("check")},
		{Name: "top", Help: "a live view of a running server's rates and drops", Flags: completion.FlagsOf(topFlags, nil)},
		{Name: "version", Help: "print the version"},
		{Name: "completion", Help: "print a shell completion script", Args: completion.OneOf(completion.Shells...)},
		{Name: "help", Help: "print the usage"},
	}}
}

// cmdCompletion prints the completion script for the shell named in args.
func cmdCompletion(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintf(stderr, "usage: xdpingest completion %s\n", strings.Join(completion.Shells, "|"))
		return 2
	}
	if err := completion.Write(stdout, args[0], completionSpec()); err != nil {
		fmt.Fprintf(stderr, "xdpingest completion: %v\n", err)
		return 2
	}
	return 0
}
