package measure

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// blockAsyncSignals blocks the asynchronous signals on the calling thread,
// which must be locked to its goroutine for good (the generators' threads
// are: they are discarded when their goroutine ends).
//
// Why: a signal that arrives during BPF_PROG_RUN in live-frames mode ends
// the call with EINTR after some frames were already transmitted, and
// cilium/ebpf then runs the whole repetition count again; the frames of the
// interrupted call go out uncounted, with sequence numbers beyond what the
// generator reports. Process-directed signals (SIGCHLD of the server path,
// SIGINT, ...) go to another thread when this one blocks them. Synchronous
// signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS) stay unblocked:
// the runtime needs them.
func blockAsyncSignals() error {
	var set unix.Sigset_t
	for _, s := range []syscall.Signal{unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPIPE,
		unix.SIGALRM, unix.SIGTERM, unix.SIGCHLD, unix.SIGCONT, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU, unix.SIGURG,
		unix.SIGXCPU, unix.SIGXFSZ, unix.SIGVTALRM, unix.SIGPROF, unix.SIGWINCH, unix.SIGIO, unix.SIGPWR} {
		n := uint(s) - 1
		set.Val[n/64] |= 1 << (n % 64)
	}
	return unix.PthreadSigmask(unix.SIG_BLOCK, &set, nil)
}
