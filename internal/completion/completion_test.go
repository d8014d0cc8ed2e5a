package completion

import (
	"bytes"
	"flag"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// toy is a command with what the real ones have: a subcommand with its own
// flags (bool, duration, words, file, interface), one without, positional
// interfaces, and (in toyGlobal) flags taken anywhere.
func toy(global bool) Command {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.String("config", "", "config `file`")
	fs.String("iface", "", "the interface")
	fs.String("mode", "native", "mode")
	fs.Bool("replace", false, "replace\nsecond line")
	fs.Duration("nap", time.Millisecond, "nap")
	hints := map[string]Value{"config": {Kind: File}, "iface": {Kind: Iface}, "mode": OneOf("native", "generic")}
	c := Command{Name: "toy", Subs: []Sub{
		{Name: "run", Help: "run it", Flags: FlagsOf(fs, hints)},
		{Name: "show", Help: "show IFACE", Args: Value{Kind: Iface}},
		{Name: "completion", Help: "completion", Args: OneOf(Shells...)},
	}}
	if global {
		g := flag.NewFlagSet("toy", flag.ContinueOnError)
		g.Bool("json", false, "print JSON")
		g.String("profile", "", "profile")
		c.Flags = FlagsOf(g, map[string]Value{"profile": OneOf("latency", "afxdp")})
	}
	return c
}

func script(t *testing.T, shell string, c Command) string {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, shell, c); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestBash(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash") // a Debian machine always has it
	}
	s := script(t, "bash", toy(false))
	if out, err := exec.Command("bash", "-n", "-c", s).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v: %s\n%s", err, out, s)
	}
	for _, c := range []struct {
		line string // the cursor at its end
		want []string
	}{
		{"toy ", []string{"run", "show", "completion"}},
		{"toy r", []string{"run"}},
		{"toy run --", []string{"--config", "--iface", "--mode", "--nap", "--replace"}},
		{"toy run --re", []string{"--replace"}},
		{"toy run --mode ", []string{"native", "generic"}},
		{"toy run -mode g", []string{"generic"}},
		{"toy run --replace --mode g", []string{"generic"}},
		{"toy run --mode=g", []string{"generic"}},
		{"toy run --mode = g", []string{"generic"}}, // bash splits at the =
		{"toy run --mode =", []string{"native", "generic"}},
		{"toy run --nap ", nil},
		{"toy run --iface lo --", []string{"--config", "--iface", "--mode", "--nap", "--replace"}},
		{"toy run --iface l", []string{"lo"}},
		{"toy show l", []string{"lo"}},
		{"toy completion ", []string{"bash", "zsh", "fish"}},
		{"toy show --", nil},
	} {
		words := strings.Split(c.line, " ")
		got, err := BashComplete(s, words)
		if err != nil {
			t.Fatalf("%q: %v", c.line, err)
		}
		if c.line == "toy run --iface l" || c.line == "toy show l" {
			if !slices.Contains(got, "lo") {
				t.Errorf("%q: %q, want lo among them", c.line, got)
			}
			continue
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%q: %q, want %q", c.line, got, c.want)
		}
	}
	if got, _ := BashComplete(s, []string{"toy", "run", "--config", "/etc/host"}); !slices.Contains(got, "/etc/hostname") {
		t.Errorf("--config /etc/host: %q, want /etc/hostname among them", got)
	}
}

// Flags taken anywhere (nictune's): before the subcommand, and after it
// beside the subcommand's own.
func TestBashGlobalFlags(t *testing.T) {
	s := script(t, "bash", toy(true))
	for _, c := range []struct {
		line string
		want []string
	}{
		{"toy --", []string{"--json", "--profile"}},
		{"toy --profile ", []string{"latency", "afxdp"}},
		{"toy --json ", []string{"run", "show", "completion"}},
		{"toy show --", []string{"--json", "--profile"}},
		{"toy show --profile a", []string{"afxdp"}},
		{"toy run --j", []string{"--json"}},
	} {
		got, err := BashComplete(s, strings.Split(c.line, " "))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%q: %q, want %q", c.line, got, c.want)
		}
	}
}

// zsh runs the bash function through bashcompinit; fish gets a complete
// line per flag, with its first usage line.
func TestZshFish(t *testing.T) {
	z := script(t, "zsh", toy(true))
	if !strings.Contains(z, "bashcompinit") || !strings.Contains(z, "complete -F _toy_complete toy") {
		t.Errorf("zsh script:\n%s", z)
	}
	f := script(t, "fish", toy(true))
	for _, want := range []string{
		"complete -c toy -n '__fish_use_subcommand' -a run -d 'run it'",
		"complete -c toy -n '__fish_seen_subcommand_from run' -l mode -r -f -a 'native generic' -d 'mode'",
		"complete -c toy -n '__fish_seen_subcommand_from run' -l replace -d 'replace'",
		"complete -c toy -n '__fish_seen_subcommand_from run' -l config -r -F -d 'config `file`'",
		"complete -c toy -n 'true' -l json -d 'print JSON'",
		"complete -c toy -n '__fish_seen_subcommand_from completion' -f -a 'bash zsh fish'",
	} {
		if !strings.Contains(f, want+"\n") {
			t.Errorf("fish script lacks %q:\n%s", want, f)
		}
	}
	if err := Write(io.Discard, "tcsh", toy(false)); err == nil {
		t.Error("an unknown shell was accepted")
	}
}

// FlagsFromHelp reads what flag.PrintDefaults writes, and nothing of the
// text before it.
func TestFlagsFromHelp(t *testing.T) {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	fs.String("iface", "", "the `interface` to send on")
	fs.Int("size", 64, "frame size")
	fs.Bool("ipv6", false, "send IPv6")
	fs.Duration("duration", 0, "stop after this long")
	var b bytes.Buffer
	b.WriteString("usage: pktbench gen [flags]\n\n  -not a flag, text of the command\n\n")
	fs.SetOutput(&b)
	fs.PrintDefaults()
	got := FlagsFromHelp(b.String(), map[string]Value{"iface": {Kind: Iface}})
	want := FlagsOf(fs, map[string]Value{"iface": {Kind: Iface}})
	for i := range want {
		want[i].Usage = strings.ReplaceAll(want[i].Usage, "`", "") // PrintDefaults unquotes
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for i := range want {
		if got[i].Name != want[i].Name || got[i].Bool != want[i].Bool || got[i].Value.Kind != want[i].Value.Kind {
			t.Errorf("flag %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}
