package cgroupfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Frozen is a set of processes held in a freezer cgroup; Thaw lets them
// run again and moves them back where they were.
type Frozen struct {
	dir    string // the freezer cgroup
	parent string // where the processes go back to
	v2     bool
	Pids   []int // the processes frozen
}

// FreezePidns freezes every process in init's pid namespace except init
// itself (sandboxd, which keeps serving: a capture reads through it). It
// uses the cgroup v1 freezer where that controller is mounted, else a
// cgroup v2 child with cgroup.freeze. The processes are moved into a
// freezer cgroup named name below this process's own freezer cgroup;
// children forked while the move runs are found by scanning again until
// every process but init is frozen (a frozen process cannot fork).
//
// Commands sandboxd starts after the freeze are not frozen: the caller
// keeps new work out for the capture's duration where it must.
func FreezePidns(ctx context.Context, initPid int, name string) (*Frozen, error) {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", initPid))
	if err != nil {
		return nil, fmt.Errorf("unable to read the pid namespace of init %d: %w", initPid, err)
	}
	mounts, err := Mounts()
	if err != nil {
		return nil, err
	}
	own, err := Of(0)
	if err != nil {
		return nil, err
	}
	fz := &Frozen{}
	if mp, ok := mounts["freezer"]; ok {
		fz.parent = filepath.Join(mp, own["freezer"])
	} else if mp, ok := mounts[""]; ok {
		fz.parent, fz.v2 = filepath.Join(mp, own[""]), true
	} else {
		return nil, errors.New("unable to freeze: this host has neither a cgroup v1 freezer nor cgroup v2")
	}
	fz.dir = filepath.Join(fz.parent, name)
	if err := os.Mkdir(fz.dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("unable to create freezer cgroup: %w", err)
	}
	if fz.v2 {
		// A v2 process can only move within its own subtree's reach:
		// parent is this process's cgroup, the sandbox's processes were
		// born elsewhere (the sandbox's own v2 cgroup). Use theirs.
		cg, err := Of(initPid)
		if err == nil {
			if p, ok := cg[""]; ok {
				os.Remove(fz.dir)
				fz.parent = filepath.Join(mounts[""], p)
				fz.dir = filepath.Join(fz.parent, name)
				if err := os.Mkdir(fz.dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
					return nil, fmt.Errorf("unable to create freezer cgroup: %w", err)
				}
			}
		}
	}
	if err := fz.set(true); err != nil {
		fz.Thaw()
		return nil, err
	}
	moved := map[int]bool{}
	for round := 0; ; round++ {
		if err := ctx.Err(); err != nil {
			fz.Thaw()
			return nil, err
		}
		pids, err := pidsIn(ns, initPid)
		if err != nil {
			fz.Thaw()
			return nil, err
		}
		n := 0
		for _, p := range pids {
			if moved[p] {
				continue
			}
			// A process may exit between the scan and the move.
			if err := os.WriteFile(filepath.Join(fz.dir, "cgroup.procs"), []byte(strconv.Itoa(p)), 0); err != nil {
				if _, serr := os.Stat(fmt.Sprintf("/proc/%d", p)); serr != nil {
					continue
				}
				fz.Thaw()
				return nil, fmt.Errorf("unable to move pid %d into the freezer: %w", p, err)
			}
			moved[p] = true
			n++
		}
		if n == 0 && round > 0 {
			break
		}
		if round > 100 {
			fz.Thaw()
			return nil, errors.New("unable to freeze: processes keep appearing")
		}
		if err := fz.wait(ctx); err != nil {
			fz.Thaw()
			return nil, err
		}
	}
	for p := range moved {
		fz.Pids = append(fz.Pids, p)
	}
	return fz, nil
}

func (fz *Frozen) set(freeze bool) error {
	f, v := "freezer.state", "THAWED"
	if freeze {
		v = "FROZEN"
	}
	if fz.v2 {
		f, v = "cgroup.freeze", "0"
		if freeze {
			v = "1"
		}
	}
	if err := os.WriteFile(filepath.Join(fz.dir, f), []byte(v), 0); err != nil {
		return fmt.Errorf("unable to write %s=%s: %w", f, v, err)
	}
	return nil
}

// wait waits until the freezer cgroup reports every process frozen.
func (fz *Frozen) wait(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if fz.v2 {
			if n, ok := ReadKey(filepath.Join(fz.dir, "cgroup.events"), "frozen"); ok && n == 1 {
				return nil
			}
		} else if b, err := os.ReadFile(filepath.Join(fz.dir, "freezer.state")); err == nil && strings.TrimSpace(string(b)) == "FROZEN" {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("unable to freeze: the processes did not stop within 10s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// State reads the freezer state ("FROZEN", "FREEZING", "THAWED").
func (fz *Frozen) State() string {
	if fz.v2 {
		if n, ok := ReadKey(filepath.Join(fz.dir, "cgroup.events"), "frozen"); ok && n == 1 {
			return "FROZEN"
		}
		return "THAWED"
	}
	b, _ := os.ReadFile(filepath.Join(fz.dir, "freezer.state"))
	return strings.TrimSpace(string(b))
}

// Thaw lets the processes run, moves them back to the parent cgroup and
// removes the freezer cgroup. Safe to call more than once.
func (fz *Frozen) Thaw() error {
	if fz == nil || fz.dir == "" {
		return nil
	}
	err := fz.set(false)
	if b, rerr := os.ReadFile(filepath.Join(fz.dir, "cgroup.procs")); rerr == nil {
		for _, l := range strings.Fields(string(b)) {
			_ = os.WriteFile(filepath.Join(fz.parent, "cgroup.procs"), []byte(l), 0)
		}
	}
	for i := 0; i < 100; i++ {
		if rerr := os.Remove(fz.dir); rerr == nil || errors.Is(rerr, os.ErrNotExist) {
			fz.dir = ""
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
	return errors.Join(err, fmt.Errorf("unable to remove freezer cgroup %s", fz.dir))
}

// pidsIn lists the processes whose pid namespace is ns, except skip.
func pidsIn(ns string, skip int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == skip {
			continue
		}
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && l == ns {
			out = append(out, p)
		}
	}
	return out, nil
}
