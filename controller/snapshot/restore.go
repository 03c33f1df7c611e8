package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MaterializeOptions describe one restore into a fresh directory.
type MaterializeOptions struct {
	// Chown, when set, makes every entry owned by UID:GID.
	Chown    bool
	UID, GID int
	Progress *Progress
	Workers  int
}

// checkPath refuses tree paths that are not clean and relative (a tree
// comes from this host's store, but a damaged one must not write outside).
func checkPath(p string) error {
	if p == "." {
		return nil
	}
	if p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") || strings.Contains(p, "\x00") {
		return fmt.Errorf("bad path %q in the snapshot tree", p)
	}
	return nil
}

// Materialize writes snapshot s into dst, which must not exist, verifying
// every chunk's hash. On error dst may hold part of the tree: callers
// write into a staging directory and rename it into place only after
// Materialize succeeded.
func (r *Repo) Materialize(ctx context.Context, s *Snapshot, dst string, o MaterializeOptions) error {
	unlock, err := r.Store.Lock(false)
	if err != nil {
		return err
	}
	defer unlock()
	ents, err := r.loadTree(s)
	if err != nil {
		return err
	}
	if len(ents) == 0 || ents[0].Path != "." || ents[0].Type != TypeDir {
		return fmt.Errorf("snapshot %s: the tree does not start with its root directory", s.ID)
	}
	if err := os.Mkdir(dst, 0o700); err != nil {
		return fmt.Errorf("unable to create %s: %w", dst, err)
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer root.Close()
	var total int64
	for i := range ents {
		if err := checkPath(ents[i].Path); err != nil {
			return err
		}
		total += ents[i].Size
	}
	if p := o.Progress; p != nil {
		p.FilesTotal.Store(int64(len(ents)))
		p.BytesTotal.Store(total)
	}
	own := func(p string) error {
		if !o.Chown {
			return nil
		}
		return root.Lchown(p, o.UID, o.GID)
	}
	// Directories and symlinks first (in order: parents first), then the
	// files in parallel, then directory modes and mtimes, deepest first.
	var files []int
	for i := range ents {
		e := &ents[i]
		switch e.Type {
		case TypeDir:
			if e.Path != "." {
				if err := root.Mkdir(e.Path, 0o700); err != nil {
					return fmt.Errorf("unable to restore %s: %w", e.Path, err)
				}
			}
			if err := own(e.Path); err != nil {
				return err
			}
			o.Progress.add(1, 0)
		case TypeSymlink:
			if err := root.Symlink(e.Target, e.Path); err != nil {
				return fmt.Errorf("unable to restore %s: %w", e.Path, err)
			}
			if err := own(e.Path); err != nil {
				return err
			}
			ts := []unix.Timespec{unix.NsecToTimespec(e.MtimeNs), unix.NsecToTimespec(e.MtimeNs)}
			if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dst, e.Path), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("unable to restore %s: %w", e.Path, err)
			}
			o.Progress.add(1, 0)
		case TypeFile:
			files = append(files, i)
		default:
			return fmt.Errorf("snapshot %s: unknown entry type %q for %s", s.ID, e.Type, e.Path)
		}
	}
	err = forEach(ctx, o.Workers, files, func() func(int) error {
		return func(i int) error {
			if err := r.writeFile(root, &ents[i], &o); err != nil {
				return fmt.Errorf("unable to restore %s: %w", ents[i].Path, err)
			}
			return nil
		}
	})
	if err != nil {
		return err
	}
	for i := len(ents) - 1; i >= 0; i-- {
		e := &ents[i]
		if e.Type != TypeDir {
			continue
		}
		if err := root.Chmod(e.Path, fs.FileMode(e.Mode&0o777)|modeBits(e.Mode)); err != nil {
			return fmt.Errorf("unable to restore %s: %w", e.Path, err)
		}
		t := time.Unix(0, e.MtimeNs)
		if err := root.Chtimes(e.Path, t, t); err != nil {
			return fmt.Errorf("unable to restore %s: %w", e.Path, err)
		}
	}
	return nil
}

// futimens sets f's access and modification times to ns (utimensat on
// the descriptor, as futimens(3) does).
func futimens(f *os.File, ns int64) error {
	ts := [2]unix.Timespec{unix.NsecToTimespec(ns), unix.NsecToTimespec(ns)}
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, f.Fd(), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func modeBits(m uint32) fs.FileMode {
	var f fs.FileMode
	if m&unix.S_ISUID != 0 {
		f |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		f |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		f |= fs.ModeSticky
	}
	return f
}

func (r *Repo) writeFile(root *os.Root, e *Entry, o *MaterializeOptions) error {
	f, err := root.OpenFile(e.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	var n int64
	for _, h := range e.Chunks {
		data, err := r.Store.Get(h)
		if err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			return err
		}
		n += int64(len(data))
		if o.Progress != nil {
			o.Progress.BytesDone.Add(int64(len(data)))
		}
	}
	if n != e.Size {
		return fmt.Errorf("chunks give %d bytes, the tree says %d", n, e.Size)
	}
	// Owner, mode and times through the open file (no path lookups); the
	// mode after chown, which clears setuid/setgid.
	if o.Chown {
		if err := f.Chown(o.UID, o.GID); err != nil {
			return err
		}
	}
	if err := f.Chmod(fs.FileMode(e.Mode&0o777) | modeBits(e.Mode)); err != nil {
		return err
	}
	if err := futimens(f, e.MtimeNs); err != nil {
		return fmt.Errorf("set the mtime: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	o.Progress.add(1, 0)
	return nil
}

// Problem is one finding of Verify.
type Problem struct {
	Snapshot string `json:"snapshot"`
	Chunk    string `json:"chunk,omitempty"`
	Path     string `json:"path,omitempty"`
	Error    string `json:"error"`
}

// VerifyResult is what Verify checked and found.
type VerifyResult struct {
	Snapshots int       `json:"snapshots"`
	Chunks    int       `json:"chunks"`
	Bytes     int64     `json:"bytes"`
	Problems  []Problem `json:"problems"`
}

// Verify reads every chunk the snapshots name (tree and content),
// decompresses it and checks its hash, and checks that each file's chunks
// add up to its size. A chunk shared by several snapshots is read once.
func (r *Repo) Verify(ctx context.Context, snaps []*Snapshot, p *Progress) (*VerifyResult, error) {
	unlock, err := r.Store.Lock(false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	res := &VerifyResult{Problems: []Problem{}}
	bad := map[string]string{} // chunk -> error
	size := map[string]int64{} // chunk -> plain size
	check := func(h string) error {
		if _, ok := size[h]; ok {
			return nil
		}
		if e, ok := bad[h]; ok {
			return errors.New(e)
		}
		b, err := r.Store.Get(h)
		if err != nil {
			bad[h] = err.Error()
			return err
		}
		size[h] = int64(len(b))
		res.Chunks++
		res.Bytes += int64(len(b))
		if p != nil {
			p.BytesDone.Add(int64(len(b)))
		}
		return nil
	}
	for _, s := range snaps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res.Snapshots++
		for _, h := range s.Tree {
			if err := check(h); err != nil {
				res.Problems = append(res.Problems, Problem{Snapshot: s.ID, Chunk: h, Error: "tree: " + err.Error()})
			}
		}
		for _, h := range s.Layer {
			if err := check(h); err != nil {
				res.Problems = append(res.Problems, Problem{Snapshot: s.ID, Chunk: h, Error: "layer: " + err.Error()})
			}
		}
		ents, err := r.loadTree(s)
		if err != nil {
			continue // reported above
		}
		if lents, err := r.loadLayer(s); err == nil {
			ents = append(ents, lents...)
		}
		for i := range ents {
			e := &ents[i]
			if err := checkPath(e.Path); err != nil {
				res.Problems = append(res.Problems, Problem{Snapshot: s.ID, Path: e.Path, Error: err.Error()})
			}
			var n int64
			ok := true
			for _, h := range e.Chunks {
				if err := check(h); err != nil {
					res.Problems = append(res.Problems, Problem{Snapshot: s.ID, Chunk: h, Path: e.Path, Error: err.Error()})
					ok = false
					continue
				}
				n += size[h]
			}
			if ok && e.Type == TypeFile && n != e.Size {
				res.Problems = append(res.Problems, Problem{Snapshot: s.ID, Path: e.Path, Error: fmt.Sprintf("chunks give %d bytes, the tree says %d", n, e.Size)})
			}
			if p != nil {
				p.FilesDone.Add(1)
			}
		}
	}
	return res, nil
}

// GCResult is what a collection removed and kept.
type GCResult struct {
	Removed      int   `json:"removed"`
	RemovedBytes int64 `json:"removed_bytes"`
	Kept         int   `json:"kept"`
	KeptBytes    int64 `json:"kept_bytes"`
}

// GC removes every chunk no snapshot names, and stale temporary files.
// It holds the store's lock exclusively: a capture in progress (shared
// lock) finishes first, or starts after. A snapshot whose tree cannot be
// read stops the collection (its chunks are unknown, none may go).
func (r *Repo) GC(ctx context.Context) (*GCResult, error) {
	unlock, err := r.Store.Lock(true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	snaps, err := r.List("")
	if err != nil {
		return nil, err
	}
	live := map[string]bool{}
	for _, s := range snaps {
		ents, err := r.loadTree(s)
		if err != nil {
			return nil, fmt.Errorf("garbage collection stopped, nothing removed: %w (run `darkshell sandbox snapshot verify`)", err)
		}
		lents, err := r.loadLayer(s)
		if err != nil {
			return nil, fmt.Errorf("garbage collection stopped, nothing removed: %w (run `darkshell sandbox snapshot verify`)", err)
		}
		for _, h := range append(slices.Clone(s.Tree), s.Layer...) {
			live[h] = true
		}
		for _, e := range append(ents, lents...) {
			for _, h := range e.Chunks {
				live[h] = true
			}
		}
	}
	res := &GCResult{}
	var dead []string
	err = r.Store.each(func(h string, n int64) error {
		if live[h] {
			res.Kept++
			res.KeptBytes += n
			return nil
		}
		dead = append(dead, h)
		res.Removed++
		res.RemovedBytes += n
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(dead)
	for _, h := range dead {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := os.Remove(r.Store.path(h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("unable to remove chunk %s: %w", h, err)
		}
	}
	// No writer holds the lock: every temporary file is a leftover.
	tmp := filepath.Join(r.Store.dir, "tmp")
	if ents, err := os.ReadDir(tmp); err == nil {
		for _, e := range ents {
			os.Remove(filepath.Join(tmp, e.Name()))
		}
	}
	return res, nil
}
