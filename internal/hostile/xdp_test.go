package hostile

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
	"github.com/xdpingest/xdpingest/xdp"
)

// TestMixXDPFlags checks Datagram.XDP against the XDP program itself: with
// the program attached to Rx's link in pass mode (the kernel path's
// setting), the mix's datagrams marked XDP, and only those, are matched:
// counted pass_match when the policy allows their source, deny or
// not_allowed when it refuses it. Kind by kind, so that a difference names
// its kind.
func TestMixXDPFlags(t *testing.T) {
	testutil.RequireBPF(t)
	for _, mtu := range []int{1500, 9000} {
		t.Run(fmt.Sprintf("mtu%d", mtu), func(t *testing.T) { xdpFlags(t, mtu) })
	}
}

func xdpFlags(t *testing.T, mtu int) {
	b := testutil.NewBed(t, testbed.Config{MTU: mtu})
	env, err := Prepare(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	ports := []uint16{9000, 9001}
	pol := DefaultPolicy()
	p, err := xdp.Load(xdp.Config{Ports: ports, Allow: pol.Allow, Deny: pol.Deny, Action: xdp.Pass}, xdp.LoadOptions{MaxQueues: 4})
	if errors.Is(err, errors.ErrUnsupported) {
		testutil.Skip(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := b.Rx.Do(func() error {
		_, err := p.Attach(b.Rx.Index, xdp.AttachOptions{Mode: xdp.ModeNative})
		return err
	}); err != nil {
		t.Fatalf("attach the program to %s at MTU %d: %v", b.Rx.Link, mtu, err)
	}
	// settled reads the counters once they have stopped moving.
	settled := func() xdp.Counters {
		var last xdp.Counters
		since := time.Now()
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			c, err := p.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if c != last {
				last, since = c, time.Now()
			} else if time.Since(since) > 100*time.Millisecond {
				break
			}
		}
		return last
	}
	before := settled()
	for _, k := range AllKinds {
		m, err := env.Mix(Config{Ports: ports, Policy: pol, Seed: uint64(mtu), Kinds: []Kind{k}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = m.Send(ctx, SendOptions{})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		after := settled()
		d := after.Sub(before)
		before = after
		t.Logf("%s: %v", k, outcomes(d))
		allowed, denied, notAllowed := m.Matched()
		want := map[xdp.Outcome]uint64{xdp.OutcomePassMatch: uint64(allowed), xdp.OutcomeDeny: uint64(denied), xdp.OutcomeNotAllowed: uint64(notAllowed)}
		for _, o := range []xdp.Outcome{xdp.OutcomePassMatch, xdp.OutcomeDeny, xdp.OutcomeNotAllowed} {
			if d[o].Packets != want[o] {
				t.Errorf("MTU %d, kind %s: the program counted %d %s, the mix marks %d datagrams so (all outcomes: %v)", mtu, k, d[o].Packets, o, want[o], outcomes(d))
			}
		}
	}
}

func outcomes(c xdp.Counters) map[string]uint64 {
	m := map[string]uint64{}
	for o := xdp.Outcome(0); o < xdp.NumOutcomes; o++ {
		if c[o].Packets != 0 {
			m[o.String()] = c[o].Packets
		}
	}
	return m
}
