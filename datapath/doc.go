// Package datapath owns the contract between a receive path and the code that
// consumes its datagrams.
//
// A receive path (AF_XDP in datapath/afxdp, the SO_REUSEPORT + recvmmsg
// fallback in datapath/kernel) hands out [Receiver]s, one per worker. A worker
// owns its Receiver: it calls [Receiver.Receive] with a batch it allocated
// once, reads the datagrams in place, and hands the frames back with
// [Receiver.Release] (or by calling Receive again). Nothing on that loop
// allocates.
//
// The package also holds the allocation-free header walk from an Ethernet frame
// to its UDP payload ([ParseFrame]), shared by the AF_XDP path, the pcap sink and
// the benchmarks, and an in-memory [Fake] receiver for consumers' tests.
//
// datapath does not import cilium/ebpf: the XDP program registers AF_XDP
// sockets through the small [XSKRegistrar] interface.
package datapath
