package xdp

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
)

// SocketFilter is the program's socket filter (BPF_PROG_TYPE_SOCKET_FILTER)
// for the kernel UDP sockets on the ingest ports, as the kernel path's
// Config.Filter takes it: FD to attach it (SO_ATTACH_BPF), and the
// refusals it counted per socket (kernel.RefusalCounter), so that a
// receiver can tell the buffers the filter refused from those a full
// receive buffer lost, which the kernel counts in one drop counter.
type SocketFilter struct {
	p *Program
}

// FD is the program's file descriptor, -1 once the Program is closed.
func (f *SocketFilter) FD() int { return f.p.objs.XdpingestSock.FD() }

// Program is the loaded program, for BPF_PROG_RUN in tests and benchmarks.
func (f *SocketFilter) Program() *ebpf.Program { return f.p.objs.XdpingestSock }

// RefusedBuffers returns how many buffers (skbs: a UDP GRO buffer of
// several datagrams counts once, as in the socket's drop counter) the
// filter has refused on the socket whose cookie (SO_COOKIE) is given:
// refusals by the lists and by SocketIfindex, counted before the kernel
// adds each to the socket's drop counter. 0 for a socket it refused
// nothing on. Safe for concurrent use; os.ErrClosed once the Program is
// closed.
func (f *SocketFilter) RefusedBuffers(cookie uint64) (uint64, error) {
	f.p.objsMu.RLock()
	defer f.p.objsMu.RUnlock()
	if f.p.objsClosed {
		return 0, os.ErrClosed
	}
	var n uint64
	switch err := f.p.objs.SockRefused.Lookup(cookie, &n); {
	case errors.Is(err, ebpf.ErrKeyNotExist):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("can't read the socket filter's refusals on socket %d: %w", cookie, err)
	}
	return n, nil
}

// ForgetSocket drops the count of a socket that is closed, so that its
// entry does not take room (LoadOptions.MaxSockets) for good. Safe for
// concurrent use.
func (f *SocketFilter) ForgetSocket(cookie uint64) error {
	f.p.objsMu.RLock()
	defer f.p.objsMu.RUnlock()
	if f.p.objsClosed {
		return os.ErrClosed
	}
	if err := f.p.objs.SockRefused.Delete(cookie); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("can't forget socket %d in the socket filter's refusals: %w", cookie, err)
	}
	return nil
}
