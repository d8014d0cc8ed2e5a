package sdnotify

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// listen makes a notify socket as systemd does: unixgram, bound to addr.
func listen(t *testing.T, addr string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestSendPathAndAbstract(t *testing.T) {
	for _, addr := range []string{
		filepath.Join(t.TempDir(), "notify"),
		fmt.Sprintf("@xdpingest-sdnotify-test-%d", os.Getpid()),
	} {
		t.Run(addr[:1], func(t *testing.T) {
			l := listen(t, addr)
			t.Setenv("NOTIFY_SOCKET", addr)
			n, err := FromEnv()
			if err != nil || n == nil {
				t.Fatalf("FromEnv: %v, %v", n, err)
			}
			defer n.Close()
			if err := n.Send(Ready, Status("receiving\non 2 queues")); err != nil {
				t.Fatal(err)
			}
			if got, want := recv(t, l), "READY=1\nSTATUS=receiving; on 2 queues\n"; got != want {
				t.Errorf("got %q, want %q", got, want)
			}
			n.Send(Stopping, ExtendTimeout(5*time.Second+time.Millisecond))
			if got, want := recv(t, l), "STOPPING=1\nEXTEND_TIMEOUT_USEC=5001000\n"; got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

// Outside systemd there is nothing to notify, and nothing fails.
func TestNoSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n, err := FromEnv()
	if n != nil || err != nil {
		t.Fatalf("FromEnv without NOTIFY_SOCKET: %v, %v", n, err)
	}
	if err := n.Send(Ready); err != nil {
		t.Errorf("Send on nil: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("Close on nil: %v", err)
	}
	if _, err := Open("vsock:2:1234"); err == nil {
		t.Error("a vsock address was accepted")
	}
	if _, err := Open(filepath.Join(t.TempDir(), "nobody")); err == nil {
		t.Error("a socket nobody listens on was opened")
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, c := range []struct {
		usec, pid string
		want      time.Duration
		err       bool
	}{
		{"", "", 0, false},
		{"10000000", "", 10 * time.Second, false},
		{"10000000", "42", 10 * time.Second, false},
		{"10000000", "43", 0, false}, // another process's
		{"10000000", "x", 0, true},
		{"0", "", 0, true},
		{"-5", "", 0, true},
		{"soon", "", 0, true},
		{"99999999999999999999", "", 0, true},
	} {
		got, err := watchdogInterval(c.usec, c.pid, 42)
		if got != c.want || (err != nil) != c.err {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, %v; want %v, error %v", c.usec, c.pid, got, err, c.want, c.err)
		}
	}
	t.Setenv("WATCHDOG_USEC", "3000000")
	t.Setenv("WATCHDOG_PID", fmt.Sprint(os.Getpid()))
	if d, err := WatchdogInterval(); d != 3*time.Second || err != nil {
		t.Errorf("from the environment: %v, %v", d, err)
	}
}
