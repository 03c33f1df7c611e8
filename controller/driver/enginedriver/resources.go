package enginedriver

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/bohica-labs/darkshell/controller/driver"
)

// cgroupUsage fills r's use figures (memory, OOM kills, pids) from the
// cgroups of host process pid, the container's init. It works where the
// engine runs containers on this host (podman; not a remote docker) and
// leaves r unchanged where a file cannot be read. cgroup v1 and v2.
func cgroupUsage(pid int, r *driver.Resources) {
	paths, err := procCgroups(pid)
	if err != nil {
		return
	}
	mounts, err := cgroupMountPoints()
	if err != nil {
		return
	}
	dir := func(ctrl string) string {
		if m, ok := mounts[ctrl]; ok {
			if p, ok := paths[ctrl]; ok {
				return filepath.Join(m, p)
			}
		}
		if m, ok := mounts[""]; ok { // cgroup2
			if p, ok := paths[""]; ok {
				return filepath.Join(m, p)
			}
		}
		return ""
	}
	if d := dir("memory"); d != "" {
		for _, f := range []string{"memory.usage_in_bytes", "memory.current"} {
			if n, ok := readInt(filepath.Join(d, f)); ok {
				r.MemoryBytes = n
				break
			}
		}
		for _, f := range []string{"memory.oom_control", "memory.events"} {
			if n, ok := readKey(filepath.Join(d, f), "oom_kill"); ok {
				r.OOMKills = n
				break
			}
		}
	}
	if d := dir("pids"); d != "" {
		if n, ok := readInt(filepath.Join(d, "pids.current")); ok {
			r.Pids = n
		}
	}
}

// procCgroups maps a v1 controller (and "" for v2) to pid's cgroup path.
func procCgroups(pid int) (map[string]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			m[c] = f[2]
		}
	}
	return m, nil
}

// cgroupMountPoints maps a v1 controller (and "" for cgroup2) to where it is mounted.
func cgroupMountPoints() (map[string]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if !ok || len(pf) < 5 || len(qf) < 3 {
			continue
		}
		switch qf[0] {
		case "cgroup2":
			if _, ok := m[""]; !ok {
				m[""] = pf[4]
			}
		case "cgroup":
			for _, o := range strings.Split(qf[2], ",") {
				if _, ok := m[o]; !ok {
					m[o] = pf[4]
				}
			}
		}
	}
	return m, sc.Err()
}

func readInt(p string) (int64, bool) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}

// readKey reads "key N" from a flat keyed cgroup file.
func readKey(p, key string) (int64, bool) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+" "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
