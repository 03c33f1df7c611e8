package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bohica-labs/darkshell/protocol"
)

// MaxWatches bounds the directories one Inotify source watches.
const MaxWatches = 8192

const inotifyMask = unix.IN_CREATE | unix.IN_CLOSE_WRITE | unix.IN_DELETE | unix.IN_MOVED_FROM |
	unix.IN_MOVED_TO | unix.IN_ATTRIB | unix.IN_DONT_FOLLOW | unix.IN_EXCL_UNLINK | unix.IN_ONLYDIR

// Inotify watches directory trees for changes and publishes file events
// with fidelity "changes": no reads, no pids, no refused attempts, and
// only under the watched roots. New subdirectories are watched as they
// appear (a file created in one before its watch exists is missed).
type Inotify struct {
	fd      int
	log     *slog.Logger
	dirs    map[int32]string
	full    bool
	pending map[uint32]moveFrom // rename cookie -> where the file was
}

// moveFrom is the first half of a rename: the kernel may deliver the second
// half (IN_MOVED_TO) in a later read.
type moveFrom struct {
	path string
	at   time.Time
}

// renameGrace is how long a move's first half waits for its second before
// it is reported as a move out of the watched trees (an unlink).
const renameGrace = 150 * time.Millisecond

// NewInotify watches every directory under roots (up to MaxWatches).
func NewInotify(roots []string, log *slog.Logger) (*Inotify, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("unable to start inotify: %w", err)
	}
	in := &Inotify{fd: fd, log: log, dirs: map[int32]string{}, pending: map[uint32]moveFrom{}}
	for _, r := range roots {
		in.addTree(r)
	}
	if len(in.dirs) == 0 {
		unix.Close(fd)
		return nil, errors.New("unable to watch any directory")
	}
	return in, nil
}

func (in *Inotify) addTree(root string) {
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if !in.add(p) {
			return filepath.SkipAll
		}
		return nil
	})
}

func (in *Inotify) add(dir string) bool {
	if len(in.dirs) >= MaxWatches {
		if !in.full {
			in.log.Warn("inotify watch limit reached; deeper changes are not seen", "limit", MaxWatches)
			in.full = true
		}
		return false
	}
	wd, err := unix.InotifyAddWatch(in.fd, dir, inotifyMask)
	if err != nil {
		return true // unreadable directory: skip it, keep walking
	}
	in.dirs[int32(wd)] = dir
	return true
}

// Run reads changes into hub until ctx ends.
func (in *Inotify) Run(ctx context.Context, hub *Hub) error {
	defer unix.Close(in.fd)
	buf := make([]byte, 64<<10)
	pfd := []unix.PollFd{{Fd: int32(in.fd), Events: unix.POLLIN}}
	for ctx.Err() == nil {
		n, err := unix.Poll(pfd, 200)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("unable to poll inotify: %w", err)
		}
		if n <= 0 {
			in.flushRenames(hub, time.Now())
			continue
		}
		m, err := unix.Read(in.fd, buf)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("unable to read inotify: %w", err)
		}
		in.parse(buf[:m], hub)
	}
	return nil
}

func (in *Inotify) parse(b []byte, hub *Hub) {
	now := time.Now()
	for len(b) >= unix.SizeofInotifyEvent {
		raw := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := unix.SizeofInotifyEvent + int(raw.Len)
		if end > len(b) {
			return
		}
		name := strings.TrimRight(string(b[unix.SizeofInotifyEvent:end]), "\x00")
		b = b[end:]
		if raw.Mask&unix.IN_Q_OVERFLOW != 0 {
			hub.Publish(protocol.Event{Time: now, Kind: protocol.KindAlert, Message: "inotify queue overflow: file changes were lost",
				Source: protocol.SourceInotify, Fidelity: protocol.FidelityChanges})
			continue
		}
		if raw.Mask&unix.IN_IGNORED != 0 {
			delete(in.dirs, raw.Wd)
			continue
		}
		dir, ok := in.dirs[raw.Wd]
		if !ok || name == "" {
			continue
		}
		p := filepath.Join(dir, name)
		isDir := raw.Mask&unix.IN_ISDIR != 0
		ev := protocol.Event{Time: now, Path: p, Result: protocol.ResultOK, Source: protocol.SourceInotify, Fidelity: protocol.FidelityChanges}
		switch {
		case raw.Mask&unix.IN_CREATE != 0 && isDir:
			ev.Kind = protocol.KindFileMkdir
			in.addTree(p)
		case raw.Mask&unix.IN_CREATE != 0:
			ev.Kind, ev.Intent = protocol.KindFileWrite, "create"
		case raw.Mask&unix.IN_CLOSE_WRITE != 0:
			ev.Kind, ev.Intent = protocol.KindFileWrite, "write"
		case raw.Mask&unix.IN_DELETE != 0 && isDir:
			ev.Kind = protocol.KindFileRmdir
		case raw.Mask&unix.IN_DELETE != 0:
			ev.Kind = protocol.KindFileUnlink
		case raw.Mask&unix.IN_ATTRIB != 0:
			ev.Kind = protocol.KindFileChmod
		case raw.Mask&unix.IN_MOVED_FROM != 0:
			in.pending[raw.Cookie] = moveFrom{p, now}
			continue
		case raw.Mask&unix.IN_MOVED_TO != 0:
			old, ok := in.pending[raw.Cookie]
			delete(in.pending, raw.Cookie)
			if !ok {
				ev.Kind, ev.Intent = protocol.KindFileWrite, "create" // moved in from outside
			} else {
				ev.Kind, ev.Path, ev.NewPath = protocol.KindFileRename, old.path, p
			}
			if isDir {
				in.addTree(p)
			}
		default:
			continue
		}
		hub.Publish(ev)
	}
	in.flushRenames(hub, now)
}

// flushRenames reports as unlinks the moves out of the watched trees: first
// halves of renames that found no second half within renameGrace of now.
func (in *Inotify) flushRenames(hub *Hub, now time.Time) {
	for c, m := range in.pending {
		if now.Sub(m.at) < renameGrace {
			continue
		}
		delete(in.pending, c)
		hub.Publish(protocol.Event{Time: m.at, Kind: protocol.KindFileUnlink, Path: m.path, Result: protocol.ResultOK,
			Source: protocol.SourceInotify, Fidelity: protocol.FidelityChanges})
	}
}
