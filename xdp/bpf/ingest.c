// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// xdpingest's XDP program: find UDP datagrams for the ingest ports and steer
// them into the AF_XDP socket of the queue they arrived on; let everything
// else go on to the kernel untouched, counting why.
//
// Every frame ends in exactly one outcome (enum outcome), counted per CPU in
// packets and bytes, so that the Go side can account for every frame:
// frames seen = sum of all outcomes. A frame for one of our ports (a
// matched outcome) is counted once, in its port's slot of port_counters,
// and the Go side sums the slots for the totals: per-port counts cost the
// hot path no second counter.
//
// The same object holds a socket filter for the kernel UDP sockets on the
// ingest ports, which receive what the XDP program passes (fragments,
// extension headers, oversize frames, queues without a socket) and, on the
// kernel path, everything: it applies the same deny and allow lists, read
// from the same maps, to each datagram the kernel delivers.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Outcomes. Keep in step with the Outcome constants in program.go.
enum outcome {
	O_REDIRECT = 0,   // matched, allowed: redirected to the queue's AF_XDP socket
	O_PASS_MATCH,     // matched, allowed, pass mode: handed to the kernel socket path
	O_NO_SOCKET,      // matched, allowed, but the queue has no AF_XDP socket: passed
	O_DENY,           // matched, source in a deny list: dropped
	O_NOT_ALLOWED,    // matched, an allow list is set and the source is not in it: dropped
	O_DROP_MODE,      // matched, allowed, drop mode (benchmark ceiling): dropped
	O_OTHER_PORT,     // UDP to a port not in the set: passed
	O_TCP,            // TCP: passed
	O_ICMP,           // ICMP or ICMPv6: passed
	O_ARP,            // ARP: passed
	O_OTHER_L3,       // neither IPv4, IPv6 nor ARP: passed
	O_OTHER_L4,       // another IP protocol: passed
	O_FRAGMENT,       // IPv4 fragment, or IPv6 with a fragment header first: passed, the kernel reassembles
	O_IPV6_EXT,       // IPv6 with another extension header before UDP: passed
	O_VLAN_DEPTH,     // more than two VLAN tags: passed
	O_MALFORMED,      // a header with impossible values (version, IHL, lengths): passed
	O_TRUNCATED,      // the frame ends before its headers (or its IP length) do: passed
	O_OVERSIZE,       // matched, allowed, larger than an AF_XDP frame holds: passed
	O_MAX,
};

// The matched outcomes, counted per port slot instead of in counters (whose
// entries for them stay 0). Keep in step with MatchedOutcomes in
// counters.go.
enum port_outcome {
	P_REDIRECT = 0,
	P_PASS_MATCH,
	P_NO_SOCKET,
	P_DENY,
	P_NOT_ALLOWED,
	P_DROP_MODE,
	P_OVERSIZE,
	P_MAX,
};

// Outcomes of the socket filter, counted apart. Keep in step with the
// SocketOutcome constants in counters.go.
enum sock_outcome {
	S_ACCEPTED = 0,   // allowed (or no list in force): kept
	S_DENIED,         // source in a deny list: dropped
	S_NOT_ALLOWED,    // an allow list is in force and the source is not in it: dropped
	S_UNREADABLE,     // lists in force but no IPv4 or IPv6 source to check: dropped
	S_OTHER_IFACE,    // came in over another interface than the sockets' (loopback included): dropped
	S_MAX,
};

// Modes for matched, allowed packets.
enum mode {
	MODE_REDIRECT = 0,
	MODE_PASS = 1,
	MODE_DROP = 2,
};

// Config flags.
#define CFG_ALLOW4 (1u << 0) // the IPv4 allow list is in force
#define CFG_ALLOW6 (1u << 1) // the IPv6 allow list is in force
#define CFG_DENY4 (1u << 2)  // the IPv4 deny list has entries
#define CFG_DENY6 (1u << 3)  // the IPv6 deny list has entries

struct config {
	__u32 mode;
	__u32 flags;
	// The largest frame (bytes from the Ethernet header on, all buffers)
	// the redirect may take: what fits in an AF_XDP frame. 0: no limit.
	__u32 max_redirect;
	// The interface the kernel sockets are bound to: the socket filter
	// refuses a datagram that came in over another one. 0: no check.
	__u32 ifindex;
};

struct counter {
	__u64 packets;
	__u64 bytes;
};

struct lpm4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

// Maximum number of entries per prefix list. The loader may lower it.
#define MAX_PREFIXES 65536
// Queues addressable in the XSKMAP. The loader sets it from the device.
#define MAX_QUEUES 256

// The configuration and the port set are globals, not map entries: the
// program reads a global with one load from an address the verifier fills
// in, where a map lookup passes its key through the stack and checks its
// bounds and its result, on every frame (together about 2 ns of a matched
// frame's 15 with BPF_PROG_RUN here). The kernel still keeps each in an
// array map of one entry, which the loader writes.

// The configuration, in a section of its own so that it is a map of its
// own (.data.config): the loader writes it whole.
struct config config SEC(".data.config");

// The port set and each port's counter slot: a 16-bit entry per port, read
// as port_slots' 16-bit halves (little-endian: entry p is bits (p%4)*16 of
// word p/4). 0: not ours; n: ours, counted in slot n-1 of port_counters.
// It is the only variable in .bss, whose map the loader memory-maps
// (BPF_F_MMAPABLE) to store single words atomically at run time; it never
// gives a slot to another port.
__u64 port_slots[65536 / 4];

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm4_key);
	__type(value, __u8);
} allow4 SEC(".maps"), deny4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm6_key);
	__type(value, __u8);
} allow6 SEC(".maps"), deny6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, O_MAX);
	__type(key, __u32);
	__type(value, struct counter);
} counters SEC(".maps");

// Slots of per-port counters. The loader sets the number (LoadOptions.
// MaxPortSlots); slot 0 counts the ports that found no slot of their own.
#define MAX_PORT_SLOTS 256

// The matched frames of one port slot, by matched outcome.
struct port_counter {
	struct counter o[P_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_PORT_SLOTS);
	__type(key, __u32);
	__type(value, struct port_counter);
} port_counters SEC(".maps");

// The socket filter's counters: datagrams, bytes, and buffers (skbs). A
// buffer merged by UDP GRO holds several datagrams; the kernel's drop
// counter of a socket (sk_drops), which also counts what the filter drops,
// counts buffers.
struct sock_counter {
	__u64 packets;
	__u64 bytes;
	__u64 buffers;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, S_MAX);
	__type(key, __u32);
	__type(value, struct sock_counter);
} sock_counters SEC(".maps");

// Sockets the loader may track at once in sock_refused. The loader may
// change it.
#define MAX_SOCKETS 65536

// The buffers the socket filter refused, per socket (by its cookie,
// SO_COOKIE): the kernel counts them in the socket's drop counter too,
// and a receiver subtracts them to count only what a full receive buffer
// lost. The receiver deletes its sockets' entries when it closes them.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SOCKETS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u64);
} sock_refused SEC(".maps");

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define IP_MF_ 0x2000
#define IP_OFFMASK_ 0x1fff

// count counts one frame of len bytes. len is the frame's first buffer
// (data_end - data) unless the program learned the whole length (see
// whole_len).
static __always_inline int count(__u64 len, __u32 outcome, int action)
{
	struct counter *c = bpf_map_lookup_elem(&counters, &outcome);
	if (c) {
		c->packets++;
		c->bytes += len;
	}
	return action;
}

// port_slot is 0 for a port not in the set, else its slot + 1.
static __always_inline __u32 port_slot(__u16 port)
{
	return ((__u16 *)port_slots)[port];
}

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

// The IPv6 next-header values that are extension headers (RFC 8200 and the
// IANA registry). A UDP datagram behind one of them goes to the kernel.
static __always_inline int ipv6_ext(__u8 nh)
{
	switch (nh) {
	case 0:   // hop-by-hop options
	case 43:  // routing
	case 44:  // fragment (ingest counts it as a fragment first)
	case 50:  // ESP
	case 51:  // AH
	case 60:  // destination options
	case 135: // mobility
	case 139: // HIP
	case 140: // shim6
	case 253: // experimental
	case 254:
		return 1;
	}
	return 0;
}

static __always_inline int l4_outcome(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return O_TCP;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		return O_ICMP;
	}
	return O_OTHER_L4;
}

// A multi-buffer frame's first buffer is at least this long: a frame of a
// 1500-byte MTU with two VLAN tags (1522 bytes) fits in one buffer of veth
// (3520 bytes) and of NICs with 2 KiB buffers or more (less 256 bytes of
// headroom). A shorter first buffer is the whole frame.
#define MB_FIRST_MIN 1523

// matched counts and steers a UDP datagram for one of our ports, once the
// headers have been checked. len is the frame's length as far as the
// program knows it: its first buffer, or the whole frame once whole_len
// ran. slot is what port_slot returned for its port; saddr and v6 say
// where the source address is, for the lists.
static __always_inline int matched(struct xdp_md *ctx, __u64 len, const int mb, __u32 slot, void *saddr, const int v6)
{
	// Every matched outcome counts in the same element, so the program
	// looks it up once, first: the lookup's loads overlap with what
	// follows instead of waiting for the outcome.
	__u32 key = slot - 1;
	struct port_counter *pc = bpf_map_lookup_elem(&port_counters, &key);
	__u32 flags = config.flags;
	__u32 po;
	int act;

	if (unlikely(flags & (v6 ? CFG_DENY6 | CFG_ALLOW6 : CFG_DENY4 | CFG_ALLOW4))) {
		int denied, allowed = 1;
		if (v6) {
			struct lpm6_key k = {.prefixlen = 128};
			// Word by word: a memcpy copies byte by byte, the key's
			// address being an array of bytes. The verifier takes
			// the source as 4-aligned (NET_IP_ALIGN), and where it
			// isn't, the CPU loads it unaligned.
			__u32 *a = (__u32 *)k.addr, *b = saddr;
			a[0] = b[0];
			a[1] = b[1];
			a[2] = b[2];
			a[3] = b[3];
			denied = (flags & CFG_DENY6) && bpf_map_lookup_elem(&deny6, &k);
			if (!denied && (flags & CFG_ALLOW6))
				allowed = bpf_map_lookup_elem(&allow6, &k) != 0;
		} else {
			struct lpm4_key k = {.prefixlen = 32};
			*(__u32 *)k.addr = *(__u32 *)saddr;
			denied = (flags & CFG_DENY4) && bpf_map_lookup_elem(&deny4, &k);
			if (!denied && (flags & CFG_ALLOW4))
				allowed = bpf_map_lookup_elem(&allow4, &k) != 0;
		}
		if (denied) {
			po = P_DENY;
			act = XDP_DROP;
			goto out;
		}
		if (!allowed) {
			po = P_NOT_ALLOWED;
			act = XDP_DROP;
			goto out;
		}
	}

	__u32 mode = config.mode;
	if (unlikely(mode != MODE_REDIRECT)) {
		if (mode == MODE_PASS) {
			po = P_PASS_MATCH;
			act = XDP_PASS;
			goto out;
		}
		if (mode == MODE_DROP) {
			po = P_DROP_MODE;
			act = XDP_DROP;
			goto out;
		}
	}
	// The kernel drops a frame larger than the socket's frame after the
	// redirect (xsk_rcv_check: rx_dropped); the kernel sockets take it.
	// A frame whose IP datagram ends in its first buffer may still go on
	// in more (a trailer after the datagram): the size check needs the
	// whole length, which costs a helper call (about 1 ns, 7% of a small
	// matched frame), paid only where a frame can go on.
	__u32 max = config.max_redirect;
	if (max) {
		if (mb && len >= MB_FIRST_MIN)
			len = bpf_xdp_get_buff_len(ctx);
		if (unlikely(len > max)) {
			po = P_OVERSIZE;
			act = XDP_PASS;
			goto out;
		}
	}
	// With XDP_PASS in the flags, a queue without a socket makes the
	// helper return XDP_PASS instead of XDP_ABORTED: no second lookup.
	act = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
	po = act == XDP_REDIRECT ? P_REDIRECT : P_NO_SOCKET;
out:
	if (pc) {
		pc->o[po].packets++;
		pc->o[po].bytes += len;
	}
	return act;
}

// whole_len is the slow path for an IP datagram that runs past the first
// buffer, whose length is len: with frags (mb) it may go on in more
// buffers, and bpf_xdp_get_buff_len says how long the whole frame is.
// Without frags the first buffer is the frame. Only frames that reach past
// their first buffer pay for the helper call.
static __always_inline __u64 whole_len(struct xdp_md *ctx, const int mb, __u64 len)
{
	return mb ? bpf_xdp_get_buff_len(ctx) : len;
}

// ingest is the program; mb says whether it is loaded with frags support
// (BPF_F_XDP_HAS_FRAGS, Linux 5.18) and may see multi-buffer frames. The
// two programs below are the same code, the second without the helper
// older kernels lack.
//
// Each check below decides the outcome of the frames it catches, in this
// order; the ones a UDP datagram for our ports passes are marked unlikely,
// so that the compiler lays that path out straight and the rest aside.
// Every frame that is not for our ports leaves through one counting site.
static __always_inline int ingest(struct xdp_md *ctx, const int mb)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	// The frame's length: its first buffer, until the slow path learns
	// the whole.
	__u64 len = data_end - data;
	__u32 outcome;
	struct udphdr *udp;
	__u32 slot;

	void *cur = data + sizeof(struct ethhdr);
	if (unlikely(cur > data_end)) {
		outcome = O_TRUNCATED;
		goto pass;
	}
	// Not through struct ethhdr, which is packed: that would take two
	// byte loads.
	__u16 proto = *(__u16 *)(data + __builtin_offsetof(struct ethhdr, h_proto));

	// Up to two VLAN tags, 802.1ad (QinQ outer) or 802.1Q, in any order.
	if (unlikely(proto == bpf_htons(ETH_P_8021Q_) || proto == bpf_htons(ETH_P_8021AD_))) {
#pragma unroll
		for (int i = 0; i < 2; i++) {
			if (proto != bpf_htons(ETH_P_8021Q_) && proto != bpf_htons(ETH_P_8021AD_))
				break;
			if (cur + 4 > data_end) {
				outcome = O_TRUNCATED;
				goto pass;
			}
			proto = *(__u16 *)(cur + 2);
			cur += 4;
		}
		if (proto == bpf_htons(ETH_P_8021Q_) || proto == bpf_htons(ETH_P_8021AD_)) {
			outcome = O_VLAN_DEPTH;
			goto pass;
		}
	}

	if (likely(proto == bpf_htons(ETH_P_IP))) {
		struct iphdr *ip = cur;
		__u32 ihl, tot;
		if (likely(cur + sizeof(*ip) + sizeof(*udp) <= data_end && *(__u8 *)ip == 0x45)) {
			// Version 4, no options and room for a UDP header: the
			// checks of the general case below that such a frame
			// passes are left out, the others made in the same order.
			ihl = sizeof(*ip);
			tot = bpf_ntohs(ip->tot_len);
			if (unlikely(tot < ihl)) {
				outcome = O_MALFORMED;
				goto pass;
			}
			if (unlikely(cur + tot > data_end)) {
				len = whole_len(ctx, mb, len);
				if (len < (cur - data) + tot) {
					outcome = O_TRUNCATED;
					goto pass;
				}
			}
			if (unlikely(ip->frag_off & bpf_htons(IP_MF_ | IP_OFFMASK_))) {
				outcome = O_FRAGMENT;
				goto pass;
			}
			if (unlikely(ip->protocol != IPPROTO_UDP)) {
				outcome = l4_outcome(ip->protocol);
				goto pass;
			}
			udp = cur + sizeof(*ip);
		} else {
			if ((void *)(ip + 1) > data_end) {
				outcome = O_TRUNCATED;
				goto pass;
			}
			__u8 vihl = *(__u8 *)ip;
			ihl = (vihl & 0xf) * 4;
			tot = bpf_ntohs(ip->tot_len);
			if ((vihl >> 4) != 4 || ihl < sizeof(*ip) || tot < ihl) {
				outcome = O_MALFORMED;
				goto pass;
			}
			// With tot >= ihl, a header that runs past the first
			// buffer implies a datagram that does.
			if (cur + tot > data_end) {
				if (cur + ihl > data_end) {
					outcome = O_TRUNCATED;
					goto pass;
				}
				len = whole_len(ctx, mb, len);
				if (len < (cur - data) + tot) {
					outcome = O_TRUNCATED;
					goto pass;
				}
			}
			if (ip->frag_off & bpf_htons(IP_MF_ | IP_OFFMASK_)) {
				outcome = O_FRAGMENT;
				goto pass;
			}
			if (ip->protocol != IPPROTO_UDP) {
				outcome = l4_outcome(ip->protocol);
				goto pass;
			}
			udp = cur + ihl;
			if ((void *)(udp + 1) > data_end) {
				outcome = O_TRUNCATED;
				goto pass;
			}
		}
		// ulen >= 8 and ulen <= the bytes after the IP header imply that
		// those are 8 or more: no check of its own.
		__u32 ulen = bpf_ntohs(udp->len);
		if (unlikely(ulen < sizeof(*udp) || ulen > tot - ihl)) {
			outcome = O_MALFORMED;
			goto pass;
		}
		slot = port_slot(bpf_ntohs(udp->dest));
		if (!slot) {
			outcome = O_OTHER_PORT;
			goto pass;
		}
		return matched(ctx, len, mb, slot, &ip->saddr, 0);
	}

	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cur;
		if (unlikely((void *)(ip6 + 1) > data_end)) {
			outcome = O_TRUNCATED;
			goto pass;
		}
		if (unlikely(ip6->version != 6)) {
			outcome = O_MALFORMED;
			goto pass;
		}
		__u32 plen = bpf_ntohs(ip6->payload_len);
		if (unlikely((void *)(ip6 + 1) + plen > data_end)) {
			len = whole_len(ctx, mb, len);
			if (len < ((void *)(ip6 + 1) - data) + plen) {
				outcome = O_TRUNCATED;
				goto pass;
			}
		}
		__u8 nh = ip6->nexthdr;
		if (unlikely(nh != IPPROTO_UDP)) {
			if (nh == 44)
				outcome = O_FRAGMENT;
			else if (ipv6_ext(nh))
				outcome = O_IPV6_EXT;
			else
				outcome = l4_outcome(nh);
			goto pass;
		}
		udp = (void *)(ip6 + 1);
		if (unlikely((void *)(udp + 1) > data_end)) {
			outcome = O_TRUNCATED;
			goto pass;
		}
		// A zero payload length is a jumbogram, which needs a hop-by-hop
		// header we did not see: malformed, like any UDP length that
		// disagrees with the IP length (ulen >= 8 and ulen <= plen imply
		// plen >= 8).
		__u32 ulen = bpf_ntohs(udp->len);
		if (unlikely(ulen < sizeof(*udp) || ulen > plen)) {
			outcome = O_MALFORMED;
			goto pass;
		}
		slot = port_slot(bpf_ntohs(udp->dest));
		if (!slot) {
			outcome = O_OTHER_PORT;
			goto pass;
		}
		return matched(ctx, len, mb, slot, &ip6->saddr, 1);
	}

	outcome = proto == bpf_htons(ETH_P_ARP) ? O_ARP : O_OTHER_L3;
pass:
	return count(len, outcome, XDP_PASS);
}

// The program, aware of multi-buffer frames: it can be attached where
// frames outgrow one buffer (a veth whose peer's MTU is above ~3.5K, jumbo
// frames on NICs with multi-buffer XDP).
SEC("xdp.frags")
int xdpingest(struct xdp_md *ctx)
{
	return ingest(ctx, 1);
}

// The same for kernels before 5.18, which have neither frags support nor
// bpf_xdp_get_buff_len: the loader takes it when the helper is missing.
SEC("xdp")
int xdpingest_sb(struct xdp_md *ctx)
{
	return ingest(ctx, 0);
}

// refused_on_socket counts a refused buffer against the socket it was for.
// It counts before the kernel adds the drop to the socket's sk_drops: a
// reader that reads sk_drops first and this count second never counts a
// refusal as an overflow.
static __always_inline void refused_on_socket(struct __sk_buff *skb)
{
	// The kernel points skb->sk at the socket while its filter runs.
	__u64 cookie = bpf_get_socket_cookie(skb);
	__u64 *n = bpf_map_lookup_elem(&sock_refused, &cookie);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return;
	}
	__u64 one = 1;
	if (!bpf_map_update_elem(&sock_refused, &cookie, &one, BPF_NOEXIST))
		return;
	// Another CPU added the entry first. (Or the map is full: then the
	// refusal stays uncounted here and looks like an overflow.)
	n = bpf_map_lookup_elem(&sock_refused, &cookie);
	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline int sock_count(struct __sk_buff *skb, __u32 outcome, int keep)
{
	struct sock_counter *c = bpf_map_lookup_elem(&sock_counters, &outcome);
	if (c) {
		// A buffer merged by UDP GRO holds gso_segs datagrams.
		__u32 segs = skb->gso_segs;
		c->packets += segs ? segs : 1;
		c->bytes += skb->len;
		c->buffers++;
	}
	if (!keep)
		refused_on_socket(skb);
	// A socket filter returns how many bytes to keep: all, or none.
	return keep ? skb->len : 0;
}

// xdpingest_sock is the socket filter (SO_ATTACH_BPF) of the kernel UDP
// sockets on the ingest ports. It runs on the datagram the kernel delivers,
// after reassembly, so fragments and extension-header datagrams from
// denied sources are refused here. The kernel counts what it refuses as a
// drop of the socket (sk_drops) as well.
SEC("socket")
int xdpingest_sock(struct __sk_buff *skb)
{
	__u32 flags = config.flags;
	__u32 ifindex = config.ifindex;

	// SO_BINDTODEVICE lets through what a local process sends to the
	// interface's own address (routed over loopback, it is given the
	// address's interface as input): here both skb->dev (ifindex) and
	// skb_iif (ingress_ifindex) are loopback. Both must name the
	// interface: a reassembled datagram takes skb_iif from its first
	// fragment and skb->dev from the one that completed it, and the
	// kernel's fragment queues don't care which interface a fragment came
	// in over.
	if (ifindex && (skb->ifindex != ifindex || skb->ingress_ifindex != ifindex))
		return sock_count(skb, S_OTHER_IFACE, 0);

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (!(flags & (CFG_DENY4 | CFG_ALLOW4)))
			return sock_count(skb, S_ACCEPTED, 1);
		struct lpm4_key key = {.prefixlen = 32};
		if (bpf_skb_load_bytes_relative(skb, __builtin_offsetof(struct iphdr, saddr), key.addr, 4, BPF_HDR_START_NET))
			return sock_count(skb, S_UNREADABLE, 0);
		if ((flags & CFG_DENY4) && bpf_map_lookup_elem(&deny4, &key))
			return sock_count(skb, S_DENIED, 0);
		if ((flags & CFG_ALLOW4) && !bpf_map_lookup_elem(&allow4, &key))
			return sock_count(skb, S_NOT_ALLOWED, 0);
		return sock_count(skb, S_ACCEPTED, 1);
	}
	if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (!(flags & (CFG_DENY6 | CFG_ALLOW6)))
			return sock_count(skb, S_ACCEPTED, 1);
		struct lpm6_key key = {.prefixlen = 128};
		if (bpf_skb_load_bytes_relative(skb, __builtin_offsetof(struct ipv6hdr, saddr), key.addr, 16, BPF_HDR_START_NET))
			return sock_count(skb, S_UNREADABLE, 0);
		if ((flags & CFG_DENY6) && bpf_map_lookup_elem(&deny6, &key))
			return sock_count(skb, S_DENIED, 0);
		if ((flags & CFG_ALLOW6) && !bpf_map_lookup_elem(&allow6, &key))
			return sock_count(skb, S_NOT_ALLOWED, 0);
		return sock_count(skb, S_ACCEPTED, 1);
	}
	// A UDP socket only sees IPv4 and IPv6; fail closed if lists apply.
	if (!flags)
		return sock_count(skb, S_ACCEPTED, 1);
	return sock_count(skb, S_UNREADABLE, 0);
}

// The baseline for the program's benchmark: the cost of running any XDP
// program at all.
SEC("xdp")
int xdp_pass_only(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
