// Package demo is what `make demo` shows: xdpingest at work on a test bed
// it builds and removes itself (two network namespaces joined by a veth
// pair, addresses from 198.18.0.0/15). It runs `xdpingest run` in the
// receiving namespace with the pcap sink, sends traffic to several ports
// (some taken, some not), prints the rate and the accounting from the
// metrics, shows the first packets with tcpdump, and cleans up. It needs
// root.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/xdpingest/xdpingest/bench"
	"github.com/xdpingest/xdpingest/internal/promtext"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/sink"
	"github.com/xdpingest/xdpingest/tuning"
)

// Config says what the demo runs and where it talks.
type Config struct {
	// Xdpingest is the server binary.
	Xdpingest string
	// Out gets the demo's steps, the server's log and what it found; Err
	// what went wrong while cleaning up.
	Out, Err io.Writer
}

// metricsAddr is the server's, inside the receiving namespace.
const metricsAddr = "127.0.0.1:9109"

// demo is one run's state, shared by its steps.
type demo struct {
	cfg    Config
	bed    *testbed.Bed
	dir    string // the pcap sink's
	genCPU int    // the live generator's CPU, -1: unpinned

	srv    *exec.Cmd
	exited chan error
	client *http.Client
}

// Run builds the bed, runs every step, and removes what it made, also when
// a step fails or ctx is cancelled.
func Run(ctx context.Context, cfg Config) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("the demo builds network namespaces and attaches XDP: run it as root")
	}
	if _, err := os.Stat(cfg.Xdpingest); err != nil {
		return fmt.Errorf("no xdpingest binary (%w): run make build", err)
	}
	d := &demo{cfg: cfg, genCPU: -1}
	if removed, _ := testbed.Sweep(); len(removed) > 0 {
		fmt.Fprintf(cfg.Out, "removed test beds left by killed runs: %v\n", removed)
	}
	if d.bed, err = testbed.New(testbed.Config{Queues: 2}); err != nil {
		return err
	}
	defer func() {
		if err := d.bed.Close(); err != nil {
			fmt.Fprintln(cfg.Err, "removing the test bed:", err)
		} else {
			fmt.Fprintln(cfg.Out, "test bed removed")
		}
	}()
	if d.dir, err = os.MkdirTemp("", "xdpingest-demo-capture"); err != nil {
		return err
	}
	defer os.RemoveAll(d.dir)
	b := d.bed
	d.step("test bed: %s in %s (%s, %s)  <->  %s in %s (%s, %s), 2 queues each",
		b.Gen.Link, b.Gen.Netns, b.Gen.IPv4, b.Gen.IPv6, b.Rx.Link, b.Rx.Netns, b.Rx.IPv4, b.Rx.IPv6)

	if err := d.startServer(ctx); err != nil {
		return err
	}
	defer d.killServer()
	otherGot, stopOther, err := d.listenOther()
	if err != nil {
		return err
	}
	defer stopOther()
	if err := d.sendFromSockets(); err != nil {
		return err
	}
	if err := d.sendLive(ctx, otherGot); err != nil {
		return err
	}
	if err := d.stopServer(); err != nil {
		return err
	}
	return d.showPcap()
}

func (d *demo) step(format string, a ...any) { fmt.Fprintf(d.cfg.Out, "\n== "+format+"\n", a...) }

// startServer runs xdpingest in the receiving namespace and waits until it
// is ready. On a veth the receiving work of a queue runs on the sending
// CPU: the generator gets the first CPU, the server's workers the others.
func (d *demo) startServer(ctx context.Context) error {
	args := []string{"run", "--iface", d.bed.Rx.Link, "--ports", "9000,9100-9199", "--sink", "pcap:" + d.dir, "--metrics-addr", metricsAddr}
	if allowed, err := tuning.AllowedCPUs(); err == nil && allowed.Len() >= 2 {
		list := allowed.List()
		d.genCPU = list[0]
		rest := make([]string, 0, len(list)-1)
		for _, c := range list[1:] {
			rest = append(rest, strconv.Itoa(c))
		}
		args = append(args, "--cpus", strings.Join(rest, ","))
	}
	d.step("starting: xdpingest %s", strings.Join(args, " "))
	d.srv = d.bed.Rx.Command(d.cfg.Xdpingest, args...)
	logs := &prefixWriter{prefix: "  | ", w: d.cfg.Out}
	d.srv.Stdout, d.srv.Stderr = logs, logs
	if err := d.srv.Start(); err != nil {
		return err
	}
	d.exited = make(chan error, 1)
	go func() { d.exited <- d.srv.Wait() }()
	d.client = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = d.bed.Rx.Do(func() error { c, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
			return c, err
		}}}
	return d.waitReady(ctx)
}

func (d *demo) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-d.exited:
			return fmt.Errorf("xdpingest exited before it was ready: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if resp, err := d.client.Get("http://" + metricsAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("xdpingest was not ready within 15 s")
}

// killServer kills the server if it still runs (a step failed).
func (d *demo) killServer() {
	if d.srv.ProcessState == nil {
		d.srv.Process.Kill()
		<-d.exited
	}
}

// listenOther opens a kernel socket on a port the server does not take;
// the channel gets how many datagrams it read once a second passed
// without one.
func (d *demo) listenOther() (<-chan int, func(), error) {
	var other *net.UDPConn
	if err := d.bed.Rx.Do(func() (err error) { other, err = net.ListenUDP("udp", &net.UDPAddr{Port: 7000}); return err }); err != nil {
		return nil, nil, err
	}
	got := make(chan int, 1)
	go func() {
		n, buf := 0, make([]byte, 2048)
		for {
			other.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := other.ReadFromUDPAddrPort(buf); err != nil {
				got <- n
				return
			}
			n++
		}
	}()
	return got, func() { other.Close() }, nil
}

func (d *demo) sendFromSockets() error {
	b := d.bed
	d.step("sending 1000 datagrams each to 198.18.0.2:9000, [2001:db8::2]:9150 (taken) and 198.18.0.2:7000 (not taken), from sockets")
	for _, dst := range []netip.AddrPort{netip.AddrPortFrom(b.Rx.IPv4, 9000), netip.AddrPortFrom(b.Rx.IPv6, 9150), netip.AddrPortFrom(b.Rx.IPv4, 7000)} {
		if err := b.Gen.Do(func() error {
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
			if err != nil {
				return err
			}
			defer c.Close()
			buf := make([]byte, 64)
			for i := 0; i < 1000; i++ {
				msg := fmt.Appendf(buf[:0], "datagram %d to %s", i, dst)
				if _, err := c.Write(msg); err != nil {
					return err
				}
				if i%100 == 99 {
					time.Sleep(time.Millisecond)
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	time.Sleep(200 * time.Millisecond)
	return nil
}

// sendLive sends 2,000,000 frames from the live-frames generator, then
// prints the rate and the accounting once the sink caught up.
func (d *demo) sendLive(ctx context.Context, otherGot <-chan int) error {
	b := d.bed
	d.step("sending 2,000,000 64-byte frames to port 9100 at 2 Mpps from an XDP live-frames generator")
	before, err := d.scrape()
	if err != nil {
		return err
	}
	live, err := bench.LoadLive()
	if err != nil {
		return err
	}
	defer live.Close()
	tpl, err := bench.BuildTemplate(bench.FrameSpec{SrcMAC: b.Gen.MAC, DstMAC: b.Rx.MAC,
		Src: netip.AddrPortFrom(b.Gen.IPv4, 10000), Dst: netip.AddrPortFrom(b.Rx.IPv4, 9100), Size: 64})
	if err != nil {
		return err
	}
	cfg := tpl.Config()
	cfg.Ifindex, cfg.Count, cfg.Flows, cfg.SportBase, cfg.Rate = b.Gen.Index, 2_000_000, 64, 10000, 2e6
	var res bench.LiveResult
	if err := b.Gen.Do(func() (err error) {
		if d.genCPU >= 0 {
			all, err := tuning.AllowedCPUs()
			if err != nil {
				return err
			}
			if err := tuning.PinThread(d.genCPU); err != nil {
				return err
			}
			defer tuning.UnpinThread(all)
		}
		res, err = live.Run(ctx, cfg)
		return err
	}); err != nil {
		return err
	}
	// Let the workers and the sink catch up.
	var after promtext.Samples
	for i := 0; i < 50; i++ {
		time.Sleep(100 * time.Millisecond)
		if after, err = d.scrape(); err != nil {
			return err
		}
		if after.Sum("xdpingest_sink_in_flight") == 0 {
			break
		}
	}
	rx := after.Sum("xdpingest_rx_packets_total") - before.Sum("xdpingest_rx_packets_total")
	out := d.cfg.Out
	fmt.Fprintf(out, "  generator: %d frames in %v (%.2f Mpps offered)\n", res.Sent, res.Elapsed.Round(time.Millisecond), float64(res.Sent)/res.Elapsed.Seconds()/1e6)
	fmt.Fprintf(out, "  xdpingest received %.0f of them (%.2f Mpps over the generator's run), AF_XDP in copy mode on veth\n", rx, rx/res.Elapsed.Seconds()/1e6)
	fmt.Fprintf(out, "  the kernel socket on port 7000 (not taken) received %d of 1000\n", <-otherGot)

	d.step("the accounting, from http://%s/metrics", metricsAddr)
	printAccounting(out, after)
	return nil
}

func (d *demo) scrape() (promtext.Samples, error) {
	return promtext.Get(d.client, "http://"+metricsAddr+"/metrics")
}

func (d *demo) stopServer() error {
	d.step("stopping xdpingest with SIGTERM: it drains the rings and queues, closes the files, detaches")
	d.srv.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		if err != nil {
			return fmt.Errorf("xdpingest: %w", err)
		}
	case <-time.After(10 * time.Second):
		return errors.New("xdpingest did not stop within 10 s")
	}
	return nil
}

// showPcap lists the pcap files and prints their first packets with
// tcpdump.
func (d *demo) showPcap() error {
	files, err := sink.PcapFiles(d.dir, false)
	if err != nil {
		return err
	}
	var size int64
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			size += st.Size()
		}
	}
	d.step("%d pcap file(s), %.1f MB; the first packets, with tcpdump -r:", len(files), float64(size)/1e6)
	if len(files) == 0 {
		return nil
	}
	for _, f := range files {
		fmt.Fprintf(d.cfg.Out, "  %s\n", f)
	}
	out, err := exec.Command("tcpdump", "-nn", "-e", "-c", "6", "-r", files[0]).CombinedOutput()
	if err != nil && len(out) == 0 {
		return fmt.Errorf("tcpdump: %w (make deps-test installs it)", err)
	}
	fmt.Fprint(d.cfg.Out, indent(string(out)))
	return nil
}

// printAccounting prints the XDP program's outcomes, the sockets' and the
// sink's counts, and checks that they add up.
func printAccounting(out io.Writer, m promtext.Samples) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	var outcomes []string
	for k, v := range m {
		if strings.HasPrefix(k, "xdpingest_xdp_packets_total{") && v > 0 {
			outcomes = append(outcomes, k)
		}
	}
	sort.Strings(outcomes)
	fmt.Fprintln(w, "  XDP program\tframes\t")
	for _, k := range outcomes {
		fmt.Fprintf(w, "    %s\t%.0f\t\n", strings.TrimPrefix(k, "xdpingest_xdp_packets_total"), m[k])
	}
	redirect := m.Sum("xdpingest_xdp_packets_total", `outcome="redirect"`)
	rx := m.Sum("xdpingest_rx_packets_total")
	dropped := m.Sum("xdpingest_afxdp_rx_dropped_total") + m.Sum("xdpingest_afxdp_rx_ring_full_total")
	fmt.Fprintf(w, "  AF_XDP sockets\t\t\n")
	fmt.Fprintf(w, "    received\t%.0f\t\n", rx)
	fmt.Fprintf(w, "    dropped by the kernel (rx_dropped + rx_ring_full)\t%.0f\t\n", dropped)
	fmt.Fprintf(w, "    redirected = received + dropped\t%.0f = %.0f\t%s\n", redirect, rx+dropped, check(redirect == rx+dropped+m.Sum("xdpingest_rx_malformed_total")))
	written := m.Sum("xdpingest_sink_written_total")
	sdrop := m.Sum("xdpingest_sink_dropped_total")
	flight := m.Sum("xdpingest_sink_in_flight")
	fmt.Fprintf(w, "  pcap sink\t\t\n")
	fmt.Fprintf(w, "    written\t%.0f\t\n", written)
	for k, v := range m {
		if strings.HasPrefix(k, "xdpingest_sink_dropped_total{") && v > 0 {
			fmt.Fprintf(w, "    dropped %s\t%.0f\t\n", k[strings.Index(k, "reason="):strings.Index(k, ",")], v)
		}
	}
	fmt.Fprintf(w, "    received = written + dropped + in flight\t%.0f = %.0f\t%s\n", rx, written+sdrop+flight, check(rx == written+sdrop+flight))
	w.Flush()
}

func check(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISMATCH"
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

// prefixWriter indents the server's log lines.
type prefixWriter struct {
	prefix string
	w      io.Writer
	bol    bool
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line == "" {
			continue
		}
		if !p.bol {
			fmt.Fprint(p.w, p.prefix)
		}
		fmt.Fprint(p.w, line)
		p.bol = !strings.HasSuffix(line, "\n")
	}
	return len(b), nil
}
