//go:build linux

// Command pktbench measures UDP receive rates: it generates traffic, counts
// it on each of xdpingest's receive paths and on the kernel's, and compares
// them side by side on a test bed of its own.
//
//	pktbench gen --iface IFACE --dst IP:PORT [--dst-mac MAC] [flags]
//	pktbench rx --path PATH --iface IFACE [flags]
//	pktbench compare [--sizes 64,512,1472] [--queues 1,2] [--json F --svg F --png F]
//	pktbench latency [--paths afxdp,afxdp-c,kernel,stdnet,server] [--rates 1k,10k,100k,1M] [--json F --svg F --png F]
//	pktbench completion bash|zsh|fish
//
// gen and rx work as a pair on two hosts (or two namespaces); compare builds
// two network namespaces joined by a veth pair, runs every path against the
// generator in alternating repetitions, and removes them on every exit;
// latency does the same with a paced sender that stamps the time into every
// payload, and prints the percentiles of the one-way latency per path and
// rate.
//
// Exit status: 0 on success, 2 for bad flags, 1 for a failure while running,
// 130 when interrupted (SIGINT or SIGTERM) after cleaning up.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"github.com/xdpingest/xdpingest/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage:
  pktbench gen --iface IFACE --dst IP:PORT [flags]     send sequence-numbered UDP (pktbench gen -h)
  pktbench rx --path PATH --iface IFACE [flags]        count what arrives on one receive path (pktbench rx -h)
  pktbench compare [flags]                             every path side by side on a test bed of its own (pktbench compare -h)
  pktbench latency [flags]                             one-way latency percentiles per path and rate, on a bed of its own (pktbench latency -h,
                                                       which lists its paths)
  pktbench version                                     print the version
  pktbench completion bash|zsh|fish                    print a shell completion script (source <(pktbench completion bash))

paths (rx --path, compare --paths; compare runs the first five by default):
  xdp-drop      the XDP program drops and counts: the ceiling
  afxdp         datapath/afxdp, one AF_XDP socket per queue
  kernel        datapath/kernel, SO_REUSEPORT + recvmmsg
  stdnet        one net.UDPConn.ReadFromUDP loop
  server        xdpingest run with the discard sink (the xdpingest binary next to pktbench)
  server-pcap   xdpingest run with the pcap sink, into /dev/shm (server paths: what the sink wrote)
  afxdp-c       bench/cref/xskdrop, a reference AF_XDP receiver in C that reads no frame
  afxdp-c-walk  xskdrop reading each frame's headers and sequence number, as afxdp does
`

// Exit codes.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitInterrupted = 130
)

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var code int
	switch args[0] {
	case "gen":
		code = cmdGen(ctx, args[1:], stdout, stderr)
	case "rx":
		code = cmdRx(ctx, args[1:], stdout, stderr)
	case "compare":
		code = cmdCompare(ctx, args[1:], stdout, stderr)
	case "latency":
		code = cmdLatency(ctx, args[1:], stdout, stderr)
	case "completion":
		return cmdCompletion(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "pktbench %s (%s)\n", version.String(), runtime.Version())
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "pktbench: unknown command %q\n%s", args[0], usage)
		return exitUsage
	}
	if code == exitFailure && ctx.Err() != nil {
		return exitInterrupted
	}
	return code
}

// parseFlags parses args into fs and says what to return when parsing
// ends the command: -1 to go on.
func parseFlags(fs *flag.FlagSet, args []string) int {
	if err := refuseRenamed(fs, args); err != nil {
		fmt.Fprintf(fs.Output(), "pktbench %s: %v\n", fs.Name(), err)
		return exitUsage
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "pktbench %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return exitUsage
	}
	return -1
}

// parsePaths reads --paths: names from known, each once, in the order given.
func parsePaths(s string, known []string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(known, p) {
			return nil, fmt.Errorf("unknown path %q in --paths: want some of %s", p, strings.Join(known, ","))
		}
		if slices.Contains(out, p) {
			return nil, fmt.Errorf("path %s is named twice in --paths", p)
		}
		out = append(out, p)
	}
	return out, nil
}

// usageError prints a message about the flags and returns exitUsage.
func usageError(stderr io.Writer, cmd string, format string, args ...any) int {
	fmt.Fprintf(stderr, "pktbench %s: %s\n", cmd, fmt.Sprintf(format, args...))
	return exitUsage
}

// failure prints an error and returns exitFailure (exitInterrupted when the
// context was cancelled: the error is then most likely the interruption's).
func failure(ctx context.Context, stderr io.Writer, cmd string, err error) int {
	if ctx.Err() != nil {
		fmt.Fprintf(stderr, "pktbench %s: interrupted: %v\n", cmd, err)
		return exitInterrupted
	}
	fmt.Fprintf(stderr, "pktbench %s: %v\n", cmd, err)
	return exitFailure
}
