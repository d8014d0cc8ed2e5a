package testutil

import (
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/xdpingest/xdpingest"

// testOnly reports whether a package of ours exists for tests alone and
// may import testing: testutil and the packages named ...test.
func testOnly(pkg string) bool {
	base := path.Base(pkg)
	return base == "testutil" || strings.HasSuffix(base, "test")
}

// imports maps each package go list names to its imports (without
// tests): the packages pattern matches, with -deps all they import too.
func imports(t *testing.T, deps bool, pattern string) map[string][]string {
	t.Helper()
	args := []string{"list", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}"}
	if deps {
		args = append(args, "-deps")
	}
	out, err := exec.Command("go", append(args, pattern)...).Output()
	if err != nil {
		t.Fatalf("go %v: %v\n%s", args, err, stderrOf(err))
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		m[f[0]] = f[1:]
	}
	return m
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// The commands carry no test code: testing is nowhere among what they
// import, directly or not (go list -deps ./cmd/... | grep -x testing).
func TestNoTestingInCommands(t *testing.T) {
	deps := imports(t, true, module+"/cmd/...")
	if _, ok := deps[module+"/cmd/xdpingest"]; !ok || len(deps) < 10 {
		t.Fatalf("go list -deps ./cmd/... listed %d packages, without cmd/xdpingest", len(deps))
	}
	if _, ok := deps["testing"]; !ok {
		return
	}
	var by []string
	for pkg, imps := range deps {
		if slices.Contains(imps, "testing") {
			by = append(by, pkg)
		}
	}
	slices.Sort(by)
	t.Errorf("the commands depend on package testing, imported by %v: move what needs it into a test-only package such as internal/testutil", by)
}

// Only test-only packages import testing, and only tests import them.
func TestTestOnlyPackages(t *testing.T) {
	all := imports(t, false, module+"/...")
	if len(all) < 10 {
		t.Fatalf("go list found only %d packages", len(all))
	}
	for pkg, imps := range all {
		for _, i := range imps {
			switch {
			case i == "testing" && !testOnly(pkg):
				t.Errorf("%s imports testing: only tests and test-only packages (testutil, ...test) may", pkg)
			case strings.HasPrefix(i, module+"/") && testOnly(i) && !testOnly(pkg):
				t.Errorf("%s imports the test-only package %s", pkg, i)
			}
		}
	}
}
