//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/xdpingest/xdpingest/internal/testbed"
)

// Every command works in the namespace it runs in, or in one named with
// --netns (a bed made by hand, or by `ip netns add`): nil stands for the
// current one.

// lookupNetns returns the side for a named namespace, or nil for "".
func lookupNetns(name string) (*testbed.Side, error) {
	if name == "" {
		return nil, nil
	}
	if _, err := os.Stat(filepath.Join("/var/run/netns", name)); err != nil {
		return nil, fmt.Errorf("can't find network namespace %q: %w (see `ip netns list`)", name, err)
	}
	return testbed.Lookup(name), nil
}

// inNetns says where a command runs, for its first line.
func inNetns(name string) string {
	if name == "" {
		return ""
	}
	return " in network namespace " + name
}
