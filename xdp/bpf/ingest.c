// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// xdpingest's XDP program: find UDP datagrams for the ingest ports and steer
// them into the AF_XDP socket of the queue they arrived on; let everything
// else go on to the kernel untouched, counting why.
//
// Every frame ends in exactly one outcome (enum outcome), counted per CPU in
// packets and bytes, so that the Go side can account for every frame:
// frames seen = sum of all outcomes.

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
	O_FRAGMENT,       // IPv4 fragment, first or later: passed, the kernel reassembles
	O_IPV6_EXT,       // IPv6 with an extension header before UDP: passed
	O_VLAN_DEPTH,     // more than two VLAN tags: passed
	O_MALFORMED,      // a header with impossible values (version, IHL, lengths): passed
	O_TRUNCATED,      // the frame ends before its headers (or its IP length) do: passed
	O_MAX,
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

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config SEC(".maps");

// The port set: a 65536-bit bitmap in 1024 words. One lookup per packet,
// and the loader changes single words at run time.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} ports SEC(".maps");

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

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define IP_MF_ 0x2000
#define IP_OFFMASK_ 0x1fff

static __always_inline int count(struct xdp_md *ctx, __u32 outcome, int action)
{
	struct counter *c = bpf_map_lookup_elem(&counters, &outcome);
	if (c) {
		c->packets++;
		c->bytes += ctx->data_end - ctx->data;
	}
	return action;
}

static __always_inline int port_in_set(__u16 port)
{
	__u32 word = port >> 6;
	__u64 *bits = bpf_map_lookup_elem(&ports, &word);
	return bits && (*bits >> (port & 63)) & 1;
}

// The IPv6 next-header values that are extension headers (RFC 8200 and the
// IANA registry). A UDP datagram behind one of them goes to the kernel.
static __always_inline int ipv6_ext(__u8 nh)
{
	switch (nh) {
	case 0:   // hop-by-hop options
	case 43:  // routing
	case 44:  // fragment
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

// matched decides what happens to a UDP datagram for one of our ports once
// the source has been checked.
static __always_inline int matched(struct xdp_md *ctx, struct config *cfg)
{
	if (cfg->mode == MODE_PASS)
		return count(ctx, O_PASS_MATCH, XDP_PASS);
	if (cfg->mode == MODE_DROP)
		return count(ctx, O_DROP_MODE, XDP_DROP);
	// With XDP_PASS in the flags, a queue without a socket makes the
	// helper return XDP_PASS instead of XDP_ABORTED: no second lookup.
	int act = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
	if (act == XDP_REDIRECT)
		return count(ctx, O_REDIRECT, XDP_REDIRECT);
	return count(ctx, O_NO_SOCKET, XDP_PASS);
}

SEC("xdp")
int xdpingest(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;

	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return XDP_PASS; // cannot happen: array maps always have the entry

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return count(ctx, O_TRUNCATED, XDP_PASS);

	void *cur = eth + 1;
	__u16 proto = eth->h_proto;

	// Up to two VLAN tags, 802.1ad (QinQ outer) or 802.1Q, in any order.
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q_) && proto != bpf_htons(ETH_P_8021AD_))
			break;
		if (cur + 4 > data_end)
			return count(ctx, O_TRUNCATED, XDP_PASS);
		proto = *(__u16 *)(cur + 2);
		cur += 4;
	}
	if (proto == bpf_htons(ETH_P_8021Q_) || proto == bpf_htons(ETH_P_8021AD_))
		return count(ctx, O_VLAN_DEPTH, XDP_PASS);

	struct udphdr *udp;
	__u32 ip_left; // bytes of the IP datagram after the IP header(s)

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cur;
		if ((void *)(ip + 1) > data_end)
			return count(ctx, O_TRUNCATED, XDP_PASS);
		__u32 ihl = ip->ihl * 4;
		if (ip->version != 4 || ihl < sizeof(*ip))
			return count(ctx, O_MALFORMED, XDP_PASS);
		__u32 tot = bpf_ntohs(ip->tot_len);
		if (tot < ihl)
			return count(ctx, O_MALFORMED, XDP_PASS);
		if (cur + ihl > data_end)
			return count(ctx, O_TRUNCATED, XDP_PASS);
		if (cur + tot > data_end)
			return count(ctx, O_TRUNCATED, XDP_PASS);
		if (ip->frag_off & bpf_htons(IP_MF_ | IP_OFFMASK_))
			return count(ctx, O_FRAGMENT, XDP_PASS);
		if (ip->protocol != IPPROTO_UDP)
			return count(ctx, l4_outcome(ip->protocol), XDP_PASS);
		udp = cur + ihl;
		if ((void *)(udp + 1) > data_end)
			return count(ctx, O_TRUNCATED, XDP_PASS);
		ip_left = tot - ihl;
		if (ip_left < sizeof(*udp))
			return count(ctx, O_MALFORMED, XDP_PASS);
		__u32 ulen = bpf_ntohs(udp->len);
		if (ulen < sizeof(*udp) || ulen > ip_left)
			return count(ctx, O_MALFORMED, XDP_PASS);
		if (!port_in_set(bpf_ntohs(udp->dest)))
			return count(ctx, O_OTHER_PORT, XDP_PASS);

		if (cfg->flags & (CFG_DENY4 | CFG_ALLOW4)) {
			struct lpm4_key key = {.prefixlen = 32};
			__builtin_memcpy(key.addr, &ip->saddr, 4);
			if ((cfg->flags & CFG_DENY4) && bpf_map_lookup_elem(&deny4, &key))
				return count(ctx, O_DENY, XDP_DROP);
			if ((cfg->flags & CFG_ALLOW4) && !bpf_map_lookup_elem(&allow4, &key))
				return count(ctx, O_NOT_ALLOWED, XDP_DROP);
		}
		return matched(ctx, cfg);
	}

	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cur;
		if ((void *)(ip6 + 1) > data_end)
			return count(ctx, O_TRUNCATED, XDP_PASS);
		if (ip6->version != 6)
			return count(ctx, O_MALFORMED, XDP_PASS);
		__u32 plen = bpf_ntohs(ip6->payload_len);
		if ((void *)(ip6 + 1) + plen > data_end)
			return count(ctx, O_TRUNCATED, XDP_PASS);
		if (ipv6_ext(ip6->nexthdr))
			return count(ctx, O_IPV6_EXT, XDP_PASS);
		if (ip6->nexthdr != IPPROTO_UDP)
			return count(ctx, l4_outcome(ip6->nexthdr), XDP_PASS);
		udp = (void *)(ip6 + 1);
		if ((void *)(udp + 1) > data_end)
			return count(ctx, O_TRUNCATED, XDP_PASS);
		// A zero payload length is a jumbogram, which needs a hop-by-hop
		// header we did not see: malformed, like any UDP length that
		// disagrees with the IP length.
		__u32 ulen = bpf_ntohs(udp->len);
		if (plen < sizeof(*udp) || ulen < sizeof(*udp) || ulen > plen)
			return count(ctx, O_MALFORMED, XDP_PASS);
		if (!port_in_set(bpf_ntohs(udp->dest)))
			return count(ctx, O_OTHER_PORT, XDP_PASS);

		if (cfg->flags & (CFG_DENY6 | CFG_ALLOW6)) {
			struct lpm6_key key = {.prefixlen = 128};
			__builtin_memcpy(key.addr, &ip6->saddr, 16);
			if ((cfg->flags & CFG_DENY6) && bpf_map_lookup_elem(&deny6, &key))
				return count(ctx, O_DENY, XDP_DROP);
			if ((cfg->flags & CFG_ALLOW6) && !bpf_map_lookup_elem(&allow6, &key))
				return count(ctx, O_NOT_ALLOWED, XDP_DROP);
		}
		return matched(ctx, cfg);
	}

	if (proto == bpf_htons(ETH_P_ARP))
		return count(ctx, O_ARP, XDP_PASS);
	return count(ctx, O_OTHER_L3, XDP_PASS);
}

// The baseline for the program's benchmark: the cost of running any XDP
// program at all.
SEC("xdp")
int xdp_pass_only(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
