// Package afxdp is the AF_XDP receive path: UMEM, the four rings, one socket
// per RX queue, wakeups, busy polling and statistics, written over
// golang.org/x/sys/unix.
package afxdp
