// Package bench holds the traffic generators and meters that pktbench, the
// Go benchmarks and the end-to-end tests share: sequence-numbered payloads
// and the tracker that finds every loss and duplicate, the sendmmsg and XDP
// live-frames generators, and the rate meters; for latency, the send-time
// stamp (CLOCK_MONOTONIC after the sequence number), MonoNow, a log-linear
// histogram of fixed memory, and a pacer on absolute deadlines.
package bench
