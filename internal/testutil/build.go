package testutil

import (
	"fmt"
	"os/exec"
	"testing"
)

// Build builds the Go commands pkgs (directories or import paths, as `go
// build` takes them) into dir, each named after its directory, with the
// extra build flags. The error carries the compiler's output.
func Build(dir string, flags []string, pkgs ...string) error {
	args := append([]string{"build", "-o", dir + "/"}, flags...)
	out, err := exec.Command("go", append(args, pkgs...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("can't build %v: %w\n%s", pkgs, err, out)
	}
	return nil
}

// BuildT builds the commands pkgs into a directory of the test's own,
// removed after it, and returns that directory.
func BuildT(tb testing.TB, pkgs ...string) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := Build(dir, nil, pkgs...); err != nil {
		tb.Fatal(err)
	}
	return dir
}
