// Package state is the controller's on-disk state under $DARKSHELL_HOME:
// sandbox records, keys, pinned host keys, logs and the daemon socket.
// Records are small JSON files written atomically (temp file + rename); the
// daemon is only a cache of them.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ErrNotFound is returned for a sandbox that has no record.
var ErrNotFound = errors.New("no such sandbox")

// ErrExists is returned when creating a sandbox whose name is taken.
var ErrExists = errors.New("sandbox already exists")

// Home is one installation's state directory.
type Home struct{ Dir string }

// DefaultDir is $DARKSHELL_HOME, else $XDG_STATE_HOME/darkshell, else ~/.local/state/darkshell.
func DefaultDir() (string, error) {
	if d := os.Getenv("DARKSHELL_HOME"); d != "" {
		return filepath.Abs(d)
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "darkshell"), nil
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find state dir: set DARKSHELL_HOME: %w", err)
	}
	return filepath.Join(h, ".local", "state", "darkshell"), nil
}

// Open returns the Home at dir, creating it (0700) if needed.
func Open(dir string) (*Home, error) {
	for _, d := range []string{dir, filepath.Join(dir, "sandboxes"), filepath.Join(dir, "logs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("state dir: %w", err)
		}
	}
	return &Home{Dir: dir}, nil
}

// Socket is the daemon's control socket.
func (h *Home) Socket() string { return filepath.Join(h.Dir, "darkshell.sock") }

// KnownHosts is the file of pinned SSH host keys.
func (h *Home) KnownHosts() string { return filepath.Join(h.Dir, "known_hosts") }

// LogDir holds the daemon's and the sandboxes' logs.
func (h *Home) LogDir() string { return filepath.Join(h.Dir, "logs") }

// SandboxDir holds one sandbox's record, keys and data.
func (h *Home) SandboxDir(name string) string { return filepath.Join(h.Dir, "sandboxes", name) }

// SSHTarget says how to reach a sandbox over SSH.
type SSHTarget struct {
	User         string `json:"user,omitempty"`
	Host         string `json:"host,omitempty"`
	Port         int    `json:"port,omitempty"`
	UnixSocket   string `json:"unix_socket,omitempty"`
	ProxyCommand string `json:"proxy_command,omitempty"`
	Identity     string `json:"identity,omitempty"`
}

// Sandbox is one sandbox's record.
type Sandbox struct {
	Name    string            `json:"name"`
	Driver  string            `json:"driver"`
	Created time.Time         `json:"created"`
	SSH     *SSHTarget        `json:"ssh,omitempty"`
	Env     []string          `json:"env,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	// Driver-specific settings.
	Extra json.RawMessage `json:"extra,omitempty"`
}

// ValidName checks a sandbox name: lower-case letters, digits and '-', 1-63
// chars, starting and ending with a letter or digit (a DNS label).
func ValidName(name string) error {
	ok := len(name) >= 1 && len(name) <= 63 && name[0] != '-' && name[len(name)-1] != '-'
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
	}
	if !ok {
		return fmt.Errorf("invalid sandbox name %q: use 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit", name)
	}
	return nil
}

func (h *Home) recordPath(name string) string {
	return filepath.Join(h.SandboxDir(name), "sandbox.json")
}

// Create writes a new record; it fails with ErrExists if the name is taken.
func (h *Home) Create(sb *Sandbox) error {
	if err := ValidName(sb.Name); err != nil {
		return err
	}
	dir := h.SandboxDir(sb.Name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			if _, err := os.Stat(h.recordPath(sb.Name)); err == nil {
				return fmt.Errorf("%w: %s", ErrExists, sb.Name)
			}
		} else {
			return fmt.Errorf("create sandbox dir: %w", err)
		}
	}
	return h.Save(sb)
}

// Save writes sb's record atomically.
func (h *Home) Save(sb *Sandbox) error {
	b, err := json.MarshalIndent(sb, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(h.recordPath(sb.Name), append(b, '\n'), 0o600)
}

// Get reads one record.
func (h *Home) Get(name string) (*Sandbox, error) {
	if err := ValidName(name); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	b, err := os.ReadFile(h.recordPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s (see `darkshell sandbox list`)", ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("read sandbox %s: %w", name, err)
	}
	var sb Sandbox
	if err := json.Unmarshal(b, &sb); err != nil {
		return nil, fmt.Errorf("sandbox record %s is corrupt: %w", h.recordPath(name), err)
	}
	return &sb, nil
}

// List reads every record, sorted by name.
func (h *Home) List() ([]*Sandbox, error) {
	ents, err := os.ReadDir(filepath.Join(h.Dir, "sandboxes"))
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	var out []*Sandbox
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		sb, err := h.Get(e.Name())
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, sb)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Delete removes a sandbox's record and its directory.
func (h *Home) Delete(name string) error {
	if _, err := h.Get(name); err != nil {
		return err
	}
	if err := os.RemoveAll(h.SandboxDir(name)); err != nil {
		return fmt.Errorf("delete sandbox %s: %w", name, err)
	}
	return nil
}

// WriteFileAtomic writes data to path through a temp file in the same
// directory and a rename, so readers see the old or the new content.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ValidLabels checks sandbox labels the way Kubernetes checks its own (so a
// label can be put on a Pod as is): keys are [prefix/]name with name 1-63
// of [A-Za-z0-9._-] starting and ending alphanumeric, values 0-63 of the same.
func ValidLabels(l map[string]string) error {
	for k, v := range l {
		name := k
		if i := strings.LastIndexByte(k, '/'); i >= 0 {
			if i == 0 || i > 253 {
				return fmt.Errorf("label key %q: bad prefix before /", k)
			}
			name = k[i+1:]
		}
		if !labelValue(name) || name == "" {
			return fmt.Errorf("label key %q: the name must be 1-63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit", k)
		}
		if !labelValue(v) {
			return fmt.Errorf("label %s=%q: the value must be 0-63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit", k, v)
		}
	}
	return nil
}

func labelValue(s string) bool {
	if len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && ((c != '.' && c != '_' && c != '-') || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}
