//go:build linux

// Command xdpingest is the ingest server: it takes UDP datagrams for the
// configured ports off an interface with XDP and AF_XDP (or the kernel socket
// path where AF_XDP can't run) and writes them to sinks.
//
//	xdpingest run --iface IFACE --ports 9000,9100-9199 [flags]
//	xdpingest check --config FILE
//	xdpingest top [--metrics ADDR|URL]
//	xdpingest version
//	xdpingest completion bash|zsh|fish
//
// Exit status: 0 after a clean shutdown, 2 for bad flags or configuration
// (nothing was attached), 1 for anything that failed while running.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"

	"github.com/xdpingest/xdpingest/internal/config"
	"github.com/xdpingest/xdpingest/internal/server"
	"github.com/xdpingest/xdpingest/internal/version"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  xdpingest run --iface IFACE --ports PORTS [flags]   take UDP off IFACE (xdpingest run -h lists the flags)
  xdpingest check --config FILE [flags]               validate a configuration without touching the interface
  xdpingest top [--metrics ADDR|URL] [flags]          a live view of a running server's rates and drops
  xdpingest version                                   print the version
  xdpingest completion bash|zsh|fish                  print a shell completion script (source <(xdpingest completion bash))
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "top":
		return cmdTop(ctx, args[1:], stdout, stderr)
	case "completion":
		return cmdCompletion(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "xdpingest %s (%s)\n", version.String(), runtime.Version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "xdpingest: unknown command %q\n%s", args[0], usage)
	return 2
}

// parse parses flags and the config file into a validated configuration.
func parse(name string, args []string, stderr io.Writer) (*config.Resolved, *config.FlagSet, int) {
	fs := config.NewFlagSet(name, stderr)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, nil, 0
	}
	var cfg config.Config
	if err == nil {
		cfg, err = fs.Config()
	}
	if err == nil {
		var r *config.Resolved
		if r, err = cfg.Validate(); err == nil {
			return r, fs, -1
		}
	}
	fmt.Fprintf(stderr, "xdpingest %s: %v\n", name, err)
	return nil, nil, 2
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	r, _, code := parse("check", args, stderr)
	if r == nil {
		return code
	}
	fmt.Fprintf(stdout, "configuration is valid: iface %s, ports %s, path %s, %d sink(s)\n", r.Iface, config.FormatPorts(r.Ports), r.Path, len(r.Sinks))
	return 0
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	r, fs, code := parse("run", args, stderr)
	if r == nil {
		return code
	}
	var h slog.Handler = slog.NewTextHandler(stderr, nil)
	if r.JSONLogs {
		h = slog.NewJSONHandler(stderr, nil)
	}
	log := slog.New(h)
	env := server.Env{Log: log}
	if fs.ConfigFile != "" {
		env.Reload = func() (*config.Resolved, error) {
			cfg, err := fs.Config()
			if err != nil {
				return nil, err
			}
			return cfg.Validate()
		}
	}
	err := server.Run(ctx, r, env)
	var ce *server.ConfigError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ce):
		fmt.Fprintf(stderr, "xdpingest run: %v\n", err)
		return 2
	}
	log.Error("xdpingest failed", "err", err)
	return 1
}
