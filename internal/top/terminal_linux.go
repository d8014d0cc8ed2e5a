package top

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// TerminalSize returns Options.Size for f: its window size while f is a
// terminal, ok false otherwise (a pipe, a file).
func TerminalSize(f *os.File) func() (width, height int, ok bool) {
	return func() (int, int, bool) {
		ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
		if err != nil {
			return 0, 0, false
		}
		return int(ws.Col), int(ws.Row), true
	}
}

// IsTerminal says whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Cbreak puts the terminal f into cbreak mode: keys arrive one at a time,
// unechoed, while Ctrl-C still raises SIGINT. restore puts back the
// settings it found; call it on every way out.
func Cbreak(f *os.File) (restore func() error, err error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, fmt.Errorf("can't read the settings of terminal %s: %w", f.Name(), err)
	}
	t := *old
	t.Lflag &^= unix.ICANON | unix.ECHO
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return nil, fmt.Errorf("can't set cbreak mode on terminal %s: %w", f.Name(), err)
	}
	return func() error {
		if err := unix.IoctlSetTermios(fd, unix.TCSETS, old); err != nil {
			return fmt.Errorf("can't restore the settings of terminal %s: %w", f.Name(), err)
		}
		return nil
	}, nil
}
