package afxdp

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	c, err := Config{Iface: "x"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.FrameSize != 2048 || c.NumFrames != 4096 || c.FillRingSize != 2048 || c.CompletionRingSize != 2048 ||
		c.RxRingSize != 2048 || c.TxRingSize != 0 || c.TxFrames != 0 || c.SpinChecks != defaultSpinChecks || c.Nap != 100*time.Microsecond {
		t.Errorf("defaults: %+v", c)
	}
	if c.rxFrames() != 4096 {
		t.Errorf("rxFrames %d", c.rxFrames())
	}
	c, err = Config{TxRingSize: 512}.withDefaults()
	if err != nil || c.TxFrames != 2048 || c.rxFrames() != 2048 {
		t.Errorf("with a TX ring: %+v, %v; want half the frames for TX", c, err)
	}
	c, err = Config{TxOnly: true}.withDefaults()
	if err != nil || c.RxRingSize != 0 || c.TxRingSize != 2048 || c.TxFrames != 4096 {
		t.Errorf("TxOnly: %+v, %v", c, err)
	}
	c, err = Config{BusyPoll: true}.withDefaults()
	if err != nil || c.BusyPollTimeout != 20*time.Microsecond || c.BusyPollBudget != 64 {
		t.Errorf("BusyPoll: %+v, %v", c, err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{FrameSize: 1024}, "frame size 1024"},
		{Config{FrameSize: 3000}, "must be 2048 or 4096"},
		{Config{NumFrames: 1000}, "frame count 1000: must be a power of two"},
		{Config{NumFrames: -4}, "power of two"},
		{Config{FillRingSize: 100}, "fill ring size 100"},
		{Config{CompletionRingSize: 3}, "completion ring size 3"},
		{Config{RxRingSize: 48}, "RX ring size 48"},
		{Config{TxRingSize: 1 << 21}, "TX ring size"},
		{Config{TxRingSize: 64, TxFrames: 4096}, "leaves none for receiving"},
		{Config{TxFrames: 16}, "without a TX ring"},
		{Config{TxOnly: true, RxRingSize: 64}, "TX-only socket has no RX ring"},
		{Config{ForceCopy: true, ForceZeroCopy: true}, "both set"},
		{Config{SpinChecks: -1}, "negative"},
		{Config{Nap: 2 * time.Millisecond}, "nap 2ms: at most 1ms"},
		{Config{Queues: []int{0, -1}}, "negative queue"},
		{Config{SpinFor: -time.Millisecond}, "SpinFor -1ms"},
		{Config{SpinFor: 2 * time.Second}, "SpinFor 2s: want 0 (off) up to 1s"},
	} {
		_, err := c.cfg.withDefaults()
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an ErrConfig saying %q", c.cfg, err, c.want)
		}
	}
	for _, ok := range []Config{{FrameSize: 4096}, {NumFrames: 1}, {NumFrames: 1 << 16}, {RxRingSize: 1, FillRingSize: 1, CompletionRingSize: 1}, {SpinFor: LowLatencySpin}, {SpinFor: time.Second}} {
		if _, err := ok.withDefaults(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}
