package kernel

import (
	"errors"

	"github.com/xdpingest/xdpingest/datapath"
)

// Path is the kernel socket path: one Receiver per worker, each with a
// SO_REUSEPORT socket for every address and port.
type Path struct {
	rs    []*Receiver
	notes []string
}

var _ datapath.Path = (*Path)(nil)

// Open opens cfg.Workers Receivers (Receiver i is worker i). The sockets
// belong to the network namespace of the calling thread. Notes has what the
// caller should log: a receive buffer the kernel capped, a capability that
// was missing, GRO left off.
//
// SO_REUSEPORT groups are per address and port, and the steering program
// (Config.CPUs) picks a socket by its index in the group, which is the
// order of bind: the groups must hold only this path's sockets. A socket of
// another process (of the same user) bound with SO_REUSEPORT to the same
// address and port would join the group and shift the indices.
func Open(cfg Config) (*Path, error) {
	rs, warnings, err := openReceivers(cfg)
	if err != nil {
		return nil, err
	}
	return &Path{rs: rs, notes: warnings}, nil
}

// Name is "kernel".
func (p *Path) Name() string { return "kernel" }

// PathOf is "kernel" for every receiver.
func (p *Path) PathOf(int) string { return "kernel" }

// Workers returns the Receivers, worker i at index i.
func (p *Path) Workers() []*Receiver { return p.rs }

// Receivers returns the Receivers as datapath.Receivers.
func (p *Path) Receivers() []datapath.Receiver {
	out := make([]datapath.Receiver, len(p.rs))
	for i, r := range p.rs {
		out[i] = r
	}
	return out
}

// Stats sums the Receivers' counters.
func (p *Path) Stats() datapath.Stats {
	var s datapath.Stats
	for _, r := range p.rs {
		s = s.Add(r.Stats())
	}
	return s
}

// Drain drains every Receiver.
func (p *Path) Drain() {
	for _, r := range p.rs {
		r.Drain()
	}
}

// Close closes every Receiver.
func (p *Path) Close() error {
	var errs []error
	for _, r := range p.rs {
		errs = append(errs, r.Close())
	}
	return errors.Join(errs...)
}

// Notes returns Open's warnings.
func (p *Path) Notes() []string { return p.notes }

// SetPorts changes the ports the path's sockets listen on, while the
// workers receive; all or nothing (see setPorts). It returns warnings as
// Open does.
func (p *Path) SetPorts(ports []uint16) ([]string, error) { return setPorts(p.rs, ports) }
