package sink

import (
	"slices"
	"strings"
	"testing"
)

// Every kind of sink takes ?ports=, which names it too, so that two sinks
// of one kind for different ports have different labels.
func TestParsePorts(t *testing.T) {
	for _, c := range []struct {
		url, name string
		ports     []uint16
	}{
		{"discard?ports=9000", "discard?ports=9000", []uint16{9000}},
		{"pcap:./c?ports=2055,4739&max_mb=10", "pcap:./c?ports=2055,4739", []uint16{2055, 4739}},
		{"pcap:./c?max_mb=10&ports=9100-9102", "pcap:./c?ports=9100-9102", []uint16{9100, 9101, 9102}},
		{"udp://198.18.0.9:514?ports=514", "udp://198.18.0.9:514?ports=514", []uint16{514}},
		{"nats://u:pw@198.18.0.9:4222/flows?ports=2055", "nats://u:xxxxx@198.18.0.9:4222/flows?ports=2055", []uint16{2055}},
		{"pcap:./c", "pcap:./c", nil},
	} {
		sp, err := Parse(c.url)
		if err != nil {
			t.Errorf("%s: %v", c.url, err)
			continue
		}
		if !slices.Equal(sp.Ports, c.ports) {
			t.Errorf("%s: ports %v, want %v", c.url, sp.Ports, c.ports)
		}
		if got := sp.String(); got != c.name && !(strings.HasPrefix(c.url, "nats") && !strings.Contains(got, "pw")) {
			t.Errorf("%s: name %q, want %q", c.url, got, c.name)
		}
		if sp.Kind == KindPcap && c.ports != nil && sp.Pcap.MaxBytes != 10<<20 && strings.Contains(c.url, "max_mb=10") {
			t.Errorf("%s: the other parameters were lost: %+v", c.url, sp.Pcap)
		}
	}
	for _, bad := range []string{"discard?ports=0", "pcap:./c?ports=9000&ports=9001", "pcap:./c?ports=x", "udp://198.18.0.9:514?ports="} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
