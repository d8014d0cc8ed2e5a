package server

import (
	"maps"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/datapath/kernel"
	"github.com/xdpingest/xdpingest/internal/pipeline"
	"github.com/xdpingest/xdpingest/internal/version"
	"github.com/xdpingest/xdpingest/sink"
	"github.com/xdpingest/xdpingest/xdp"
)

// metrics reads every counter at scrape time from where it lives (receiver
// atomics, the program's per-CPU maps, the sinks' counters): nothing on the
// packet path touches Prometheus. docs/OPERATIONS.md lists every metric and
// the identities that tie them together.
type metrics struct {
	// Reloads, by result: applied (0) or refused (1); the Unix time of the
	// last of each, 0 before the first.
	reloads    [2]atomic.Uint64
	lastReload [2]atomic.Int64 // nanoseconds

	mu        sync.Mutex
	xdpMode   string // "native", "generic", or "none"
	path      datapath.Path
	prog      *xdp.Program // nil when no XDP program is loaded
	receivers []datapath.Receiver
	pipe      *pipeline.Pipeline
	sinks     []sink.Sink
}

func (m *metrics) set(path datapath.Path, xdpMode string, prog *xdp.Program, pipe *pipeline.Pipeline, sinks []sink.Sink) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.path, m.xdpMode, m.prog, m.receivers, m.pipe, m.sinks = path, xdpMode, prog, path.Receivers(), pipe, sinks
}

// noteReload counts a SIGHUP reload, applied or refused.
func (m *metrics) noteReload(applied bool) {
	i := 1
	if applied {
		i = 0
	}
	m.reloads[i].Add(1)
	m.lastReload[i].Store(time.Now().UnixNano())
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("xdpingest_"+name, help, labels, nil)
}

var (
	dBuild         = desc("build_info", "Build information; always 1.", "version", "goversion")
	dQueueInfo     = desc("queue_info", "One per receiver: the receive path, the XDP program's attach mode, and the AF_XDP socket's mode (zero-copy, copy, or - on the kernel path); always 1.", "path", "queue", "xdp_mode", "afxdp_mode")
	dReloads       = desc("reloads_total", "SIGHUP reloads, by result: applied, or refused (the running configuration unchanged).", "result")
	dLastReload    = desc("last_reload_timestamp_seconds", "Unix time of the last reload with that result; 0 before the first.", "result")
	dRxPackets     = desc("rx_packets_total", "Datagrams delivered by the receive path, per queue (AF_XDP) or worker (kernel path).", "path", "queue")
	dRxBytes       = desc("rx_bytes_total", "UDP payload bytes delivered by the receive path.", "path", "queue")
	dRxBatches     = desc("rx_batches_total", "Receive calls that returned datagrams.", "path", "queue")
	dRxMalformed   = desc("rx_malformed_total", "Frames the receive path's header walk refused (recycled, never delivered).", "path", "queue")
	dBatchSize     = desc("rx_batch_size", "Datagrams per receive call.", "path", "queue")
	dXDPPackets    = desc("xdp_packets_total", "Frames seen by the XDP program, by outcome and the verdict it returned.", "outcome", "verdict")
	dXDPBytes      = desc("xdp_bytes_total", "Bytes of the frames seen by the XDP program, by outcome.", "outcome", "verdict")
	dXSKDropped    = desc("afxdp_rx_dropped_total", "Frames the kernel dropped for an AF_XDP socket for a reason other than a full RX ring (XDP_STATISTICS rx_dropped).", "queue")
	dXSKRingFull   = desc("afxdp_rx_ring_full_total", "Frames the kernel dropped because the socket's RX ring was full: the worker fell behind (rx_ring_full).", "queue")
	dXSKFillEmpty  = desc("afxdp_fill_ring_empty_total", "Times the kernel found the socket's fill ring empty when it needed a frame (rx_fill_ring_empty_descs).", "queue")
	dXSKRxInvalid  = desc("afxdp_rx_invalid_descs_total", "Invalid descriptors on the socket's fill ring (rx_invalid_descs).", "queue")
	dXSKTxInvalid  = desc("afxdp_tx_invalid_descs_total", "Invalid descriptors on the socket's TX ring (tx_invalid_descs).", "queue")
	dXSKTxEmpty    = desc("afxdp_tx_ring_empty_total", "Times the kernel found the socket's TX ring empty (tx_ring_empty_descs).", "queue")
	dOverflows     = desc("kernel_socket_overflows_total", "Datagrams the kernel dropped at the kernel sockets (SO_RXQ_OVFL, SO_MEMINFO): full receive buffers and bad UDP checksums (not what the socket filter refused: socket_filter_datagrams_total).", "queue")
	dCopies        = desc("kernel_socket_copies_total", "Copies of broadcast and multicast datagrams the kernel gave every kernel socket of a port, which the workers other than the first recognise and skip: not losses.", "queue")
	dSockFilter    = desc("socket_filter_datagrams_total", "Datagrams the socket filter on the kernel sockets saw, by outcome (accepted; denied, not_allowed, unreadable: refused by --deny/--allow).", "outcome")
	dSockBuffers   = desc("socket_filter_buffers_total", "Socket buffers the socket filter saw, by outcome (a buffer UDP GRO merged holds several datagrams).", "outcome")
	dSinkOffered   = desc("sink_offered_total", "Datagrams handed to the sink by the pipeline.", "sink")
	dSinkWritten   = desc("sink_written_total", "Datagrams the sink's destination took.", "sink")
	dSinkBytes     = desc("sink_written_bytes_total", "UDP payload bytes the sink's destination took.", "sink")
	dSinkDropped   = desc("sink_dropped_total", "Datagrams lost on the way to the sink, by reason (queue_full: the pipeline's queue to the sink was full; shutdown: still queued when the drain timed out).", "sink", "reason")
	dSinkErrors    = desc("sink_errors_total", "Failed sink operations (a write, a publish, a send).", "sink")
	dSinkOther     = desc("sink_other_ports_total", "Datagrams for destination ports the sink doesn't take (?ports=): routed to other sinks, not lost.", "sink")
	dSinkConnected = desc("sink_connected", "1 while the sink can deliver (its broker connection is up, its files can be written), 0 while it can't.", "sink")
	dSinkFlight    = desc("sink_in_flight", "Datagrams queued for the sink or inside it, not yet written or dropped.", "sink")
)

// Per configured port, the outcomes of a match only (xdp.MatchedOutcomes);
// port="other" sums the ports beyond the program's counter slots.
var (
	dXDPPortPackets = desc("xdp_port_packets_total", "Frames for each configured port seen by the XDP program, by outcome (those of a match) and verdict; port=\"other\": the ports beyond the program's per-port counter slots, together.", "port", "outcome", "verdict")
	dXDPPortBytes   = desc("xdp_port_bytes_total", "Bytes of the frames for each configured port seen by the XDP program, by outcome.", "port", "outcome", "verdict")
)

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dBuild, dQueueInfo, dReloads, dLastReload, dRxPackets, dRxBytes, dRxBatches, dRxMalformed, dBatchSize, dXDPPackets, dXDPBytes, dXDPPortPackets, dXDPPortBytes,
		dXSKDropped, dXSKRingFull, dXSKFillEmpty, dXSKRxInvalid, dXSKTxInvalid, dXSKTxEmpty, dOverflows, dCopies, dSockFilter, dSockBuffers, dSinkOffered, dSinkWritten, dSinkBytes, dSinkDropped, dSinkErrors, dSinkOther, dSinkConnected, dSinkFlight} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(dBuild, 1, version.String(), runtime.Version())
	for i, result := range []string{"applied", "refused"} {
		counter(dReloads, m.reloads[i].Load(), result)
		gauge(dLastReload, float64(m.lastReload[i].Load())/1e9, result)
	}

	for i, rx := range m.receivers {
		s := rx.Stats()
		q := strconv.Itoa(rx.Queue())
		path := m.path.PathOf(i)
		afxdpMode := "-"
		if zc, ok := rx.(interface{ ZeroCopy() bool }); ok {
			afxdpMode = "copy"
			if zc.ZeroCopy() {
				afxdpMode = "zero-copy"
			}
		}
		gauge(dQueueInfo, 1, path, q, m.xdpMode, afxdpMode)
		counter(dRxPackets, s.Packets, path, q)
		counter(dRxBytes, s.Bytes, path, q)
		counter(dRxBatches, s.Batches, path, q)
		counter(dRxMalformed, s.Malformed, path, q)
		switch path {
		case "afxdp":
			counter(dXSKDropped, s.XDP.RxDropped, q)
			counter(dXSKRingFull, s.XDP.RxRingFull, q)
			counter(dXSKFillEmpty, s.XDP.RxFillRingEmptyDescs, q)
			counter(dXSKRxInvalid, s.XDP.RxInvalidDescs, q)
			counter(dXSKTxInvalid, s.XDP.TxInvalidDescs, q)
			counter(dXSKTxEmpty, s.XDP.TxRingEmptyDescs, q)
		case "kernel":
			counter(dOverflows, s.SocketOverflows, q)
			if kr, ok := rx.(*kernel.Receiver); ok {
				counter(dCopies, kr.Copies(), q)
			}
		}
		if m.pipe != nil && i < m.pipe.Workers() {
			h := m.pipe.BatchHistogram(i)
			buckets := make(map[float64]uint64, len(h))
			var cum, sum uint64
			for j, n := range h {
				cum += n
				buckets[float64(pipeline.BatchBuckets[j])] = cum
			}
			// The sum of batch sizes is the datagrams delivered.
			sum = s.Packets
			ch <- prometheus.MustNewConstHistogram(dBatchSize, cum, float64(sum), buckets, path, q)
		}
	}

	if m.prog != nil {
		c, err := m.prog.Counters()
		if err != nil {
			// The scrape fails visibly (promhttp reports it) rather than
			// leaving the series out.
			ch <- prometheus.NewInvalidMetric(dXDPPackets, err)
		} else {
			for o := xdp.Outcome(0); o < xdp.NumOutcomes; o++ {
				counter(dXDPPackets, c[o].Packets, o.String(), o.Verdict())
				counter(dXDPBytes, c[o].Bytes, o.String(), o.Verdict())
			}
		}
		if pc, err := m.prog.PortCounters(); err != nil {
			ch <- prometheus.NewInvalidMetric(dXDPPortPackets, err)
		} else {
			perPort := func(port string, c xdp.Counters) {
				for _, o := range xdp.MatchedOutcomes {
					counter(dXDPPortPackets, c[o].Packets, port, o.String(), o.Verdict())
					counter(dXDPPortBytes, c[o].Bytes, port, o.String(), o.Verdict())
				}
			}
			for port, c := range pc.Ports {
				perPort(strconv.Itoa(int(port)), c)
			}
			if len(pc.OtherPorts) > 0 {
				perPort("other", pc.Other)
			}
		}
		if sc, err := m.prog.SocketCounters(); err != nil {
			ch <- prometheus.NewInvalidMetric(dSockFilter, err)
		} else {
			for o := xdp.SocketOutcome(0); o < xdp.NumSocketOutcomes; o++ {
				counter(dSockFilter, sc[o].Packets, o.String())
				counter(dSockBuffers, sc[o].Buffers, o.String())
			}
		}
	}

	for i, s := range m.sinks {
		st := s.Stats()
		name := s.Name()
		var pc pipeline.SinkCounts
		if m.pipe != nil {
			pc = m.pipe.SinkCounts(i)
		}
		counter(dSinkOffered, st.Offered, name)
		counter(dSinkWritten, st.Written, name)
		counter(dSinkBytes, st.WrittenBytes, name)
		// The sink counts its failed operations itself; the errors its
		// writers returned are the same ones.
		counter(dSinkErrors, st.Errors, name)
		counter(dSinkOther, pc.OtherPorts, name)
		up := 1.0
		if c, ok := s.(sink.Connector); ok && !c.Connected() {
			up = 0
		}
		gauge(dSinkConnected, up, name)
		// The pipeline's reasons and the sink's in one series each (a
		// sink may count a reason of the same name).
		dropped := maps.Clone(st.Dropped)
		if dropped == nil {
			dropped = map[string]uint64{}
		}
		dropped["queue_full"] += pc.QueueFull
		dropped["shutdown"] += pc.Shutdown
		dropped["too_large"] += pc.TooLarge
		for reason, v := range dropped {
			counter(dSinkDropped, v, name, reason)
		}
		gauge(dSinkFlight, float64(st.InFlight)+float64(max(pc.Queued, 0)), name)
	}
}
