package treesync

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bohica-labs/darkshell/protocol"
)

// noOpenat2 is set once openat2 failed with ENOSYS or EPERM (an old
// kernel, a seccomp filter): directories are then opened through the
// os.Root, component by component.
var noOpenat2 atomic.Bool

// openDir opens the directory dir of the tree at r (whose handle is
// rootFd) for reading, beneath the root and following no symlink: with
// openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) in one call (a bare
// descriptor: an os.File costs a syscall and the poller's bookkeeping per
// directory), else through os.Root. done closes it.
func openDir(r *os.Root, rootFd int, dir string) (fd int, done func(), err error) {
	if !noOpenat2.Load() {
		fd, err := unix.Openat2(rootFd, dir, &unix.OpenHow{
			Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err == nil {
			return fd, func() { unix.Close(fd) }, nil
		}
		if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
			return -1, nil, &fs.PathError{Op: "openat2", Path: dir, Err: err}
		}
		noOpenat2.Store(true)
	}
	f, err := r.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return -1, nil, err
	}
	return int(f.Fd()), func() { f.Close() }, nil
}

// dirent is one name of a directory listing.
type dirent struct {
	path string // the directory's path, "/", the name (the name alone in the root)
	name string // the name: a suffix of path
	typ  uint8  // DT_*
}

// readNames lists the directory dir (open as fd) with getdents64 (no
// stat), without "." and "..", sorted by name if sorted. The paths of one
// directory share one allocation.
func readNames(fd int, buf []byte, dir string, sorted bool) ([]dirent, error) {
	prefix := 0
	if dir != "." {
		prefix = len(dir) + 1
	}
	type span struct {
		end int
		typ uint8
	}
	var arena []byte
	var spans []span
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			break
		}
		for off := 0; off+19 <= n; {
			reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
			if reclen < 19 || off+reclen > n {
				return nil, fmt.Errorf("bad directory record of %d bytes", reclen)
			}
			rec := buf[off+19 : off+reclen]
			if i := slices.Index(rec, 0); i >= 0 {
				rec = rec[:i]
			}
			typ := buf[off+18]
			off += reclen
			if len(rec) == 0 || (rec[0] == '.' && (len(rec) == 1 || (len(rec) == 2 && rec[1] == '.'))) {
				continue
			}
			if prefix > 0 {
				arena = append(arena, dir...)
				arena = append(arena, '/')
			}
			arena = append(arena, rec...)
			spans = append(spans, span{len(arena), typ})
			arena = append(arena, 0) // fstatat reads the name in place (lstatAtZ)
		}
	}
	all := string(arena)
	out := make([]dirent, len(spans))
	start := 0
	for i, sp := range spans {
		p := all[start:sp.end]
		out[i] = dirent{path: p, name: p[prefix:], typ: sp.typ}
		start = sp.end + 1
	}
	if sorted {
		slices.SortFunc(out, func(a, b dirent) int { return strings.Compare(a.name, b.name) })
	}
	return out, nil
}

// statInfo converts a stat result.
func statInfo(st *unix.Stat_t) finfo {
	m := st.Mode
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFREG:
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	default:
		mode |= fs.ModeIrregular
	}
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	mt := st.Mtim.Nano()
	return finfo{mode: mode, size: st.Size, mtime: mt, keyOK: true,
		key: sumKey{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: mt, ctime: st.Ctim.Nano()}}
}

// lstatAtZ lstats name in the directory fd; name must be followed by a
// NUL byte in memory (the names of readNames), so no copy is made per call.
func lstatAtZ(fd int, name string) (finfo, error) {
	var st unix.Stat_t
	for {
		err := fstatatZ(fd, unsafe.StringData(name), &st, unix.AT_SYMLINK_NOFOLLOW)
		runtime.KeepAlive(name)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return finfo{}, err
		}
		return statInfo(&st), nil
	}
}

// vanished reports an error that means the entry went away or changed
// type while the walk ran.
func vanished(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP)
}

// walkTreeOS reads directories with getdents64 and lstats (fstatat
// relative to the directory's handle) only the entries the walk keeps or
// descends into.
func walkTreeOS(ctx context.Context, r *os.Root, root walkState, enter enterFn, fn walkFn, unsorted bool) (map[string][]walked, int, error) {
	top, err := r.Open(".")
	if err != nil {
		return nil, 0, err
	}
	defer top.Close()
	rootFd := int(top.Fd())
	var (
		mu      sync.Mutex
		results = map[string][]walked{}
		first   firstErr
		count   atomic.Int64
		wg      sync.WaitGroup
		sem     = make(chan struct{}, walkers)
		bufs    = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}
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
		fd := rootFd
		if dir != "." {
			dfd, done, err := openDir(r, rootFd, dir)
			if err != nil {
				if vanished(err) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.EXDEV) {
					return
				}
				fail(err)
				return
			}
			defer done()
			fd = dfd
		}
		bp := bufs.Get().(*[]byte)
		ents, err := readNames(fd, *bp, dir, !unsorted)
		bufs.Put(bp)
		if err != nil {
			if dir != "." && vanished(err) {
				return
			}
			fail(fmt.Errorf("unable to read directory %q: %w", dir, err))
			return
		}
		if enter != nil {
			for _, d := range ents {
				if d.name == ".gitignore" {
					// O_NONBLOCK: a fifo planted as .gitignore must not hang the walk.
					if gfd, err := unix.Openat(fd, d.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0); err == nil {
						g := os.NewFile(uintptr(gfd), d.name)
						enter(dir, g)
						g.Close()
					}
					break
				}
			}
		}
		kids := make([]walked, 0, len(ents))
		for _, d := range ents {
			p := d.path
			var fi finfo
			statted := false
			isDir := d.typ == unix.DT_DIR
			if d.typ == unix.DT_UNKNOWN {
				if fi, err = lstatAtZ(fd, d.name); err != nil {
					if vanished(err) {
						continue
					}
					fail(err)
					return
				}
				statted, isDir = true, fi.mode.IsDir()
			}
			keep, descend, cst, err := fn(p, d.name, isDir, st)
			if err != nil {
				fail(err)
				return
			}
			if !keep && !descend {
				continue
			}
			if !statted {
				if fi, err = lstatAtZ(fd, d.name); err != nil {
					if vanished(err) {
						continue
					}
					fail(err)
					return
				}
			}
			if count.Add(1) > protocol.MaxSyncEntries {
				fail(fmt.Errorf("more than %d entries", protocol.MaxSyncEntries))
				return
			}
			isDir = fi.mode.IsDir()
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
	if err := first.get(); err != nil {
		return nil, 0, err
	}
	return results, int(count.Load()), nil
}
