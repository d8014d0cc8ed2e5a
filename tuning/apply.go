package tuning

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// Outcome summarises an Apply or a Revert.
type Outcome int

const (
	// Complete: every setting is at its wanted value (nictune exits 0).
	Complete Outcome = iota
	// Partial: some settings are, some are not (exit 3).
	Partial
	// Failed: none could be put in effect (exit 1).
	Failed
)

func (o Outcome) String() string {
	switch o {
	case Complete:
		return "complete"
	case Partial:
		return "partial"
	}
	return "failed"
}

func outcomeOf(items []Item) Outcome {
	ok, bad := 0, 0
	for _, it := range items {
		if it.inEffect() {
			ok++
		} else {
			bad++
		}
	}
	switch {
	case bad == 0:
		return Complete
	case ok > 0:
		return Partial
	}
	return Failed
}

// Applied is the result of Apply: what each setting became, and what it takes
// to undo it.
type Applied struct {
	Plan *Plan `json:"plan"`
	// StatePath is the state file holding the previous values ("" with
	// NoState).
	StatePath string `json:"state,omitempty"`
	// RolledBack says a failure (or Options.Atomic) undid every change.
	RolledBack bool `json:"rolled_back,omitempty"`

	// changed lists, in order, what this Apply changed and the values it
	// found: Revert restores them in reverse.
	changed []StateEntry
	// prior is the state file as it was before this Apply (an earlier apply
	// not yet reverted), nil if there was none.
	prior *State
	opts  Options
	// lock is the state file's lock, held from before the originals are
	// read until Revert or Release.
	lock *stateLock
}

// Outcome says whether everything the profile names is in effect.
func (a *Applied) Outcome() Outcome {
	if a.RolledBack {
		return Failed
	}
	return outcomeOf(a.Plan.Items)
}

// Changed returns the entries this Apply changed, in order.
func (a *Applied) Changed() []StateEntry { return slices.Clone(a.changed) }

// Apply puts profile p in effect on iface:
//
//  1. It plans (see PlanProfile); bad input returns an ErrBadInput error
//     before anything changes.
//  2. It saves the current value of every setting it will change to the state
//     file (unless NoState), before changing any. Values saved by an earlier
//     apply that was not reverted are kept, so applying twice and reverting
//     once restores the original values.
//  3. It writes each setting and reads it back. A setting the kernel refuses
//     or that reads back otherwise is reported in its item and skipped; the
//     rest is applied (Outcome Partial). With Options.Atomic any such failure
//     rolls everything back.
//  4. A failure that leaves the device in an unknown state (the device
//     vanished, ctx cancelled, the state file can't be written) rolls back
//     what was changed and returns an error.
//
// Settings already at their wanted value are not written, so a second Apply
// changes nothing. A channel change replaces the queue IRQs: the IRQ
// affinity is planned again after it.
//
// Unless NoState, Apply locks the state file (flock(2) on STATE.lock) before
// it reads anything, and the returned Applied keeps the lock until
// Applied.Revert or Applied.Release: an Apply or Revert of the same state
// file meanwhile, in this process or another, fails at once with an error
// matching ErrLocked that names the holder, and changes nothing. Without the
// lock, a second apply could read the first one's tuned values as the
// originals, and whichever wrote the state file last would drop the other's
// entries. The kernel drops the lock when its process dies.
//
// The returned Applied is non-nil whenever something may have changed, also
// with an error; use Applied.Revert to undo.
func Apply(ctx context.Context, iface string, p *Profile, opts Options) (a *Applied, err error) {
	s, err := newSession(iface, opts)
	if err != nil {
		return nil, err
	}
	defer s.close()
	statePath := ""
	var lock *stateLock
	if !opts.NoState {
		statePath = opts.StatePath
		if statePath == "" {
			statePath = DefaultStatePath(iface)
		}
		// A bad profile is refused before the state directory is made.
		if err := p.Validate(); err != nil {
			return nil, err
		}
		if lock, err = lockState(statePath, true); err != nil {
			return nil, err
		}
		defer func() {
			if a == nil {
				lock.release()
			}
		}()
	}
	pl, err := s.plan(ctx, p)
	if err != nil {
		return nil, err
	}
	a = &Applied{Plan: pl, opts: opts, StatePath: statePath}
	if !opts.NoState {
		prior, err := LoadState(a.StatePath)
		switch {
		case errors.Is(err, ErrNoState):
		case err != nil:
			return nil, err
		case prior.Iface != iface:
			return nil, badInput("state file %s holds the settings of %s, not %s: revert that first or pass another --state", a.StatePath, prior.Iface, iface)
		default:
			a.prior = prior
		}
		if pending := pl.Changes(); len(pending) > 0 {
			if err := a.save(s, pending); err != nil {
				return nil, err // nothing changed yet
			}
		}
		a.lock = lock
	}
	if err := s.applyItems(ctx, a); err != nil {
		return a, err
	}
	if opts.Atomic && a.Outcome() != Complete && len(a.changed) > 0 {
		s.rollback(a)
		a.RolledBack = true
		return a, errors.Join(fmt.Errorf("some settings of profile %s did not take effect on %s: rolled back every change (--atomic)", p.Name, iface), a.finishState(s))
	}
	return a, a.finishState(s)
}

func (s *session) applyItems(ctx context.Context, a *Applied) error {
	pl := a.Plan
	spread := pl.profile.IRQAffinity != nil && pl.profile.IRQAffinity.Spread
	for i := 0; i < len(pl.Items); i++ {
		it := &pl.Items[i]
		switch it.Action {
		case ActionKeep:
			it.Result = ResultUnchanged
			continue
		case ActionUnsupported:
			it.Result = ResultUnsupported
			continue
		}
		if err := ctx.Err(); err != nil {
			return s.abort(a, i, fmt.Errorf("applying %s to %s interrupted: %w", pl.Profile, pl.Iface, err))
		}
		k, err := s.dev.knob(it.Key)
		if err != nil {
			return s.abort(a, i, err)
		}
		werr := k.write(it.Want)
		after, rerr := k.read()
		if rerr == nil {
			it.After = after
		}
		switch {
		case werr != nil && (errors.Is(werr, unix.ENODEV) || errors.Is(werr, ErrBadInput)):
			it.Result, it.Err = ResultRefused, werr.Error()
			return s.abort(a, i+1, fmt.Errorf("%s vanished while applying %s: %w", pl.Iface, pl.Profile, werr))
		case werr != nil:
			it.Result, it.Err = ResultRefused, werr.Error()
			if isUnsupported(werr) {
				it.Result = ResultUnsupported
			}
		case rerr != nil:
			it.Result, it.Err = ResultNotInEffect, rerr.Error()
		case after != it.Want:
			it.Result, it.Err = ResultNotInEffect, fmt.Sprintf("reads back %s", after)
		default:
			it.Result = ResultApplied
			a.changed = append(a.changed, StateEntry{Key: it.Key, Previous: it.Current, Applied: it.Want})
		}
		if it.Result != ResultApplied && rerr == nil && after != it.Current {
			// Refused or half taken, but the value moved: put it back so
			// that a skipped setting is left as it was.
			if err := k.write(it.Current); err != nil {
				it.Err += fmt.Sprintf("; can't restore %s: %v", it.Current, err)
				a.changed = append(a.changed, StateEntry{Key: it.Key, Previous: it.Current, Applied: after})
			}
		}
		if it.Key == "channels" && it.Result == ResultApplied && spread {
			if err := s.respread(a, i+1); err != nil {
				return s.abort(a, i+1, err)
			}
		}
	}
	return nil
}

// respread plans the IRQ items again after a channel change, which frees and
// requests the queue IRQs anew, and saves their current values before they
// are written.
func (s *session) respread(a *Applied, from int) error {
	pl := a.Plan
	start := slices.IndexFunc(pl.Items[from:], func(it Item) bool { return it.Group == GroupIRQ })
	if start < 0 {
		return nil
	}
	start += from
	if err := s.discover(pl); err != nil {
		return fmt.Errorf("can't find the queue IRQs of %s after the channel change: %w", pl.Iface, err)
	}
	pl.Items = append(pl.Items[:start], s.planIRQs(pl)...)
	if a.opts.NoState {
		return nil
	}
	return a.save(s, pl.Changes())
}

// save writes the state file: earlier entries first, then what this Apply
// changed, then pending changes, each key once with its oldest previous
// value.
func (a *Applied) save(s *session, pending []Item) error {
	st := &State{Version: stateVersion, Iface: a.Plan.Iface, Profile: a.Plan.Profile, BootID: bootID(s.dev.roots), Saved: time.Now().UTC()}
	if a.prior != nil {
		st.Entries = slices.Clone(a.prior.Entries)
	}
	add := func(e StateEntry) {
		if _, ok := st.entry(e.Key); !ok {
			st.Entries = append(st.Entries, e)
		}
	}
	for _, e := range a.changed {
		add(e)
	}
	for _, it := range pending {
		add(StateEntry{Key: it.Key, Previous: it.Current, Applied: it.Want})
	}
	return saveState(a.StatePath, st)
}

// finishState leaves in the state file the earlier entries and what this
// Apply changed (and did not undo); no file when that is nothing.
func (a *Applied) finishState(s *session) error {
	if a.opts.NoState || a.StatePath == "" {
		return nil
	}
	if a.prior == nil && len(a.changed) == 0 {
		return removeState(a.StatePath)
	}
	return a.save(s, nil)
}

// abort marks the items from index from on as skipped, rolls back what was
// changed and returns err with what the rollback did.
func (s *session) abort(a *Applied, from int, err error) error {
	for i := from; i < len(a.Plan.Items); i++ {
		if it := &a.Plan.Items[i]; it.Result == "" && it.Action == ActionChange {
			it.Result = ResultSkipped
		}
	}
	n := len(a.changed)
	failed := s.rollback(a)
	a.RolledBack = true
	serr := a.finishState(s)
	if failed > 0 {
		return errors.Join(fmt.Errorf("%w; rolled back %d of %d changed settings, %d could not be restored (see the state file)", err, n-failed, n, failed), serr)
	}
	return errors.Join(fmt.Errorf("%w; rolled back all %d changed settings", err, n), serr)
}

// rollback restores what Apply changed, newest first. Entries it can't
// restore stay in a.changed (and so in the state file). It returns how many
// failed.
func (s *session) rollback(a *Applied) int {
	var failed []StateEntry
	for _, e := range slices.Backward(a.changed) {
		it := s.restoreOne(e)
		idx := slices.IndexFunc(a.Plan.Items, func(x Item) bool { return x.Key == e.Key })
		if idx >= 0 {
			p := &a.Plan.Items[idx]
			p.After = it.After
			if it.inEffect() {
				p.Result = ResultRolledBack
			} else {
				p.Result, p.Err = ResultRollbackFailed, it.Err
			}
		}
		if !it.inEffect() {
			failed = append([]StateEntry{e}, failed...)
		}
	}
	a.changed = failed
	return len(failed)
}

// restoreOne puts one saved value back and reads it back.
func (s *session) restoreOne(e StateEntry) Item {
	it := Item{Key: e.Key, Want: e.Previous, Action: ActionChange}
	k, err := s.dev.knob(e.Key)
	if err != nil {
		it.Result, it.Err = ResultRefused, err.Error()
		return it
	}
	it.Group = k.group
	cur, err := k.read()
	if err != nil {
		it.Result, it.Err = ResultRefused, err.Error()
		if isUnsupported(err) {
			it.Result = ResultUnsupported
		}
		return it
	}
	it.Current = cur
	if cur == e.Previous {
		it.Result, it.After, it.Action = ResultUnchanged, cur, ActionKeep
		return it
	}
	werr := k.write(e.Previous)
	after, rerr := k.read()
	it.After = after
	switch {
	case werr != nil:
		it.Result, it.Err = ResultRefused, werr.Error()
	case rerr != nil:
		it.Result, it.Err = ResultNotInEffect, rerr.Error()
	case after != e.Previous:
		it.Result, it.Err = ResultNotInEffect, fmt.Sprintf("reads back %s", after)
	default:
		it.Result = ResultRestored
	}
	return it
}

// Reverted is the result of a revert.
type Reverted struct {
	Iface     string `json:"iface"`
	Profile   string `json:"profile"`
	StatePath string `json:"state,omitempty"`
	// Items: Want is the saved value, Current what was there before the
	// revert, After what reads back.
	Items []Item `json:"items"`
	// Kept is how many entries stay in the state file for another try.
	Kept int `json:"kept,omitempty"`
}

// Outcome says whether every saved value is back.
func (r *Reverted) Outcome() Outcome { return outcomeOf(r.Items) }

// restoreAll restores entries newest first. It returns the items and the
// entries worth keeping for another try: refused ones. A setting that no
// longer exists (an IRQ freed by a channel change) is reported and dropped.
func (s *session) restoreAll(ctx context.Context, entries []StateEntry) ([]Item, []StateEntry) {
	var items []Item
	var keep []StateEntry
	for _, e := range slices.Backward(entries) {
		if ctx.Err() != nil {
			items = append(items, Item{Key: e.Key, Want: e.Previous, Action: ActionChange, Result: ResultSkipped, Err: ctx.Err().Error()})
			keep = append([]StateEntry{e}, keep...)
			continue
		}
		it := s.restoreOne(e)
		items = append(items, it)
		if !it.inEffect() && it.Result != ResultUnsupported {
			keep = append([]StateEntry{e}, keep...)
		}
	}
	return items, keep
}

// Release lets go of the state file's lock before the Applied is reverted,
// so that another apply or revert may take it: nictune apply does, as it
// leaves its record in the state file and exits. Revert takes the lock
// again. Safe to call twice.
func (a *Applied) Release() {
	a.lock.release()
	a.lock = nil
}

// Revert restores what this Apply changed, newest first, reads each value
// back, and leaves the state file as it was before the Apply (minus nothing,
// plus any setting that could not be restored). It releases the state
// file's lock; after Release it takes it again first, and fails with
// ErrLocked (changing nothing) while another apply or revert holds it.
// Calling it twice is harmless.
func (a *Applied) Revert(ctx context.Context) (*Reverted, error) {
	r := &Reverted{Iface: a.Plan.Iface, Profile: a.Plan.Profile, StatePath: a.StatePath}
	if a.lock == nil && !a.opts.NoState && a.StatePath != "" {
		l, err := lockState(a.StatePath, true)
		if err != nil {
			return r, err
		}
		a.lock = l
	}
	defer a.Release()
	s, err := newSession(a.Plan.Iface, a.opts)
	if err != nil {
		return r, err
	}
	defer s.close()
	r.Items, a.changed = s.restoreAll(ctx, a.changed)
	r.Kept = len(a.changed)
	return r, a.finishState(s)
}

// Revert restores the values saved in iface's state file, newest first,
// reads each back, and removes the file when every value is back (entries
// that were refused stay for another try). Without a state file it returns
// an error matching ErrNoState. Like Apply it locks the state file, and
// fails with ErrLocked, changing nothing, while an apply holds it.
func Revert(ctx context.Context, iface string, opts Options) (*Reverted, error) {
	path := opts.StatePath
	if path == "" {
		path = DefaultStatePath(iface)
	}
	r := &Reverted{Iface: iface, StatePath: path}
	s, err := newSession(iface, opts)
	if err != nil {
		return r, err
	}
	defer s.close()
	lock, err := lockState(path, false)
	if err != nil {
		return r, err
	}
	defer lock.release()
	st, err := LoadState(path)
	if errors.Is(err, ErrNoState) {
		return r, fmt.Errorf("nothing to revert on %s: no saved state at %s (nictune apply saves it there; pass the --state it used): %w", iface, path, ErrNoState)
	}
	if err != nil {
		return r, err
	}
	r.Profile = st.Profile
	if st.Iface != iface {
		return r, badInput("state file %s holds the settings of %s, not %s", path, st.Iface, iface)
	}
	if _, err := s.checkIface(); err != nil {
		return r, err
	}
	if now := bootID(s.dev.roots); st.BootID != "" && now != "" && now != st.BootID && !opts.Force {
		return r, fmt.Errorf("state file %s was saved before the last reboot: the kernel has its own values again and IRQ numbers may mean other vectors; remove the file, or pass --force to restore it anyway", path)
	}
	var keep []StateEntry
	r.Items, keep = s.restoreAll(ctx, st.Entries)
	r.Kept = len(keep)
	if len(keep) == 0 {
		return r, removeState(path)
	}
	st.Entries, st.Saved = keep, time.Now().UTC()
	return r, saveState(path, st)
}
