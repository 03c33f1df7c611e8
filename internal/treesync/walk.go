package treesync

import (
	"context"
	"io/fs"
	"os"
	"sync"
)

// walkers bounds the directories read at the same time by one walk.
const walkers = 8

// walkState is what a directory passes on to its entries.
type walkState struct {
	sel     bool // selected by the include patterns (or there are none)
	protect bool // receiver: kept by --delete
}

// finfo is what a walk learned of an entry from its lstat: a value, not
// an fs.FileInfo, so a 30k-entry tree costs no allocation per entry.
type finfo struct {
	mode  fs.FileMode // type bits and permissions
	size  int64
	mtime int64 // Unix nanoseconds
	key   sumKey
	keyOK bool // key is set (Linux)
}

func (f finfo) Mode() fs.FileMode { return f.mode }
func (f finfo) Size() int64       { return f.size }

// walked is one entry a walk returned.
type walked struct {
	path  string
	fi    finfo // lstat, relative to the parent directory's handle
	isDir bool
	keep  bool // false: a directory only walked through
	st    walkState
}

// walkFn decides for the entry p (name in its parent; isDir from the
// directory listing, or its lstat where the listing does not say; parent
// is the parent's state) whether the walk returns it, whether it descends
// into it (directories) and the state its entries get.
type walkFn func(p, name string, isDir bool, parent walkState) (keep, descend bool, st walkState, err error)

// enterFn is called for a directory that holds a .gitignore, with that
// file opened (without following a symlink), before its entries are
// decided.
type enterFn func(dir string, gitignore *os.File)

// walkTree lists the tree at r, reading directories in parallel. Entries
// come back parents first, each directory's in lexical order, as
// fs.WalkDir would give them; a directory or entry that vanishes during
// the walk is left out. Nothing outside r is reached: every directory is
// opened beneath r without following symlinks.
//
// With unsorted a directory's entries may come in any order (the receiver
// only indexes them).
func walkTree(ctx context.Context, r *os.Root, root walkState, enter enterFn, fn walkFn, unsorted bool) ([]walked, error) {
	groups, n, err := walkTreeOS(ctx, r, root, enter, fn, unsorted)
	if err != nil {
		return nil, err
	}
	return emitWalk(groups, n), nil
}

// walkGroups is walkTree returning each directory's entries ("." for the
// root's), not flattened, and the number of entries.
func walkGroups(ctx context.Context, r *os.Root, root walkState, enter enterFn, fn walkFn, unsorted bool) (map[string][]walked, int, error) {
	return walkTreeOS(ctx, r, root, enter, fn, unsorted)
}

// emitWalk flattens per-directory results, parents first.
func emitWalk(results map[string][]walked, count int) []walked {
	out := make([]walked, 0, count)
	var emit func(dir string)
	emit = func(dir string) {
		for _, k := range results[dir] {
			out = append(out, k)
			if k.isDir {
				emit(k.path)
			}
		}
	}
	emit(".")
	return out
}

// firstErr keeps the first error of a walk's goroutines.
type firstErr struct {
	mu  sync.Mutex
	err error
}

func (f *firstErr) set(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *firstErr) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *firstErr) failed() bool { return f.get() != nil }
