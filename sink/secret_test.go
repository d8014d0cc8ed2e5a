package sink

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecretRef(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "pw")
	os.WriteFile(f, []byte("s3cret\n"), 0o600)
	r, err := ParseSecretRef("password", "file:"+f)
	if err != nil || r.File != f {
		t.Fatalf("%+v %v", r, err)
	}
	if v, err := r.Read(); v != "s3cret" || err != nil {
		t.Fatalf("read %q %v", v, err)
	}
	t.Setenv("XI_TEST_SECRET", "tok")
	r, err = ParseSecretRef("token", "env:XI_TEST_SECRET")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := r.Read(); v != "tok" || err != nil {
		t.Fatalf("read %q %v", v, err)
	}
	if r.String() != "env:XI_TEST_SECRET" {
		t.Errorf("String %q", r)
	}
	for _, bad := range []string{"hunter2", "file:", "env:", "env:A-B", "FILE:/x"} {
		_, err := ParseSecretRef("password", bad)
		if err == nil {
			t.Errorf("%q accepted", bad)
		} else if bad == "hunter2" && strings.Contains(err.Error(), bad) {
			t.Errorf("the error shows the value: %v", err)
		}
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := (SecretRef{File: empty}).Read(); err == nil {
		t.Error("an empty secret read without an error")
	}
	if _, err := (SecretRef{Env: "XI_TEST_UNSET_VAR"}).Read(); err == nil {
		t.Error("an unset variable read without an error")
	}
}
