package tuning_test

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/internal/testutil"
	"github.com/xdpingest/xdpingest/tuning"
)

func TestCheckNice(t *testing.T) {
	for _, n := range []int{-20, -10, 0, 19} {
		if err := tuning.CheckNice(n); err != nil {
			t.Errorf("CheckNice(%d): %v", n, err)
		}
	}
	for _, n := range []int{-21, 20, 100} {
		if err := tuning.CheckNice(n); err == nil || !strings.Contains(err.Error(), "want -20 to 19") {
			t.Errorf("CheckNice(%d) = %v", n, err)
		}
	}
}

// The nice value is the calling thread's alone.
func TestSetThreadNice(t *testing.T) {
	// A probe on a thread of its own, thrown away with its goroutine.
	probe := make(chan error)
	go func() {
		runtime.LockOSThread()
		probe <- tuning.SetThreadNice(-1)
	}()
	if err := <-probe; errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		testutil.Skip(t, "lowering a nice value needs CAP_SYS_NICE: "+err.Error())
	} else if err != nil {
		t.Fatal(err)
	}
	before, err := tuning.ThreadNice()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread goes with its nice value
		if err := tuning.SetThreadNice(-7); err != nil {
			t.Error(err)
			return
		}
		if n, err := tuning.ThreadNice(); n != -7 || err != nil {
			t.Errorf("ThreadNice() = %d, %v after SetThreadNice(-7)", n, err)
		}
		if err := tuning.SetThreadNice(25); err == nil {
			t.Error("SetThreadNice(25) succeeded")
		}
	}()
	<-done
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if n, err := tuning.ThreadNice(); n != before || err != nil {
		t.Errorf("another thread's nice value: %d, %v; want %d", n, err, before)
	}
}
