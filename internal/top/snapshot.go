// Package top is the logic of `xdpingest top`: it reads the server's
// /metrics page, keeps what the live view shows (per receive queue, per
// sink, the XDP program's outcomes) in a Snapshot, turns two snapshots into
// rates, and lays them out in lines that fit a terminal of a given size
// (laid out for 80x24). It owns the scrape loop and the drawing: redraws
// in place on the terminal's second screen with ANSI sequences, plain
// blocks of lines otherwise, and the terminal's cbreak mode for the quit
// key. The command only parses flags and signals.
package top

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/xdpingest/xdpingest/internal/promtext"
)

// Metric names, as internal/server/metrics.go exports them.
const (
	mBuild       = "xdpingest_build_info"
	mQueueInfo   = "xdpingest_queue_info"
	mRxPackets   = "xdpingest_rx_packets_total"
	mRxBytes     = "xdpingest_rx_bytes_total"
	mRxMalformed = "xdpingest_rx_malformed_total"
	mRingFull    = "xdpingest_afxdp_rx_ring_full_total"
	mRxDropped   = "xdpingest_afxdp_rx_dropped_total"
	mOverflows   = "xdpingest_kernel_socket_overflows_total"
	mXDPPackets  = "xdpingest_xdp_packets_total"
	mXDPBytes    = "xdpingest_xdp_bytes_total"
	mSockFilter  = "xdpingest_socket_filter_datagrams_total"
	mSinkWritten = "xdpingest_sink_written_total"
	mSinkBytes   = "xdpingest_sink_written_bytes_total"
	mSinkDropped = "xdpingest_sink_dropped_total"
	mSinkConn    = "xdpingest_sink_connected"
	mSinkFlight  = "xdpingest_sink_in_flight"
	mStartTime   = "process_start_time_seconds"
	mCPUSeconds  = "process_cpu_seconds_total"
)

// ErrNotXDPIngest says that a page was read but is not xdpingest's.
var ErrNotXDPIngest = errors.New("not xdpingest's /metrics page (no " + mBuild + ")")

// Snapshot is what one scrape said, in the shape the view needs.
type Snapshot struct {
	// At is when the scrape finished; rates divide by the time between two.
	At      time.Time
	Version string
	// Started is the server's start (Unix seconds), 0 when not exported; a
	// change means the counters restarted from zero.
	Started float64
	// CPU is the process's CPU time in seconds.
	CPU    float64
	Queues []Queue
	Sinks  []Sink
	// XDP holds the program's frames by outcome; nil when no program runs
	// (the kernel path without XDP).
	XDP map[string]Count
	// Filter holds the kernel sockets' filter verdicts by outcome.
	Filter map[string]float64
}

// Count is a number of frames and their bytes.
type Count struct{ Packets, Bytes float64 }

// Queue is one receiver: an AF_XDP socket on an RX queue, or a kernel
// socket worker.
type Queue struct {
	Path string // "afxdp" or "kernel"
	ID   string // the queue (AF_XDP) or worker (kernel) number
	// XDPMode and AFXDPMode come from xdpingest_queue_info.
	XDPMode, AFXDPMode string
	Packets, Bytes     float64 // delivered; Bytes are UDP payload bytes
	Malformed          float64
	// AF_XDP only: what the kernel dropped for the socket.
	RingFull, RxDropped float64
	// Kernel only: what the kernel dropped at the socket.
	Overflows float64
}

func (q *Queue) key() string { return q.Path + " " + q.ID }

// Sink is one sink's counters.
type Sink struct {
	Name      string
	Written   float64
	Bytes     float64 // UDP payload bytes written
	InFlight  float64
	Connected bool
	Dropped   map[string]float64 // by reason
}

// FromSamples builds a snapshot from a parsed page read at time at.
func FromSamples(s promtext.Samples, at time.Time) (*Snapshot, error) {
	build := s.Series(mBuild)
	if len(build) == 0 {
		return nil, ErrNotXDPIngest
	}
	snap := &Snapshot{At: at, Version: build[0].Labels["version"], Started: s.Sum(mStartTime), CPU: s.Sum(mCPUSeconds)}

	queues := map[string]*Queue{}
	queue := func(l map[string]string) *Queue {
		k := l["path"] + " " + l["queue"]
		q := queues[k]
		if q == nil {
			q = &Queue{Path: l["path"], ID: l["queue"]}
			queues[k] = q
		}
		return q
	}
	for _, x := range s.Series(mQueueInfo) {
		q := queue(x.Labels)
		q.XDPMode, q.AFXDPMode = x.Labels["xdp_mode"], x.Labels["afxdp_mode"]
	}
	for name, field := range map[string]func(*Queue) *float64{
		mRxPackets:   func(q *Queue) *float64 { return &q.Packets },
		mRxBytes:     func(q *Queue) *float64 { return &q.Bytes },
		mRxMalformed: func(q *Queue) *float64 { return &q.Malformed },
	} {
		for _, x := range s.Series(name) {
			*field(queue(x.Labels)) = x.Value
		}
	}
	// The socket statistics carry only the queue: they belong to the
	// receiver of that queue on their path.
	for name, path := range map[string]string{mRingFull: "afxdp", mRxDropped: "afxdp", mOverflows: "kernel"} {
		for _, x := range s.Series(name) {
			x.Labels["path"] = path
			q := queue(x.Labels)
			switch name {
			case mRingFull:
				q.RingFull = x.Value
			case mRxDropped:
				q.RxDropped = x.Value
			case mOverflows:
				q.Overflows = x.Value
			}
		}
	}
	for _, q := range queues {
		snap.Queues = append(snap.Queues, *q)
	}
	slices.SortFunc(snap.Queues, func(a, b Queue) int {
		return cmp.Or(cmp.Compare(pathOrder(a.Path), pathOrder(b.Path)), cmp.Compare(a.Path, b.Path), compareIDs(a.ID, b.ID))
	})

	if xp := s.Series(mXDPPackets); len(xp) > 0 {
		snap.XDP = map[string]Count{}
		for _, x := range xp {
			c := snap.XDP[x.Labels["outcome"]]
			c.Packets += x.Value
			snap.XDP[x.Labels["outcome"]] = c
		}
		for _, x := range s.Series(mXDPBytes) {
			c := snap.XDP[x.Labels["outcome"]]
			c.Bytes += x.Value
			snap.XDP[x.Labels["outcome"]] = c
		}
	}
	if f := s.Series(mSockFilter); len(f) > 0 {
		snap.Filter = map[string]float64{}
		for _, x := range f {
			snap.Filter[x.Labels["outcome"]] += x.Value
		}
	}

	sinks := map[string]*Sink{}
	sinkOf := func(l map[string]string) *Sink {
		k := sinks[l["sink"]]
		if k == nil {
			k = &Sink{Name: l["sink"], Connected: true, Dropped: map[string]float64{}}
			sinks[l["sink"]] = k
		}
		return k
	}
	for _, x := range s.Series(mSinkWritten) {
		sinkOf(x.Labels).Written = x.Value
	}
	for _, x := range s.Series(mSinkBytes) {
		sinkOf(x.Labels).Bytes = x.Value
	}
	for _, x := range s.Series(mSinkFlight) {
		sinkOf(x.Labels).InFlight = x.Value
	}
	for _, x := range s.Series(mSinkConn) {
		sinkOf(x.Labels).Connected = x.Value != 0
	}
	for _, x := range s.Series(mSinkDropped) {
		sinkOf(x.Labels).Dropped[x.Labels["reason"]] += x.Value
	}
	for _, k := range sinks {
		snap.Sinks = append(snap.Sinks, *k)
	}
	slices.SortFunc(snap.Sinks, func(a, b Sink) int { return cmp.Compare(a.Name, b.Name) })
	return snap, nil
}

// pathOrder puts AF_XDP queues before the kernel sockets beside them.
func pathOrder(p string) int {
	switch p {
	case "afxdp":
		return 0
	case "kernel":
		return 1
	}
	return 2
}

// compareIDs orders queue numbers numerically (2 before 10).
func compareIDs(a, b string) int {
	x, errA := strconv.Atoi(a)
	y, errB := strconv.Atoi(b)
	if errA == nil && errB == nil {
		return cmp.Compare(x, y)
	}
	return cmp.Compare(a, b)
}

// String is a one-line summary, for logs and test failures.
func (s *Snapshot) String() string {
	return fmt.Sprintf("xdpingest %s at %s: %d queue(s), %d sink(s)", s.Version, s.At.Format(time.TimeOnly), len(s.Queues), len(s.Sinks))
}
