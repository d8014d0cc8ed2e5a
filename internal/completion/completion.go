// Package completion writes shell completion scripts (bash, zsh and fish)
// for the commands, generated from their flag sets when the script is
// asked for, so that a script can't name a flag the command doesn't have
// or miss one it has. It owns the shape of a command as the shells see
// it (subcommands, their flags and what each flag's value is), not the
// flags themselves.
package completion

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"slices"
	"strings"
)

// Kind says what a flag's value or a positional argument completes to.
type Kind int

const (
	// None: nothing to offer (a number, an address, free text).
	None Kind = iota
	// File: a file name.
	File
	// Dir: a directory name.
	Dir
	// Iface: a network interface of this namespace.
	Iface
	// Netns: a named network namespace (ip netns list).
	Netns
	// Words: one of Value.Words.
	Words
)

// Value is what a flag's value or a positional argument completes to.
type Value struct {
	Kind  Kind
	Words []string // for Words
}

// OneOf is a Value from a fixed list.
func OneOf(words ...string) Value { return Value{Kind: Words, Words: words} }

// Flag is one flag as the shells see it.
type Flag struct {
	Name  string
	Usage string
	// Bool flags take no value.
	Bool  bool
	Value Value
}

// Sub is a subcommand.
type Sub struct {
	Name string
	Help string
	// Flags after the subcommand.
	Flags []Flag
	// Args is what its positional arguments are.
	Args Value
}

// Command is a program with subcommands.
type Command struct {
	Name string
	// Flags are taken anywhere on the line, before or after the
	// subcommand (nictune's); nil for programs whose flags belong to a
	// subcommand.
	Flags []Flag
	Subs  []Sub
}

// Shells are the shells Write knows.
var Shells = []string{"bash", "zsh", "fish"}

// FlagsOf returns the flags of fs, in name order, with the values that
// hints give by flag name.
func FlagsOf(fs *flag.FlagSet, hints map[string]Value) []Flag {
	var out []Flag
	fs.VisitAll(func(f *flag.Flag) {
		b, ok := f.Value.(interface{ IsBoolFlag() bool })
		out = append(out, Flag{Name: f.Name, Usage: firstLine(f.Usage), Bool: ok && b.IsBoolFlag(), Value: hints[f.Name]})
	})
	return out
}

// defaultsLine is a flag's first line in flag.PrintDefaults: two spaces,
// the name with one dash, and its value's type unless it is a bool.
var defaultsLine = regexp.MustCompile(`^  -([A-Za-z0-9][-A-Za-z0-9_.]*)(?: (\S+))?$`)

// FlagsFromHelp reads the flags from help, the output of a flag set's
// PrintDefaults (after any text of the command's own): for commands whose
// flag sets are made where they run. A flag's line is followed by its
// usage, indented by four spaces and a tab; a line of the command's own
// text never is.
func FlagsFromHelp(help string, hints map[string]Value) []Flag {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(help))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	var out []Flag
	for i, l := range lines {
		m := defaultsLine.FindStringSubmatch(l)
		if m == nil || i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "    \t") {
			continue
		}
		out = append(out, Flag{Name: m[1], Usage: strings.TrimSpace(lines[i+1]), Bool: m[2] == "", Value: hints[m[1]]})
	}
	slices.SortFunc(out, func(a, b Flag) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// Write writes the completion script for shell.
func Write(w io.Writer, shell string, c Command) error {
	switch shell {
	case "bash":
		return writeBash(w, c, false)
	case "zsh":
		return writeBash(w, c, true)
	case "fish":
		return writeFish(w, c)
	}
	return fmt.Errorf("no completion for shell %q: want %s", shell, strings.Join(Shells, ", "))
}

// fn is the shell function's name for c.
func fn(c Command) string { return "_" + strings.ReplaceAll(c.Name, "-", "_") + "_complete" }

// bashValue is the bash code that sets COMPREPLY to candidates for v,
// the word being completed in $cur.
func bashValue(v Value) string {
	switch v.Kind {
	case File:
		return `compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur"))`
	case Dir:
		return `compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur"))`
	case Iface:
		return `COMPREPLY=($(compgen -W "$(ls /sys/class/net 2>/dev/null)" -- "$cur"))`
	case Netns:
		return `COMPREPLY=($(compgen -W "$(ls /run/netns 2>/dev/null)" -- "$cur"))`
	case Words:
		return `COMPREPLY=($(compgen -W "` + strings.Join(v.Words, " ") + `" -- "$cur"))`
	}
	return `COMPREPLY=()`
}

// writeBash writes a bash completion function; zsh runs the same through
// bashcompinit.
func writeBash(w io.Writer, c Command, zsh bool) error {
	var b strings.Builder
	shell := "bash"
	if zsh {
		shell = "zsh"
	}
	fmt.Fprintf(&b, "# %s completion for %s, generated from its flags by `%s completion %s`.\n", shell, c.Name, c.Name, shell)
	if zsh {
		b.WriteString("# Load it with: source <(" + c.Name + " completion zsh)\n")
		b.WriteString("autoload -U +X compinit && compinit\nautoload -U +X bashcompinit && bashcompinit\n")
	} else {
		fmt.Fprintf(&b, "# Load it with: source <(%s completion bash), or install it as\n# /usr/share/bash-completion/completions/%s.\n", c.Name, c.Name)
	}
	var subs []string
	for _, s := range c.Subs {
		subs = append(subs, s.Name)
	}
	fmt.Fprintf(&b, "%s() {\n", fn(c))
	b.WriteString("\tlocal cur prev sub= i w flags\n")
	b.WriteString("\tcur=\"${COMP_WORDS[COMP_CWORD]}\"\n")
	b.WriteString("\tprev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n")
	// The subcommand is the first word that names one.
	b.WriteString("\tfor ((i = 1; i < COMP_CWORD; i++)); do\n")
	b.WriteString("\t\tcase \"${COMP_WORDS[i]}\" in\n")
	fmt.Fprintf(&b, "\t\t%s) sub=\"${COMP_WORDS[i]}\"; break ;;\n", strings.Join(subs, "|"))
	b.WriteString("\t\tesac\n\tdone\n")
	// bash splits --flag=value at the = (COMP_WORDBREAKS has it), or not.
	b.WriteString("\tif [[ $cur == = ]]; then\n\t\tcur=\n\telif [[ $prev == = ]]; then\n\t\tprev=\"${COMP_WORDS[COMP_CWORD-2]}\"\n\tfi\n")
	b.WriteString("\tif [[ $cur == -*=* ]]; then\n\t\tprev=\"${cur%%=*}\"\n\t\tcur=\"${cur#*=}\"\n\telif [[ $prev != -* ]]; then\n\t\tprev=\n\tfi\n")
	b.WriteString("\tprev=\"${prev#-}\"; prev=\"${prev#-}\"\n")
	// The value of the flag before the cursor.
	b.WriteString("\tcase \"$sub:$prev\" in\n")
	valueCases := func(sub string, flags []Flag) {
		for _, f := range flags {
			if f.Bool {
				continue
			}
			fmt.Fprintf(&b, "\t%s:%s) %s; return ;;\n", sub, f.Name, bashValue(f.Value))
		}
	}
	for _, s := range c.Subs {
		valueCases(s.Name, s.Flags)
	}
	valueCases("*", c.Flags)
	b.WriteString("\tesac\n")
	b.WriteString("\tif [[ -z $sub ]]; then\n")
	global := flagWords(c.Flags)
	fmt.Fprintf(&b, "\t\tif [[ $cur == -* ]]; then COMPREPLY=($(compgen -W \"%s\" -- \"$cur\")); return; fi\n", global)
	fmt.Fprintf(&b, "\t\tCOMPREPLY=($(compgen -W \"%s\" -- \"$cur\")); return\n", strings.Join(subs, " "))
	b.WriteString("\tfi\n")
	b.WriteString("\tcase \"$sub\" in\n")
	for _, s := range c.Subs {
		words := strings.TrimSpace(flagWords(s.Flags) + " " + global)
		fmt.Fprintf(&b, "\t%s)\n\t\tflags=\"%s\"\n", s.Name, words)
		fmt.Fprintf(&b, "\t\tif [[ $cur == -* ]]; then COMPREPLY=($(compgen -W \"$flags\" -- \"$cur\")); return; fi\n")
		fmt.Fprintf(&b, "\t\t%s ;;\n", bashValue(s.Args))
	}
	b.WriteString("\tesac\n}\n")
	fmt.Fprintf(&b, "complete -F %s %s\n", fn(c), c.Name)
	_, err := io.WriteString(w, b.String())
	return err
}

// flagWords lists flags as --name, space separated.
func flagWords(flags []Flag) string {
	var out []string
	for _, f := range flags {
		out = append(out, "--"+f.Name)
	}
	return strings.Join(out, " ")
}

// fishValue is the fish argument list for a flag's value or a positional
// argument.
func fishValue(v Value) string {
	switch v.Kind {
	case File, Dir:
		return " -r -F"
	case Iface:
		return " -r -f -a '(string replace -r \".*/\" \"\" /sys/class/net/*)'"
	case Netns:
		return " -r -f -a '(ip netns list 2>/dev/null | string replace -r \" .*\" \"\")'"
	case Words:
		return " -r -f -a " + fishQuote(strings.Join(v.Words, " "))
	}
	return " -r -f"
}

func fishQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }

func writeFish(w io.Writer, c Command) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# fish completion for %s, generated from its flags by `%s completion fish`.\n", c.Name, c.Name)
	fmt.Fprintf(&b, "# Load it with: %s completion fish | source, or save it as\n# ~/.config/fish/completions/%s.fish.\n", c.Name, c.Name)
	fmt.Fprintf(&b, "complete -c %s -f\n", c.Name)
	for _, s := range c.Subs {
		fmt.Fprintf(&b, "complete -c %s -n '__fish_use_subcommand' -a %s -d %s\n", c.Name, s.Name, fishQuote(s.Help))
	}
	flagLine := func(cond string, f Flag) {
		fmt.Fprintf(&b, "complete -c %s -n %s -l %s", c.Name, fishQuote(cond), f.Name)
		if !f.Bool {
			b.WriteString(fishValue(f.Value))
		}
		fmt.Fprintf(&b, " -d %s\n", fishQuote(f.Usage))
	}
	for _, f := range c.Flags {
		flagLine("true", f)
	}
	for _, s := range c.Subs {
		cond := "__fish_seen_subcommand_from " + s.Name
		for _, f := range s.Flags {
			flagLine(cond, f)
		}
		if s.Args.Kind != None {
			fmt.Fprintf(&b, "complete -c %s -n %s%s\n", c.Name, fishQuote(cond), strings.Replace(fishValue(s.Args), " -r", "", 1))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// BashComplete runs a bash script from Write on words, the command line
// up to the cursor (the last word is the one being completed), in bash
// as the shell would, and returns the candidates. For tests.
func BashComplete(script string, words []string) ([]string, error) {
	var b strings.Builder
	b.WriteString(script)
	b.WriteString("\nCOMP_WORDS=(")
	for _, w := range words {
		b.WriteString(bashQuote(w) + " ")
	}
	fmt.Fprintf(&b, ")\nCOMP_CWORD=%d\n", len(words)-1)
	fn := ""
	for _, l := range strings.Split(script, "\n") {
		if f, ok := strings.CutPrefix(l, "complete -F "); ok {
			fn, _, _ = strings.Cut(f, " ")
		}
	}
	if fn == "" {
		return nil, fmt.Errorf("no complete -F line in the script")
	}
	b.WriteString(fn + "\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", b.String())
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("bash: %w: %s", err, ee.Stderr)
		}
		return nil, fmt.Errorf("bash: %w", err)
	}
	var got []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" {
			got = append(got, l)
		}
	}
	return got, nil
}

func bashQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
