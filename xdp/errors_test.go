package xdp

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"
)

func TestNotSupportedErrorMatches(t *testing.T) {
	err := error(&NotSupportedError{What: "XDP in native mode on x0", Err: ebpf.ErrNotSupported})
	if !errors.Is(err, errors.ErrUnsupported) || !errors.Is(err, ebpf.ErrNotSupported) {
		t.Fatalf("%v does not match both sentinels", err)
	}
	if errors.Is(errors.New("other"), errors.ErrUnsupported) {
		t.Fatal("an unrelated error matches")
	}
}
