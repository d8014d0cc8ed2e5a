//go:build !linux

package sink

import (
	"fmt"

	"github.com/xdpingest/xdpingest/datapath"
)

func openUDP(spec UDPSpec, _ Options) (Sink, error) {
	return nil, fmt.Errorf("can't relay to udp://%s: sendmmsg relay needs Linux: %w", spec.Addr, datapath.ErrNotSupported)
}
