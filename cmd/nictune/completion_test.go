package main

import (
	"flag"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/xdpingest/xdpingest/internal/completion"
)

// Issue 13, point 7: nictune version works, and a misspelt command is
// named as one rather than asked for an interface.
func TestVersion(t *testing.T) {
	r := nictune(t, env{}, "version")
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "nictune ") || !strings.Contains(r.stdout, runtime.Version()) {
		t.Errorf("version: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	r = nictune(t, env{}, "versoin")
	if r.code != exitBadArgs || !strings.Contains(r.stderr, `unknown command "versoin"`) {
		t.Errorf("versoin: exit %d, %q", r.code, r.stderr)
	}
	r = nictune(t, env{}, "help")
	if r.code != exitOK || !strings.Contains(r.stdout, "completion bash|zsh|fish") || !strings.Contains(r.stdout, "-profile") {
		t.Errorf("help: exit %d, %q", r.code, r.stdout)
	}
}

// `nictune completion bash` completes every flag, and no other, before
// and after a command, as bash runs it; the commands; interfaces after
// them.
func TestCompletion(t *testing.T) {
	r := nictune(t, env{}, "completion", "bash")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var o options
	var want []string
	newFlags(&o, io.Discard).VisitAll(func(f *flag.Flag) { want = append(want, "--"+f.Name) })
	for _, line := range []string{"nictune --", "nictune plan --", "nictune --json apply eth0 --"} {
		got, err := completion.BashComplete(r.stdout, strings.Split(line, " "))
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%q<TAB>: %q\nthe flag set has %q", line, got, want)
		}
	}
	for line, want := range map[string][]string{
		"nictune ":                {"show", "plan", "apply", "revert", "profiles", "version", "completion", "help"},
		"nictune --json p":        {"plan", "profiles"},
		"nictune plan --profile ": {"latency", "throughput", "afxdp", "balanced"},
		"nictune profiles la":     {"latency"},
	} {
		got, err := completion.BashComplete(r.stdout, strings.Split(line, " "))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%q<TAB>: %q, want %q", line, got, want)
		}
	}
	if got, _ := completion.BashComplete(r.stdout, []string{"nictune", "show", "l"}); !slices.Contains(got, "lo") {
		t.Errorf("nictune show l<TAB>: %q, want lo among them", got)
	}
	for _, shell := range []string{"zsh", "fish"} {
		if r := nictune(t, env{}, "completion", shell); r.code != exitOK || !strings.Contains(r.stdout, "nictune") {
			t.Errorf("completion %s: exit %d, %s", shell, r.code, r.stderr)
		}
	}
	if r := nictune(t, env{}, "completion", "tcsh"); r.code != exitBadArgs {
		t.Errorf("completion tcsh: exit %d", r.code)
	}
}
