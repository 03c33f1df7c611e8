package treesync

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"

	"github.com/bohica-labs/darkshell/protocol"
)

// walkers bounds the directories read at the same time by one walk.
const walkers = 8

// walkState is what a directory passes on to its entries.
type walkState struct {
	sel     bool // selected by the include patterns (or there are none)
	protect bool // receiver: kept by --delete
}

// walked is one entry a walk returned.
type walked struct {
	path  string
	fi    fs.FileInfo // lstat from ReadDir inside the os.Root
	isDir bool
	keep  bool // false: a directory only walked through
	st    walkState
}

// walkFn decides for the entry p (d from its parent's ReadDir; parent is
// the parent's state) whether the walk returns it, whether it descends
// into it (directories) and the state its entries get.
type walkFn func(p string, d fs.DirEntry, parent walkState) (keep, descend bool, st walkState, err error)

// walkTree lists the tree at r, reading directories in parallel (ReadDir
// in an os.Root lstats each entry, relative to the directory's handle).
// enter is called for a directory before its entries are decided (to load
// its .gitignore). Entries come back parents first, each directory's in
// lexical order, as fs.WalkDir would give them; a directory or entry that
// vanishes during the walk is left out.
func walkTree(ctx context.Context, r *os.Root, root walkState, enter func(dir string), fn walkFn) ([]walked, error) {
	var (
		mu      sync.Mutex
		results = map[string][]walked{}
		first   error
		count   atomic.Int64
		wg      sync.WaitGroup
		sem     = make(chan struct{}, walkers)
	)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return first != nil
	}
	var visit func(dir string, st walkState)
	visit = func(dir string, st walkState) {
		defer wg.Done()
		sem <- struct{}{}
		defer func() { <-sem }()
		if failed() {
			return
		}
		if err := ctx.Err(); err != nil {
			fail(err)
			return
		}
		if enter != nil {
			enter(dir)
		}
		ents, err := fs.ReadDir(r.FS(), dir)
		if err != nil {
			if dir != "." && errors.Is(err, fs.ErrNotExist) {
				return
			}
			fail(err)
			return
		}
		var kids []walked
		for _, d := range ents {
			p := d.Name()
			if dir != "." {
				p = dir + "/" + p
			}
			keep, descend, cst, err := fn(p, d, st)
			if err != nil {
				fail(err)
				return
			}
			if !keep && !descend {
				continue
			}
			fi, err := d.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				fail(err)
				return
			}
			if count.Add(1) > protocol.MaxSyncEntries {
				fail(fmt.Errorf("more than %d entries", protocol.MaxSyncEntries))
				return
			}
			isDir := fi.IsDir()
			kids = append(kids, walked{path: p, fi: fi, isDir: isDir, keep: keep, st: cst})
			if descend && isDir {
				wg.Add(1)
				go visit(p, cst)
			}
		}
		mu.Lock()
		results[dir] = kids
		mu.Unlock()
	}
	wg.Add(1)
	go visit(".", root)
	wg.Wait()
	if first != nil {
		return nil, first
	}
	out := make([]walked, 0, count.Load())
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
	return out, nil
}
