//go:build linux

package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/xdpingest/xdpingest/internal/completion"
	"github.com/xdpingest/xdpingest/tuning"
)

// completionSpec is nictune as the shells see it: its flags, taken
// anywhere on the line, and the commands.
func completionSpec() completion.Command {
	var o options
	flags := completion.FlagsOf(newFlags(&o, io.Discard), map[string]completion.Value{
		"profile": completion.OneOf(tuning.BuiltinProfiles()...),
		"state":   {Kind: completion.File},
		"netns":   {Kind: completion.Netns},
		"proc":    {Kind: completion.Dir},
		"sys":     {Kind: completion.Dir},
	})
	iface := completion.Value{Kind: completion.Iface}
	return completion.Command{Name: "nictune", Flags: flags, Subs: []completion.Sub{
		{Name: "show", Help: "print the device's settings, queue -> IRQ -> CPU map and CPU isolation", Args: iface},
		{Name: "plan", Help: "print what the profile would change (changes nothing)", Args: iface},
		{Name: "apply", Help: "apply the profile, read back, save the previous values", Args: iface},
		{Name: "revert", Help: "restore the values saved by apply", Args: iface},
		{Name: "profiles", Help: "print the built-in profiles as YAML", Args: completion.OneOf(tuning.BuiltinProfiles()...)},
		{Name: "version", Help: "print the version"},
		{Name: "completion", Help: "print a shell completion script", Args: completion.OneOf(completion.Shells...)},
		{Name: "help", Help: "print the usage"},
	}}
}

func (c *command) completion(args []string) int {
	if len(args) != 1 {
		return c.badArgs(fmt.Errorf("completion needs one shell: %s", strings.Join(completion.Shells, ", ")))
	}
	if err := completion.Write(c.stdout, args[0], completionSpec()); err != nil {
		return c.badArgs(err)
	}
	return exitOK
}
