// Package server is xdpingest's ingest server: it wires the XDP program, a
// receive path, the pipeline of bounded per-worker queues and the sinks
// together, serves the metrics and health endpoints, and runs the lifecycle
// (start, reload on SIGHUP, drain on SIGTERM).
package server
