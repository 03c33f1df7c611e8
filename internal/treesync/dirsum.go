package treesync

import (
	"fmt"
	"io/fs"
	"strings"

	"github.com/bohica-labs/darkshell/protocol"
)

// Directory digests (spec.md 7.4, "Directory digests"): instead of its
// whole list, a sender whose peer speaks them sends one digest per
// directory of the list (protocol.DirDigest of its direct entries); the
// receiver digests the directories of its own walk, answers with a bitmap
// of those that differ, and the sender lists the entries of those only.
// An unchanged directory then costs 16 bytes on the wire and nothing on
// the receiver beyond its walk; a match means the receiver's directory
// holds exactly the sender's entries (name, type, mode, size, mtime,
// target), so there is nothing to send, set or delete in it.

// useDirSums reports whether a sender with opt sends directory digests:
// the peer speaks them, and what the receiver compares is what the digest
// covers (not content with Checksum; with Include the list holds
// directories only walked through, which the receiver's walk may not see
// the same way).
func useDirSums(opt Options) bool {
	return opt.DirSums && !opt.Checksum && len(opt.Include) == 0
}

// parentDir returns the directory of the sync path p ("." at the top),
// without allocating.
func parentDir(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return "."
}

func baseName(p string) string {
	return p[strings.LastIndexByte(p, '/')+1:]
}

// dirSumBatch bounds the encoded bytes of one sync-dir-sums frame.
const dirSumBatch = 512 << 10

// sendDirSums sends the digests of the directories of entries (the root
// and every directory, parents first), reads the receiver's want bitmap
// and returns the entries of the wanted directories, directory by
// directory in the order of the digests: the list the sender then sends.
func sendDirSums(c *conn, entries []protocol.SyncEntry) ([]protocol.SyncEntry, error) {
	idx := map[string]int{".": 0}
	dirs := []string{"."}
	for i := range entries {
		if entries[i].Type == protocol.SyncDir {
			idx[entries[i].Path] = len(dirs)
			dirs = append(dirs, entries[i].Path)
		}
	}
	dig := make([]protocol.DirDigest, len(dirs))
	parent := make([]int32, len(entries))
	for i := range entries {
		e := &entries[i]
		d, ok := idx[parentDir(e.Path)]
		if !ok {
			return nil, fmt.Errorf("sync list: %q listed without its directory", e.Path)
		}
		parent[i] = int32(d)
		switch e.Type {
		case protocol.SyncFile:
			dig[d].Add(protocol.DigestFile, baseName(e.Path), e.Mode, e.Size, e.MtimeNs, "")
		case protocol.SyncDir:
			dig[d].Add(protocol.DigestDir, baseName(e.Path), e.Mode, 0, e.MtimeNs, "")
		case protocol.SyncSymlink:
			dig[d].Add(protocol.DigestSymlink, baseName(e.Path), 0, 0, 0, e.Link)
		}
	}
	var buf []byte
	batch := make([]protocol.DirSum, 0, 1024)
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		var err error
		if buf, err = protocol.AppendSyncDirSums(buf[:0], batch); err != nil {
			return err
		}
		batch, size = batch[:0], 0
		return c.w.Frame(protocol.FrameSyncDirSums, buf)
	}
	for i, d := range dirs {
		batch = append(batch, protocol.DirSum{Path: d, Sum: dig[i].Sum()})
		size += len(d) + protocol.DirSumSize + 8
		if len(batch) == protocol.MaxSyncBatchB || size >= dirSumBatch {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if err := c.w.Frame(protocol.FrameSyncDirSumsEnd, nil); err != nil {
		return nil, err
	}
	f, err := c.next()
	if err != nil {
		return nil, err
	}
	if f.Type != protocol.FrameSyncWant {
		return nil, fmt.Errorf("%w: got %s, want %s", protocol.ErrUnexpectedFrame, f.Type, protocol.FrameSyncWant)
	}
	want, err := protocol.DecodeSyncWant(f.Payload, len(dirs))
	if err != nil {
		return nil, err
	}
	// The wanted directories' entries, each directory's in list order
	// (by name), directories in digest order.
	start := make([]int, len(dirs)+1)
	for i := range entries {
		if want[parent[i]] {
			start[parent[i]+1]++
		}
	}
	for d := range dirs {
		start[d+1] += start[d]
	}
	out := make([]protocol.SyncEntry, start[len(dirs)])
	for i := range entries {
		if d := parent[i]; want[d] {
			out[start[d]] = entries[i]
			start[d]++
		}
	}
	return out, nil
}

// digestGroup returns the digest of the receiver's directory whose walked
// entries are g, as the sender digests a directory of its list.
func (rc *receiver) digestGroup(g []walked) [protocol.DirSumSize]byte {
	var d protocol.DirDigest
	for i := range g {
		w := &g[i]
		name := baseName(w.path)
		switch m := w.fi.mode; {
		case m.IsRegular():
			d.Add(protocol.DigestFile, name, uint32(m.Perm()), w.fi.size, w.fi.mtime, "")
		case m.IsDir():
			d.Add(protocol.DigestDir, name, uint32(m.Perm()), 0, w.fi.mtime, "")
		case m&fs.ModeSymlink != 0:
			// A symlink whose target cannot be read never matches.
			kind, link := byte(protocol.DigestOther), ""
			if t, err := rc.r.Readlink(w.path); err == nil {
				kind, link = protocol.DigestSymlink, t
			}
			d.Add(kind, name, 0, 0, 0, link)
		default:
			d.Add(protocol.DigestOther, name, 0, 0, 0, "")
		}
	}
	return d.Sum()
}

// readDirSums reads the sender's directory digests (first is the first
// frame), compares them with the receiver's walk (scanned waits for it),
// answers with the want bitmap and fills rc.have with the entries of the
// directories that differ; a directory that matches takes no part in the
// rest of the sync (its entries are counted as unchanged).
func (rc *receiver) readDirSums(first protocol.Frame, scanned func() error) error {
	var dirs []protocol.DirSum
	seen := map[string]bool{}
	for f := first; ; {
		if f.Type == protocol.FrameSyncDirSumsEnd {
			break
		}
		if f.Type != protocol.FrameSyncDirSums {
			return fmt.Errorf("%w: got %s among directory digests", protocol.ErrUnexpectedFrame, f.Type)
		}
		ds, err := protocol.DecodeSyncDirSums(f.Payload)
		if err != nil {
			return err
		}
		for _, d := range ds {
			if len(dirs) >= protocol.MaxSyncEntries {
				return fmt.Errorf("%w: more than %d directory digests", protocol.ErrInvalid, protocol.MaxSyncEntries)
			}
			switch {
			case len(dirs) == 0 && d.Path != ".":
				return fmt.Errorf("%w: the first directory digest is %q, not the root's", protocol.ErrInvalid, d.Path)
			case len(dirs) > 0 && (seen[d.Path] || !seen[parentDir(d.Path)]):
				return fmt.Errorf("%w: directory digest %q twice or before its parent's", protocol.ErrInvalid, d.Path)
			}
			seen[d.Path] = true
			dirs = append(dirs, d)
		}
		var err2 error
		if f, err2 = rc.c.next(); err2 != nil {
			return err2
		}
	}
	if len(dirs) == 0 {
		return fmt.Errorf("%w: no directory digests", protocol.ErrInvalid)
	}
	if err := scanned(); err != nil {
		return err
	}
	// Only what the digests cover can be compared (see useDirSums).
	compare := rc.r != nil && !rc.opt.Checksum && len(rc.opt.Include) == 0
	want := make([]bool, len(dirs))
	matched := map[string]bool{}
	for i, d := range dirs {
		if g, ok := rc.groups[d.Path]; compare && ok && rc.digestGroup(g) == d.Sum {
			matched[d.Path] = true
			rc.matched += len(g)
			continue
		}
		want[i] = true
	}
	if err := rc.c.w.Frame(protocol.FrameSyncWant, protocol.AppendSyncWant(nil, want)); err != nil {
		return err
	}
	// A wanted directory in a matched one is a real directory of the
	// target with the sender's mode and mtime: its entries may follow
	// without it being listed.
	for i, d := range dirs {
		if !want[i] || d.Path == "." || !matched[parentDir(d.Path)] {
			continue
		}
		for _, w := range rc.groups[parentDir(d.Path)] {
			if w.path == d.Path && w.fi.mode.IsDir() {
				rc.implicit = append(rc.implicit, w)
				break
			}
		}
	}
	rc.buildHave(matched)
	return nil
}
