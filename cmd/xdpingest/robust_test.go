package main

import (
	"bytes"
	bin "encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/xdpingest/xdpingest/datapath"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
	"github.com/xdpingest/xdpingest/sink"
	"github.com/xdpingest/xdpingest/sink/pcapfile"
)

// marked returns a payload of n bytes (n >= 8) that starts with seq and is
// filled with a pattern derived from it.
func marked(seq uint64, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(seq*7 + uint64(i))
	}
	bin.LittleEndian.PutUint64(p, seq)
	return p
}

// udpConn dials dst from the generating namespace.
func udpConn(t *testing.T, b *testbed.Bed, dst netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := b.Gen.Do(func() (err error) {
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	c.SetWriteBuffer(8 << 20)
	t.Cleanup(func() { c.Close() })
	return c
}

// pcapPayloads returns the UDP payloads in the finished pcap files of dir,
// keyed by their leading sequence number.
func pcapPayloads(t *testing.T, dir string) map[uint64][][]byte {
	t.Helper()
	files, err := sink.PcapFiles(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64][][]byte{}
	for _, f := range files {
		if err := pcapfile.ReadFile(f, func(rec pcapfile.Record) error {
			var d datapath.Datagram
			if err := datapath.ParseFrame(rec.Data, &d); err != nil {
				t.Errorf("%s: a record does not parse: %v", f, err)
				return nil
			}
			if len(d.Payload) < 8 {
				t.Errorf("%s: a %d-byte payload", f, len(d.Payload))
				return nil
			}
			seq := bin.LittleEndian.Uint64(d.Payload)
			out[seq] = append(out[seq], bytes.Clone(d.Payload))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// Issue 10, defect 1: a datagram larger than the pipeline's 32 KiB chunks
// froze the kernel path's worker: the datagrams after it were never
// written, and SIGTERM ended in "workers did not stop".
func TestLargeDatagramKernelPath(t *testing.T) {
	testutil.RequireBPF(t)
	b := testutil.NewBed(t, testbed.Config{})
	dir := t.TempDir()
	srv := startServer(t, b, "--path", "kernel", "--workers", "1", "--ports", "9000", "--sink", "pcap:"+dir)
	c := udpConn(t, b, netip.AddrPortFrom(b.Rx.IPv4, 9000))
	c6 := udpConn(t, b, netip.AddrPortFrom(b.Rx.IPv6, 9000))
	want := map[uint64][]byte{}
	send := func(c *net.UDPConn, seq uint64, n int) {
		p := marked(seq, n)
		want[seq] = p
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	for i := range uint64(100) {
		send(c, i, 64)
	}
	send(c, 100, 40000)
	for i := uint64(101); i < 201; i++ {
		send(c, i, 64)
	}
	// The largest UDP payloads, 65,507 bytes over IPv4 and 65,527 over
	// IPv6: the pcap records hold them whole.
	send(c, 201, 65507)
	send(c6, 202, 65527)
	deadline := time.Now().Add(10 * time.Second)
	for sum(srv.scrape(), "xdpingest_sink_written_total") < float64(len(want)) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if code := srv.stop(syscall.SIGTERM, 5*time.Second); code != 0 {
		t.Fatalf("exit status %d after SIGTERM", code)
	}
	got := pcapPayloads(t, dir)
	for seq, p := range want {
		if len(got[seq]) != 1 || !bytes.Equal(got[seq][0], p) {
			t.Errorf("datagram %d (%d bytes): %d copies in the pcap files, or changed", seq, len(p), len(got[seq]))
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d distinct datagrams in the pcap files, want %d", len(got), len(want))
	}
	if n := tcpdumpCount(t, dir); n != len(want) {
		t.Errorf("tcpdump reads %d packets, want %d", n, len(want))
	}
}
