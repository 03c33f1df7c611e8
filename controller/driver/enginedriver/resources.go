package enginedriver

import (
	"path/filepath"
	"strconv"

	"github.com/bohica-labs/darkshell/controller/cgroupfs"
	"github.com/bohica-labs/darkshell/controller/driver"
)

// cgroupUsage fills r's use figures (memory, OOM kills, pids) from the
// cgroups of host process pid, the container's init. It works where the
// engine runs containers on this host (podman; not a remote docker) and
// leaves r unchanged where a file cannot be read. cgroup v1 and v2.
func cgroupUsage(pid int, r *driver.Resources) {
	paths, err := cgroupfs.Of(pid)
	if err != nil {
		return
	}
	mounts, err := cgroupfs.Mounts()
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
	cgroupfs.FillUsage(r, dir("memory"), dir("pids"))
}

// MemoryBytes parses a --memory-limit size (512M, 1G, 1.5GiB or a number
// of bytes; at least 6 MiB) into bytes, for other drivers.
func MemoryBytes(s string) (int64, error) {
	m, err := memoryFlag(s)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(m, 10, 64)
}
