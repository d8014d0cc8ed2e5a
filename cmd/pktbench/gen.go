//go:build linux

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"

	"github.com/xdpingest/xdpingest/bench/measure"
	"github.com/xdpingest/xdpingest/tuning"
)

// cmdGen is `pktbench gen`.
func cmdGen(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		kind    = fs.String("gen", measure.GenLive, "generator: live (XDP live frames, BPF_PROG_RUN + XDP_TX), afxdp (AF_XDP TX ring) or sendmmsg (UDP sockets)")
		iface   = fs.String("iface", "", "the `interface` to send on (required)")
		netns   = fs.String("netns", "", "run in this network `namespace` (from `ip netns list`)")
		dst     = fs.String("dst", "", "destination `IP:PORT` (required)")
		dstMAC  = fs.String("dst-mac", "", "destination `MAC` for live and afxdp (default: from the neighbour table)")
		src     = fs.String("src", "", "source `IP[:PORT]` (default: the interface's first address of the family, port 10000)")
		size    = fs.Int("size", 64, "frame size in `bytes`, Ethernet header included, FCS excluded (64: 22-byte UDP payload over IPv4)")
		flows   = fs.Int("flows", 1, "flows per generator: source ports PORT..PORT+N-1 (the next generator's follow), so that RSS spreads them")
		rate    = fs.Float64("rate", 0, "total rate limit in `pps` (0: as fast as possible)")
		count   = fs.Uint64("count", 0, "stop after this many frames in all")
		dur     = fs.Duration("duration", 0, "stop after this long")
		cpuList = fs.String("cpus", "", "one generator per `CPU` in this list, pinned (default: one, unpinned)")
		queues  = fs.String("queues", "", "afxdp: TX `queues` of the generators, one each (default 0,1,...)")
		stream  = fs.Uint("stream", 0, "`id` of the first generator's stream (top 16 bits of every sequence number)")
	)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: pktbench gen --iface IFACE --dst IP:PORT (--count N | --duration D) [flags]

Sends UDP frames whose payload starts with a 64-bit big-endian sequence
number: the generator's stream id in the top 16 bits, a counter from 0
below. It stops by itself at --count or --duration. Nothing has a default
that could flood a link: the interface and the destination are always named.

`)
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if *iface == "" || *dst == "" {
		return usageError(stderr, "gen", "--iface and --dst are required: pktbench never picks an interface or a destination by itself")
	}
	if *count == 0 && *dur <= 0 {
		return usageError(stderr, "gen", "give --count or --duration: a generator always stops by itself")
	}
	dstAP, err := netip.ParseAddrPort(*dst)
	if err != nil || dstAP.Port() == 0 {
		return usageError(stderr, "gen", "--dst %q: want IP:PORT with a port, e.g. 198.18.0.2:9000 or [2001:db8::2]:9000", *dst)
	}
	dstAP = netip.AddrPortFrom(dstAP.Addr().Unmap(), dstAP.Port())
	if *stream > 0xffff {
		return usageError(stderr, "gen", "--stream %d: at most 65535", *stream)
	}
	side, err := lookupNetns(*netns)
	if err != nil {
		return usageError(stderr, "gen", "%v", err)
	}
	spec := measure.GenSpec{Kind: *kind, Side: side, Size: *size, Flows: *flows, Rate: *rate, Count: *count, Duration: *dur, Stream: uint16(*stream)}
	if *cpuList != "" {
		set, err := tuning.ParseCPUList(*cpuList)
		if err != nil {
			return usageError(stderr, "gen", "--cpus: %v", err)
		}
		spec.CPUs = set.List()
	}
	if *queues != "" {
		q, err := tuning.ParseCPUList(*queues) // the same list syntax
		if err != nil {
			return usageError(stderr, "gen", "--queues: %v", err)
		}
		spec.Queues = q.List()
		if len(spec.Queues) != max(1, len(spec.CPUs)) {
			return usageError(stderr, "gen", "--queues names %d queues for %d generators: give one per generator (--cpus)", len(spec.Queues), max(1, len(spec.CPUs)))
		}
	}
	info, err := measure.LookupIface(side, *iface)
	if err != nil {
		return failure(ctx, stderr, "gen", err)
	}
	spec.Iface = info
	spec.SrcMAC = info.MAC
	srcAP, err := parseSrc(*src, info, dstAP.Addr().Is4())
	if err != nil {
		return usageError(stderr, "gen", "%v", err)
	}
	spec.Src, spec.Dst = srcAP, dstAP
	if spec.Kind != measure.GenSendmmsg {
		if *dstMAC != "" {
			if spec.DstMAC, err = net.ParseMAC(*dstMAC); err != nil {
				return usageError(stderr, "gen", "--dst-mac: %v", err)
			}
		} else if spec.DstMAC, err = measure.NeighbourMAC(side, info.Index, info.Name, dstAP.Addr()); err != nil {
			return failure(ctx, stderr, "gen", fmt.Errorf("%w, or give --dst-mac", err))
		}
	}
	if err := spec.Check(); err != nil {
		return usageError(stderr, "gen", "%v", err)
	}
	bound := fmt.Sprintf("%d frames", spec.Count)
	if spec.Count == 0 {
		bound = spec.Duration.String()
	} else if spec.Duration > 0 {
		bound += " or " + spec.Duration.String()
	}
	rateS := "full rate"
	if spec.Rate > 0 {
		rateS = fmt.Sprintf("%.0f pps", spec.Rate)
	}
	fmt.Fprintf(stdout, "gen %s: %s -> %s on %s, %d-byte frames, %d flow(s), %d generator(s), %s, %s\n",
		spec.Kind, spec.Src, spec.Dst, info.Name, spec.Size, spec.Flows, max(1, len(spec.CPUs)), rateS, bound)
	res, err := measure.RunGenerators(ctx, spec)
	printGenResult(stdout, spec, res)
	if err != nil {
		return failure(ctx, stderr, "gen", err)
	}
	if ctx.Err() != nil {
		return exitInterrupted
	}
	return exitOK
}

func printGenResult(w io.Writer, spec measure.GenSpec, res measure.GenResult) {
	fmt.Fprintf(w, "sent %d frames in %.3fs: %.3f Mpps, %.3f Gbit/s (frames of %d bytes)\n",
		res.Total, res.Elapsed.Seconds(), res.PPS()/1e6, res.PPS()*float64(spec.Size)*8/1e9, spec.Size)
	if len(res.Sent) > 1 {
		for id := spec.Stream; int(id) < int(spec.Stream)+len(res.Sent); id++ {
			fmt.Fprintf(w, "  stream %d: %d\n", id, res.Sent[id])
		}
	}
}

// parseSrc parses --src, filling in the interface's address and port 10000.
func parseSrc(s string, info measure.Iface, v4 bool) (netip.AddrPort, error) {
	const defPort = 10000
	fam := map[bool]string{true: "IPv4", false: "IPv6"}[v4]
	if s == "" {
		a, ok := info.FirstAddr(v4)
		if !ok {
			return netip.AddrPort{}, fmt.Errorf("%s has no %s address to send from: give --src", info.Name, fam)
		}
		return netip.AddrPortFrom(a, defPort), nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if ap.Addr().Is4() != v4 {
			return ap, fmt.Errorf("--src %s is not %s like --dst", s, fam)
		}
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--src %q: want IP or IP:PORT", s)
	}
	if a.Unmap().Is4() != v4 {
		return netip.AddrPort{}, fmt.Errorf("--src %s is not %s like --dst", s, fam)
	}
	return netip.AddrPortFrom(a.Unmap(), defPort), nil
}
