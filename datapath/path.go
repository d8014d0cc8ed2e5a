package datapath

import (
	"errors"
	"strings"
)

// Path is an opened receive path: the receivers its workers read, and what
// it reports as a whole. The AF_XDP path (package afxdp) and the kernel
// socket path (package kernel) implement it; Join makes one path of several,
// as the server does with AF_XDP and the kernel sockets beside it.
//
// The contract, which every implementation keeps:
//
//   - Receivers returns the same receivers, in the same order, every time:
//     receiver i is worker i. PathOf(i) names the path receiver i belongs to
//     ("afxdp", "kernel"), which for a joined path is that of its part.
//   - Stats is the sum of the receivers' Stats.
//   - Drain drains every receiver (see Receiver.Drain); Close closes every
//     receiver and releases what the path holds in the kernel. Both may be
//     called from any goroutine, more than once.
//   - Notes says what the path took over and how, in lines for a log: the
//     mode it runs in, capped buffers, a feature the kernel refused and the
//     fallback taken. Nothing is lost silently: what a note describes is
//     also in an error or a counter where it matters.
type Path interface {
	// Name is "afxdp", "kernel", or the parts' names joined with "+".
	Name() string
	Receivers() []Receiver
	PathOf(i int) string
	Stats() Stats
	Drain()
	Close() error
	Notes() []string
}

// Join returns a Path made of parts, in order: its receivers are the
// first part's, then the second's, and so on.
func Join(parts ...Path) Path {
	j := &joined{parts: parts}
	for _, p := range parts {
		for i, r := range p.Receivers() {
			j.rxs = append(j.rxs, r)
			j.of = append(j.of, p.PathOf(i))
		}
	}
	return j
}

type joined struct {
	parts []Path
	rxs   []Receiver
	of    []string
}

func (j *joined) Name() string {
	names := make([]string, len(j.parts))
	for i, p := range j.parts {
		names[i] = p.Name()
	}
	return strings.Join(names, "+")
}

func (j *joined) Receivers() []Receiver { return j.rxs }
func (j *joined) PathOf(i int) string   { return j.of[i] }

func (j *joined) Stats() Stats {
	var s Stats
	for _, p := range j.parts {
		s = s.Add(p.Stats())
	}
	return s
}

func (j *joined) Drain() {
	for _, p := range j.parts {
		p.Drain()
	}
}

func (j *joined) Close() error {
	var errs []error
	for _, p := range j.parts {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}

func (j *joined) Notes() []string {
	var n []string
	for _, p := range j.parts {
		n = append(n, p.Notes()...)
	}
	return n
}

// Parts returns the paths p was joined from, or p alone.
func Parts(p Path) []Path {
	if j, ok := p.(*joined); ok {
		return j.parts
	}
	return []Path{p}
}
