package archdoc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/xdpingest/xdpingest/"

// listed reads the import block of ARCHITECTURE.md: the lines between the
// "<!-- imports -->" and "<!-- /imports -->" markers, each
// "    package: import, import, ..." in the page's order ("-" for none).
// Blank lines, fences and lines starting with "#" (group titles) are skipped.
func listed(t *testing.T) (order []string, edges map[string][]string) {
	t.Helper()
	b, err := os.ReadFile("../../docs/ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := bytes.Cut(b, []byte("<!-- imports -->"))
	block, _, ok2 := bytes.Cut(rest, []byte("<!-- /imports -->"))
	if !ok || !ok2 {
		t.Fatal("docs/ARCHITECTURE.md has no <!-- imports --> ... <!-- /imports --> block")
	}
	edges = map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(block))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "```") || strings.HasPrefix(line, "#") {
			continue
		}
		pkg, imps, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("ARCHITECTURE.md import block: %q is not \"package: imports\"", line)
		}
		pkg = strings.TrimSpace(pkg)
		if _, dup := edges[pkg]; dup {
			t.Fatalf("ARCHITECTURE.md lists %s twice", pkg)
		}
		var list []string
		for _, i := range strings.Split(imps, ",") {
			if i = strings.TrimSpace(i); i != "" && i != "-" {
				list = append(list, i)
			}
		}
		slices.Sort(list)
		edges[pkg] = list
		order = append(order, pkg)
	}
	return order, edges
}

// actual asks go list for every package of the module and the packages of
// the module each imports (tests aside).
func actual(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}:{{range .Imports}} {{.}}{{end}}", "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		// A package that doesn't build makes go list fail: say which.
		var stderr []byte
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		t.Fatalf("go list ./...: %v\n%s", err, stderr)
	}
	edges := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imps, _ := strings.Cut(line, ":")
		var list []string
		for _, i := range strings.Fields(imps) {
			if strings.HasPrefix(i, module) {
				list = append(list, strings.TrimPrefix(i, module))
			}
		}
		slices.Sort(list)
		edges[strings.TrimPrefix(pkg, module)] = list
	}
	return edges
}

func TestArchitecturePageListsTheImports(t *testing.T) {
	order, page := listed(t)
	real := actual(t)
	var problems []string
	for pkg, imps := range real {
		got, ok := page[pkg]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s is missing: add \"%s: %s\"", pkg, pkg, strings.Join(imps, ", ")))
		case !slices.Equal(got, imps):
			problems = append(problems, fmt.Sprintf("%s imports %v, the page says %v", pkg, imps, got))
		}
	}
	for pkg := range page {
		if _, ok := real[pkg]; !ok {
			problems = append(problems, fmt.Sprintf("%s is on the page but not in the module", pkg))
		}
	}
	// Dependency order, leaves first: a package after everything it imports.
	seen := map[string]bool{}
	for _, pkg := range order {
		for _, i := range page[pkg] {
			if !seen[i] {
				problems = append(problems, fmt.Sprintf("%s is listed before %s, which it imports", pkg, i))
			}
		}
		seen[pkg] = true
	}
	slices.Sort(problems)
	if len(problems) > 0 {
		t.Fatalf("docs/ARCHITECTURE.md's import block differs from the code:\n  %s", strings.Join(problems, "\n  "))
	}
}
