package sink

import (
	"strings"
	"testing"
)

// udp:// takes source=original|relay and one collector address per family.
func TestParseUDPSource(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want UDPSpec
		name string
	}{
		{"udp://198.18.0.2:9000", UDPSpec{Addr: "198.18.0.2:9000"}, "udp://198.18.0.2:9000"},
		{"udp://198.18.0.2:9000?source=relay", UDPSpec{Addr: "198.18.0.2:9000"}, "udp://198.18.0.2:9000"},
		{"udp://198.18.0.2:9000/?source=original", UDPSpec{Addr: "198.18.0.2:9000", KeepSource: true}, "udp://198.18.0.2:9000"},
		{"udp://[2001:db8::2]:9000?source=original", UDPSpec{Addr: "[2001:db8::2]:9000", KeepSource: true}, "udp://[2001:db8::2]:9000"},
		{"udp://198.18.0.2:2055,[2001:db8::2]:2055?source=original", UDPSpec{Addr: "198.18.0.2:2055,[2001:db8::2]:2055", KeepSource: true},
			"udp://198.18.0.2:2055,[2001:db8::2]:2055"},
		{"udp://[2001:db8::2]:2055,198.18.0.2:4739", UDPSpec{Addr: "[2001:db8::2]:2055,198.18.0.2:4739"}, "udp://[2001:db8::2]:2055,198.18.0.2:4739"},
		{"udp://collector.example:2055,[2001:db8::2]:2055", UDPSpec{Addr: "collector.example:2055,[2001:db8::2]:2055"}, "udp://collector.example:2055,[2001:db8::2]:2055"},
		{"udp://198.18.0.2:514?ports=514&source=original", UDPSpec{Addr: "198.18.0.2:514", KeepSource: true}, "udp://198.18.0.2:514?ports=514"},
	} {
		sp, err := Parse(tc.url)
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if sp.Kind != KindUDP || sp.UDP != tc.want || sp.String() != tc.name {
			t.Errorf("%s: %+v named %q; want %+v named %q", tc.url, sp.UDP, sp.String(), tc.want, tc.name)
		}
		// The name parses back to the same collector.
		again, err := Parse(sp.String())
		if err != nil || again.UDP.Addr != sp.UDP.Addr {
			t.Errorf("%s: name %s parses to %+v, %v", tc.url, sp, again.UDP, err)
		}
	}
	for _, tc := range []struct{ url, want string }{
		{"udp://198.18.0.2:9000?source=spoof", `source="spoof": want original`},
		{"udp://198.18.0.2:9000?source=original&source=relay", `"source" given 2 times`},
		{"udp://198.18.0.2:9000?batch=1", "no parameters but source"},
		{"udp://198.18.0.2:9000?source=original#x", "no parameters but source"},
		{"udp://198.18.0.2:2055,198.18.0.3:2055", "of one family"},
		{"udp://[2001:db8::2]:1,[2001:db8::3]:1", "of one family"},
		{"udp://198.18.0.2:1,[::ffff:198.18.0.3]:1", "of one family"},
		{"udp://198.18.0.2:1,[2001:db8::2]:1,h:1", "more than two"},
		{"udp://h:1,h:1", "listed twice"},
		{"udp://198.18.0.2:1,", "no host"},
		{"udp://,198.18.0.2:1", "no host"},
		{"udp://198.18.0.2:1,[2001:db8::2]", "no port"},
	} {
		_, err := Parse(tc.url)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v; want an error containing %q", tc.url, err, tc.want)
		}
	}
}
