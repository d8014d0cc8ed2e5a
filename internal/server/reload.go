package server

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/xdpingest/xdpingest/internal/config"
)

// liveSettings are the settings a SIGHUP applies to the running server:
// the XDP program's maps and the kernel sockets change in place. Every
// other setting needs a restart.
var liveSettings = []string{"ports", "allow", "deny"}

// restartSettings names the settings, by their YAML keys, that differ
// between old and new and can't change without a restart.
func restartSettings(old, new config.Config) []string {
	var out []string
	ov, nv := reflect.ValueOf(old), reflect.ValueOf(new)
	t := ov.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			name = t.Field(i).Name
		}
		if slices.Contains(liveSettings, name) {
			continue
		}
		if !reflect.DeepEqual(ov.Field(i).Interface(), nv.Field(i).Interface()) {
			out = append(out, name)
		}
	}
	return out
}

// reload applies a re-read configuration, all or nothing: when a setting
// that needs a restart changed, nothing is applied and the log names every
// such setting; otherwise the new ports and prefix lists go to the program
// and the kernel sockets together, and a failure of either leaves both as
// they were.
func (s *server) reload() {
	if s.env.Reload == nil {
		s.log.Info("SIGHUP: no config file to reload (started without --config)")
		return
	}
	nc, err := s.env.Reload()
	if err != nil {
		s.log.Error("SIGHUP: the new configuration is refused; the running one is unchanged", "err", err)
		return
	}
	if diff := restartSettings(s.cfg.Config, nc.Config); len(diff) > 0 {
		s.log.Error("SIGHUP: refused: these settings need a restart; the running configuration is unchanged (a reload applies only "+strings.Join(liveSettings, ", ")+")",
			"settings", strings.Join(diff, ","))
		return
	}
	if err := s.applyLive(nc); err != nil {
		s.log.Error("SIGHUP: refused; the running configuration is unchanged", "err", err)
		return
	}
	s.cfg.PortList, s.cfg.AllowPfx, s.cfg.DenyPfx = nc.PortList, nc.AllowPfx, nc.DenyPfx
	s.cfg.Config.Ports, s.cfg.Config.Allow, s.cfg.Config.Deny = nc.Config.Ports, nc.Config.Allow, nc.Config.Deny
	s.log.Info("SIGHUP: reloaded", "ports", config.FormatPorts(nc.PortList), "allow", prefixes(nc.Config.Allow), "deny", prefixes(nc.Config.Deny))
}

// applyLive changes the ports and prefix lists of the running program and
// kernel sockets, or nothing.
func (s *server) applyLive(nc *config.Resolved) error {
	portsChange := !slices.Equal(nc.PortList, s.cfg.PortList)
	listsChange := !slices.Equal(nc.AllowPfx, s.cfg.AllowPfx) || !slices.Equal(nc.DenyPfx, s.cfg.DenyPfx)
	if !portsChange && !listsChange {
		return nil
	}
	if s.prog == nil && listsChange {
		return fmt.Errorf("no XDP program is loaded, so the prefix lists can't change; restart to change them")
	}
	if portsChange && len(s.kernRxs) > 0 {
		return fmt.Errorf("the kernel sockets can't change ports (running %s, asked %s); restart to change them",
			config.FormatPorts(s.cfg.PortList), config.FormatPorts(nc.PortList))
	}
	if s.prog == nil {
		return nil
	}
	pc := s.prog.Config()
	pc.Ports, pc.Allow, pc.Deny = nc.PortList, nc.AllowPfx, nc.DenyPfx
	return s.prog.Update(pc)
}
