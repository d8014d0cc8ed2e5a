package tuning

// The built-in profiles. Their values, and why, are in docs/TUNING.md; keep
// the two in step.

func ptr[T any](v T) *T { return &v }

func on() *Switch  { return ptr(Switch(true)) }
func off() *Switch { return ptr(Switch(false)) }

var builtins = map[string]func() *Profile{
	// latency: every packet handled as soon as it arrives, on a core kept
	// quiet for it.
	"latency": func() *Profile {
		return &Profile{
			Name:        "latency",
			Description: "busy polling on, interrupt coalescing off, NAPI IRQ deferral for preferred busy polling, IRQs one per core, isolated cores",
			Coalesce: &CoalesceSpec{
				AdaptiveRx: off(), AdaptiveTx: off(),
				RxUsecs: ptr[uint32](0), RxFrames: ptr[uint32](1),
				TxUsecs: ptr[uint32](0), TxFrames: ptr[uint32](1),
			},
			Features: &FeaturesSpec{LRO: off()},
			Sysctl: &SysctlSpec{
				BusyPoll: ptr[int64](50), BusyRead: ptr[int64](50),
			},
			NAPI:        &NAPISpec{DeferHardIRQs: ptr[int64](2), GROFlushTimeout: ptr[int64](200_000)},
			IRQAffinity: &IRQSpec{Spread: true},
			Isolation:   &IsolationSpec{IsolCPUs: true, NohzFull: true, RCUNoCBs: true},
		}
	},
	// throughput: fewer interrupts, deeper rings, GRO, bigger socket
	// buffers: more packets per unit of CPU at the price of latency.
	"throughput": func() *Profile {
		return &Profile{
			Name:        "throughput",
			Description: "interrupt coalescing up, rings at the driver's maximum, GRO on, larger budgets and socket buffers",
			Rings:       &RingsSpec{Rx: &Count{Word: CountMax}, Tx: &Count{Word: CountMax}},
			Coalesce: &CoalesceSpec{
				AdaptiveRx: off(), AdaptiveTx: off(),
				RxUsecs: ptr[uint32](128), RxFrames: ptr[uint32](256),
				TxUsecs: ptr[uint32](128), TxFrames: ptr[uint32](256),
			},
			Features: &FeaturesSpec{GRO: on()},
			Sysctl: &SysctlSpec{
				BusyPoll: ptr[int64](0), BusyRead: ptr[int64](0),
				NetdevBudget: ptr[int64](600), NetdevBudgetUsecs: ptr[int64](8000),
				NetdevMaxBacklog: ptr[int64](16384),
				RmemMax:          ptr[int64](64 << 20), RmemDefault: ptr[int64](4 << 20),
			},
			IRQAffinity: &IRQSpec{Spread: true},
		}
	},
	// afxdp: what an AF_XDP ingest wants: one queue (and one socket, one
	// worker) per core, IRQs spread one per core, NAPI deferral so that
	// sockets with SO_PREFER_BUSY_POLL own the queue, GRO off because XDP
	// sees frames before GRO and LRO can't coexist with XDP.
	"afxdp": func() *Profile {
		return &Profile{
			Name:        "afxdp",
			Description: "one queue per core, IRQs one per core, NAPI deferral and gro_flush_timeout for busy polling, GRO and LRO off",
			Channels:    &ChannelsSpec{Queues: &Count{Word: CountCores}},
			Features:    &FeaturesSpec{GRO: off(), LRO: off(), RxUDPGROForwarding: off()},
			NAPI:        &NAPISpec{DeferHardIRQs: ptr[int64](2), GROFlushTimeout: ptr[int64](200_000)},
			IRQAffinity: &IRQSpec{Spread: true},
		}
	},
	// balanced: the kernel's defaults with adaptive coalescing and room in
	// the socket buffers: a sane state to return a host to.
	"balanced": func() *Profile {
		return &Profile{
			Name:        "balanced",
			Description: "adaptive coalescing, GRO on, no busy polling, kernel-default NAPI budgets, moderate socket buffers, IRQs one per core",
			Coalesce:    &CoalesceSpec{AdaptiveRx: on(), AdaptiveTx: on()},
			Features:    &FeaturesSpec{GRO: on(), LRO: off()},
			Sysctl: &SysctlSpec{
				BusyPoll: ptr[int64](0), BusyRead: ptr[int64](0),
				NetdevBudget: ptr[int64](300), NetdevBudgetUsecs: ptr[int64](2000),
				NetdevMaxBacklog: ptr[int64](1000),
				RmemMax:          ptr[int64](16 << 20),
			},
			NAPI:        &NAPISpec{DeferHardIRQs: ptr[int64](0), GROFlushTimeout: ptr[int64](0)},
			IRQAffinity: &IRQSpec{Spread: true},
		}
	},
}

// BuiltinProfiles lists the built-in profile names.
func BuiltinProfiles() []string { return []string{"latency", "throughput", "afxdp", "balanced"} }

// BuiltinProfile returns a fresh copy of a built-in profile, nil if there is
// none of that name.
func BuiltinProfile(name string) *Profile {
	if f, ok := builtins[name]; ok {
		return f()
	}
	return nil
}
