// Command xdpingest-demo shows xdpingest at work on a test bed it builds and
// removes itself: two network namespaces joined by a veth pair, addresses
// from 198.18.0.0/15. It is what `make demo` runs. Needs root.
package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/xdp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "xdpingest-demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the demo builds network namespaces and attaches XDP: run it as root")
	}
	b, err := testbed.New(testbed.Config{})
	if err != nil {
		return err
	}
	defer func() {
		if err := b.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "removing the test bed:", err)
		} else {
			fmt.Println("test bed removed")
		}
	}()
	fmt.Printf("test bed: %s (%s, %s) <-> %s (%s, %s)\n", b.Gen.Link, b.Gen.IPv4, b.Gen.IPv6, b.Rx.Link, b.Rx.IPv4, b.Rx.IPv6)

	ports := []uint16{9000, 9001}
	prog, err := xdp.Load(xdp.Config{Ports: ports, Action: xdp.Drop}, xdp.LoadOptions{})
	if err != nil {
		return err
	}
	defer prog.Close()
	var att *xdp.Attachment
	if err := b.Rx.Do(func() (err error) {
		att, err = prog.Attach(b.Rx.Index, xdp.AttachOptions{Mode: xdp.ModeAuto})
		return err
	}); err != nil {
		return err
	}
	fmt.Printf("XDP program attached to %s in %s mode; ports %v are taken (dropped and counted in this demo), everything else goes to the kernel\n", b.Rx.Link, att.Mode, ports)

	// A kernel socket on another port: it must keep working.
	var other *net.UDPConn
	if err := b.Rx.Do(func() (err error) {
		other, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.Rx.IPv4, 7000)))
		return err
	}); err != nil {
		return err
	}
	defer other.Close()
	got := make(chan int, 1)
	go func() {
		n, buf := 0, make([]byte, 2048)
		for {
			other.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, _, err := other.ReadFromUDPAddrPort(buf); err != nil {
				got <- n
				return
			}
			n++
		}
	}()
	if err := b.Gen.Do(func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.Rx.IPv4, 7000)))
		if err != nil {
			return err
		}
		defer c.Close()
		for i := 0; i < 100; i++ {
			if _, err := c.Write([]byte("to the kernel")); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}

	live, err := bench.LoadLive()
	if err != nil {
		return err
	}
	defer live.Close()
	tpl, err := bench.BuildTemplate(bench.FrameSpec{SrcMAC: b.Gen.MAC, DstMAC: b.Rx.MAC,
		Src: netip.AddrPortFrom(b.Gen.IPv4, 10000), Dst: netip.AddrPortFrom(b.Rx.IPv4, 9000), Size: 64})
	if err != nil {
		return err
	}
	cfg := tpl.Config()
	cfg.Ifindex, cfg.Duration, cfg.Flows, cfg.SportBase = b.Gen.Index, 2*time.Second, 16, 10000
	fmt.Println("sending 64-byte frames to port 9000 for 2 s from an XDP live-frames generator ...")
	var res bench.LiveResult
	if err := b.Gen.Do(func() (err error) { res, err = live.Run(ctx, cfg); return err }); err != nil {
		return err
	}
	fmt.Printf("sent %d frames in %v: %.2f Mpps\n", res.Sent, res.Elapsed.Round(time.Millisecond), float64(res.Sent)/res.Elapsed.Seconds()/1e6)
	fmt.Printf("the kernel socket on port 7000 received %d of 100 datagrams\n", <-got)

	c, err := prog.Counters()
	if err != nil {
		return err
	}
	fmt.Println("\nXDP program counters:")
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "outcome\tverdict\tpackets\tbytes\t")
	for o := xdp.Outcome(0); o < xdp.NumOutcomes; o++ {
		if c[o].Packets > 0 {
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\t\n", o, o.Verdict(), c[o].Packets, c[o].Bytes)
		}
	}
	t := c.Total()
	fmt.Fprintf(w, "total\t\t%d\t%d\t\n", t.Packets, t.Bytes)
	w.Flush()
	return nil
}
