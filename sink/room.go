package sink

// roomSignal wakes the goroutines waiting for a bounded backlog to shrink
// (Writes with the backlog full, Close waiting for it to empty). Its
// methods are called with the sink's mutex held, the mutex that guards the
// backlog's bounds.
type roomSignal struct {
	ch      chan struct{}
	waiting bool
}

// wait returns the channel that the next wake closes. The caller releases
// the mutex, then waits on it.
func (r *roomSignal) wait() <-chan struct{} {
	if r.ch == nil {
		r.ch = make(chan struct{})
	}
	r.waiting = true
	return r.ch
}

// wake wakes every waiter, if there is one.
func (r *roomSignal) wake() {
	if r.waiting {
		close(r.ch)
		r.ch = make(chan struct{})
		r.waiting = false
	}
}
