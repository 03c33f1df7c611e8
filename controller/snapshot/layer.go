package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/restic/chunker"
	"golang.org/x/sys/unix"
)

// LayerSource is a container's writable layer for Capture: its root file
// system mounted at Root, and the paths the engine says differ from the
// image (absolute inside the container). The paths come from the sandbox:
// each is checked, and read through an os.Root of Root, never following
// a symlink out of it.
type LayerSource struct {
	Root             string
	Changed, Deleted []string
	// Skip are container paths left out with everything under them
	// (the workspace, which the record's tree holds).
	Skip []string
}

// LayerPath turns an absolute container path into a clean tree path
// ("/etc/x" -> "etc/x"), refusing anything that is not.
func LayerPath(p string) (string, error) {
	rel, ok := strings.CutPrefix(p, "/")
	if !ok || rel == "" || path.Clean(rel) != rel || rel == ".." || strings.HasPrefix(rel, "../") || strings.Contains(rel, "\x00") {
		return "", fmt.Errorf("bad container path %q (want a clean absolute path)", p)
	}
	return rel, checkPath(rel)
}

func skipped(rel string, skip []string) bool {
	for _, s := range skip {
		s = strings.Trim(s, "/")
		if rel == s || strings.HasPrefix(rel, s+"/") {
			return true
		}
	}
	return false
}

// captureLayer stores src as rec's layer tree.
func (r *Repo) captureLayer(ctx context.Context, src *LayerSource, rec *Snapshot, added *atomic.Int64, distinct map[string]bool) error {
	root, err := os.OpenRoot(src.Root)
	if err != nil {
		return fmt.Errorf("unable to open %s: %w", src.Root, err)
	}
	defer root.Close()
	byPath := map[string]Entry{}
	for _, p := range src.Deleted {
		rel, err := LayerPath(p)
		if err != nil {
			return err
		}
		if !skipped(rel, src.Skip) {
			byPath[rel] = Entry{Path: rel, Type: TypeDeleted}
		}
	}
	for _, p := range src.Changed {
		rel, err := LayerPath(p)
		if err != nil {
			return err
		}
		if skipped(rel, src.Skip) {
			continue
		}
		fi, err := root.Lstat(rel)
		if errors.Is(err, fs.ErrNotExist) {
			continue // gone since the engine listed it
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		e := Entry{Path: rel, Mode: uint32(fi.Mode().Perm()), MtimeNs: fi.ModTime().UnixNano()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			e.UID, e.GID = int(st.Uid), int(st.Gid)
			e.Mode = st.Mode & 0o7777
		}
		switch {
		case fi.IsDir():
			e.Type = TypeDir
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Type = TypeSymlink
			if e.Target, err = root.Readlink(rel); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			e.Type, e.Size = TypeFile, fi.Size()
		default:
			continue // sockets, fifos, devices
		}
		byPath[rel] = e
	}
	ents := make([]Entry, 0, len(byPath))
	for _, e := range byPath {
		ents = append(ents, e)
	}
	// Sorted, parents come before their children.
	slices.SortFunc(ents, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	buf := make([]byte, MaxChunk)
	ch := chunker.NewWithBoundaries(nil, Pol, MinChunk, MaxChunk)
	var tree strings.Builder
	jw := json.NewEncoder(&tree)
	for i := range ents {
		e := &ents[i]
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.Type == TypeFile && e.Size > 0 {
			if err := r.chunkFile(root, e, ch, buf, added, nil); err != nil {
				return fmt.Errorf("/%s: %w", e.Path, err)
			}
			for _, c := range e.Chunks {
				distinct[c] = true
			}
		}
		if err := jw.Encode(e); err != nil {
			return err
		}
	}
	if len(ents) == 0 {
		return nil
	}
	if rec.Layer, err = r.putTree([]byte(tree.String()), added, distinct); err != nil {
		return err
	}
	rec.LayerEntries = len(ents)
	return nil
}

// ApplyLayer writes snapshot s's layer into root, the root file system of
// a container made afresh from its image that has not started: entries
// replace what is at their path, deletions remove it, every chunk's hash
// is verified. Every path is resolved inside root (os.Root): a symlink in
// the image cannot lead a write out of it.
func (r *Repo) ApplyLayer(ctx context.Context, s *Snapshot, dir string) error {
	unlock, err := r.Store.Lock(false)
	if err != nil {
		return err
	}
	defer unlock()
	ents, err := r.loadLayer(s)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	for i := range ents {
		if err := checkPath(ents[i].Path); err != nil || ents[i].Path == "." {
			return fmt.Errorf("snapshot %s: bad layer path %q", s.ID, ents[i].Path)
		}
	}
	for i := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		e := &ents[i]
		if err := r.applyEntry(root, e); err != nil {
			return fmt.Errorf("unable to restore /%s: %w", e.Path, err)
		}
	}
	// Directory modes and times last, deepest first.
	for i := len(ents) - 1; i >= 0; i-- {
		e := &ents[i]
		if e.Type != TypeDir {
			continue
		}
		if err := root.Chmod(e.Path, fs.FileMode(e.Mode&0o777)|modeBits(e.Mode)); err != nil {
			return fmt.Errorf("unable to restore /%s: %w", e.Path, err)
		}
		t := time.Unix(0, e.MtimeNs)
		if err := root.Chtimes(e.Path, t, t); err != nil {
			return fmt.Errorf("unable to restore /%s: %w", e.Path, err)
		}
	}
	return nil
}

func (r *Repo) applyEntry(root *os.Root, e *Entry) error {
	fi, err := root.Lstat(e.Path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if e.Type == TypeDir && exists && fi.IsDir() {
		return root.Lchown(e.Path, e.UID, e.GID)
	}
	if exists {
		if err := root.RemoveAll(e.Path); err != nil {
			return err
		}
	}
	switch e.Type {
	case TypeDeleted:
		return nil
	case TypeDir:
		if err := root.Mkdir(e.Path, 0o700); err != nil {
			return err
		}
		return root.Lchown(e.Path, e.UID, e.GID)
	case TypeSymlink:
		if err := root.Symlink(e.Target, e.Path); err != nil {
			return err
		}
		if err := root.Lchown(e.Path, e.UID, e.GID); err != nil {
			return err
		}
		// The time through the parent's descriptor, not following the link.
		parent, err := root.Open(path.Dir(e.Path))
		if err != nil {
			return err
		}
		defer parent.Close()
		ts := []unix.Timespec{unix.NsecToTimespec(e.MtimeNs), unix.NsecToTimespec(e.MtimeNs)}
		return unix.UtimesNanoAt(int(parent.Fd()), path.Base(e.Path), ts, unix.AT_SYMLINK_NOFOLLOW)
	case TypeFile:
		return r.writeFile(root, e, &MaterializeOptions{Chown: true, UID: e.UID, GID: e.GID})
	}
	return fmt.Errorf("unknown entry type %q", e.Type)
}
