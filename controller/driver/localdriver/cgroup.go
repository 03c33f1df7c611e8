package localdriver

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bohica-labs/darkshell/controller/cgroupfs"
	"github.com/bohica-labs/darkshell/controller/driver"
)

// cgroups of one sandbox. This host kind has a hybrid layout (see
// kernel-notes §4): limits are enforced through the v1 controllers (pids,
// memory, cpu); the v2 (unified) hierarchy only gives membership, which the
// init process joins atomically with CLONE_INTO_CGROUP (and eBPF filtering
// by cgroup id later). Each cgroup is created below the controller's own
// cgroup in that hierarchy, so limits of the environment still apply.
type cgroups struct {
	V2    string   // unified cgroup dir, "" if there is none
	V1    []string // v1 cgroup dirs (pids, memory, cpu as used)
	ctrls []string // their controllers
	// Workload are v1 cgroups below V1 dirs that every command sandboxd
	// starts is born in (pids: the limit binds the workload while sandboxd
	// keeps pidsHeadroom for its own threads).
	Workload []string
	Applied  []string // limits applied, for the record and the hello
}

// pidsHeadroom is how many tasks (threads count) sandboxd may use beyond
// the workload's --pids-limit: its Go runtime dies if it cannot make a thread.
const pidsHeadroom = 64

// cgroupName is unique per installation and sandbox.
func cgroupName(home, name string) string {
	h := sha256.Sum256([]byte(home))
	return "darkshell-" + hex.EncodeToString(h[:4]) + "-" + name
}

// makeCgroups creates the sandbox's cgroups and writes the limits. On error
// nothing is left behind.
func makeCgroups(home, name string, o driver.CreateOptions) (cg *cgroups, err error) {
	mounts, err := cgroupfs.Mounts()
	if err != nil {
		return nil, err
	}
	own, err := cgroupfs.Of(0)
	if err != nil {
		return nil, err
	}
	cg = &cgroups{}
	defer func() {
		if err != nil {
			cg.remove()
			cg = nil
		}
	}()
	dir := func(ctrl string) (string, bool) {
		mp, ok := mounts[ctrl]
		if !ok {
			return "", false
		}
		return filepath.Join(mp, own[ctrl], cgroupName(home, name)), true
	}
	mk := func(d string) error {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create cgroup %s: %w", d, err)
		}
		return nil
	}
	// The unified cgroup only gives membership (no limit depends on it):
	// where it cannot be made (a read-only cgroupfs), go on without it.
	if d, ok := dir(""); ok && mk(d) == nil {
		cg.V2 = d
	}
	need := func(ctrl, flag string) (string, error) {
		d, ok := dir(ctrl)
		if !ok {
			return "", fmt.Errorf("cannot enforce %s: this host has no cgroup v1 %s controller (cgroup v2 limits are not implemented yet)", flag, ctrl)
		}
		if err := mk(d); err != nil {
			return "", err
		}
		cg.V1 = append(cg.V1, d)
		cg.ctrls = append(cg.ctrls, ctrl)
		return d, nil
	}
	if o.PidsLimit < 0 {
		return cg, fmt.Errorf("--pids-limit %d: must be positive", o.PidsLimit)
	}
	if o.PidsLimit > 0 {
		d, err := need("pids", "--pids-limit")
		if err != nil {
			return cg, err
		}
		if err := writeCg(d, "pids.max", strconv.FormatInt(o.PidsLimit+pidsHeadroom, 10)); err != nil {
			return cg, err
		}
		w := filepath.Join(d, "workload")
		if err := mk(w); err != nil {
			return cg, err
		}
		cg.Workload = append(cg.Workload, w)
		if err := writeCg(w, "pids.max", strconv.FormatInt(o.PidsLimit, 10)); err != nil {
			return cg, err
		}
		cg.Applied = append(cg.Applied, fmt.Sprintf("pids.max=%d", o.PidsLimit))
	}
	if o.MemoryLimit != "" {
		n, err := parseSize(o.MemoryLimit)
		if err != nil {
			return cg, fmt.Errorf("--memory-limit: %w", err)
		}
		d, err := need("memory", "--memory-limit")
		if err != nil {
			return cg, err
		}
		v := strconv.FormatInt(n, 10)
		if err := writeCg(d, "memory.limit_in_bytes", v); err != nil {
			return cg, err
		}
		// Memory plus swap, where the kernel accounts swap: no escape into swap.
		if _, err := os.Stat(filepath.Join(d, "memory.memsw.limit_in_bytes")); err == nil {
			if err := writeCg(d, "memory.memsw.limit_in_bytes", v); err != nil {
				return cg, err
			}
		}
		cg.Applied = append(cg.Applied, "memory.limit="+v)
	}
	if o.CPULimit != "" {
		cpus, err := strconv.ParseFloat(o.CPULimit, 64)
		if err != nil || cpus <= 0 || math.IsInf(cpus, 0) || cpus > 4096 {
			return cg, fmt.Errorf("--cpu-limit %q: want a positive number of CPUs, e.g. 0.5 or 2", o.CPULimit)
		}
		d, err := need("cpu", "--cpu-limit")
		if err != nil {
			return cg, err
		}
		const period = 100000
		quota := int64(cpus * period)
		if quota < 1000 {
			quota = 1000
		}
		if err := writeCg(d, "cpu.cfs_period_us", strconv.Itoa(period)); err != nil {
			return cg, err
		}
		if err := writeCg(d, "cpu.cfs_quota_us", strconv.FormatInt(quota, 10)); err != nil {
			return cg, err
		}
		cg.Applied = append(cg.Applied, fmt.Sprintf("cpu.quota=%dus/%dus", quota, period))
	}
	return cg, nil
}

func writeCg(dir, file, v string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0); err != nil {
		return fmt.Errorf("cgroup %s: write %s=%s: %w", dir, file, v, err)
	}
	return nil
}

// join moves pid (all its threads) into the v1 cgroups.
func (cg *cgroups) join(pid int) error {
	for _, d := range cg.V1 {
		if err := writeCg(d, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

// report lists the cgroup facts for sandboxd's hello.
func (cg *cgroups) report() []string {
	var r []string
	if cg.V2 != "" {
		r = append(r, "cgroup-v2")
	}
	if len(cg.ctrls) > 0 {
		r = append(r, "cgroup-v1:"+strings.Join(cg.ctrls, "+"))
	}
	return append(r, cg.Applied...)
}

// removeCgroups removes cgroup dirs, retrying briefly while the last
// processes are being torn down.
func removeCgroups(dirs []string) error {
	var errs []error
	for _, d := range dirs {
		var err error
		for i := 0; i < 100; i++ {
			if err = os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// dirs lists every cgroup dir, children first (the removal order).
func (cg *cgroups) dirs() []string {
	var d []string
	d = append(d, cg.Workload...)
	d = append(d, cg.V1...)
	if cg.V2 != "" {
		d = append(d, cg.V2)
	}
	return d
}

func (cg *cgroups) remove() error {
	if cg == nil {
		return nil
	}
	return removeCgroups(cg.dirs())
}

// parseSize parses a byte size: 1048576, 512K, 64M, 1.5G, 2Gi, 1T (powers of 1024).
func parseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mult := 1.0
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult != 1 {
			t = t[:len(t)-1]
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || f*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("bad size %q: want e.g. 512M or 2G", s)
	}
	n := int64(f * mult)
	if n < 4<<20 {
		return 0, fmt.Errorf("size %q is below the 4M minimum", s)
	}
	return n, nil
}

// usage reads the sandbox's cgroups (v1 memory and pids dirs, as recorded).
func usage(x Extra) *driver.Resources {
	r := &driver.Resources{PidsLimit: x.PidsLimit}
	cgroupfs.FillUsage(r, x.Cgroups...)
	return r
}
