package tuning

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// DefaultStateDir is where nictune keeps the values it replaced.
const DefaultStateDir = "/var/lib/xdpingest"

// DefaultStatePath returns the state file of iface under DefaultStateDir.
func DefaultStatePath(iface string) string {
	return filepath.Join(DefaultStateDir, "nictune-"+iface+".json")
}

const stateVersion = 1

// State is what Apply saved before changing a device: for each setting it
// changed, the value to restore. Settings are keyed as in plans
// ("channels", "coalesce.rx-usecs", "sysctl.net.core.busy_poll",
// "irq.61"); values are the canonical strings plans show.
type State struct {
	Version int    `json:"version"`
	Iface   string `json:"iface"`
	Profile string `json:"profile"`
	// BootID (/proc/sys/kernel/random/boot_id) ties the state to one boot:
	// after a reboot the values are the kernel's again, and IRQ numbers
	// may mean other vectors.
	BootID  string       `json:"boot_id,omitempty"`
	Saved   time.Time    `json:"saved"`
	Entries []StateEntry `json:"entries"`
}

// StateEntry is one saved setting.
type StateEntry struct {
	Key      string `json:"key"`
	Previous string `json:"previous"`
	Applied  string `json:"applied,omitempty"`
}

func (st *State) entry(key string) (StateEntry, bool) {
	for _, e := range st.Entries {
		if e.Key == key {
			return e, true
		}
	}
	return StateEntry{}, false
}

// LoadState reads a state file. A missing file is ErrNoState.
func LoadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no state file %s: %w", path, ErrNoState)
	}
	if err != nil {
		return nil, fmt.Errorf("can't read state file %s: %w", path, err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("can't parse state file %s: %w (restore by hand from its content, then remove it)", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("state file %s has version %d, this nictune reads %d", path, st.Version, stateVersion)
	}
	return &st, nil
}

// saveState writes st to path atomically (temporary file, fsync, rename,
// fsync of the directory), so that a crash leaves the old or the new state,
// never half of one.
func saveState(path string, st *State) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("can't create state directory %s: %w (use --state to put it elsewhere)", dir, err)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".nictune-*")
	if err != nil {
		return fmt.Errorf("can't write state in %s: %w", dir, err)
	}
	tmp := f.Name()
	_, werr := f.Write(append(b, '\n'))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("can't write state file %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("can't write state file %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func removeState(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("can't remove state file %s: %w", path, err)
	}
	return nil
}

func bootID(r Roots) string {
	id, _ := readTrim(r.proc("sys/kernel/random/boot_id"))
	return id
}
