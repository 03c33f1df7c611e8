// Package cgroupfs reads the host's cgroup file systems (v1 and v2, the
// hybrid layout included): where each controller is mounted, which
// cgroups a process is in, and a cgroup's use against its limits.
package cgroupfs

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/bohica-labs/darkshell/controller/driver"
)

// Mounts maps a v1 controller name (and "" for cgroup2) to its mount point.
func Mounts() (map[string]string, error) {
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

// Of maps a v1 controller (and "" for v2) to the cgroup path of pid (0:
// this process).
func Of(pid int) (map[string]string, error) {
	file := "/proc/self/cgroup"
	if pid > 0 {
		file = fmt.Sprintf("/proc/%d/cgroup", pid)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") { // "" is the v2 line
			m[c] = f[2]
		}
	}
	return m, nil
}

// ReadInt reads a one-number cgroup file.
func ReadInt(p string) (int64, bool) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}

// ReadKey reads "key N" from a flat keyed cgroup file.
func ReadKey(p, key string) (int64, bool) {
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

// FillUsage sets r's memory use and limit, OOM kills and pids from
// whichever of dirs hold them (v1 memory and pids dirs, or a v2 dir).
// Figures it cannot read stay as they are.
func FillUsage(r *driver.Resources, dirs ...string) {
	first := func(files ...string) (int64, bool) {
		for _, d := range dirs {
			for _, f := range files {
				if n, ok := ReadInt(filepath.Join(d, f)); ok {
					return n, true
				}
			}
		}
		return 0, false
	}
	if n, ok := first("memory.usage_in_bytes", "memory.current"); ok {
		r.MemoryBytes = n
	}
	if n, ok := first("memory.limit_in_bytes", "memory.max"); ok && n < 1<<60 {
		r.MemoryLimitBytes = n
	}
	if n, ok := first("pids.current"); ok {
		r.Pids = n
	}
	fillCPU(r, dirs)
	for _, d := range dirs {
		for _, f := range []string{"memory.oom_control", "memory.events"} {
			if n, ok := ReadKey(filepath.Join(d, f), "oom_kill"); ok {
				r.OOMKills = n
				return
			}
		}
	}
}

// fillCPU sets r's CPU time (v1 cpuacct.usage, else v2 cpu.stat
// usage_usec, which every v2 cgroup has) and CPU limit (v1 CFS quota over
// period, or v2 cpu.max).
func fillCPU(r *driver.Resources, dirs []string) {
	cpu := false
	for _, d := range dirs {
		if n, ok := ReadInt(filepath.Join(d, "cpuacct.usage")); ok {
			r.CPUSeconds, cpu = float64(n)/1e9, true
			break
		}
	}
	if !cpu {
		for _, d := range dirs {
			if n, ok := ReadKey(filepath.Join(d, "cpu.stat"), "usage_usec"); ok {
				r.CPUSeconds = float64(n) / 1e6
				break
			}
		}
	}
	for _, d := range dirs {
		q, ok1 := ReadInt(filepath.Join(d, "cpu.cfs_quota_us"))
		p, ok2 := ReadInt(filepath.Join(d, "cpu.cfs_period_us"))
		if ok1 && ok2 && q > 0 && p > 0 {
			r.CPULimit = float64(q) / float64(p)
			return
		}
		if b, err := os.ReadFile(filepath.Join(d, "cpu.max")); err == nil {
			f := strings.Fields(string(b))
			if len(f) == 2 && f[0] != "max" {
				q, err1 := strconv.ParseInt(f[0], 10, 64)
				p, err2 := strconv.ParseInt(f[1], 10, 64)
				if err1 == nil && err2 == nil && q > 0 && p > 0 {
					r.CPULimit = float64(q) / float64(p)
					return
				}
			}
		}
	}
}
