// Package measure runs xdpingest's receive paths against traffic
// generators and measures them: what pktbench does, as a library that
// tests and other programs can call.
//
// It owns the receive paths as pktbench knows them (StartPath: xdp-drop,
// afxdp, kernel, stdnet, the xdpingest server, and the C reference
// bench/cref/xskdrop), the sets of pinned generators that drive them
// (RunGenerators), the side-by-side sweep on a test bed of its own
// (Compare), and its Report, with the summaries, JSON and charts; and the
// latency sweep (Latency): a paced sender that stamps the send time, the
// latency paths that read it (LatencyPaths), and the LatencyReport with
// its JSON and percentile chart.
// Flags, validation messages and printed tables are pktbench's.
//
// It sits above datapath, xdp and bench: bench stays a leaf that the
// datapath packages' tests can import.
package measure
