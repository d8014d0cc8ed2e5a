package server

import (
	"slices"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/internal/config"
)

// A reload names every setting that needs a restart, and only those.
func TestRestartSettings(t *testing.T) {
	old := config.Defaults()
	old.Iface, old.Sinks = "vx0", []string{"discard"}
	old.Ports = "9000"
	same := old
	same.Sinks = slices.Clone(old.Sinks)
	if d := restartSettings(old, same); len(d) != 0 {
		t.Fatalf("an equal configuration needs a restart of %v", d)
	}
	live := same
	live.Ports = "9000-9001"
	live.Allow = []string{"198.18.0.0/15"}
	live.Deny = []string{"198.18.0.9"}
	if d := restartSettings(old, live); len(d) != 0 {
		t.Fatalf("ports and prefix lists need a restart of %v", d)
	}
	changed := live
	changed.Sinks = []string{"discard", "pcap:/tmp/x"}
	changed.QueueMB = 32
	changed.Nap = time.Millisecond
	changed.OnFull = "block"
	want := []string{"sinks", "on_full", "queue_mb", "nap"}
	if d := restartSettings(old, changed); !slices.Equal(d, want) {
		t.Fatalf("restart settings %v, want %v", d, want)
	}
}
