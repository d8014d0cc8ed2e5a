package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/internal/promtext"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// binary is the xdpingest built once for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xdpingest-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "xdpingest")
	var flags []string
	if os.Getenv("XDPINGEST_RACE") == "1" {
		// The server under the race detector: XDPINGEST_RACE=1 go test ./cmd/xdpingest
		flags = append(flags, "-race")
	}
	if err := testutil.Build(dir, flags, "."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// srvProc is an xdpingest process running in the bed's receiving namespace.
type srvProc struct {
	t       testing.TB
	bed     *testbed.Bed
	cmd     *exec.Cmd
	log     *testutil.SyncBuffer
	metrics string // address, inside the namespace
	client  *http.Client
	done    chan struct{}
	exit    int
}

// startServer runs `xdpingest run --iface <rx veth> --metrics-addr ...
// args...` in the receiving namespace and waits until /readyz says ready.
func startServer(t testing.TB, b *testbed.Bed, args ...string) *srvProc {
	t.Helper()
	s := &srvProc{t: t, bed: b, log: &testutil.SyncBuffer{}, metrics: "127.0.0.1:9109", done: make(chan struct{})}
	s.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = b.Rx.Do(func() error { c, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
			return c, err
		}}}
	full := append([]string{"run", "--iface", b.Rx.Link, "--metrics-addr", s.metrics, "--log-format", "json"}, args...)
	s.cmd = b.Rx.Command(binary, full...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.cmd.Wait()
		s.exit = s.cmd.ProcessState.ExitCode()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("xdpingest output:\n%s", s.log.String())
		}
	})
	waitReady(t, s)
	return s
}

// scrape returns the metrics as "name{labels}" -> value.
func (s *srvProc) scrape() promtext.Samples {
	s.t.Helper()
	m, err := promtext.Get(s.client, "http://"+s.metrics+"/metrics")
	if err != nil {
		s.t.Fatalf("scrape: %v", err)
	}
	return m
}

// sum adds the series of name whose labels contain every one of labels.
func sum(m promtext.Samples, name string, labels ...string) float64 { return m.Sum(name, labels...) }

// stop sends sig and waits for the exit status.
func (s *srvProc) stop(sig syscall.Signal, within time.Duration) int {
	s.t.Helper()
	start := time.Now()
	s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(within):
		s.t.Fatalf("xdpingest did not exit within %v of %v:\n%s", within, sig, s.log.String())
	}
	s.t.Logf("xdpingest exited with %d %v after %v", s.exit, sig, time.Since(start).Round(time.Millisecond))
	return s.exit
}

// finalLog returns the fields of the "xdpingest stopped" line.
func (s *srvProc) finalLog() string {
	for _, line := range strings.Split(s.log.String(), "\n") {
		if strings.Contains(line, `"xdpingest stopped"`) {
			return line
		}
	}
	return ""
}

// sender sends sized-sequence datagrams from the generating namespace.
type sender struct {
	conns map[bool]*net.UDPConn // by IPv6
	buf   []byte
}

func newSender(t *testing.T, b *testbed.Bed, port uint16) *sender {
	t.Helper()
	s := &sender{conns: map[bool]*net.UDPConn{}, buf: make([]byte, bench.SizedSpan)}
	for _, dst := range []netip.Addr{b.Rx.IPv4, b.Rx.IPv6} {
		var c *net.UDPConn
		if err := b.Gen.Do(func() (err error) {
			c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, port)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		c.SetWriteBuffer(4 << 20)
		t.Cleanup(func() { c.Close() })
		s.conns[dst.Is6()] = c
	}
	return s
}

// send sends datagram i: even numbers over IPv4, odd over IPv6.
func (s *sender) send(i uint64) error {
	_, err := s.conns[i%2 == 1].Write(bench.PutSized(s.buf, i))
	return err
}

// paced sends datagrams [from, to) keeping at most window of them ahead of
// what received() reports, so a busy machine slows the sender instead of
// overflowing a ring.
func paced(from, to uint64, window uint64, send func(uint64) error, received func() uint64) error {
	const step = 500
	for i := from; i < to; {
		deadline := time.Now().Add(20 * time.Second)
		for i-from > window && received()+window < i-from {
			if time.Now().After(deadline) {
				return fmt.Errorf("stalled: sent %d, the server reports %d after 20 s", i-from, received())
			}
			time.Sleep(time.Millisecond)
		}
		end := min(i+step, to)
		for ; i < end; i++ {
			if err := send(i); err != nil {
				return err
			}
		}
	}
	return nil
}

var _ = io.Discard
