// Package sdnotify speaks systemd's notify protocol (sd_notify(3)) without
// libsystemd: a service tells its manager that it is ready, alive
// (the watchdog), stopping, and what it is doing, each message one
// datagram of "KEY=VALUE" lines to the unix socket named by
// $NOTIFY_SOCKET. It owns reading that socket's name and the watchdog's
// interval from the environment systemd gives a Type=notify service.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// The messages a service sends (sd_notify(3) lists them all).
const (
	// Ready: startup is finished; systemd starts units ordered after this
	// one and, with WatchdogSec=, starts expecting Watchdog.
	Ready = "READY=1"
	// Stopping: the service is shutting down on its own or on request.
	Stopping = "STOPPING=1"
	// Watchdog: the service is alive. Without one for WatchdogSec=,
	// systemd kills the service (and restarts it under Restart=).
	Watchdog = "WATCHDOG=1"
)

// Status is a STATUS= line: one line of free text that `systemctl status`
// shows. Newlines are replaced, since they would end the field.
func Status(s string) string {
	return "STATUS=" + strings.ReplaceAll(s, "\n", "; ")
}

// ExtendTimeout asks systemd for d more of the timeout of the current
// state (starting, running, stopping), counted from now: a service in a
// long, bounded shutdown says so rather than being killed by
// TimeoutStopSec=.
func ExtendTimeout(d time.Duration) string {
	return "EXTEND_TIMEOUT_USEC=" + strconv.FormatInt(d.Microseconds(), 10)
}

// Notifier sends messages to the service manager. The zero of *Notifier
// (nil) is valid and sends nothing: what a process not started by systemd
// gets from FromEnv.
type Notifier struct {
	conn *net.UnixConn
	addr string
}

// FromEnv opens the socket named by $NOTIFY_SOCKET: a path, or an abstract
// socket when it begins with @. Without the variable it returns nil and no
// error: the process was not started as a Type=notify service.
func FromEnv() (*Notifier, error) {
	return Open(os.Getenv("NOTIFY_SOCKET"))
}

// Open opens the notify socket addr; an empty addr gives nil.
func Open(addr string) (*Notifier, error) {
	if addr == "" {
		return nil, nil
	}
	if !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "@") {
		// systemd also accepts vsock:CID:PORT, which a service on a
		// host never gets: refuse it plainly rather than guess.
		return nil, fmt.Errorf("NOTIFY_SOCKET %q: only a unix socket path or @abstract name is supported", addr)
	}
	// Go treats a leading @ as the abstract namespace, as systemd means it.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("can't open the systemd notify socket %s: %w", addr, err)
	}
	return &Notifier{conn: c, addr: addr}, nil
}

// Send sends the lines as one message: systemd applies them together
// (READY=1 with its STATUS=, say). On a nil Notifier it does nothing.
func (n *Notifier) Send(lines ...string) error {
	if n == nil || len(lines) == 0 {
		return nil
	}
	msg := strings.Join(lines, "\n") + "\n"
	if _, err := n.conn.Write([]byte(msg)); err != nil {
		return fmt.Errorf("can't notify systemd through %s: %w", n.addr, err)
	}
	return nil
}

// Close closes the socket; nil is fine.
func (n *Notifier) Close() error {
	if n == nil {
		return nil
	}
	return n.conn.Close()
}

// WatchdogInterval is the WatchdogSec= of the service, from
// $WATCHDOG_USEC; 0 when the watchdog is off for this process (no
// variable, or $WATCHDOG_PID names another process, as when the variable
// was inherited from a parent). A malformed value is an error.
func WatchdogInterval() (time.Duration, error) {
	return watchdogInterval(os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid())
}

func watchdogInterval(usec, pid string, self int) (time.Duration, error) {
	if usec == "" {
		return 0, nil
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil || p <= 0 {
			return 0, fmt.Errorf("WATCHDOG_PID %q is not a process id", pid)
		}
		if p != self {
			return 0, nil
		}
	}
	u, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || u == 0 {
		return 0, fmt.Errorf("WATCHDOG_USEC %q: want a positive number of microseconds", usec)
	}
	if u > uint64(time.Duration(1<<63-1)/time.Microsecond) {
		return 0, errors.New("WATCHDOG_USEC " + usec + " is out of range")
	}
	return time.Duration(u) * time.Microsecond, nil
}
