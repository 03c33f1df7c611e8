package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// Store is the installation's content-addressed chunk store: each chunk is
// one zstd frame in chunks/<first two hex digits>/<sha256 of the plain
// chunk>, written unnamed (O_TMPFILE) and linked into place, so a chunk
// file is either absent or complete. A lock file orders writers (shared) against
// garbage collection (exclusive), across processes.
type Store struct {
	dir string
}

// ErrCorrupt marks a chunk whose content does not match its name.
var ErrCorrupt = errors.New("chunk is corrupt")

// ErrMissing marks a chunk a snapshot names that the store lacks.
var ErrMissing = errors.New("chunk is missing")

// OpenStore opens (creating) the store in dir.
func OpenStore(dir string) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "chunks"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("unable to create the chunk store: %w", err)
		}
	}
	return &Store{dir: dir}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(hash string) string {
	return filepath.Join(s.dir, "chunks", hash[:2], hash)
}

// Lock takes the store's lock (shared for writers and readers, exclusive
// for GC) and returns its release.
func (s *Store) Lock(exclusive bool) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("unable to open the store lock: %w", err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("unable to lock the store: %w", err)
	}
	return func() { f.Close() }, nil
}

var (
	encOnce sync.Once
	enc     *zstd.Encoder
	dec     *zstd.Decoder
)

func codecs() (*zstd.Encoder, *zstd.Decoder) {
	encOnce.Do(func() {
		enc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
		dec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(MaxChunk*2))
	})
	return enc, dec
}

// HashOf is the store name of data.
func HashOf(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// Put stores data (already hashed to hash) unless the store has it, and
// returns the bytes it added (0 for a known chunk).
func (s *Store) Put(hash string, data []byte) (int64, error) {
	p := s.path(hash)
	if _, err := os.Stat(p); err == nil {
		return 0, nil
	}
	e, _ := codecs()
	z := e.EncodeAll(data, make([]byte, 0, len(data)/2+64))
	added, err := s.write(p, z)
	if errors.Is(err, fs.ErrNotExist) {
		// The shard directory is new.
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return 0, fmt.Errorf("unable to store chunk: %w", err)
		}
		added, err = s.write(p, z)
	}
	if err != nil {
		return 0, fmt.Errorf("unable to store chunk %s: %w", hash, err)
	}
	if !added {
		return 0, nil
	}
	return int64(len(z)), nil
}

// noTmpfile is set once the store's file system refused O_TMPFILE.
var noTmpfile atomic.Bool

// write puts z at p unless a file is there, and reports whether it did.
// The content is written to an unnamed file (O_TMPFILE) and linked into
// place, so p is absent or complete, a crash leaves nothing behind, and
// when two writers store the same new chunk at once one wins and only it
// counts the bytes. No fsync per chunk: Sync flushes the file system once
// before a snapshot record names them. File systems without O_TMPFILE get
// a named temporary file in tmp/, linked the same way.
func (s *Store) write(p string, z []byte) (bool, error) {
	if !noTmpfile.Load() {
		fd, err := unix.Open(filepath.Join(s.dir, "tmp"), unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
		if err == nil {
			f := os.NewFile(uintptr(fd), "chunk")
			_, err = f.Write(z)
			if err == nil {
				err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, p, unix.AT_SYMLINK_FOLLOW)
			}
			f.Close()
			if errors.Is(err, fs.ErrExist) {
				return false, nil
			}
			return err == nil, err
		}
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) {
			return false, err
		}
		noTmpfile.Store(true)
	}
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "chunk-*")
	if err != nil {
		return false, err
	}
	_, err = f.Write(z)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(f.Name(), p)
	}
	os.Remove(f.Name())
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	return err == nil, err
}

// Get reads a chunk and verifies that its content hashes to its name.
func (s *Store) Get(hash string) ([]byte, error) {
	if !validHash(hash) {
		return nil, fmt.Errorf("%w: bad chunk name %q", ErrCorrupt, hash)
	}
	z, err := os.ReadFile(s.path(hash))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrMissing, hash)
	}
	if err != nil {
		return nil, fmt.Errorf("unable to read chunk %s: %w", hash, err)
	}
	_, d := codecs()
	data, err := d.DecodeAll(z, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, hash, err)
	}
	if HashOf(data) != hash {
		return nil, fmt.Errorf("%w: %s: content hashes to %s", ErrCorrupt, hash, HashOf(data))
	}
	return data, nil
}

// Has reports whether the store holds hash.
func (s *Store) Has(hash string) bool {
	_, err := os.Stat(s.path(hash))
	return err == nil
}

// Size is the stored (compressed) size of a chunk, 0 if absent.
func (s *Store) Size(hash string) int64 {
	fi, err := os.Stat(s.path(hash))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// each calls fn for every chunk in the store.
func (s *Store) each(fn func(hash string, size int64) error) error {
	top, err := os.ReadDir(filepath.Join(s.dir, "chunks"))
	if err != nil {
		return err
	}
	for _, d := range top {
		ents, err := os.ReadDir(filepath.Join(s.dir, "chunks", d.Name()))
		if err != nil {
			return err
		}
		for _, e := range ents {
			if !validHash(e.Name()) {
				continue
			}
			var n int64
			if fi, err := e.Info(); err == nil {
				n = fi.Size()
			}
			if err := fn(e.Name(), n); err != nil {
				return err
			}
		}
	}
	return nil
}

func validHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	return strings.Trim(h, "0123456789abcdef") == ""
}

// Sync flushes the store's file system (chunks before the record that
// names them).
func (s *Store) Sync() error {
	f, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
