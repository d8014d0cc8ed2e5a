package kernel

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// sockOpts is what openSocket learned while setting a socket up.
type sockOpts struct {
	// warnings about the receive buffer, deduplicated by Open.
	warnings []string
	// cookie is the socket's SO_COOKIE when the filter counts its
	// refusals per socket (a RefusalCounter), else 0.
	cookie uint64
}

// openSocket opens worker's non-blocking UDP socket bound to addr:port with
// SO_REUSEPORT and the options every datagram's metadata needs.
func openSocket(addr netip.Addr, port uint16, cfg *Config, worker int) (fd int, opts sockOpts, err error) {
	ap := netip.AddrPortFrom(addr, port)
	family := unix.AF_INET6
	if addr.Is4() {
		family = unix.AF_INET
	}
	fd, err = unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, opts, fmt.Errorf("can't open a UDP socket for %v: %w", ap, err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
			fd = -1
		}
	}()
	set := func(level, opt, value int, name string) error {
		if err := unix.SetsockoptInt(fd, level, opt, value); err != nil {
			return fmt.Errorf("can't set %s on UDP socket %v: %w", name, ap, err)
		}
		return nil
	}
	if err := set(unix.SOL_SOCKET, unix.SO_REUSEPORT, 1, "SO_REUSEPORT"); err != nil {
		return fd, opts, err
	}
	if family == unix.AF_INET6 {
		// IPv4 goes to the IPv4 sockets: Src is then never v4-mapped, and
		// binding :: and 0.0.0.0 to one port does not collide.
		if err := set(unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1, "IPV6_V6ONLY"); err != nil {
			return fd, opts, err
		}
	}
	// A socket bound to a wildcard learns each datagram's destination from
	// a control message; one bound to an address only receives datagrams
	// to that address, and saves the message (a put_cmsg per datagram).
	// Every worker but the first needs it anyway, to tell the broadcasts
	// and multicasts that the kernel copies to every socket of the port,
	// which only worker 0 delivers (see cmsgMeta.shared): a socket bound to
	// a broadcast address gets only those.
	if addr.IsUnspecified() || worker > 0 {
		var err error
		if family == unix.AF_INET6 {
			err = set(unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1, "IPV6_RECVPKTINFO")
		} else {
			err = set(unix.IPPROTO_IP, unix.IP_PKTINFO, 1, "IP_PKTINFO")
		}
		if err != nil {
			return fd, opts, err
		}
	}
	// SO_TIMESTAMPNS_NEW has 64-bit seconds on every architecture; kernels
	// before 5.1 only have SO_TIMESTAMPNS. parseCmsgs reads either.
	if !cfg.ReadTimestamps {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS_NEW, 1); err != nil {
			if err := set(unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1, "SO_TIMESTAMPNS"); err != nil {
				return fd, opts, err
			}
		}
	}
	if err := set(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1, "SO_RXQ_OVFL"); err != nil {
		return fd, opts, err
	}
	if cfg.gro() {
		// Kernels before 5.0 have no UDP_GRO: datagrams then come one by
		// one, which Receive handles the same way.
		if err := unix.SetsockoptInt(fd, unix.SOL_UDP, unix.UDP_GRO, 1); err != nil {
			opts.warnings = append(opts.warnings, fmt.Sprintf("UDP_GRO: %v; receiving without GRO", err))
		}
	}
	if cfg.RcvBuf > 0 {
		w, err := setRcvBuf(fd, cfg.RcvBuf, cfg.ForceRcvBuf)
		if err != nil {
			return fd, opts, fmt.Errorf("UDP socket %v: %w", ap, err)
		}
		opts.warnings = w
	}
	// Both before bind: a socket is in its port's lookup table, and
	// receives, from bind on.
	if cfg.Device != "" {
		if err := unix.BindToDevice(fd, cfg.Device); err != nil {
			hint := ""
			switch {
			case errors.Is(err, unix.ENODEV):
				hint = ": no interface of that name in this network namespace"
			case errors.Is(err, unix.EPERM):
				hint = ": binding a socket to an interface needs CAP_NET_RAW on kernels before 5.7"
			}
			return fd, opts, fmt.Errorf("can't bind UDP socket %v to interface %s (SO_BINDTODEVICE): %w%s", ap, cfg.Device, err, hint)
		}
	}
	if cfg.Filter != nil {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ATTACH_BPF, cfg.Filter.FD()); err != nil {
			hint := ""
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EBADF) {
				hint = ": it must be a loaded BPF_PROG_TYPE_SOCKET_FILTER program, open until Open returns"
			}
			return fd, opts, fmt.Errorf("can't attach the socket filter (SO_ATTACH_BPF, program fd %d) to UDP socket %v: %w%s", cfg.Filter.FD(), ap, err, hint)
		}
		if _, ok := cfg.Filter.(RefusalCounter); ok {
			// Linux 4.12 on; without it the socket's overflows include
			// the filter's refusals.
			c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
			if err != nil {
				opts.warnings = append(opts.warnings, fmt.Sprintf("SO_COOKIE: %v; socket overflows include the buffers the socket filter refused", err))
			}
			opts.cookie = c
		}
	}
	var sa unix.Sockaddr
	if addr.Is4() {
		sa = &unix.SockaddrInet4{Port: int(port), Addr: addr.As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(port), Addr: addr.As16()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		hint := ""
		switch {
		case errors.Is(err, unix.EADDRINUSE):
			hint = ": another socket without SO_REUSEPORT (or of another user) holds the port"
		case errors.Is(err, unix.EADDRNOTAVAIL):
			hint = ": the address is not configured on any interface of this network namespace"
		case errors.Is(err, unix.EACCES):
			hint = ": ports below 1024 need CAP_NET_BIND_SERVICE"
		}
		return fd, opts, fmt.Errorf("can't bind UDP socket to %v: %w%s", ap, err, hint)
	}
	return fd, opts, nil
}

// setRcvBuf asks for want bytes of receive buffer and reads back what the
// kernel granted. SO_RCVBUF's getsockopt returns twice the usable size (the
// kernel doubles the request to account for its bookkeeping), so the
// comparison is against half of it.
func setRcvBuf(fd, want int, force bool) (warnings []string, err error) {
	set := false
	if force {
		switch err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, want); {
		case err == nil:
			set = true
		case errors.Is(err, unix.EPERM):
			warnings = append(warnings, "SO_RCVBUFFORCE: operation not permitted (needs CAP_NET_ADMIN); fell back to SO_RCVBUF, which net.core.rmem_max caps")
		default:
			return nil, fmt.Errorf("can't set SO_RCVBUFFORCE to %d: %w", want, err)
		}
	}
	if !set {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, want); err != nil {
			return nil, fmt.Errorf("can't set SO_RCVBUF to %d: %w", want, err)
		}
	}
	got, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		return nil, fmt.Errorf("can't read SO_RCVBUF back: %w", err)
	}
	if got/2 < want {
		max := "net.core.rmem_max"
		if v, err := os.ReadFile("/proc/sys/net/core/rmem_max"); err == nil {
			max += " = " + strings.TrimSpace(string(v))
		}
		warnings = append(warnings, fmt.Sprintf(
			"receive buffer capped: asked for %d bytes, the kernel granted %d (%s): raise net.core.rmem_max to at least %d, or set ForceRcvBuf with CAP_NET_ADMIN",
			want, got/2, max, want))
	}
	return warnings, nil
}

// Constants of linux/filter.h that x/sys/unix does not carry: a classic BPF
// load from the "ancillary data" offset SKF_AD_OFF+SKF_AD_CPU reads the
// number of the CPU the program runs on.
const (
	skfAdOff = -0x1000
	skfAdCPU = 36
	// ldCPU is the load's offset, SKF_AD_OFF + SKF_AD_CPU as the kernel
	// reads it: a negative int32 in the uint32 K field.
	ldCPU = uint32(1<<32 + skfAdOff + skfAdCPU)
)

// steeringProgram returns the classic BPF program for a SO_REUSEPORT group
// whose socket i belongs to the worker on cpus[i]: it returns the index of
// the socket whose worker runs on the current CPU. A reuseport program runs
// in the softirq that processes the packet, so "the current CPU" is the one
// that received it (for a NIC, the CPU its queue's interrupt is affine to;
// for a veth, the sender's). For any other CPU it returns len(cpus), an index
// out of range, and the kernel falls back to its flow hash.
func steeringProgram(cpus []int) []unix.SockFilter {
	prog := make([]unix.SockFilter, 0, 2+2*len(cpus))
	// A = current CPU
	prog = append(prog, unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: ldCPU})
	for i, c := range cpus {
		// if A == c { return i }  (jt 0: fall into the return; jf 1: skip it)
		prog = append(prog,
			unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: uint32(c)},
			unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: uint32(i)})
	}
	prog = append(prog, unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: uint32(len(cpus))})
	return prog
}

// attachSteering attaches the steering program to the SO_REUSEPORT group of
// fd (the program belongs to the group, not to the socket).
func attachSteering(fd int, cpus []int) error {
	prog := steeringProgram(cpus)
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog); err != nil {
		return fmt.Errorf("can't attach the reuseport steering program (SO_ATTACH_REUSEPORT_CBPF): %w", err)
	}
	return nil
}
