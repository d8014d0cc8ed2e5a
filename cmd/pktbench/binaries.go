//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/xdpingest/xdpingest/bench/measure"
)

// The server and afxdp-c paths run binaries of their own, which pktbench
// finds when it checks its flags, before anything is attached.

// findXskdrop returns the xskdrop binary next to this executable (`make
// build` compiles it when a C compiler is installed).
func findXskdrop() (string, error) {
	return besideSelf("xskdrop", "the afxdp-c path", "`make build` compiles it from bench/cref/xskdrop.c when cc is installed")
}

// findXdpingest returns the server binary: the one named, else the
// xdpingest next to this executable (`make build` puts both in bin/).
func findXdpingest(named string) (string, error) {
	if named != "" {
		st, err := os.Stat(named)
		if err != nil {
			return "", fmt.Errorf("can't use --xdpingest %s: %w", named, err)
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("can't use --xdpingest %s: not an executable file", named)
		}
		return named, nil
	}
	return besideSelf("xdpingest", "the server path", "run `make build` (it puts both in bin/), pass --xdpingest PATH, or leave the server out with --paths")
}

// besideSelf returns the program name next to this executable, or an error
// saying that what needs it can't run, and how to get it.
func besideSelf(name, what, how string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("%s needs the %s binary, and pktbench can't tell where it runs from (%v): %s", what, name, err, how)
	}
	p := filepath.Join(filepath.Dir(self), name)
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		return "", fmt.Errorf("%s needs the %s binary, and there is none next to pktbench (%s): %s", what, name, p, how)
	}
	return p, nil
}

// findBinaries fills in the binaries of the paths that run one: the server
// binary named by --xdpingest (server) or the one next to pktbench, and the
// xskdrop next to pktbench.
func findBinaries(o *measure.PathOptions, paths []string, server string) error {
	var err error
	if slices.ContainsFunc(paths, measure.IsServer) {
		if o.Xdpingest, err = findXdpingest(server); err != nil {
			return err
		}
	}
	if slices.ContainsFunc(paths, measure.IsCref) {
		if o.Xskdrop, err = findXskdrop(); err != nil {
			return err
		}
	}
	return nil
}
