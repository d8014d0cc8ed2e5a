package xdp

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"
)

func TestNotSupportedErrorMatches(t *testing.T) {
	err := error(&NotSupportedError{What: "XDP in native mode on x0", Err: ebpf.ErrNotSupported})
	if !errors.Is(err, ErrNotSupported) || !errors.Is(err, ebpf.ErrNotSupported) {
		t.Fatalf("%v does not match both sentinels", err)
	}
	if errors.Is(errors.New("other"), ErrNotSupported) {
		t.Fatal("an unrelated error matches")
	}
}
