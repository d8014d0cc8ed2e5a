package main

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/xdpingest/xdpingest/internal/completion"
)

// Issue 13, point 7: `pktbench completion bash` completes, for gen, rx and
// compare, every flag their -h lists, each of which their parser takes;
// and the subcommands and paths.
func TestCompletion(t *testing.T) {
	var script, errb bytes.Buffer
	if code := run(context.Background(), []string{"completion", "bash"}, &script, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	flagLine := regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)
	for name, cmd := range map[string]func(context.Context, []string, io.Writer, io.Writer) int{
		"gen": cmdGen, "rx": cmdRx, "compare": cmdCompare,
	} {
		got, err := completion.BashComplete(script.String(), []string{"pktbench", name, "--"})
		if err != nil {
			t.Fatal(err)
		}
		var help bytes.Buffer
		cmd(context.Background(), []string{"-h"}, io.Discard, &help)
		var want []string
		for _, m := range flagLine.FindAllStringSubmatch(help.String(), -1) {
			want = append(want, "--"+m[1])
		}
		slices.Sort(got)
		slices.Sort(want)
		if len(want) < 5 || !slices.Equal(got, want) {
			t.Errorf("pktbench %s --<TAB>: %q\n-h lists %q", name, got, want)
		}
		// The parser takes each (-h then ends it before anything runs),
		// and refuses a flag it doesn't have.
		for _, f := range append(got, "--bogus") {
			var errOut bytes.Buffer
			code := cmd(context.Background(), []string{f + "=0", "-h"}, io.Discard, &errOut)
			if (code == exitOK) != (f != "--bogus") {
				t.Errorf("pktbench %s %s=0 -h: exit %d: %s", name, f, code, errOut.String())
			}
		}
	}
	for line, want := range map[string][]string{
		"pktbench ":                    {"gen", "rx", "compare", "latency", "version", "completion", "help"},
		"pktbench rx --path se":        {"server", "server-pcap"},
		"pktbench gen --gen ":          {"live", "afxdp", "sendmmsg"},
		"pktbench latency --paths afx": {"afxdp", "afxdp-poll", "afxdp-busy", "afxdp-spin", "afxdp-c", "afxdp-c-poll", "afxdp-c-spin"},
		"pktbench latency --gen ":      {"afxdp", "sendmmsg"},
	} {
		got, err := completion.BashComplete(script.String(), strings.Split(line, " "))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%q<TAB>: %q, want %q", line, got, want)
		}
	}
}
