package main

import (
	"context"
	"strings"
	"testing"
)

func TestGenFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"gen", "--dst", "198.18.0.2:9000", "--count", "1"}, "--iface and --dst are required"},
		{[]string{"gen", "--iface", "x"}, "--iface and --dst are required"},
		{[]string{"gen", "--iface", "x", "--dst", "198.18.0.2:9000"}, "give --count or --duration"},
		{[]string{"gen", "--iface", "x", "--dst", "198.18.0.2", "--count", "1"}, "want IP:PORT"},
		{[]string{"gen", "--iface", "x", "--dst", "198.18.0.2:9", "--count", "1", "--netns", "no-such-ns-pktbench"}, "can't find network namespace"},
		{[]string{"gen", "--iface", "x", "--dst", "198.18.0.2:9", "--count", "1", "--cpus", "0,1", "--queues", "0"}, "one per generator"},
		{[]string{"gen", "extra"}, "unexpected argument"},
		{[]string{"nosuch"}, "unknown command"},
	} {
		code, _, errs := runCmd(context.Background(), c.args...)
		if code != exitUsage || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errs, c.want)
		}
	}
	if code, out, _ := runCmd(context.Background(), "gen", "-h"); code != 0 && out == "" {
		t.Errorf("gen -h: exit %d", code)
	}
}
