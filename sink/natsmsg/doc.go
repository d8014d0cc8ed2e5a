// Package natsmsg defines the messages the NATS sink publishes, so that
// consumers can read them: the header names, the batch framing, and
// [Decode], which turns either kind of message back into datagrams.
//
// A message carries one datagram (the default) or a batch of them (the
// sink's batch=N). A one-datagram message is the UDP payload as its data,
// with the metadata in headers (HeaderSrc, HeaderDst, HeaderDport,
// HeaderRxTime, HeaderVLAN). A batch message has the header HeaderBatch and
// its data is the framing below; docs/SINKS.md says the same with examples.
//
//	batch   = header record*
//	header  = magic "XDPB" (4 bytes), version (1 byte, = 1), flags (1 byte,
//	          = 0), count (uint16: number of records)
//	record  = length (uint16: payload bytes), family (1 byte: 4 or 6),
//	          nvlan (1 byte: 0, 1 or 2), rxtime (int64: ns since the Unix
//	          epoch), sport (uint16), dport (uint16),
//	          src (4 or 16 bytes), dst (4 or 16 bytes),
//	          vlan (nvlan × uint16: VLAN IDs, outer first),
//	          payload (length bytes)
//
// Integers are big-endian (network order); nothing is padded or aligned.
// A record of an IPv4 datagram without tags has 24 bytes before its payload,
// of an IPv6 one 48. A decoder refuses a batch whose magic, version, flags,
// count or lengths don't add up to exactly the message's data.
package natsmsg
