package tuning

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lockSuffix names the lock file beside a state file.
const lockSuffix = ".lock"

// stateLock is an exclusive flock(2) on the lock file beside a state file.
// It keeps two applies (two nictune runs, or nictune beside `xdpingest
// --tune`) from reading each other's tuned values as the originals, or from
// each writing a state file that drops the other's entries. The kernel
// drops a flock when its holder dies, so a killed process never leaves the
// lock held; the state file it may leave is the ordinary "not reverted yet"
// case.
type stateLock struct {
	f    *os.File
	path string
}

// lockState takes the lock of the state file at state, without waiting: when
// another process (or another Apply in this one) holds it, it returns an
// error matching ErrLocked that names the state file and the holder's pid.
// With mkdir it creates the state directory first; without, a missing
// directory means there is no state file to protect and it returns nil,
// nil.
func lockState(state string, mkdir bool) (*stateLock, error) {
	path := state + lockSuffix
	if mkdir {
		dir := filepath.Dir(path)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("can't create state directory %s: %w (use --state to put it elsewhere)", dir, err)
		}
	}
	// The holder removes the lock file before it lets go (see release), so
	// the file locked here may have been removed between open and flock:
	// then nobody else will ever open it, and the lock must be taken again
	// on the file the path names now. Each round means another process took
	// and released the lock meanwhile; a few suffice.
	for range 100 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o644)
		if err != nil {
			if !mkdir && errors.Is(err, fs.ErrNotExist) {
				return nil, nil
			}
			return nil, fmt.Errorf("can't open lock file %s: %w", path, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, lockedError(state, path)
			}
			return nil, fmt.Errorf("can't lock %s: %w", path, err)
		}
		held, herr := f.Stat()
		now, nerr := os.Stat(path)
		if herr == nil && nerr == nil && os.SameFile(held, now) {
			// Who holds it, for the error a second apply gets. Best
			// effort: the lock, not the content, is what excludes.
			if f.Truncate(0) == nil {
				f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
			}
			return &stateLock{f: f, path: path}, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("can't lock %s: other processes keep taking and releasing it; try again: %w", path, ErrLocked)
}

// lockedError says who holds the lock of state.
func lockedError(state, path string) error {
	who := "another process"
	if b, err := os.ReadFile(path); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			switch comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); {
			case pid == os.Getpid():
				who = fmt.Sprintf("pid %d (this process)", pid)
			case len(comm) > 0:
				who = fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm)))
			default:
				who = fmt.Sprintf("pid %d", pid)
			}
		}
	}
	return fmt.Errorf("state file %s is locked by %s: another apply or revert of this device is running, or an `xdpingest run --tune` holds its settings until it exits; try again once it has finished: %w", state, who, ErrLocked)
}

// release removes the lock file and lets the lock go. Removing it before
// closing is what makes a waiter that locked the removed file try again (see
// lockState). Safe on nil and twice.
func (l *stateLock) release() {
	if l == nil || l.f == nil {
		return
	}
	os.Remove(l.path)
	l.f.Close()
	l.f = nil
}
