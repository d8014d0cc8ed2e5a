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
		s.metrics.noteReload(false)
		return
	}
	nc, err := s.env.Reload()
	if err != nil {
		s.log.Error("SIGHUP: the new configuration is refused; the running one is unchanged", "err", err)
		s.metrics.noteReload(false)
		return
	}
	if diff := restartSettings(s.cfg.Raw, nc.Raw); len(diff) > 0 {
		s.log.Error("SIGHUP: refused: these settings need a restart; the running configuration is unchanged (a reload applies only "+strings.Join(liveSettings, ", ")+")",
			"settings", strings.Join(diff, ","))
		s.metrics.noteReload(false)
		return
	}
	if err := s.applyLive(nc); err != nil {
		s.log.Error("SIGHUP: refused; the running configuration is unchanged", "err", err)
		s.metrics.noteReload(false)
		return
	}
	s.cfg.Ports, s.cfg.Allow, s.cfg.Deny = nc.Ports, nc.Allow, nc.Deny
	s.cfg.Raw.Ports, s.cfg.Raw.Allow, s.cfg.Raw.Deny = nc.Raw.Ports, nc.Raw.Allow, nc.Raw.Deny
	s.metrics.noteReload(true)
	s.log.Info("SIGHUP: reloaded", "ports", config.FormatPorts(nc.Ports), "allow", prefixes(nc.Raw.Allow), "deny", prefixes(nc.Raw.Deny))
}

// applyLive changes the ports and prefix lists of the running program and
// kernel sockets, or nothing.
func (s *server) applyLive(nc *config.Resolved) error {
	portsChange := !slices.Equal(nc.Ports, s.cfg.Ports)
	listsChange := !slices.Equal(nc.Allow, s.cfg.Allow) || !slices.Equal(nc.Deny, s.cfg.Deny)
	if !portsChange && !listsChange {
		return nil
	}
	if s.prog == nil && listsChange {
		return fmt.Errorf("no XDP program is loaded, so the prefix lists can't change; restart to change them")
	}
	// The sockets first, so that what the program passes for an added port
	// (fragments, say) finds one; SetPorts changes nothing when it fails.
	kp := s.kernelPart()
	if portsChange && kp != nil {
		warnings, err := kp.SetPorts(nc.Ports)
		if err != nil {
			return err
		}
		for _, w := range warnings {
			s.log.Warn(w)
		}
	}
	if s.prog == nil {
		return nil
	}
	pc := s.prog.Config()
	pc.Ports, pc.Allow, pc.Deny = nc.Ports, nc.Allow, nc.Deny
	err := s.prog.Update(pc)
	if err != nil && portsChange && kp != nil {
		// The sockets of the removed ports are still there to go back to.
		if _, rerr := kp.SetPorts(s.cfg.Ports); rerr != nil {
			return fmt.Errorf("%w; and the kernel sockets could not go back to ports %s (%v): they now listen on %s while the program takes %s: restart",
				err, config.FormatPorts(s.cfg.Ports), rerr, config.FormatPorts(nc.Ports), config.FormatPorts(s.cfg.Ports))
		}
	}
	return err
}
