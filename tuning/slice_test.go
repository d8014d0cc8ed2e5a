package tuning

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestCheckSlice(t *testing.T) {
	for _, d := range []time.Duration{0, MinSlice, time.Millisecond, MaxSlice} {
		if err := CheckSlice(d); err != nil {
			t.Errorf("CheckSlice(%v): %v", d, err)
		}
	}
	for _, d := range []time.Duration{-time.Microsecond, time.Microsecond, MinSlice - 1, MaxSlice + 1, time.Second} {
		err := CheckSlice(d)
		if err == nil || !strings.Contains(err.Error(), "100µs to 100ms") {
			t.Errorf("CheckSlice(%v) = %v, want a refusal naming the range", d, err)
		}
	}
}

// kernelAtLeast reports whether the running kernel is at least major.minor.
func kernelAtLeast(t *testing.T, major, minor int) bool {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var ma, mi int
	for i, f := range strings.SplitN(unix.ByteSliceToString(u.Release[:]), ".", 3)[:2] {
		n := 0
		for _, c := range f {
			if c < '0' || c > '9' {
				break
			}
			n = n*10 + int(c-'0')
		}
		if i == 0 {
			ma = n
		} else {
			mi = n
		}
	}
	return ma > major || (ma == major && mi >= minor)
}

func TestSetThreadSlice(t *testing.T) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never unlocked: the thread and its slice go away with the
		// goroutine.
		runtime.LockOSThread()
		const nice = 3
		if err := unix.Setpriority(unix.PRIO_PROCESS, 0, nice); err != nil {
			t.Error(err)
			return
		}
		ok, err := SetThreadSlice(250 * time.Microsecond)
		if err != nil {
			t.Error(err)
			return
		}
		if want := kernelAtLeast(t, 6, 12); ok != want {
			t.Errorf("SetThreadSlice honoured = %v, want %v on this kernel", ok, want)
		}
		if !ok {
			return
		}
		got, err := ThreadSlice()
		if err != nil || got != 250*time.Microsecond {
			t.Errorf("ThreadSlice() = %v, %v; want 250µs", got, err)
		}
		attr, err := unix.SchedGetAttr(0, 0)
		if err != nil {
			t.Error(err)
			return
		}
		if attr.Policy != schedOther || attr.Nice != nice {
			t.Errorf("policy %d nice %d after SetThreadSlice, want %d and %d kept", attr.Policy, attr.Nice, schedOther, nice)
		}
		if _, err := SetThreadSlice(time.Microsecond); err == nil {
			t.Error("SetThreadSlice(1µs) succeeded")
		}
	}()
	<-done
	// Another thread keeps the kernel's slice.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if got, err := ThreadSlice(); err != nil || got == 250*time.Microsecond {
		t.Errorf("another thread's slice: %v, %v", got, err)
	}
	if ok, err := SetThreadSlice(0); ok || err != nil {
		t.Errorf("SetThreadSlice(0) = %v, %v; want a no-op", ok, err)
	}
}
