//go:build !linux

package treesync

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"syscall"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// placer writes small files into place: a temporary file renamed over.
type placer struct{ dirs dirCache }

func newPlacer(top *os.Root) *placer { return &placer{dirs: dirCache{top: top}} }

func (p *placer) close() { p.dirs.close() }

func (p *placer) place(e *protocol.SyncEntry, data []byte) error {
	return place(&p.dirs, path.Dir(e.Path), e, data)
}

// placeAt places e, whose directory is at dir (a staged one is written
// the same way here).
func (p *placer) placeAt(dir string, _ bool, e *protocol.SyncEntry, data []byte) error {
	return place(&p.dirs, dir, e, data)
}

// place writes data to a temporary file next to e's path (in dir) and
// renames it into place with e's mode and mtime.
func place(dirs *dirCache, dir string, e *protocol.SyncEntry, data []byte) error {
	name := path.Base(e.Path)
	dr, err := dirs.get(dir)
	if err != nil {
		return fmt.Errorf("unable to open directory %q: %w", path.Dir(e.Path), err)
	}
	tmp := tempName()
	out, err := dr.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("unable to create a temporary file for %q: %w", e.Path, err)
	}
	_, err = out.Write(data)
	if err == nil {
		err = out.Chmod(fs.FileMode(e.Mode))
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		t := time.Unix(0, e.MtimeNs)
		if err = dr.Chtimes(tmp, t, t); err == nil {
			if err = dr.Rename(tmp, name); err == nil {
				return nil
			}
		}
	}
	_ = dr.Remove(tmp)
	return fmt.Errorf("unable to put %q in place: %w", e.Path, err)
}

// smallFiles reads the sender's small files whole.
type smallFiles struct {
	dirs dirCache
	buf  []byte
}

func newSmallFiles(top *os.Root) *smallFiles { return &smallFiles{dirs: dirCache{top: top}} }

func (s *smallFiles) close() { s.dirs.close() }

// read returns e's content (valid until the next read), or why it cannot
// be sent.
func (s *smallFiles) read(e *protocol.SyncEntry) ([]byte, string) {
	dr, err := s.dirs.get(path.Dir(e.Path))
	if err != nil {
		return nil, err.Error()
	}
	f, err := dr.OpenFile(path.Base(e.Path), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err.Error()
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err.Error()
	}
	if !fi.Mode().IsRegular() || fi.Size() != e.Size {
		return nil, "changed during the sync"
	}
	if int64(cap(s.buf)) < e.Size {
		s.buf = make([]byte, e.Size)
	}
	s.buf = s.buf[:e.Size]
	if _, err := io.ReadFull(f, s.buf); err != nil {
		return nil, "changed during the sync: " + err.Error()
	}
	return s.buf, ""
}
