//go:build linux

// Command xdpingest-demo shows xdpingest at work on a test bed it builds and
// removes itself: what `make demo` runs (internal/demo has the steps). It
// needs root, and the xdpingest binary next to it (make build puts both in
// bin/).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/xdpingest/xdpingest/internal/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "xdpingest-demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("can't tell where the demo runs from, to find xdpingest next to it: %w", err)
	}
	binary := filepath.Join(filepath.Dir(self), "xdpingest")
	if _, err := os.Stat(binary); err != nil {
		return fmt.Errorf("no xdpingest next to the demo (%s): run make build", binary)
	}
	return demo.Run(ctx, demo.Config{Xdpingest: binary, Out: os.Stdout, Err: os.Stderr})
}
