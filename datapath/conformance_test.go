package datapath_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/frames"
	"github.com/xdpingest/xdpingest/internal/receivertest"
)

// The Fake keeps the Receiver contract, fed payloads with their addresses
// or whole frames.
func TestFakeConformance(t *testing.T) {
	src := netip.MustParseAddrPort("198.18.0.1:4000")
	dst := netip.MustParseAddrPort("198.18.0.2:9000")
	for _, withFrames := range []bool{false, true} {
		name := "payloads"
		if withFrames {
			name = "frames"
		}
		t.Run(name, func(t *testing.T) {
			receivertest.Run(t, func(t *testing.T) receivertest.Harness {
				const capacity = 256
				ch := make(chan datapath.Datagram, capacity)
				return receivertest.Harness{
					Receiver: datapath.NewFakeChan(2, ch),
					Send: func(payloads [][]byte) error {
						for _, p := range payloads {
							d := datapath.Datagram{Payload: p, Src: src, Dst: dst}
							if withFrames {
								d = datapath.Datagram{Frame: frames.Build(frames.Spec{Src: src, Dst: dst, Payload: p})}
							}
							select {
							case ch <- d:
							default:
								return errors.New("the fake's channel is full")
							}
						}
						return nil
					},
					Capacity:   capacity,
					MaxPayload: 1472,
					Src:        src,
					Dst:        dst,
					Frames:     withFrames,
				}
			})
		})
	}
}
