// Command xdpingest-demo shows xdpingest at work on a test bed it builds and
// removes itself: two network namespaces joined by a veth pair, addresses
// from 198.18.0.0/15. It runs `xdpingest run` in the receiving namespace with
// the pcap sink, sends traffic to several ports (some taken, some not),
// prints the rate and the accounting from the metrics, shows the first
// packets with tcpdump, and cleans up. It is what `make demo` runs; it needs
// root, and the xdpingest binary next to it (make build puts both in bin/).
package main

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
	"os/signal"
	"path/filepath"
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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "xdpingest-demo:", err)
		os.Exit(1)
	}
}

const metricsAddr = "127.0.0.1:9109"

func run(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("the demo builds network namespaces and attaches XDP: run it as root")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	binary := filepath.Join(filepath.Dir(self), "xdpingest")
	if _, err := os.Stat(binary); err != nil {
		return fmt.Errorf("no xdpingest next to the demo (%s): run make build", binary)
	}
	if removed, _ := testbed.Sweep(); len(removed) > 0 {
		fmt.Printf("removed test beds left by killed runs: %v\n", removed)
	}
	b, err := testbed.New(testbed.Config{Queues: 2})
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
	dir, err := os.MkdirTemp("", "xdpingest-demo-capture")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	step("test bed: %s in %s (%s, %s)  <->  %s in %s (%s, %s), 2 queues each",
		b.Gen.Link, b.Gen.Netns, b.Gen.IPv4, b.Gen.IPv6, b.Rx.Link, b.Rx.Netns, b.Rx.IPv4, b.Rx.IPv6)

	// The server, in the receiving namespace.
	args := []string{"run", "--iface", b.Rx.Link, "--ports", "9000,9100-9199", "--sink", "pcap:" + dir, "--metrics-addr", metricsAddr}
	// On a veth the receiving work of a queue runs on the sending CPU: the
	// generator gets the first CPU, the server's workers the others.
	genCPU := -1
	if allowed, err := tuning.AllowedCPUs(); err == nil && allowed.Len() >= 2 {
		list := allowed.List()
		genCPU = list[0]
		rest := make([]string, 0, len(list)-1)
		for _, c := range list[1:] {
			rest = append(rest, strconv.Itoa(c))
		}
		args = append(args, "--cpus", strings.Join(rest, ","))
	}
	step("starting: xdpingest %s", strings.Join(args, " "))
	srv := b.Rx.Command(binary, args...)
	logs := &prefixWriter{prefix: "  | ", w: os.Stdout}
	srv.Stdout, srv.Stderr = logs, logs
	if err := srv.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	defer func() {
		if srv.ProcessState == nil {
			srv.Process.Kill()
			<-exited
		}
	}()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = b.Rx.Do(func() error { c, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
			return c, err
		}}}
	if err := waitReady(ctx, client, exited); err != nil {
		return err
	}

	// A kernel socket on a port the server does not take.
	var other *net.UDPConn
	if err := b.Rx.Do(func() (err error) { other, err = net.ListenUDP("udp", &net.UDPAddr{Port: 7000}); return err }); err != nil {
		return err
	}
	defer other.Close()
	otherGot := make(chan int, 1)
	go func() {
		n, buf := 0, make([]byte, 2048)
		for {
			other.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := other.ReadFromUDPAddrPort(buf); err != nil {
				otherGot <- n
				return
			}
			n++
		}
	}()

	step("sending 1000 datagrams each to 198.18.0.2:9000, [2001:db8::2]:9150 (taken) and 198.18.0.2:7000 (not taken), from sockets")
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

	step("sending 2,000,000 64-byte frames to port 9100 at 2 Mpps from an XDP live-frames generator")
	before, err := scrape(client)
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
		if genCPU >= 0 {
			all, err := tuning.AllowedCPUs()
			if err != nil {
				return err
			}
			if err := tuning.PinThread(genCPU); err != nil {
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
		if after, err = scrape(client); err != nil {
			return err
		}
		if sum(after, "xdpingest_sink_in_flight") == 0 {
			break
		}
	}
	rx := sum(after, "xdpingest_rx_packets_total") - sum(before, "xdpingest_rx_packets_total")
	fmt.Printf("  generator: %d frames in %v (%.2f Mpps offered)\n", res.Sent, res.Elapsed.Round(time.Millisecond), float64(res.Sent)/res.Elapsed.Seconds()/1e6)
	fmt.Printf("  xdpingest received %.0f of them (%.2f Mpps over the generator's run), AF_XDP in copy mode on veth\n", rx, rx/res.Elapsed.Seconds()/1e6)
	fmt.Printf("  the kernel socket on port 7000 (not taken) received %d of 1000\n", <-otherGot)

	step("the accounting, from http://%s/metrics", metricsAddr)
	printAccounting(after)

	step("stopping xdpingest with SIGTERM: it drains the rings and queues, closes the files, detaches")
	srv.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("xdpingest: %w", err)
		}
	case <-time.After(10 * time.Second):
		return errors.New("xdpingest did not stop within 10 s")
	}

	files, err := sink.PcapFiles(dir, false)
	if err != nil {
		return err
	}
	var size int64
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			size += st.Size()
		}
	}
	step("%d pcap file(s), %.1f MB; the first packets, with tcpdump -r:", len(files), float64(size)/1e6)
	if len(files) > 0 {
		for _, f := range files {
			fmt.Printf("  %s\n", f)
		}
		out, err := exec.Command("tcpdump", "-nn", "-e", "-c", "6", "-r", files[0]).CombinedOutput()
		if err != nil && len(out) == 0 {
			return fmt.Errorf("tcpdump: %w (make deps-test installs it)", err)
		}
		fmt.Print(indent(string(out)))
	}
	return nil
}

func step(format string, a ...any) { fmt.Printf("\n== "+format+"\n", a...) }

func waitReady(ctx context.Context, c *http.Client, exited <-chan error) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("xdpingest exited before it was ready: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if resp, err := c.Get("http://" + metricsAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("xdpingest was not ready within 15 s")
}

func scrape(c *http.Client) (promtext.Samples, error) {
	return promtext.Get(c, "http://"+metricsAddr+"/metrics")
}

func sum(m promtext.Samples, name string, labels ...string) float64 { return m.Sum(name, labels...) }

func printAccounting(m promtext.Samples) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
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
	redirect := sum(m, "xdpingest_xdp_packets_total", `outcome="redirect"`)
	rx := sum(m, "xdpingest_rx_packets_total")
	dropped := sum(m, "xdpingest_afxdp_socket_total", `counter="rx_dropped"`) + sum(m, "xdpingest_afxdp_socket_total", `counter="rx_ring_full"`)
	fmt.Fprintf(w, "  AF_XDP sockets\t\t\n")
	fmt.Fprintf(w, "    received\t%.0f\t\n", rx)
	fmt.Fprintf(w, "    dropped by the kernel (rx_dropped + rx_ring_full)\t%.0f\t\n", dropped)
	fmt.Fprintf(w, "    redirected = received + dropped\t%.0f = %.0f\t%s\n", redirect, rx+dropped, check(redirect == rx+dropped+sum(m, "xdpingest_rx_malformed_total")))
	written := sum(m, "xdpingest_sink_written_total")
	sdrop := sum(m, "xdpingest_sink_dropped_total")
	flight := sum(m, "xdpingest_sink_in_flight")
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
