package localdriver

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bohica-labs/darkshell/controller/cgroupfs"
	"github.com/bohica-labs/darkshell/controller/state"
)

// Host is what host-side tools (snapshots, health) need of a local
// sandbox: its workspace dir on the host, init's pid while it runs, the
// uid and gid its files belong to, and its cgroup dirs.
type Host struct {
	Workspace string
	PID       int // 0 unless running
	UID, GID  int
	Cgroups   []string
	PidsLimit int64
	Stopped   bool
}

// HostOf returns sb's host facts.
func HostOf(h *state.Home, sb *state.Sandbox) (Host, error) {
	x, err := readExtra(sb)
	if err != nil {
		return Host{}, err
	}
	ws := x.Workspace
	if ws == "" {
		ws = paths{h.SandboxDir(sb.Name)}.workspace()
	}
	hs := Host{Workspace: ws, UID: x.UID, GID: x.GID, Cgroups: x.Cgroups, PidsLimit: x.PidsLimit, Stopped: x.Stopped}
	if running(x) {
		hs.PID = x.PID
	}
	return hs, nil
}

// killStrays ends processes left in the sandbox's cgroups by a start that
// was interrupted before its record was saved (the daemon killed while
// starting): init then runs unrecorded, and its cgroups cannot be made
// afresh. The cgroup names are unique per installation and sandbox, so
// whatever is in them is that sandbox's.
func killStrays(h *state.Home, name string) {
	mounts, err := cgroupfs.Mounts()
	if err != nil {
		return
	}
	own, err := cgroupfs.Of(0)
	if err != nil {
		return
	}
	var dirs []string
	for _, ctrl := range []string{"", "pids", "memory", "cpu"} {
		if mp, ok := mounts[ctrl]; ok {
			dirs = append(dirs, filepath.Join(mp, own[ctrl], cgroupName(h.Dir, name)))
		}
	}
	for round := 0; round < 100; round++ {
		found := false
		for _, d := range dirs {
			b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					syscall.Kill(pid, syscall.SIGKILL)
					found = true
				}
			}
			// Children of a v1 pids cgroup live in its workload cgroup.
			if b, err := os.ReadFile(filepath.Join(d, "workload", "cgroup.procs")); err == nil {
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
						syscall.Kill(pid, syscall.SIGKILL)
						found = true
					}
				}
			}
		}
		if !found {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
