package measure

// The receive paths StartPath runs.
const (
	PathDrop   = "xdp-drop" // the XDP program drops and counts: the ceiling
	PathAFXDP  = "afxdp"    // datapath/afxdp, one socket per queue
	PathKernel = "kernel"   // datapath/kernel, SO_REUSEPORT + recvmmsg
	PathStdnet = "stdnet"   // one net.UDPConn.ReadFromUDP loop
	PathServer = "server"   // xdpingest run --sink discard
	// PathServerPcap is the server writing pcap files (into a temporary
	// directory removed after the run): what the pcap sink costs.
	PathServerPcap = "server-pcap"
	// PathCref is bench/cref/xskdrop, a reference AF_XDP receiver in C
	// that never reads a frame; PathCrefWalk reads each frame's headers
	// and sequence number, as the afxdp path does.
	PathCref     = "afxdp-c"
	PathCrefWalk = "afxdp-c-walk"
)

// DefaultPaths are the paths a sweep runs unless told otherwise.
func DefaultPaths() []string {
	return []string{PathDrop, PathAFXDP, PathKernel, PathStdnet, PathServer}
}

// KnownPaths are every path StartPath takes.
func KnownPaths() []string {
	return append(DefaultPaths(), PathServerPcap, PathCref, PathCrefWalk)
}

// IsServer says the path runs the xdpingest binary.
func IsServer(p string) bool { return p == PathServer || p == PathServerPcap }

// IsCref says the path runs bench/cref/xskdrop.
func IsCref(p string) bool { return p == PathCref || p == PathCrefWalk }

// Generator kinds.
const (
	GenLive     = "live"     // BPF_PROG_RUN live frames, XDP_TX
	GenAFXDP    = "afxdp"    // AF_XDP TX ring
	GenSendmmsg = "sendmmsg" // UDP sockets, sendmmsg
)
