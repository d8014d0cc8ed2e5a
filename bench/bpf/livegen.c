// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The live-frames generator: run with BPF_PROG_RUN and
// BPF_F_TEST_XDP_LIVE_FRAMES, every repetition transmits the template frame
// out of the ingress interface (XDP_TX), after stamping a sequence number
// into the payload and, for several flows, a varying UDP source port.
//
// The kernel does not reset a page between repetitions that reuse it, so
// the program reads what is in the frame and fixes the UDP checksum
// incrementally (RFC 1624) from the old values to the new ones.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct gen_config {
	__u32 seq_off;    // offset of the 8-byte big-endian sequence number
	__u32 sport_off;  // offset of the UDP source port
	__u32 csum_off;   // offset of the UDP checksum (0: leave it alone)
	__u32 flows;      // number of source ports, 1 or more
	__u32 sport_base; // first source port
	__u32 stream;     // stream id in the top 16 bits of every sequence number
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_config);
} gen_config SEC(".maps");

// Next sequence number. Not per CPU: the generating thread may move between
// CPUs from one call to the next. One generator uses a loaded program at a
// time (each has its own stream id), so no two CPUs increment it at once.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gen_seq SEC(".maps");

#define MAX_OFF 2048

static __always_inline __u32 fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	return (s & 0xffff) + (s >> 16);
}

SEC("xdp")
int livegen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;

	struct gen_config *cfg = bpf_map_lookup_elem(&gen_config, &zero);
	__u64 *next = bpf_map_lookup_elem(&gen_seq, &zero);
	if (!cfg || !next)
		return XDP_ABORTED;

	__u32 seq_off = cfg->seq_off & (MAX_OFF - 1);
	__u32 sport_off = cfg->sport_off & (MAX_OFF - 1);
	__u32 csum_off = cfg->csum_off & (MAX_OFF - 1);
	__be16 *seqp = data + seq_off;
	__be16 *sportp = data + sport_off;
	__be16 *csump = data + csum_off;
	if ((void *)(seqp + 4) > data_end || (void *)(sportp + 1) > data_end ||
	    (void *)(csump + 1) > data_end)
		return XDP_ABORTED;

	__u64 seq = ((__u64)cfg->stream << 48) | (*next & 0xffffffffffffULL);
	(*next)++;
	__u16 sport = cfg->sport_base;
	if (cfg->flows > 1)
		sport += (__u16)(seq % cfg->flows);

	// Ones-complement sum of the 16-bit words that change, old and new.
	__u32 old = 0, new = 0;
	__be16 w[4];
	__u64 be = bpf_cpu_to_be64(seq);
	__builtin_memcpy(w, &be, 8);
#pragma unroll
	for (int i = 0; i < 4; i++) {
		old += (__u16)~seqp[i] & 0xffff;
		new += w[i];
		seqp[i] = w[i];
	}
	old += (__u16)~*sportp & 0xffff;
	new += bpf_htons(sport);
	*sportp = bpf_htons(sport);

	if (cfg->csum_off) {
		__u16 c = *csump;
		if (c != 0) { // zero: IPv4 without checksum, keep it so
			__u32 s = (__u16)~c & 0xffff;
			s = fold(s + old + new);
			c = ~s & 0xffff;
			*csump = c ? c : 0xffff;
		}
	}
	return XDP_TX;
}

char _license[] SEC("license") = "Dual BSD/GPL";
