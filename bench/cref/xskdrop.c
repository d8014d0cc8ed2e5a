// xskdrop: a reference AF_XDP receiver in C, for pktbench's afxdp-c path.
//
// It receives on one queue and drops what it receives, in the way a C
// receiver built on xsk.h's ring helpers does: indices cached, the peer's
// loaded with acquire and ours published with release once per batch, every
// frame handed straight back to the fill ring, the fill ring woken only
// when it asks, and after `spin` empty checks a sleep: on a timer for
// NAP_US while the last frame came less than 64 naps ago, else in poll()
// (as datapath/afxdp does; copy mode never sets the need-wakeup flag on
// the fill ring). Without WALK it never reads a frame: the floor of what
// any receiver costs. With WALK=1 it reads each frame's headers and the
// first bytes of its payload, as any consumer must. pktbench runs it beside
// the Go receiver to show how close Go comes to C in the same run.
//
// With WALK=2 (pktbench latency's afxdp-c path) it reads the clock
// (CLOCK_MONOTONIC) once per batch it takes off the RX ring, and for each
// frame the send time that pktbench's sender wrote after the sequence
// number (bench.PutStamp: big-endian nanoseconds at payload offset 8), and
// records the difference (but not for the sender's warm-up, stream 1) in
// a log-linear histogram laid out as
// bench.Histogram is (hist_index is bench.HistIndex).
//
// Usage: xskdrop IFACE QUEUE CPU SPIN [NAP_US [WALK [SLICE_US [NICE]]]], with fd 3 a unix
// socket: once bound, the socket's fd is sent on it (SCM_RIGHTS) for the
// caller to put into its XSKMAP. Every 100 ms it prints "packets N" on stdout; on SIGTERM or
// SIGINT it prints the socket's XDP_STATISTICS and exits 0; with WALK=2,
// before them, "lat_count N", "lat_min NS", "lat_max NS", "lat_negative N",
// "lat_unstamped N" and a line "lat_bucket INDEX COUNT" per bucket that
// holds values.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SOL_XDP
#define SOL_XDP 283
#endif

enum {
	FRAME_SIZE = 2048,
	NUM_FRAMES = 4096, // as datapath/afxdp's defaults
	RING_SIZE = 2048,
	BATCH = 64,
};

struct ring {
	uint32_t *producer, *consumer, *flags;
	void *descs;
	uint32_t mask;
	uint32_t cached; // our own index
	uint32_t peer;   // the peer's index as last loaded
};

static volatile sig_atomic_t stop;
static uint64_t packets; // written by the receive loop, read by the reporter

// walk_frame reads what a consumer reads of a frame: the Ethernet type,
// the IP header's length fields, the UDP ports and the first 8 bytes of
// the payload (pktbench's sequence number). Untagged IPv4 and IPv6 only.
static uint64_t walk_frame(const uint8_t *f, uint32_t len) {
	if (len < 14)
		return 0;
	uint16_t type = (uint16_t)(f[12] << 8 | f[13]);
	uint32_t off;
	if (type == 0x0800 && len >= 34)
		off = 14 + (uint32_t)(f[14] & 0x0f) * 4;
	else if (type == 0x86dd && len >= 54)
		off = 14 + 40;
	else
		return 0;
	if (len < off + 16)
		return 0;
	const uint8_t *u = f + off;
	uint64_t seq;
	memcpy(&seq, u + 8, sizeof(seq));
	return ((uint64_t)u[0] << 8 | u[1]) ^ ((uint64_t)u[2] << 8 | u[3]) ^ seq;
}

// The latency histogram: bench.Histogram's layout. Values below 256 ns have
// a bucket each; above, every power of two is split into 128 buckets; values
// from 2^36 ns on share the last.
enum {
	HIST_SUB_BITS = 7,
	HIST_SUB = 1 << HIST_SUB_BITS,
	HIST_LINEAR = 2 * HIST_SUB,
	HIST_MAX_MAG = 36 - HIST_SUB_BITS - 1,
	HIST_BUCKETS = HIST_LINEAR + HIST_MAX_MAG * HIST_SUB,
};
static const int64_t hist_limit = (int64_t)1 << 36;

static uint64_t hist[HIST_BUCKETS];
static uint64_t lat_count, lat_negative, lat_unstamped;
static int64_t lat_min, lat_max;

static int hist_index(int64_t v) {
	if (v < HIST_LINEAR)
		return (int)v;
	if (v >= hist_limit)
		return HIST_BUCKETS - 1;
	int m = 64 - __builtin_clzll((uint64_t)v) - HIST_SUB_BITS - 1;
	return HIST_LINEAR + (m - 1) * HIST_SUB + (int)((uint64_t)v >> m) - HIST_SUB;
}

// stamp_of returns the send time in a frame's payload (after the 8-byte
// sequence number), -1 when the frame is too short to hold one, and -2 for
// the sender's warm-up (stream 1: the sequence number's top 16 bits), which
// is not measured. Untagged IPv4 and IPv6 only.
static int64_t stamp_of(const uint8_t *f, uint32_t len) {
	if (len < 14)
		return -1;
	uint16_t type = (uint16_t)(f[12] << 8 | f[13]);
	uint32_t off;
	if (type == 0x0800 && len >= 34)
		off = 14 + (uint32_t)(f[14] & 0x0f) * 4 + 8;
	else if (type == 0x86dd && len >= 54)
		off = 14 + 40 + 8;
	else
		return -1;
	if (len < off + 16)
		return -1;
	uint64_t be;
	memcpy(&be, f + off, sizeof(be));
	if (__builtin_bswap64(be) >> 48 == 1)
		return -2;
	memcpy(&be, f + off + 8, sizeof(be));
	return (int64_t)__builtin_bswap64(be);
}

static void record_latency(int64_t now, const uint8_t *f, uint32_t len) {
	int64_t sent = stamp_of(f, len);
	if (sent == -2)
		return;
	if (sent < 0) {
		lat_unstamped++;
		return;
	}
	int64_t v = now - sent;
	if (v < 0) {
		lat_negative++;
		return;
	}
	if (lat_count == 0 || v < lat_min)
		lat_min = v;
	if (v > lat_max)
		lat_max = v;
	lat_count++;
	hist[hist_index(v)]++;
}

// set_slice gives the calling thread a scheduler slice of us microseconds
// (sched_setattr's sched_runtime on a SCHED_OTHER thread, Linux 6.12+), as
// tuning.SetThreadSlice does for the Go receivers. Older kernels ignore it.
struct slice_attr {
	uint32_t size, policy;
	uint64_t flags;
	int32_t nice;
	uint32_t priority;
	uint64_t runtime, deadline, period;
	uint32_t util_min, util_max;
};

static int set_slice(long us) {
	struct slice_attr a;
	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	if (syscall(SYS_sched_getattr, 0, &a, sizeof(a), 0))
		return -1;
	if (a.policy != 0 && a.policy != 3) // SCHED_OTHER, SCHED_BATCH
		return 0;
	a.size = sizeof(a);
	a.flags &= 0x01; // SCHED_FLAG_RESET_ON_FORK, kept
	a.runtime = (uint64_t)us * 1000;
	a.deadline = a.period = 0;
	return (int)syscall(SYS_sched_setattr, 0, &a, 0);
}

static void on_signal(int sig) { (void)sig; stop = 1; }

static void die(const char *what) {
	fprintf(stderr, "xskdrop: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void map_ring(int fd, struct xdp_ring_offset *off, uint64_t pgoff, size_t desc_size, struct ring *r) {
	size_t len = off->desc + RING_SIZE * desc_size;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);
	if (p == MAP_FAILED)
		die("mmap ring");
	r->producer = (uint32_t *)(p + off->producer);
	r->consumer = (uint32_t *)(p + off->consumer);
	r->flags = (uint32_t *)(p + off->flags);
	r->descs = p + off->desc;
	r->mask = RING_SIZE - 1;
}

static void send_fd(int via, int fd) {
	char byte = 0;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	if (sendmsg(via, &msg, 0) != 1)
		die("send the socket's fd on fd 3");
}

static void *report(void *arg) {
	(void)arg;
	struct timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
	while (!stop) {
		nanosleep(&ts, NULL);
		printf("packets %llu\n", (unsigned long long)__atomic_load_n(&packets, __ATOMIC_RELAXED));
		fflush(stdout);
	}
	return NULL;
}

int main(int argc, char **argv) {
	if (argc < 5 || argc > 9) {
		fprintf(stderr, "usage: xskdrop IFACE QUEUE CPU SPIN [NAP_US [WALK [SLICE_US [NICE]]]] (fd 3: unix socket for the XSK fd)\n");
		return 2;
	}
	long nap_us = argc >= 6 ? atol(argv[5]) : 0;
	int walk = argc >= 7 ? atoi(argv[6]) : 0;
	if (walk < 0 || walk > 2) {
		fprintf(stderr, "xskdrop: WALK %d: want 0 (read nothing), 1 (read headers) or 2 (latency)\n", walk);
		return 2;
	}
	long slice_us = argc >= 8 ? atol(argv[7]) : 0;
	int nice_val = argc == 9 ? atoi(argv[8]) : 0;
	unsigned ifindex = if_nametoindex(argv[1]);
	if (ifindex == 0)
		die(argv[1]);
	int queue = atoi(argv[2]), cpu = atoi(argv[3]);
	long spin = atol(argv[4]);

	if (cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			die("sched_setaffinity");
	}
	if (slice_us > 0 && set_slice(slice_us))
		die("sched_setattr");
	// The receive loop runs on this thread (the reporter thread, made
	// later, inherits the value): as pktbench's --nice for every receiver.
	if (nice_val != 0 && setpriority(PRIO_PROCESS, (id_t)gettid(), nice_val))
		die("setpriority");
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	int fd = socket(AF_XDP, SOCK_RAW, 0);
	if (fd < 0)
		die("socket(AF_XDP)");
	// Aligned to 2 MiB and advised for transparent huge pages, as
	// datapath/afxdp's UMEM; the registration below faults it in.
	size_t umem_len = (size_t)NUM_FRAMES * FRAME_SIZE, huge = (size_t)2 << 20;
	char *raw = mmap(NULL, umem_len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		die("mmap UMEM");
	char *umem = (char *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
	(void)madvise(umem, umem_len, MADV_HUGEPAGE);
	struct xdp_umem_reg reg = {.addr = (uint64_t)(uintptr_t)umem, .len = umem_len, .chunk_size = FRAME_SIZE};
	if (setsockopt(fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof(reg)))
		die("XDP_UMEM_REG");
	int sz = RING_SIZE;
	if (setsockopt(fd, SOL_XDP, XDP_UMEM_FILL_RING, &sz, sizeof(sz)) ||
	    setsockopt(fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &sz, sizeof(sz)) ||
	    setsockopt(fd, SOL_XDP, XDP_RX_RING, &sz, sizeof(sz)))
		die("ring sizes");
	struct xdp_mmap_offsets off;
	socklen_t optlen = sizeof(off);
	if (getsockopt(fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &optlen))
		die("XDP_MMAP_OFFSETS");
	struct ring fq, rx;
	map_ring(fd, &off.fr, XDP_UMEM_PGOFF_FILL_RING, sizeof(uint64_t), &fq);
	map_ring(fd, &off.rx, XDP_PGOFF_RX_RING, sizeof(struct xdp_desc), &rx);
	(void)mmap(NULL, off.cr.desc + RING_SIZE * sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, XDP_UMEM_PGOFF_COMPLETION_RING);

	// The fill ring gets RING_SIZE frames: with every received frame
	// handed straight back, it always has room for a batch.
	uint64_t *fill = fq.descs;
	for (uint32_t i = 0; i < RING_SIZE; i++)
		fill[i] = (uint64_t)i * FRAME_SIZE;
	fq.cached = RING_SIZE;
	__atomic_store_n(fq.producer, fq.cached, __ATOMIC_RELEASE);

	struct sockaddr_xdp sxdp = {.sxdp_family = AF_XDP, .sxdp_ifindex = ifindex, .sxdp_queue_id = queue, .sxdp_flags = XDP_USE_NEED_WAKEUP};
	// A socket closed a moment ago (the previous run's) still holds the
	// queue: the kernel frees its buffer pool in deferred work. Retry EBUSY
	// for up to a second, as the Go receiver does.
	for (int tries = 0;; tries++) {
		if (bind(fd, (struct sockaddr *)&sxdp, sizeof(sxdp)) == 0)
			break;
		if (errno != EBUSY || tries == 100)
			die("bind");
		struct timespec ts = {.tv_nsec = 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	send_fd(3, fd);
	close(3);

	pthread_t reporter;
	if (pthread_create(&reporter, NULL, report, NULL))
		die("pthread_create");

	struct xdp_desc *descs = rx.descs;
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	uint64_t count = 0;
	long empty = 0;
	int64_t last_rx = 0;
	uint64_t walked = 0; // what the walk read, printed so it is not optimized away
	while (!stop) {
		if (rx.peer == rx.cached) {
			rx.peer = __atomic_load_n(rx.producer, __ATOMIC_ACQUIRE);
			if (rx.peer == rx.cached) {
				if (++empty >= spin) {
					empty = 0;
					struct timespec now;
					clock_gettime(CLOCK_MONOTONIC, &now);
					int64_t t = now.tv_sec * 1000000000LL + now.tv_nsec;
					if (nap_us > 0 && t - last_rx < 64 * nap_us * 1000) {
						struct timespec nap = {.tv_sec = 0, .tv_nsec = nap_us * 1000};
						nanosleep(&nap, NULL);
					} else {
						poll(&pfd, 1, 100);
					}
				}
				continue;
			}
		}
		if (empty >= 0 && nap_us > 0) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			last_rx = now.tv_sec * 1000000000LL + now.tv_nsec;
		}
		empty = 0;
		uint32_t n = rx.peer - rx.cached;
		if (n > BATCH)
			n = BATCH;
		// The batch is handed over now: one clock reading for all of it,
		// as the Go receivers of pktbench latency take.
		int64_t batch_time = 0;
		if (walk == 2) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			batch_time = now.tv_sec * 1000000000LL + now.tv_nsec;
		}
		for (uint32_t i = 0; i < n; i++) {
			struct xdp_desc *d = &descs[(rx.cached + i) & rx.mask];
			if (walk == 1)
				walked += walk_frame((const uint8_t *)umem + d->addr, d->len);
			else if (walk == 2)
				record_latency(batch_time, (const uint8_t *)umem + d->addr, d->len);
			fill[(fq.cached + i) & fq.mask] = d->addr & ~(uint64_t)(FRAME_SIZE - 1);
		}
		fq.cached += n;
		rx.cached += n;
		__atomic_store_n(fq.producer, fq.cached, __ATOMIC_RELEASE);
		__atomic_store_n(rx.consumer, rx.cached, __ATOMIC_RELEASE);
		if (__atomic_load_n(fq.flags, __ATOMIC_RELAXED) & XDP_RING_NEED_WAKEUP)
			recvfrom(fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
		count += n;
		__atomic_store_n(&packets, count, __ATOMIC_RELAXED);
	}
	pthread_join(reporter, NULL);
	struct xdp_statistics st;
	optlen = sizeof(st);
	if (getsockopt(fd, SOL_XDP, XDP_STATISTICS, &st, &optlen))
		die("XDP_STATISTICS");
	printf("packets %llu\n", (unsigned long long)count);
	if (walk == 1)
		printf("walked %llu\n", (unsigned long long)walked);
	if (walk == 2) {
		printf("lat_count %llu\nlat_min %lld\nlat_max %lld\nlat_negative %llu\nlat_unstamped %llu\n",
		       (unsigned long long)lat_count, (long long)lat_min, (long long)lat_max,
		       (unsigned long long)lat_negative, (unsigned long long)lat_unstamped);
		for (int i = 0; i < HIST_BUCKETS; i++)
			if (hist[i])
				printf("lat_bucket %d %llu\n", i, (unsigned long long)hist[i]);
	}
	printf("rx_dropped %llu\nrx_invalid_descs %llu\nrx_ring_full %llu\nrx_fill_ring_empty_descs %llu\n",
	       (unsigned long long)st.rx_dropped, (unsigned long long)st.rx_invalid_descs,
	       (unsigned long long)st.rx_ring_full, (unsigned long long)st.rx_fill_ring_empty_descs);
	return 0;
}
