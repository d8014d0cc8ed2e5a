package afxdp

import (
	"fmt"
	"math"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/internal/frames"
	"github.com/xdpingest/xdpingest/internal/receivertest"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// conformanceFrames is the UMEM of the sockets under the suite: as many
// frames as the fill and RX rings hold, so that the path's capacity is the
// UMEM and a frame given back too early is soon written over.
const conformanceFrames = 256

// An AF_XDP socket on the bed keeps the Receiver contract, over both
// families, and in the low-latency setting (SpinFor), which waits without
// sleeping.
func TestConformance(t *testing.T) {
	b := bedT(t, 1)
	prog := programT(t, b)
	v4, v6 := netip.AddrPortFrom(testbed.RxIPv4, testPort), netip.AddrPortFrom(testbed.RxIPv6, testPort)
	for _, c := range []struct {
		name    string
		dst     netip.AddrPort
		spinFor time.Duration
	}{
		{"ipv4", v4, 0},
		{"ipv6", v6, 0},
		{"ipv4-spin", v4, LowLatencySpin},
	} {
		dst := c.dst
		t.Run(c.name, func(t *testing.T) {
			receivertest.Run(t, func(t *testing.T) receivertest.Harness {
				fds := testutil.OpenFDs(t)
				p := openT(t, b, Config{Queues: []int{0}, NumFrames: conformanceFrames, FillRingSize: conformanceFrames, RxRingSize: conformanceFrames, SpinFor: c.spinFor}, prog)
				opened := testutil.OpenFDs(t) - fds
				s := p.Sockets()[0]
				f := dialT(t, b, dst)
				var sent uint64
				return receivertest.Harness{
					Receiver: s,
					Send: func(payloads [][]byte) error {
						for _, pl := range payloads {
							if err := testutil.WriteUDP(f.conn, pl); err != nil {
								return err
							}
							sent++
						}
						return nil
					},
					// What was sent and not yet delivered is in the RX ring.
					Settle: func() error {
						deadline := time.Now().Add(5 * time.Second)
						for {
							inRing := atomic.LoadUint32(s.rx.producer) - atomic.LoadUint32(s.rx.consumer)
							pending := sent - s.Stats().Packets
							if uint64(inRing) >= pending {
								return nil
							}
							if time.Now().After(deadline) {
								c, _ := prog.Counters()
								return fmt.Errorf("%d datagrams in the RX ring after 5 s, %d sent and not received; program %+v, socket %+v", inRing, pending, c, s.Stats())
							}
							time.Sleep(time.Millisecond)
						}
					},
					Capacity:   conformanceFrames,
					MaxPayload: testMTU - 28 - 20*map[bool]int{true: 0, false: 1}[dst.Addr().Is4()],
					Src:        f.src,
					Dst:        dst,
					Frames:     true,
					FDs:        opened,
				}
			})
		})
	}
}

// A socket on fake memory keeps the contract too, across the rings' index
// wrap, without a kernel: the suite's checks of our side alone.
func TestConformanceOnFakeKernel(t *testing.T) {
	receivertest.Run(t, func(t *testing.T) receivertest.Harness {
		const n = 64
		k := newFakeKernel(t, Config{NumFrames: n, FillRingSize: n, RxRingSize: n}, math.MaxUint32-40)
		// The socket's place in poll(): an eventfd the fake kernel makes
		// readable when it delivers, as the kernel wakes a socket. Nobody
		// reads it, so once traffic came, a Receive on an empty ring spins
		// through poll() instead of sleeping, which this fake can afford.
		wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(wake) })
		k.s.pollfds[0] = unix.PollFd{Fd: int32(wake), Events: unix.POLLIN}
		return receivertest.Harness{
			Receiver: k.s,
			Send: func(payloads [][]byte) error {
				fs := make([][]byte, len(payloads))
				for i, p := range payloads {
					fs[i] = frames.Build(frames.Spec{Src: fsrc, Dst: fdst, Payload: p})
				}
				if got := k.deliver(fs); got != len(fs) {
					return fmt.Errorf("the fake kernel took %d of %d frames: no room in the fill or RX ring", got, len(fs))
				}
				_, err := unix.Write(wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
				return err
			},
			Capacity:   n,
			MaxPayload: 1472,
			Src:        fsrc,
			Dst:        fdst,
			Frames:     true,
			FDs:        1, // the eventfd
		}
	})
}
