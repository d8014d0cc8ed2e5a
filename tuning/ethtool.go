package tuning

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/safchain/ethtool"
	"golang.org/x/sys/unix"
)

// Ethtool is the part of github.com/safchain/ethtool that tuning uses: the
// ioctls behind `ethtool -i/-l/-L/-g/-G/-c/-C/-k/-K`. *ethtool.Ethtool
// implements it; tests substitute a fake for what veth lacks (coalescing,
// rings).
//
// Implementations return the ioctl's errno (unix.EOPNOTSUPP when the driver
// lacks the operation, unix.ENODEV for an unknown interface) so that callers
// can tell "unsupported" from "refused".
type Ethtool interface {
	DriverInfo(iface string) (ethtool.DrvInfo, error)
	GetChannels(iface string) (ethtool.Channels, error)
	SetChannels(iface string, c ethtool.Channels) (ethtool.Channels, error)
	GetRing(iface string) (ethtool.Ring, error)
	SetRing(iface string, r ethtool.Ring) (ethtool.Ring, error)
	GetCoalesce(iface string) (ethtool.Coalesce, error)
	SetCoalesce(iface string, c ethtool.Coalesce) (ethtool.Coalesce, error)
	FeaturesWithState(iface string) (map[string]ethtool.FeatureState, error)
	// Change sets features by name (ETHTOOL_SFEATURES). The kernel may
	// accept the call and still not change a feature: read back.
	Change(iface string, features map[string]bool) error
	Close()
}

var _ Ethtool = (*ethtool.Ethtool)(nil)

// OpenEthtool opens an ethtool handle on the calling thread's network
// namespace. The ioctls find the interface through the handle's socket, so a
// handle opened inside a namespace (see [OpenEthtoolIn]) reaches that
// namespace's devices from any thread afterwards.
func OpenEthtool() (Ethtool, error) {
	e, err := ethtool.NewEthtool()
	if err != nil {
		return nil, fmt.Errorf("can't open an ethtool socket: %w", err)
	}
	return e, nil
}

// OpenEthtoolIn opens an ethtool handle inside the network namespace at
// nsPath (e.g. /var/run/netns/NAME or /proc/PID/ns/net): its socket belongs
// to that namespace, which is what SIOCETHTOOL looks the device up in.
func OpenEthtoolIn(nsPath string) (Ethtool, error) {
	target, err := os.Open(nsPath)
	if err != nil {
		return nil, fmt.Errorf("can't open network namespace %s: %w", nsPath, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("can't open the current network namespace: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("can't enter network namespace %s: %w: run as root or grant CAP_SYS_ADMIN", nsPath, err)
	}
	e, oerr := ethtool.NewEthtool()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays in the wrong namespace: keep it locked so the
		// runtime discards it when this goroutine exits.
		if e != nil {
			e.Close()
		}
		return nil, fmt.Errorf("can't return from network namespace %s: %w", nsPath, err)
	}
	runtime.UnlockOSThread()
	if oerr != nil {
		return nil, fmt.Errorf("can't open an ethtool socket in %s: %w", nsPath, oerr)
	}
	return e, nil
}

// isUnsupported says whether an ethtool or kernel-file error means the
// setting does not exist here (as opposed to a refused value).
func isUnsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, errors.ErrUnsupported) || errors.Is(err, os.ErrNotExist)
}
