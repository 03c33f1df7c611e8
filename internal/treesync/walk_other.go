//go:build !linux

package treesync

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/bohica-labs/darkshell/protocol"
)

// walkTreeOS reads directories through the os.Root (ReadDir in an os.Root
// lstats each entry, relative to the directory's handle).
func walkTreeOS(ctx context.Context, r *os.Root, root walkState, enter enterFn, fn walkFn, _ bool) (map[string][]walked, int, error) {
	var (
		mu      sync.Mutex
		results = map[string][]walked{}
		first   firstErr
		count   atomic.Int64
		wg      sync.WaitGroup
		sem     = make(chan struct{}, walkers)
	)
	fail, failed := first.set, first.failed
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
		ents, err := fs.ReadDir(r.FS(), dir)
		if err != nil {
			if dir != "." && errors.Is(err, fs.ErrNotExist) {
				return
			}
			fail(err)
			return
		}
		if enter != nil {
			for _, d := range ents {
				if d.Name() == ".gitignore" {
					if g, err := r.OpenFile(path.Join(dir, ".gitignore"), os.O_RDONLY|syscall.O_NOFOLLOW, 0); err == nil {
						enter(dir, g)
						g.Close()
					}
					break
				}
			}
		}
		var kids []walked
		for _, d := range ents {
			p := d.Name()
			if dir != "." {
				p = dir + "/" + p
			}
			keep, descend, cst, err := fn(p, d.Name(), d.IsDir(), st)
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
			kids = append(kids, walked{path: p, fi: infoOf(fi), isDir: isDir, keep: keep, st: cst})
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
	if err := first.get(); err != nil {
		return nil, 0, err
	}
	return results, int(count.Load()), nil
}

// infoOf converts an lstat result.
func infoOf(fi fs.FileInfo) finfo {
	f := finfo{mode: fi.Mode(), size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	f.key, f.keyOK = keyOf(fi)
	return f
}
