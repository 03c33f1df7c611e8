//go:build linux

package treesync

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bohica-labs/darkshell/protocol"
)

// A small file is placed with raw system calls on a cached directory
// descriptor (an os.File per call costs four fcntl and an epoll_ctl, and
// os.Root resolves and re-checks names): the file is made nameless with
// O_TMPFILE, written, given its mode and mtime on the descriptor and linked
// under its name with linkat, so it gets its name atomically and complete,
// without a temporary name or a rename. Where linkat cannot place it (the
// name exists: linkat never replaces) it is linked under a temporary name
// and renamed over; where O_TMPFILE is refused the old way (temporary file,
// rename) is used. An interrupt leaves no partial file under any name of
// the tree: a nameless file vanishes with its descriptor.

// fdDirs caches descriptors of the target's directories, opened through
// the target's os.Root (confined: no symlink is followed on the way).
type fdDirs struct {
	top *os.Root
	m   map[string]*os.File
}

func (d *fdDirs) get(dir string) (int, error) {
	if f, ok := d.m[dir]; ok {
		return int(f.Fd()), nil
	}
	if len(d.m) >= maxCachedDirs {
		d.close()
	}
	f, err := d.top.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return -1, err
	}
	if d.m == nil {
		d.m = map[string]*os.File{}
	}
	d.m[dir] = f
	return int(f.Fd()), nil
}

func (d *fdDirs) close() {
	for k, f := range d.m {
		f.Close()
		delete(d.m, k)
	}
}

// placeMode is how this process places files; it degrades once a way is
// refused (by the file system, the kernel or the lack of a capability).
const (
	placeTmpfileEmpty = iota // O_TMPFILE, linkat(fd, "", AT_EMPTY_PATH)
	placeTmpfileProc         // O_TMPFILE, linkat("/proc/self/fd/N", AT_SYMLINK_FOLLOW)
	placeTempRename          // a temporary name, renamed into place
)

var placeMode atomic.Int32

// placer writes small files into place (see above).
type placer struct {
	fds  fdDirs
	dirs dirCache // for place, the portable way
	// umask is this process's file mode creation mask when it could be
	// read, else -1; plainDirs caches which directories have no default
	// ACL (see exactMode).
	umask     int
	plainDirs map[string]bool
	// createMu, when set, is held while a file is created (see creating).
	createMu *sync.Mutex
}

// creating runs the system call that makes a new inode, holding createMu
// (shared by a receiver's placers) if set. Creations that run at once in
// one ext4 block group (a tree's files mostly share one) look for the
// same free inode; all but one find it taken and search again with the
// group locked, while the directory's lock holders spin; without a journal
// each search also steps over every inode freed in the last 30 s. With six
// at once, spinning on the directory lock alone was about 9 % of sandboxd's
// CPU in a profile of a GOROOT upload; one at a time, as tar -x creates,
// it is gone (the inode search itself remains, as it does for tar).
func (p *placer) creating(f func() (int, error)) (int, error) {
	if p.createMu == nil {
		return f()
	}
	p.createMu.Lock()
	defer p.createMu.Unlock()
	return f()
}

func newPlacer(top *os.Root) *placer {
	return &placer{fds: fdDirs{top: top}, dirs: dirCache{top: top}, umask: readUmask()}
}

// readUmask returns the process's umask (from /proc/self/status; reading
// it with umask(2) would change it for a moment for every thread), or -1.
func readUmask() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil || m > 0o777 {
				return -1
			}
			return int(m)
		}
	}
	return -1
}

// maxPlainDirs bounds the directories whose ACL state a placer remembers.
const maxPlainDirs = 1024

// exactMode reports whether a file created in dir (open on dfd) with
// mode perm gets exactly perm, so that no fchmod is needed: the umask
// takes none of perm's bits and dir has no default ACL (which replaces
// the umask). Unknown means no.
func (p *placer) exactMode(dir string, dfd int, perm uint32) bool {
	if p.umask < 0 || perm&uint32(p.umask) != 0 {
		return false
	}
	plain, ok := p.plainDirs[dir]
	if !ok {
		_, err := unix.Fgetxattr(dfd, "system.posix_acl_default", nil)
		// ENODATA: no default ACL; EOPNOTSUPP: no ACLs on this file system.
		plain = errors.Is(err, unix.ENODATA) || errors.Is(err, unix.EOPNOTSUPP)
		if p.plainDirs == nil || len(p.plainDirs) >= maxPlainDirs {
			p.plainDirs = map[string]bool{}
		}
		p.plainDirs[dir] = plain
	}
	return plain
}

func (p *placer) close() {
	p.fds.close()
	p.dirs.close()
}

func (p *placer) place(e *protocol.SyncEntry, data []byte) error {
	return p.placeAt(path.Dir(e.Path), false, e, data)
}

// placeAt places e, whose directory is at dir. In a fresh directory (one
// staged by the receiver: it gets its name once complete) the file is
// created under its name directly, the cheapest way.
func (p *placer) placeAt(dir string, fresh bool, e *protocol.SyncEntry, data []byte) error {
	if fresh {
		return p.placeFresh(dir, e, data)
	}
	if placeMode.Load() == placeTempRename {
		return p.placeTemp(dir, e, data)
	}
	name := path.Base(e.Path)
	dfd, err := p.fds.get(dir)
	if err != nil {
		return fmt.Errorf("unable to open directory %q: %w", path.Dir(e.Path), err)
	}
	mode := e.Mode & 0o777
	fd, err := p.creating(func() (int, error) {
		return openRetry(dfd, ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, mode)
	})
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
			placeMode.Store(placeTempRename)
			return p.placeTemp(dir, e, data)
		}
		return fmt.Errorf("unable to create %q: %w", e.Path, err)
	}
	defer unix.Close(fd)
	if err := fillFD(fd, e, data, !p.exactMode(dir, dfd, mode)); err != nil {
		return err
	}
	for {
		m := placeMode.Load()
		switch m {
		case placeTmpfileEmpty:
			err = unix.Linkat(fd, "", dfd, name, unix.AT_EMPTY_PATH)
		case placeTmpfileProc:
			err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), dfd, name, unix.AT_SYMLINK_FOLLOW)
		default:
			return p.placeTemp(dir, e, data)
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EEXIST):
			return linkOver(fd, m, dfd, e, name)
		case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) ||
			errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP):
			// AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH (before Linux
			// 6.10); /proc may be missing: try the next way.
			placeMode.CompareAndSwap(m, m+1)
		default:
			return fmt.Errorf("unable to put %q in place: %w", e.Path, err)
		}
	}
}

// linkOver links the nameless file fd under a temporary name and renames
// it over the existing name.
func linkOver(fd int, m int32, dfd int, e *protocol.SyncEntry, name string) error {
	tmp := tempName()
	var err error
	if m == placeTmpfileEmpty {
		err = unix.Linkat(fd, "", dfd, tmp, unix.AT_EMPTY_PATH)
	} else {
		err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), dfd, tmp, unix.AT_SYMLINK_FOLLOW)
	}
	if err == nil {
		if err = unix.Renameat(dfd, tmp, dfd, name); err == nil {
			return nil
		}
		_ = unix.Unlinkat(dfd, tmp, 0)
	}
	return fmt.Errorf("unable to put %q in place: %w", e.Path, err)
}

// placeFresh creates e under its name in dir, a staged directory nobody
// else writes to, and writes it.
func (p *placer) placeFresh(dir string, e *protocol.SyncEntry, data []byte) error {
	dfd, err := p.fds.get(dir)
	if err != nil {
		return fmt.Errorf("unable to open directory %q: %w", path.Dir(e.Path), err)
	}
	// Created with its mode where that is the mode it gets (no fchmod);
	// the directory is staged, 0700, so nobody else can open it meanwhile.
	mode := e.Mode & 0o777
	exact := p.exactMode(dir, dfd, mode)
	create := uint32(0o600)
	if exact {
		create = mode
	}
	fd, err := p.creating(func() (int, error) {
		return openRetry(dfd, path.Base(e.Path), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, create)
	})
	if err != nil {
		return fmt.Errorf("unable to create %q: %w", e.Path, err)
	}
	err = fillFD(fd, e, data, !exact)
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	return err
}

// placeTemp writes data to a temporary file next to e's path (in dir) and
// renames it into place, on raw descriptors.
func (p *placer) placeTemp(dir string, e *protocol.SyncEntry, data []byte) error {
	name := path.Base(e.Path)
	dfd, err := p.fds.get(dir)
	if err != nil {
		return fmt.Errorf("unable to open directory %q: %w", path.Dir(e.Path), err)
	}
	tmp := tempName()
	fd, err := p.creating(func() (int, error) {
		return openRetry(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	})
	if err != nil {
		return fmt.Errorf("unable to create a temporary file for %q: %w", e.Path, err)
	}
	err = fillFD(fd, e, data, true)
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err == nil {
		if err = unix.Renameat(dfd, tmp, dfd, name); err == nil {
			return nil
		}
	}
	_ = unix.Unlinkat(dfd, tmp, 0)
	return fmt.Errorf("unable to put %q in place: %w", e.Path, err)
}

func openRetry(dfd int, name string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat(dfd, name, flags, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// fillFD writes data to fd and gives it e's mtime and, with chmod, e's
// mode (needed where the creation mode went through the umask or a
// default ACL, see placer.exactMode).
func fillFD(fd int, e *protocol.SyncEntry, data []byte, chmod bool) error {
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("unable to write %q: %w", e.Path, err)
		}
		data = data[n:]
	}
	if chmod {
		if err := unix.Fchmod(fd, e.Mode&0o777); err != nil {
			return fmt.Errorf("unable to set the mode of %q: %w", e.Path, err)
		}
	}
	ts := [2]unix.Timespec{unix.NsecToTimespec(e.MtimeNs), unix.NsecToTimespec(e.MtimeNs)}
	// futimens(fd): utimensat with a NULL path acts on fd itself.
	if _, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0); errno != 0 {
		return fmt.Errorf("unable to set the mtime of %q: %w", e.Path, errno)
	}
	return nil
}

// smallFiles reads the sender's small files whole, on raw descriptors.
type smallFiles struct {
	fds fdDirs
	buf []byte
}

func newSmallFiles(top *os.Root) *smallFiles { return &smallFiles{fds: fdDirs{top: top}} }

func (s *smallFiles) close() { s.fds.close() }

// read returns e's content (valid until the next read), or why it cannot
// be sent.
func (s *smallFiles) read(e *protocol.SyncEntry) ([]byte, string) {
	dfd, err := s.fds.get(path.Dir(e.Path))
	if err != nil {
		return nil, err.Error()
	}
	fd, err := openRetry(dfd, path.Base(e.Path), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, (&os.PathError{Op: "open", Path: e.Path, Err: err}).Error()
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err.Error()
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != e.Size {
		return nil, "changed during the sync"
	}
	if int64(cap(s.buf)) < e.Size {
		s.buf = make([]byte, e.Size)
	}
	s.buf = s.buf[:e.Size]
	for off := 0; off < len(s.buf); {
		n, err := unix.Read(fd, s.buf[off:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err.Error()
		}
		if n == 0 {
			return nil, "changed during the sync: shorter than its size"
		}
		off += n
	}
	return s.buf, ""
}
