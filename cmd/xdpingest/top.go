//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/xdpingest/xdpingest/internal/config"
	"github.com/xdpingest/xdpingest/internal/top"
)

// topSettings are top's flags.
type topSettings struct {
	metrics  string
	interval time.Duration
	once     bool
	plain    bool
}

// topFlagSet is top's flag set; the completion script reads it too.
func topFlagSet(stderr io.Writer) (*flag.FlagSet, *topSettings) {
	s := &topSettings{}
	fs := flag.NewFlagSet("top", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&s.metrics, "metrics", config.Defaults().MetricsAddr, "the server's metrics `address` (IP:PORT, as its --metrics-addr) or the URL of its /metrics page")
	fs.DurationVar(&s.interval, "interval", time.Second, "time between two scrapes; rates are per second over it")
	fs.BoolVar(&s.once, "once", false, "write one view with the rates over one interval and exit")
	fs.BoolVar(&s.plain, "plain", false, "write plain lines, one block per interval, even on a terminal (the default when stdout is not one)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: xdpingest top [--metrics ADDR|URL] [--interval 1s] [--once] [--plain]\n\n"+
			"A live view of a running server, from its /metrics page: each receive queue's\n"+
			"rate and drops by reason, the XDP program's outcomes, each sink's rate, what\n"+
			"it holds and its drops. q or Ctrl-C quits.\n\n")
		fs.PrintDefaults()
	}
	return fs, s
}

// metricsURL turns --metrics into the URL of the page: an address gets
// http:// and /metrics.
func metricsURL(s string) (string, error) {
	raw := s
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err == nil && u.Scheme != "http" && u.Scheme != "https" {
		err = fmt.Errorf("scheme %q is neither http nor https", u.Scheme)
	}
	if err == nil && u.Host == "" {
		err = errors.New("no host")
	}
	if err != nil {
		return "", fmt.Errorf("invalid --metrics %q: %w: want IP:PORT such as 127.0.0.1:9109, or a URL", raw, err)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/metrics"
	}
	return u.String(), nil
}

func cmdTop(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, s := topFlagSet(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "xdpingest top: unexpected argument %q (the address goes in --metrics)\n", fs.Arg(0))
		return 2
	}
	u, err := metricsURL(s.metrics)
	if err != nil {
		fmt.Fprintf(stderr, "xdpingest top: %v\n", err)
		return 2
	}
	if s.interval < 100*time.Millisecond {
		fmt.Fprintf(stderr, "xdpingest top: invalid --interval %v: want 100ms or more\n", s.interval)
		return 2
	}
	// SIGQUIT too: Ctrl-\ works in cbreak mode, and would otherwise end the
	// process without restoring the terminal.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer stop()
	o := top.Options{URL: u, Interval: s.interval, Once: s.once, Out: stdout}
	if f, ok := stdout.(*os.File); ok && !s.once && !s.plain && top.IsTerminal(f) {
		o.Size = top.TerminalSize(f)
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		o.Redraw = winch
		if top.IsTerminal(os.Stdin) {
			restore, err := top.Cbreak(os.Stdin)
			if err != nil {
				fmt.Fprintf(stderr, "xdpingest top: %v\n", err)
				return 1
			}
			defer restore()
			var quit context.CancelFunc
			ctx, quit = context.WithCancel(ctx)
			defer quit()
			// The reader stays blocked after Run returns; the process
			// exits right after.
			go top.WatchKeys(os.Stdin, quit)
		}
	}
	if err := top.Run(ctx, o); err != nil {
		fmt.Fprintf(stderr, "xdpingest top: %v\n", err)
		return 1
	}
	return 0
}
