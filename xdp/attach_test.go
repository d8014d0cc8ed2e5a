package xdp

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"

	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// inspectIn returns what is attached to the side's veth end.
func inspectIn(t *testing.T, s *testbed.Side) *Existing {
	t.Helper()
	var e *Existing
	if err := s.Do(func() (err error) { e, err = Inspect(s.Index); return err }); err != nil {
		t.Fatal(err)
	}
	return e
}

func attachIn(s *testbed.Side, p *Program, opts AttachOptions) (*Attachment, error) {
	var att *Attachment
	err := s.Do(func() (err error) { att, err = p.Attach(s.Index, opts); return err })
	return att, err
}

// udpSink listens in the receiving namespace and counts what arrives.
type udpSink struct {
	conn *net.UDPConn
	got  chan string
}

func listenUDP(t *testing.T, s *testbed.Side, addr netip.AddrPort) *udpSink {
	t.Helper()
	u := &udpSink{got: make(chan string, 1024)}
	u.conn = testutil.ListenUDP(t, s, addr)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := u.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				close(u.got)
				return
			}
			u.got <- string(buf[:n])
		}
	}()
	return u
}

// expect waits for msg, or (want=false) makes sure nothing arrives for a while.
func (u *udpSink) expect(t *testing.T, msg string, want bool) {
	t.Helper()
	wait := 3 * time.Second
	if !want {
		wait = 300 * time.Millisecond
	}
	select {
	case got := <-u.got:
		if !want {
			t.Fatalf("%q reached the kernel socket, want it taken by XDP", got)
		}
		if got != msg {
			t.Fatalf("got %q, want %q", got, msg)
		}
	case <-time.After(wait):
		if want {
			t.Fatalf("%q did not reach the kernel socket", msg)
		}
	}
}

func TestAttachOnTestBed(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{})
	// Drop mode: a match disappears in XDP, so the kernel socket tells
	// match from no match.
	p := loadT(t, Config{Ports: []uint16{9000}, Action: Drop})
	att, err := attachIn(b.Rx, p, AttachOptions{Mode: ModeNative})
	if err != nil {
		t.Fatal(err)
	}
	if att.Mode != ModeNative || att.Fallback != "" {
		t.Fatalf("attached in %v (fallback %q), want native", att.Mode, att.Fallback)
	}
	e := inspectIn(t, b.Rx)
	if e == nil || e.Name != "xdpingest" || e.Mode != "native" || !e.ByLink {
		t.Fatalf("interface shows %v, want xdpingest in native mode by a BPF link", e)
	}

	s9000 := listenUDP(t, b.Rx, netip.AddrPortFrom(testbed.RxIPv4, 9000))
	s9001 := listenUDP(t, b.Rx, netip.AddrPortFrom(testbed.RxIPv4, 9001))
	s6 := listenUDP(t, b.Rx, netip.AddrPortFrom(testbed.RxIPv6, 9001))

	testutil.SendUDP(t, b.Gen, netip.AddrPortFrom(testbed.RxIPv4, 9001), "other port")
	s9001.expect(t, "other port", true)
	testutil.SendUDP(t, b.Gen, netip.AddrPortFrom(testbed.RxIPv6, 9001), "other port v6")
	s6.expect(t, "other port v6", true)
	testutil.SendUDP(t, b.Gen, netip.AddrPortFrom(testbed.RxIPv4, 9000), "matched")
	s9000.expect(t, "", false)

	// TCP passes: a connection to a listener in the receiving namespace.
	var ln net.Listener
	if err := b.Rx.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(testbed.RxIPv4, 9000).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("tcp ok"))
			c.Close()
		}
	}()
	if err := b.Gen.Do(func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 16)
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "tcp ok" {
			return fmt.Errorf("tcp read %q: %v", buf[:n], err)
		}
		return nil
	}); err != nil {
		t.Fatalf("TCP through the program: %v", err)
	}

	// Change the port set at run time: 9000 now reaches the kernel, 9001 is
	// taken.
	if err := p.Update(Config{Ports: []uint16{9001}, Action: Drop}); err != nil {
		t.Fatal(err)
	}
	testutil.SendUDP(t, b.Gen, netip.AddrPortFrom(testbed.RxIPv4, 9000), "now passed")
	s9000.expect(t, "now passed", true)
	testutil.SendUDP(t, b.Gen, netip.AddrPortFrom(testbed.RxIPv4, 9001), "now taken")
	s9001.expect(t, "", false)

	c, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c[OutcomeDropMode].Packets != 2 || c[OutcomeOtherPort].Packets < 3 || c[OutcomeTCP].Packets == 0 {
		t.Fatalf("counters %v: want 2 drop_mode, 3+ other_port, some tcp", nonzero(c))
	}

	// Detach and close leave nothing on the interface.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if e := inspectIn(t, b.Rx); e != nil {
		t.Fatalf("after Close the interface still carries %v", e)
	}
}

func TestAttachRefusesForeignProgram(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{})
	// Someone else's program, attached the old way (netlink), as ip link
	// or a crashed tool would leave it.
	foreign, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "someone_else", Type: ebpf.XDP, License: "MIT",
		Instructions: asm.Instructions{asm.LoadImm(asm.R0, 2, asm.DWord), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Close()
	if err := b.Rx.Do(func() error {
		l, err := netlink.LinkByIndex(b.Rx.Index)
		if err != nil {
			return err
		}
		return netlink.LinkSetXdpFdWithFlags(l, foreign.FD(), nlXDPFlagsDrvMode)
	}); err != nil {
		t.Fatal(err)
	}

	p := loadT(t, Config{Ports: []uint16{9000}})
	_, err = attachIn(b.Rx, p, AttachOptions{Mode: ModeNative})
	if err == nil || !strings.Contains(err.Error(), "someone_else") || !strings.Contains(err.Error(), "--replace") {
		t.Fatalf("attach over a foreign program: err = %v, want a refusal naming someone_else and --replace", err)
	}
	if e := inspectIn(t, b.Rx); e == nil || e.Name != "someone_else" {
		t.Fatalf("the refused attach changed the interface: %v", e)
	}

	att, err := attachIn(b.Rx, p, AttachOptions{Mode: ModeNative, Replace: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(att.Replaced, "someone_else") {
		t.Fatalf("Replaced = %q", att.Replaced)
	}
	if e := inspectIn(t, b.Rx); e == nil || e.Name != "xdpingest" {
		t.Fatalf("after replace the interface shows %v", e)
	}

	// A second xdpingest is refused too: the first holds a BPF link.
	p2 := loadT(t, Config{Ports: []uint16{9000}})
	if _, err := attachIn(b.Rx, p2, AttachOptions{Mode: ModeNative}); err == nil || !strings.Contains(err.Error(), "xdpingest") {
		t.Fatalf("second attach: err = %v, want a refusal naming xdpingest", err)
	}
	// With Replace it takes over the link-held attachment.
	if _, err := attachIn(b.Rx, p2, AttachOptions{Mode: ModeNative, Replace: true}); err != nil {
		t.Fatalf("replace a link-held program: %v", err)
	}
}

func TestAttachGenericAndAuto(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{})
	p := loadT(t, Config{Ports: []uint16{9000}})
	att, err := attachIn(b.Rx, p, AttachOptions{Mode: ModeGeneric})
	if err != nil {
		t.Fatal(err)
	}
	if att.Mode != ModeGeneric {
		t.Fatalf("mode %v", att.Mode)
	}
	if e := inspectIn(t, b.Rx); e == nil || e.Mode != "generic" {
		t.Fatalf("interface shows %v", e)
	}
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}
	att, err = attachIn(b.Rx, p, AttachOptions{Mode: ModeAuto})
	if err != nil {
		t.Fatal(err)
	}
	if att.Mode != ModeNative {
		t.Fatalf("auto on veth gave %v (%s), want native", att.Mode, att.Fallback)
	}
}

// The kernel detaches the program when the process that attached it dies,
// even by SIGKILL: nothing is left on the interface.
func TestSIGKILLLeavesNoProgram(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{})
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperAttachAndWait$")
	cmd.Env = append(os.Environ(), "XDPINGEST_HELPER_NETNS="+b.Rx.Netns, "XDPINGEST_HELPER_IFINDEX="+strconv.Itoa(b.Rx.Index))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(out)
	attached := false
	for lines.Scan() {
		if lines.Text() == "attached" {
			attached = true
			break
		}
	}
	if !attached {
		cmd.Wait()
		t.Fatal("the child never attached")
	}
	if e := inspectIn(t, b.Rx); e == nil || e.Name != "xdpingest" {
		t.Fatalf("the child's program is not on the interface: %v", e)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		e := inspectIn(t, b.Rx)
		if e == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s after SIGKILL the interface still carries %v", e)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHelperAttachAndWait is the child of TestSIGKILLLeavesNoProgram.
func TestHelperAttachAndWait(t *testing.T) {
	ns, idx := os.Getenv("XDPINGEST_HELPER_NETNS"), os.Getenv("XDPINGEST_HELPER_IFINDEX")
	if ns == "" {
		t.Skip("only runs as the child of TestSIGKILLLeavesNoProgram")
	}
	ifindex, _ := strconv.Atoi(idx)
	p, err := Load(Config{Ports: []uint16{9000}}, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	side := testbed.Lookup(ns)
	if err := side.Do(func() error { _, err := p.Attach(ifindex, AttachOptions{}); return err }); err != nil {
		t.Fatal(err)
	}
	fmt.Println("attached")
	time.Sleep(time.Minute)
	t.Fatal(errors.New("not killed within a minute"))
}
