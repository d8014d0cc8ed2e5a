package server

import (
	"fmt"
	"strings"
	"time"

	"github.com/xdpingest/xdpingest/internal/config"
	"github.com/xdpingest/xdpingest/internal/sdnotify"
)

// The server as a systemd Type=notify service (deploy/xdpingest.service):
// READY=1 once every worker is in its receive loop; WATCHDOG=1 at half of
// WatchdogSec= for as long as no worker is stuck or failed, so that
// systemd restarts a server whose workers stopped making progress;
// STOPPING=1 when the drain begins, with the time it may take; a STATUS=
// line for `systemctl status` throughout. Outside systemd
// ($NOTIFY_SOCKET unset) none of this runs.

// notifier is the state of the notification loop.
type notifier struct {
	n *sdnotify.Notifier
	// watchdog is the time between WATCHDOG=1 messages: half of
	// WatchdogSec=, as sd_watchdog_enabled(3) advises; 0 without one.
	watchdog time.Duration
	stop     chan struct{}
	done     chan struct{}
}

const (
	// How often the loop looks whether every worker runs, before READY=1.
	readyPoll = 5 * time.Millisecond
	// How often STATUS= is refreshed without a watchdog.
	statusEvery = 5 * time.Second
)

// notifyReady starts the notification loop, once the server takes
// traffic; it sends READY=1 when every worker is in its receive loop.
func (s *server) notifyReady() {
	n, err := sdnotify.FromEnv()
	if err != nil {
		s.log.Warn("systemd notifications off: READY=1 and the watchdog can't be sent", "err", err)
		return
	}
	if n == nil {
		return
	}
	wd, err := sdnotify.WatchdogInterval()
	if err != nil {
		s.log.Warn("systemd watchdog off: can't read its interval", "err", err)
	}
	s.notify = &notifier{n: n, watchdog: wd / 2, stop: make(chan struct{}), done: make(chan struct{})}
	go s.notifyLoop(s.notify)
}

func (s *server) notifyLoop(nt *notifier) {
	defer close(nt.done)
	wait := time.NewTicker(readyPoll)
	for s.pipe.Running() < s.pipe.Workers() {
		select {
		case <-nt.stop:
			wait.Stop()
			return
		case <-wait.C:
		}
	}
	wait.Stop()
	lines := []string{sdnotify.Ready, sdnotify.Status(s.statusLine(nil))}
	if nt.watchdog > 0 {
		lines = append(lines, sdnotify.Watchdog)
	}
	s.sendNotify(nt, lines...)
	s.log.Info("told systemd the server is ready", "watchdog_every", nt.watchdog)

	every := nt.watchdog
	if every == 0 {
		every = statusEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	fed := true
	for {
		select {
		case <-nt.stop:
			return
		case <-t.C:
		}
		stuck, other := s.workerProblems()
		lines := []string{sdnotify.Status(s.statusLine(append(stuck, other...)))}
		switch {
		case nt.watchdog == 0:
		case len(stuck) == 0:
			lines = append(lines, sdnotify.Watchdog)
			if !fed {
				s.log.Info("systemd watchdog fed again: every worker makes progress")
			}
			fed = true
		case fed:
			s.log.Error("systemd watchdog no longer fed: a worker is stuck or failed; systemd restarts the service after WatchdogSec",
				"problems", strings.Join(stuck, "; "))
			fed = false
		}
		s.sendNotify(nt, lines...)
	}
}

// workerProblems splits what the health check reports: a worker that
// failed or is stuck on one batch (the watchdog stops for those: a restart
// is what helps), and the rest (a failing sink, which a restart would not
// mend and whose datagrams are counted dropped meanwhile).
func (s *server) workerProblems() (workers, other []string) {
	p := s.health.Load()
	if p == nil {
		return nil, nil
	}
	if err := p.Err(); err != nil {
		workers = append(workers, "a worker failed: "+err.Error())
	}
	for _, h := range p.Health() {
		// pipeline.Health words a stuck worker "worker for queue N
		// stuck: ..."; the e2e test (TestSystemdNotify) fails if it
		// stops doing so.
		if strings.HasPrefix(h, "worker ") {
			workers = append(workers, h)
		} else {
			other = append(other, h)
		}
	}
	return workers, other
}

// statusLine is the STATUS= text: what runs, how much went through, and
// the first problem if there is one.
func (s *server) statusLine(problems []string) string {
	c := s.cfg
	var written uint64
	for _, sk := range s.sinks {
		written += sk.Stats().Written
	}
	line := fmt.Sprintf("receiving on %s (path %s, %d workers), ports %s: %d datagrams received, %d written",
		c.Iface, s.path.Name(), s.pipe.Workers(), config.FormatPorts(c.Ports), s.path.Stats().Packets, written)
	if len(problems) > 0 {
		line = fmt.Sprintf("unhealthy (%d problems, /healthz lists them): %s; %s", len(problems), problems[0], line)
	}
	return line
}

// notifyStopping stops the loop and sends STOPPING=1, with the time the
// drain may take added to systemd's stop timeout, so that a
// --drain-timeout longer than TimeoutStopSec= is not cut short by SIGKILL.
func (s *server) notifyStopping(why string) {
	nt := s.notify
	if nt == nil {
		return
	}
	close(nt.stop)
	<-nt.done
	s.sendNotify(nt, sdnotify.Stopping, sdnotify.ExtendTimeout(s.cfg.DrainTimeout+2*time.Second),
		sdnotify.Status("draining ("+why+")"))
	nt.n.Close()
	s.notify = nil
}

func (s *server) sendNotify(nt *notifier, lines ...string) {
	if err := nt.n.Send(lines...); err != nil {
		s.log.Warn("systemd notification failed", "err", err)
	}
}
