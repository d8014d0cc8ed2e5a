//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/xdpingest/xdpingest/internal/version"
	"github.com/xdpingest/xdpingest/tuning"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailed  = 1
	exitBadArgs = 2
	exitPartial = 3
)

// env is what run needs from the outside world, so that tests can run the
// command against a fake tree and a fake ethtool backend.
type env struct {
	stdout, stderr io.Writer
	// roots of /proc and /sys; zero: the real ones (or --proc/--sys).
	roots tuning.Roots
	// openEthtool, when set, replaces opening a real ethtool handle; the
	// handle it returns is closed by run.
	openEthtool func() (tuning.Ethtool, error)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(code)
}

const usage = `usage: nictune [flags] COMMAND [flags] [IFACE]

commands:
  show IFACE                  print the device's settings, queue -> IRQ -> CPU map and CPU isolation
  plan --profile NAME IFACE   print what the profile would change (changes nothing)
  apply --profile NAME IFACE  apply the profile, read back, save the previous values
  revert IFACE                restore the values saved by apply
  profiles [NAME]             print the built-in profiles (as YAML user profiles)
  version                     print the version
  completion bash|zsh|fish    print a shell completion script (source <(nictune completion bash))

profiles: latency, throughput, afxdp, balanced, or a YAML file (--profile ./mine.yaml)

exit status: 0 all in effect, 3 some settings not in effect, 1 nothing could be done
or an error, 2 bad input (nothing changed)

flags:
`

// options are the flags of every command (each uses those that apply).
type options struct {
	profile string
	json    bool
	cpus    string
	state   string
	atomic  bool
	force   bool
	netns   string
	proc    string
	sys     string
}

func newFlags(o *options, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("nictune", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.profile, "profile", "", "profile `NAME` (latency, throughput, afxdp, balanced) or YAML file path")
	fs.BoolVar(&o.json, "json", false, "print JSON")
	fs.StringVar(&o.cpus, "cpus", "", "CPU `LIST` (0-3,8) to spread queue IRQs over and to count as cores; for show, to place workers in (default: all online / allowed)")
	fs.StringVar(&o.state, "state", "", "state `FILE` with the previous values (default "+filepath.Join(tuning.DefaultStateDir, "nictune-IFACE.json")+")")
	fs.BoolVar(&o.atomic, "atomic", false, "apply: roll everything back if any setting does not take effect")
	fs.BoolVar(&o.force, "force", false, "revert: restore a state file saved before the last reboot")
	fs.StringVar(&o.netns, "netns", "", "reach the device through an ethtool handle in network namespace `NAME` (or a path to one); /proc and /sys stay those of this mount: prefer `ip netns exec NAME nictune ...`")
	fs.StringVar(&o.proc, "proc", "", "procfs `ROOT` (default /proc)")
	fs.StringVar(&o.sys, "sys", "", "sysfs `ROOT` (default /sys)")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags anywhere among the arguments ("apply eth0 --profile
// x" as well as "apply --profile x eth0") and returns the positional ones.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func run(ctx context.Context, args []string, e env) int {
	var o options
	fs := newFlags(&o, e.stderr)
	pos, err := parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitBadArgs // flag already printed the error
	}
	if len(pos) == 0 {
		fs.Usage()
		return exitBadArgs
	}
	cmd, pos := pos[0], pos[1:]
	c := &command{opts: o, env: e, stdout: e.stdout, stderr: e.stderr}
	switch cmd {
	case "profiles":
		return c.profiles(pos)
	case "version":
		fmt.Fprintf(e.stdout, "nictune %s (%s)\n", version.String(), runtime.Version())
		return exitOK
	case "completion":
		return c.completion(pos)
	case "help":
		fs.SetOutput(e.stdout)
		fs.Usage = func() { fmt.Fprint(e.stdout, usage); fs.PrintDefaults() }
		fs.Usage()
		return exitOK
	}
	switch cmd {
	case "show", "plan", "apply", "revert":
	default:
		return c.badArgs(fmt.Errorf("unknown command %q (show, plan, apply, revert, profiles, version, completion)", cmd))
	}
	if len(pos) != 1 {
		return c.badArgs(fmt.Errorf("%s needs one interface name, got %d arguments", cmd, len(pos)))
	}
	iface := pos[0]
	if err := c.setup(); err != nil {
		return c.fail(err)
	}
	defer c.close()
	switch cmd {
	case "show":
		return c.show(ctx, iface)
	case "plan":
		return c.plan(ctx, iface)
	case "apply":
		return c.apply(ctx, iface)
	default:
		return c.revert(ctx, iface)
	}
}

type command struct {
	opts           options
	env            env
	stdout, stderr io.Writer
	topts          tuning.Options
	et             tuning.Ethtool
}

func (c *command) setup() error {
	o := c.opts
	roots := c.env.roots
	if o.proc != "" {
		roots.Proc = o.proc
	}
	if o.sys != "" {
		roots.Sys = o.sys
	}
	c.topts = tuning.Options{Roots: roots, StatePath: o.state, Atomic: o.atomic, Force: o.force}
	if o.cpus != "" {
		cpus, err := tuning.ParseCPUList(o.cpus)
		if err != nil {
			return fmt.Errorf("--cpus: %w: %w", err, tuning.ErrBadInput)
		}
		if cpus.IsEmpty() {
			return fmt.Errorf("--cpus: empty CPU list: %w", tuning.ErrBadInput)
		}
		c.topts.CPUs = cpus
	}
	var err error
	switch {
	case c.env.openEthtool != nil:
		c.et, err = c.env.openEthtool()
	case o.netns != "":
		path := o.netns
		if !strings.ContainsRune(path, '/') {
			path = filepath.Join("/var/run/netns", path)
		}
		c.et, err = tuning.OpenEthtoolIn(path)
	default:
		c.et, err = tuning.OpenEthtool()
	}
	if err != nil {
		return err
	}
	c.topts.Ethtool = c.et
	return nil
}

func (c *command) close() {
	if c.et != nil {
		c.et.Close()
	}
}

// fail prints err and returns the exit status it deserves.
func (c *command) fail(err error) int {
	fmt.Fprintf(c.stderr, "nictune: %v\n", err)
	if errors.Is(err, tuning.ErrBadInput) {
		return exitBadArgs
	}
	return exitFailed
}

func (c *command) badArgs(err error) int {
	fmt.Fprintf(c.stderr, "nictune: %v\n", err)
	return exitBadArgs
}

func (c *command) printJSON(v any) {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(c.stderr, "nictune: can't encode JSON: %v\n", err)
	}
}

func (c *command) loadProfile() (*tuning.Profile, error) {
	if c.opts.profile == "" {
		return nil, fmt.Errorf("--profile is required (%s, or a YAML file): %w", strings.Join(tuning.BuiltinProfiles(), ", "), tuning.ErrBadInput)
	}
	return tuning.LoadProfile(c.opts.profile)
}

func (c *command) profiles(names []string) int {
	if len(names) == 0 {
		names = tuning.BuiltinProfiles()
	}
	for i, n := range names {
		p, err := tuning.LoadProfile(n)
		if err != nil {
			return c.fail(err)
		}
		if c.opts.json {
			c.printJSON(p)
			continue
		}
		y, err := tuning.MarshalProfile(p)
		if err != nil {
			return c.fail(err)
		}
		if i > 0 {
			fmt.Fprintln(c.stdout, "---")
		}
		c.stdout.Write(y)
	}
	return exitOK
}

func (c *command) show(ctx context.Context, iface string) int {
	rep, err := tuning.Show(ctx, iface, c.topts)
	if err != nil {
		return c.fail(err)
	}
	if c.opts.json {
		c.printJSON(rep)
	} else {
		printReport(c.stdout, rep)
	}
	return exitOK
}

func (c *command) plan(ctx context.Context, iface string) int {
	p, err := c.loadProfile()
	if err != nil {
		return c.fail(err)
	}
	pl, err := tuning.PlanProfile(ctx, iface, p, c.topts)
	if err != nil {
		return c.fail(err)
	}
	if c.opts.json {
		c.printJSON(pl)
	} else {
		printPlan(c.stdout, pl)
	}
	return exitOK
}

// exitFor maps an outcome to the exit status.
func exitFor(o tuning.Outcome) int {
	switch o {
	case tuning.Complete:
		return exitOK
	case tuning.Partial:
		return exitPartial
	}
	return exitFailed
}

func (c *command) apply(ctx context.Context, iface string) int {
	p, err := c.loadProfile()
	if err != nil {
		return c.fail(err)
	}
	a, err := tuning.Apply(ctx, iface, p, c.topts)
	if a == nil {
		return c.fail(err)
	}
	// The state file is the record from here on; nictune revert (or
	// another apply) takes the lock when this run is done.
	defer a.Release()
	if c.opts.json {
		c.printJSON(struct {
			*tuning.Applied
			Outcome string `json:"outcome"`
		}{a, a.Outcome().String()})
	} else {
		printApplied(c.stdout, a)
	}
	if err != nil {
		return c.fail(err)
	}
	return exitFor(a.Outcome())
}

func (c *command) revert(ctx context.Context, iface string) int {
	r, err := tuning.Revert(ctx, iface, c.topts)
	if err != nil && len(r.Items) == 0 {
		return c.fail(err)
	}
	if c.opts.json {
		c.printJSON(struct {
			*tuning.Reverted
			Outcome string `json:"outcome"`
		}{r, r.Outcome().String()})
	} else {
		printReverted(c.stdout, r)
	}
	if err != nil {
		return c.fail(err)
	}
	return exitFor(r.Outcome())
}
