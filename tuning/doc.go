// Package tuning owns what xdpingest knows about the NIC it reads from and the
// host around it: the queue -> IRQ -> CPU map, the CPU topology and isolation,
// the placement of receive workers on the cores that serve their queues, and
// the tuning profiles that nictune (and `xdpingest run --tune`) plan, apply
// and revert.
//
// Every reader takes [Roots], the places where /proc and /sys are mounted, so
// that tests run on a fake tree (see tuning/tuningtest) instead of the host.
// Settings reached through ethtool go through the small [Ethtool] interface,
// which *ethtool.Ethtool from github.com/safchain/ethtool satisfies and which
// tests replace with a fake for what the test bed's veth lacks (coalescing,
// rings).
//
// The three layers, each usable alone:
//
//   - Discovery: [DiscoverQueues], [ReadTopology], [ReadIsolation],
//     [AllowedCPUs].
//   - Worker placement: [PlanWorkers] turns a [QueueMap] into one CPU per
//     worker, with the reason for each choice; [PinThread] pins the calling
//     locked OS thread.
//   - Profiles: [Plan] compares a [Profile] with the device, [Apply] changes
//     what differs and remembers the previous values (in memory and in a state
//     file), [Applied.Revert] and [Revert] put them back.
//
// The package imports nothing else of xdpingest.
package tuning
