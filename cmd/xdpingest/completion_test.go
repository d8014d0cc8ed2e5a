package main

import (
	"flag"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/xdpingest/xdpingest/internal/completion"
	"github.com/xdpingest/xdpingest/internal/config"
)

// Issue 13, point 7: `xdpingest completion bash` completes every flag of
// run and check, and no other, as bash runs it; zsh and fish come from
// the same flags.
func TestCompletion(t *testing.T) {
	code, bash, stderr := runCLI("completion", "bash")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, sub := range []string{"run", "check"} {
		var want []string
		config.NewFlagSet(sub, io.Discard).VisitAll(func(f *flag.Flag) { want = append(want, "--"+f.Name) })
		got, err := completion.BashComplete(bash, []string{"xdpingest", sub, "--"})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("xdpingest %s --<TAB>: %q\nthe flag set has %q", sub, got, want)
		}
	}
	for line, want := range map[string][]string{
		"xdpingest ":                         {"run", "check", "top", "version", "completion", "help"},
		"xdpingest run --path ":              {"auto", "afxdp", "kernel"},
		"xdpingest check --on-full b":        {"block"},
		"xdpingest run --sink k":             {"kafka://"},
		"xdpingest run --ports 9000 --tune ": {"latency", "throughput", "afxdp", "balanced"},
		"xdpingest completion ":              {"bash", "zsh", "fish"},
	} {
		got, err := completion.BashComplete(bash, strings.Split(line, " "))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%q<TAB>: %q, want %q", line, got, want)
		}
	}
	for _, shell := range []string{"zsh", "fish"} {
		code, s, stderr := runCLI("completion", shell)
		if code != 0 || !strings.Contains(s, "xdpingest") {
			t.Errorf("completion %s: exit %d, %s", shell, code, stderr)
		}
	}
	_, fish, _ := runCLI("completion", "fish")
	config.NewFlagSet("run", io.Discard).VisitAll(func(f *flag.Flag) {
		if !strings.Contains(fish, "'__fish_seen_subcommand_from run' -l "+f.Name+" ") {
			t.Errorf("fish: no completion of run --%s", f.Name)
		}
	})
	if code, _, stderr := runCLI("completion", "tcsh"); code != 2 || !strings.Contains(stderr, "bash, zsh, fish") {
		t.Errorf("completion tcsh: exit %d, %q", code, stderr)
	}
	if code, _, _ := runCLI("completion"); code != 2 {
		t.Errorf("completion without a shell: exit %d", code)
	}
}
