package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/internal/receivertest"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// A Receiver of the kernel path keeps the Receiver contract, over both
// families.
func TestConformance(t *testing.T) {
	b := newBed(t, testbed.Config{})
	port := uint16(testPort + 100)
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			receivertest.Run(t, func(t *testing.T) receivertest.Harness {
				// A port of its own per receiver: nothing sent to the last
				// one reaches this one.
				port++
				dst := netip.AddrPortFrom(fam.rx, port)
				fds := testutil.OpenFDs(t)
				rs, _ := openRx(t, b, Config{Ports: []uint16{port}, RcvBuf: 4 << 20, ForceRcvBuf: true})
				opened := testutil.OpenFDs(t) - fds
				s := newPinnedSender(t, b.Gen, b.Rx, dst)
				return receivertest.Harness{
					Receiver:   rs[0],
					Send:       s.send,
					Settle:     s.settle,
					Capacity:   512, // 4 MiB of buffer holds some 1,500 of the largest
					MaxPayload: 1500 - 8 - map[bool]int{true: 20, false: 40}[fam.rx.Is4()],
					Src:        s.src,
					Dst:        dst,
					FDs:        opened,
				}
			})
		})
	}
}

// pinnedSender sends from one CPU: on a veth the receiving side processes
// a packet on the sending CPU, in the order sent, so once a probe sent
// after the datagrams has reached its socket, so have they (or they were
// dropped, and counted).
type pinnedSender struct {
	cpu   int
	conn  *net.UDPConn // to the receiver
	probe *net.UDPConn // to ln
	ln    *net.UDPConn
	src   netip.AddrPort
}

func newPinnedSender(t *testing.T, gen, rx *testbed.Side, dst netip.AddrPort) *pinnedSender {
	t.Helper()
	s := &pinnedSender{cpu: testutil.CPUs(1)[0]}
	s.ln = testutil.ListenUDP(t, rx, netip.AddrPortFrom(dst.Addr(), 0))
	if err := gen.Do(func() (err error) {
		if s.conn, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst)); err != nil {
			return err
		}
		s.probe, err = net.DialUDP("udp", nil, s.ln.LocalAddr().(*net.UDPAddr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.conn.Close(); s.probe.Close() })
	a := s.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	s.src = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	return s
}

func (s *pinnedSender) send(payloads [][]byte) error {
	return testutil.OnCPU(s.cpu, func() error {
		for _, p := range payloads {
			if err := testutil.WriteUDP(s.conn, p); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *pinnedSender) settle() error {
	if err := testutil.OnCPU(s.cpu, func() error { _, err := s.probe.Write([]byte("probe")); return err }); err != nil {
		return err
	}
	s.ln.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf [16]byte
	if _, _, err := s.ln.ReadFromUDPAddrPort(buf[:]); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("the probe sent after the datagrams did not arrive in 5 s: %w", err)
		}
		return err
	}
	return nil
}
