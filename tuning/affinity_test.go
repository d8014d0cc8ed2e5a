package tuning

import (
	"runtime"
	"strings"
	"testing"
)

func TestPinThread(t *testing.T) {
	allowed, err := AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	if allowed.IsEmpty() {
		t.Fatal("no allowed CPU")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	last := allowed.List()[allowed.Len()-1]
	if err := PinThread(last); err != nil {
		t.Fatal(err)
	}
	now, err := AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	if now.String() != NewCPUSet(last).String() {
		t.Errorf("after PinThread(%d) the thread may run on %s", last, now)
	}
	if err := UnpinThread(allowed); err != nil {
		t.Fatal(err)
	}
	if now, _ := AllowedCPUs(); !now.Equal(allowed) {
		t.Errorf("after UnpinThread: %s, want %s", now, allowed)
	}
	// A CPU outside the allowed set: the error says why.
	if err := PinThread(1000); err == nil || !strings.Contains(err.Error(), "allowed set") {
		t.Errorf("PinThread(1000) = %v", err)
	}
	if err := PinThread(-1); err == nil {
		t.Error("PinThread(-1) accepted")
	}
}
