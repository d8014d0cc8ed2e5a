//go:build !linux

package kernel

import (
	"fmt"

	"github.com/xdpingest/xdpingest/datapath"
)

// Receiver is only available on Linux.
type Receiver struct{}

var _ datapath.Receiver = (*Receiver)(nil)

// Open fails with datapath.ErrNotSupported outside Linux.
func Open(cfg Config) ([]*Receiver, []string, error) {
	return nil, nil, fmt.Errorf("kernel path: recvmmsg receivers need Linux: %w", datapath.ErrNotSupported)
}

// SetPorts fails with datapath.ErrNotSupported outside Linux.
func SetPorts([]*Receiver, []uint16) ([]string, error) {
	return nil, fmt.Errorf("kernel path: recvmmsg receivers need Linux: %w", datapath.ErrNotSupported)
}

func (*Receiver) Receive([]datapath.Datagram) (int, error) { return 0, datapath.ErrNotSupported }
func (*Receiver) Release([]datapath.Datagram)              {}
func (*Receiver) Drain()                                   {}
func (*Receiver) Queue() int                               { return 0 }
func (*Receiver) Stats() datapath.Stats                    { return datapath.Stats{} }
func (*Receiver) Copies() uint64                           { return 0 }
func (*Receiver) Buffers() uint64                          { return 0 }
func (*Receiver) Close() error                             { return nil }
