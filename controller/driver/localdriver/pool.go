package localdriver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/egress"
	"github.com/bohica-labs/darkshell/controller/provider"
	"github.com/bohica-labs/darkshell/controller/state"
)

var _ driver.Pooler = Driver{}

// recordFile is the record's name in a sandbox dir (state.Home's layout).
const recordFile = "sandbox.json"

// Adopt implements driver.Pooler. A local pool member is a running init
// whose state dir sits in the pool's home; adopting it moves every entry of
// that dir but the record into sb's dir (one rename each, same file
// system: the workspace, keys, socket and image root move without a copy;
// the init's mounts were made in its own mount namespace and do not
// notice), pins the host key under sb's name, and, as root, sets the
// sandbox's hostname to sb's name from the host (setns into its UTS
// namespace). The claim's providers are checked and recorded so the egress
// proxy serves them; their placeholders and HOSTNAME are the env returned.
// Cgroups keep their pool-member names (they are recorded in Extra).
func (Driver) Adopt(ctx context.Context, ph *state.Home, m *state.Sandbox, h *state.Home, sb *state.Sandbox) ([]string, error) {
	x, err := readExtra(m)
	if err != nil {
		return nil, err
	}
	if x.Stopped || !running(x) {
		return nil, fmt.Errorf("pool member %s is not running (init pid %d)", m.Name, x.PID)
	}
	claim, err := readExtra(sb)
	if err != nil {
		return nil, err
	}
	for _, name := range claim.Providers {
		if _, err := provider.Open(h).Get(name); err != nil {
			return nil, fmt.Errorf("--provider %s: %w", name, err)
		}
	}
	x.Providers = claim.Providers
	from, to := paths{ph.SandboxDir(m.Name)}, paths{h.SandboxDir(sb.Name)}
	ents, err := os.ReadDir(from.dir)
	if err != nil {
		return nil, fmt.Errorf("pool member %s: %w", m.Name, err)
	}
	var moved []string
	undo := func() {
		for _, n := range moved {
			os.Rename(filepath.Join(to.dir, n), filepath.Join(from.dir, n))
		}
	}
	for _, e := range ents {
		if e.Name() == recordFile {
			continue
		}
		if err := os.Rename(filepath.Join(from.dir, e.Name()), filepath.Join(to.dir, e.Name())); err != nil {
			undo()
			return nil, fmt.Errorf("adopt pool member %s as %s: %w", m.Name, sb.Name, err)
		}
		moved = append(moved, e.Name())
	}
	if err := pinHostKey(to, sb.Name); err != nil {
		undo()
		return nil, err
	}
	if sb.Extra, err = json.Marshal(x); err != nil {
		undo()
		return nil, err
	}
	sb.SSH = &state.SSHTarget{User: "sandbox", UnixSocket: to.socket(), Identity: to.clientKey()}
	if err := os.RemoveAll(from.dir); err != nil {
		slog.Warn("unable to remove an adopted pool member's dir", "dir", from.dir, "err", err)
	}
	if err := setHostname(x.PID, sb.Name); err != nil {
		slog.Debug("hostname of an adopted sandbox kept", "sandbox", sb.Name, "err", err)
	}
	env := []string{"HOSTNAME=" + sb.Name}
	home := h
	for _, name := range x.Providers {
		pr, err := provider.Open(home).Get(name)
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", name, err)
		}
		for _, k := range pr.Summary().Keys {
			env = append(env, k+"="+egress.Placeholder(name, k))
		}
	}
	return env, nil
}

// setHostname sets the hostname in init pid's UTS namespace. It needs
// CAP_SYS_ADMIN over that namespace (root); a rootless sandbox keeps its
// pool-member hostname (HOSTNAME in the env is still sb's name). The
// thread that joined the namespace is never reused: it stays locked and
// ends with the goroutine.
func setHostname(pid int, name string) error {
	if os.Geteuid() != 0 {
		return errors.New("not root")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/uts", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWUTS); err != nil {
			errc <- fmt.Errorf("setns uts: %w", err)
			return
		}
		errc <- unix.Sethostname([]byte(name))
	}()
	return <-errc
}
