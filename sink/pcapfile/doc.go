// Package pcapfile reads and writes the classic pcap file format (the one
// tcpdump -w writes, not pcapng): a 24-byte file header followed by records,
// each a 16-byte header and the captured bytes.
//
// The writing side is two append functions, so that a writer on a hot path
// (the pcap sink) builds headers into its own buffer without allocating. The
// reading side is a [Reader] that accepts both timestamp resolutions
// (microseconds, magic 0xa1b2c3d4, and nanoseconds, 0xa1b23c4d) in either
// byte order, and reports a record cut short by a crash as
// io.ErrUnexpectedEOF rather than as garbage. It takes hostile input: a
// length field costs no more memory than the bytes that follow it (and at
// most 1 MiB a record), and FuzzReader checks it.
package pcapfile
