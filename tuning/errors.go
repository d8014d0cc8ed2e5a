package tuning

import (
	"errors"
	"fmt"
)

// A setting the device or kernel lacks is reported by an error that wraps
// errors.ErrUnsupported; plans report such settings per item and skip them.

var (
	// ErrBadInput marks errors in what the caller asked for (an unknown
	// interface, profile or key, a value out of range), found before anything
	// changes. nictune exits 2 on them.
	ErrBadInput = errors.New("bad input")
	// ErrNoState says there is no saved state to revert.
	ErrNoState = errors.New("no saved state")
	// ErrLocked says another apply or revert holds the state file (see
	// Apply); nothing was changed.
	ErrLocked = errors.New("state file in use")
)

// inputError carries a message about bad input and matches ErrBadInput.
type inputError struct{ err error }

func (e *inputError) Error() string        { return e.err.Error() }
func (e *inputError) Unwrap() error        { return e.err }
func (e *inputError) Is(target error) bool { return target == ErrBadInput }

func badInput(format string, args ...any) error {
	return &inputError{fmt.Errorf(format, args...)}
}
