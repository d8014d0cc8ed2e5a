package tuningtest

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"

	"github.com/safchain/ethtool"
	"golang.org/x/sys/unix"

	"github.com/xdpingest/xdpingest/tuning"
)

// Ethtool is an in-memory ethtool backend. It checks what the kernel's ioctl
// layer checks (counts within the driver's maximums, at least one RX and one
// TX channel, coalescing fields the driver supports) and answers EOPNOTSUPP
// for what a device lacks, ENODEV for an unknown device.
type Ethtool struct {
	mu   sync.Mutex
	devs map[string]*Device
	// Calls logs every set operation: "SetChannels eth0", ...
	Calls []string
	// BeforeSet, if set, runs at the start of every set operation
	// ("SetChannels", "SetRing", "SetCoalesce", "Change"), outside the
	// backend's lock: a test can stop an apply half-way there while other
	// goroutines keep using the backend.
	BeforeSet func(op, iface string)
}

func (e *Ethtool) beforeSet(op, iface string) {
	if e.BeforeSet != nil {
		e.BeforeSet(op, iface)
	}
}

var _ tuning.Ethtool = (*Ethtool)(nil)

// Device is one fake device. Nil sections are unsupported (EOPNOTSUPP).
type Device struct {
	Info     ethtool.DrvInfo
	Channels *ethtool.Channels
	Ring     *ethtool.Ring
	Coalesce *ethtool.Coalesce
	// CoalesceSupported names the ethtool.Coalesce fields (Go names,
	// "RxCoalesceUsecs") that may be nonzero, like a driver's
	// supported_coalesce_params. Nil supports all.
	CoalesceSupported []string
	Features          map[string]ethtool.FeatureState
	// Refuse makes an operation fail with the given error: "SetChannels",
	// "SetRing", "SetCoalesce", "Change", or "Change:<feature>".
	Refuse map[string]error
	// AfterSet, if set, runs after a successful set operation ("SetChannels",
	// "SetRing", "SetCoalesce", "Change"), e.g. to make the fake tree follow
	// a channel change the way a driver re-requests its IRQs. It must not
	// call the Ethtool.
	AfterSet func(op string, d *Device)
}

func (d *Device) after(op string) {
	if d.AfterSet != nil {
		d.AfterSet(op, d)
	}
}

// NewEthtool returns a backend with the given devices.
func NewEthtool(devs map[string]*Device) *Ethtool {
	return &Ethtool{devs: devs}
}

// NIC returns a device like a modern multi-queue NIC: combined channels
// (max 8, 4 in use), rings 1024 of 4096, adaptive coalescing, GRO on,
// LRO off, all changeable.
func NIC(driver string) *Device {
	return &Device{
		Info:     ethtool.DrvInfo{Driver: driver, Version: "1.0", BusInfo: "0000:08:00.0"},
		Channels: &ethtool.Channels{MaxCombined: 8, CombinedCount: 4},
		Ring:     &ethtool.Ring{RxMaxPending: 4096, TxMaxPending: 4096, RxPending: 1024, TxPending: 1024},
		Coalesce: &ethtool.Coalesce{UseAdaptiveRxCoalesce: 1, UseAdaptiveTxCoalesce: 1, RxCoalesceUsecs: 8, RxMaxCoalescedFrames: 128, TxCoalesceUsecs: 16, TxMaxCoalescedFrames: 128},
		Features: map[string]ethtool.FeatureState{
			"rx-gro":                {Available: true, Requested: true, Active: true},
			"rx-lro":                {Available: true},
			"rx-udp-gro-forwarding": {Available: true},
			"rx-checksum":           {Available: true, Requested: true, Active: true},
		},
	}
}

// Veth returns a device like veth: rx/tx channels, features, no rings and
// no coalescing.
func Veth(queues uint32) *Device {
	return &Device{
		Info:     ethtool.DrvInfo{Driver: "veth", Version: "1.0"},
		Channels: &ethtool.Channels{MaxRx: queues, MaxTx: queues, RxCount: queues, TxCount: queues},
		Features: map[string]ethtool.FeatureState{
			"rx-gro":                {Available: true},
			"rx-lro":                {},
			"rx-udp-gro-forwarding": {Available: true},
		},
	}
}

// Device returns a device for inspection and changes between calls.
func (e *Ethtool) Device(name string) *Device {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.devs[name]
}

func (e *Ethtool) dev(name string) (*Device, error) {
	d, ok := e.devs[name]
	if !ok {
		return nil, unix.ENODEV
	}
	return d, nil
}

func (d *Device) refused(op string) error {
	if err, ok := d.Refuse[op]; ok {
		return err
	}
	return nil
}

func (e *Ethtool) DriverInfo(iface string) (ethtool.DrvInfo, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	d, err := e.dev(iface)
	if err != nil {
		return ethtool.DrvInfo{}, err
	}
	return d.Info, nil
}

func (e *Ethtool) GetChannels(iface string) (ethtool.Channels, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	d, err := e.dev(iface)
	if err != nil {
		return ethtool.Channels{}, err
	}
	if d.Channels == nil {
		return ethtool.Channels{}, unix.EOPNOTSUPP
	}
	return *d.Channels, nil
}

func (e *Ethtool) SetChannels(iface string, c ethtool.Channels) (ethtool.Channels, error) {
	e.beforeSet("SetChannels", iface)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Calls = append(e.Calls, "SetChannels "+iface)
	d, err := e.dev(iface)
	if err != nil {
		return ethtool.Channels{}, err
	}
	if d.Channels == nil {
		return ethtool.Channels{}, unix.EOPNOTSUPP
	}
	if err := d.refused("SetChannels"); err != nil {
		return ethtool.Channels{}, err
	}
	cur := d.Channels
	if c.RxCount > cur.MaxRx || c.TxCount > cur.MaxTx || c.CombinedCount > cur.MaxCombined || c.OtherCount > cur.MaxOther {
		return ethtool.Channels{}, unix.EINVAL
	}
	if c.CombinedCount == 0 && (c.RxCount == 0 || c.TxCount == 0) {
		return ethtool.Channels{}, unix.EINVAL
	}
	cur.RxCount, cur.TxCount, cur.CombinedCount, cur.OtherCount = c.RxCount, c.TxCount, c.CombinedCount, c.OtherCount
	d.after("SetChannels")
	return *cur, nil
}

func (e *Ethtool) GetRing(iface string) (ethtool.Ring, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	d, err := e.dev(iface)
	if err != nil {
		return ethtool.Ring{}, err
	}
	if d.Ring == nil {
		return ethtool.Ring{}, unix.EOPNOTSUPP
	}
	return *d.Ring, nil
}

func (e *Ethtool) SetRing(iface string, r ethtool.Ring) (ethtool.Ring, error) {
	e.beforeSet("SetRing", iface)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Calls = append(e.Calls, "SetRing "+iface)
	d, err := e.dev(iface)
	if err != nil {
		return ethtool.Ring{}, err
	}
	if d.Ring == nil {
		return ethtool.Ring{}, unix.EOPNOTSUPP
	}
	if err := d.refused("SetRing"); err != nil {
		return ethtool.Ring{}, err
	}
	cur := d.Ring
	if r.RxPending > cur.RxMaxPending || r.TxPending > cur.TxMaxPending || r.RxPending == 0 || r.TxPending == 0 {
		return ethtool.Ring{}, unix.EINVAL
	}
	cur.RxPending, cur.TxPending = r.RxPending, r.TxPending
	d.after("SetRing")
	return *cur, nil
}

func (e *Ethtool) GetCoalesce(iface string) (ethtool.Coalesce, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	d, err := e.dev(iface)
	if err != nil {
		return ethtool.Coalesce{}, err
	}
	if d.Coalesce == nil {
		return ethtool.Coalesce{}, unix.EOPNOTSUPP
	}
	return *d.Coalesce, nil
}

func (e *Ethtool) SetCoalesce(iface string, c ethtool.Coalesce) (ethtool.Coalesce, error) {
	e.beforeSet("SetCoalesce", iface)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Calls = append(e.Calls, "SetCoalesce "+iface)
	d, err := e.dev(iface)
	if err != nil {
		return ethtool.Coalesce{}, err
	}
	if d.Coalesce == nil {
		return ethtool.Coalesce{}, unix.EOPNOTSUPP
	}
	if err := d.refused("SetCoalesce"); err != nil {
		return ethtool.Coalesce{}, err
	}
	if d.CoalesceSupported != nil {
		// Like ethtool_set_coalesce_supported(): every nonzero field must
		// be one the driver supports.
		v := reflect.ValueOf(c)
		for i := range v.NumField() {
			name := v.Type().Field(i).Name
			if name != "Cmd" && v.Field(i).Uint() != 0 && !slices.Contains(d.CoalesceSupported, name) {
				return ethtool.Coalesce{}, unix.EOPNOTSUPP
			}
		}
	}
	c.Cmd = 0
	*d.Coalesce = c
	d.after("SetCoalesce")
	return c, nil
}

func (e *Ethtool) FeaturesWithState(iface string) (map[string]ethtool.FeatureState, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	d, err := e.dev(iface)
	if err != nil {
		return nil, err
	}
	if d.Features == nil {
		return nil, unix.EOPNOTSUPP
	}
	return maps.Clone(d.Features), nil
}

// Change sets features like ETHTOOL_SFEATURES: unknown names are an error,
// features the driver can't change are silently left alone (the kernel
// returns a positive "some wishes not granted" that the library ignores).
func (e *Ethtool) Change(iface string, features map[string]bool) error {
	e.beforeSet("Change", iface)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Calls = append(e.Calls, "Change "+iface)
	d, err := e.dev(iface)
	if err != nil {
		return err
	}
	if d.Features == nil {
		return unix.EOPNOTSUPP
	}
	if err := d.refused("Change"); err != nil {
		return err
	}
	for name, on := range features {
		st, ok := d.Features[name]
		if !ok {
			return fmt.Errorf("unsupported feature %q", name)
		}
		if err := d.refused("Change:" + name); err != nil {
			return err
		}
		if !st.Available {
			continue
		}
		st.Requested, st.Active = on, on
		d.Features[name] = st
	}
	d.after("Change")
	return nil
}

// Close does nothing.
func (e *Ethtool) Close() {}
