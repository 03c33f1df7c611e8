package snapshot

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/restic/chunker"

	"github.com/bohica-labs/darkshell/controller/state"
)

// Chunking parameters. Pol is fixed per installation format (restic picks
// one per repository; one constant keeps every store compatible).
const (
	Pol = chunker.Pol(0x3DA3358B4DC173)
	// Data chunks: 256 KiB to 4 MiB, about 512 KiB on average.
	MinChunk  = 256 << 10
	MaxChunk  = 4 << 20
	avgBits   = 19
	treeMin   = 8 << 10
	treeMax   = 256 << 10
	treeBits  = 15
	indexName = "index"
)

// Progress counts a capture's or a restore's work; safe for concurrent use.
type Progress struct {
	FilesTotal, BytesTotal atomic.Int64
	FilesDone, BytesDone   atomic.Int64
}

func (p *Progress) add(files, bytes int64) {
	if p != nil {
		p.FilesDone.Add(files)
		p.BytesDone.Add(bytes)
	}
}

// indexEntry remembers a captured file by what changes when the file
// does (a sync replaces a file by rename: a new inode and ctime).
type indexEntry struct {
	Ino     uint64   `json:"i"`
	CtimeNs int64    `json:"c"`
	MtimeNs int64    `json:"m"`
	Size    int64    `json:"s"`
	Chunks  []string `json:"k"`
}

func loadIndex(p string) map[string]indexEntry {
	idx := map[string]indexEntry{}
	f, err := os.Open(p)
	if err != nil {
		return idx
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		return idx
	}
	defer zr.Close()
	if json.NewDecoder(zr).Decode(&idx) != nil {
		return map[string]indexEntry{}
	}
	return idx
}

func saveIndex(p string, idx map[string]indexEntry) error {
	var b bytes.Buffer
	zw, _ := zstd.NewWriter(&b, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err := json.NewEncoder(zw).Encode(idx); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return state.WriteFileAtomic(p, b.Bytes(), 0o600)
}

// CaptureOptions describe one capture.
type CaptureOptions struct {
	// Index, when set, is a file remembering the chunks of each file of
	// Dir by inode, ctime, size and mtime, so a file the last capture saw
	// unchanged is not read again.
	Index    string
	Progress *Progress
	Workers  int // default: the CPUs
	// Layer, when set, is a container's writable layer, stored as the
	// record's second tree under the same lock.
	Layer *LayerSource
}

// Capture stores the tree of dir (files, directories, symlinks; other
// kinds are left out) and saves the record rec, filled in. rec.ID,
// Sandbox and Name must be set.
func (r *Repo) Capture(ctx context.Context, dir string, rec *Snapshot, o CaptureOptions) error {
	start := time.Now()
	unlock, err := r.Store.Lock(false)
	if err != nil {
		return err
	}
	defer unlock()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("unable to open %s: %w", dir, err)
	}
	defer root.Close()
	var old map[string]indexEntry
	if o.Index != "" {
		old = loadIndex(o.Index)
	}
	newIdx := map[string]indexEntry{}

	// Walk: every entry, in a deterministic order, parents first.
	var ents []Entry
	var keys []indexEntry
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e := Entry{Path: p, Mode: uint32(fi.Mode().Perm()), MtimeNs: fi.ModTime().UnixNano()}
		if fi.Mode()&fs.ModeSetuid != 0 {
			e.Mode |= syscall.S_ISUID
		}
		if fi.Mode()&fs.ModeSetgid != 0 {
			e.Mode |= syscall.S_ISGID
		}
		if fi.Mode()&fs.ModeSticky != 0 {
			e.Mode |= syscall.S_ISVTX
		}
		var k indexEntry
		switch {
		case fi.IsDir():
			e.Type = TypeDir
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Type = TypeSymlink
			if e.Target, err = root.Readlink(p); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			e.Type, e.Size = TypeFile, fi.Size()
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				k = indexEntry{Ino: st.Ino, CtimeNs: st.Ctim.Nano(), MtimeNs: e.MtimeNs, Size: e.Size}
			}
		default:
			return nil // sockets, fifos, devices
		}
		ents = append(ents, e)
		keys = append(keys, k)
		return nil
	})
	if err != nil {
		return fmt.Errorf("unable to read %s: %w", dir, err)
	}

	// Files the index knows unchanged keep their chunks; the rest are read.
	var jobs []int
	var total int64
	for i := range ents {
		e := &ents[i]
		if e.Type != TypeFile {
			continue
		}
		total += e.Size
		if k := keys[i]; k.Ino != 0 {
			if oe, ok := old[e.Path]; ok && oe.Ino == k.Ino && oe.CtimeNs == k.CtimeNs && oe.MtimeNs == k.MtimeNs && oe.Size == k.Size && r.haveAll(oe.Chunks) {
				e.Chunks = oe.Chunks
				continue
			}
		}
		if e.Size == 0 {
			continue
		}
		jobs = append(jobs, i)
	}
	if p := o.Progress; p != nil {
		p.FilesTotal.Store(int64(len(ents)))
		p.BytesTotal.Store(total)
		p.add(int64(len(ents)-len(jobs)), 0)
		for i := range ents {
			if ents[i].Type == TypeFile && (ents[i].Chunks != nil || ents[i].Size == 0) {
				p.BytesDone.Add(ents[i].Size)
			}
		}
	}
	var added atomic.Int64
	err = forEach(ctx, o.Workers, jobs, func() func(int) error {
		buf := make([]byte, MaxChunk)
		ch := chunker.NewWithBoundaries(nil, Pol, MinChunk, MaxChunk)
		return func(i int) error {
			e := &ents[i]
			if err := r.chunkFile(root, e, ch, buf, &added, o.Progress); err != nil {
				return fmt.Errorf("unable to capture %s: %w", e.Path, err)
			}
			o.Progress.add(1, 0)
			return nil
		}
	})
	if err != nil {
		return err
	}

	// The tree, chunked like data (smaller boundaries).
	var tree bytes.Buffer
	jw := json.NewEncoder(&tree)
	distinct := map[string]bool{}
	rec.Files, rec.Dirs, rec.Symlinks, rec.Bytes = 0, 0, 0, 0
	for i := range ents {
		e := &ents[i]
		if err := jw.Encode(e); err != nil {
			return err
		}
		switch e.Type {
		case TypeFile:
			rec.Files++
			rec.Bytes += e.Size
			for _, c := range e.Chunks {
				distinct[c] = true
			}
			if k := keys[i]; k.Ino != 0 {
				k.Chunks = e.Chunks
				newIdx[e.Path] = k
			}
		case TypeDir:
			rec.Dirs++
		case TypeSymlink:
			rec.Symlinks++
		}
	}
	if rec.Tree, err = r.putTree(tree.Bytes(), &added, distinct); err != nil {
		return err
	}
	rec.Layer, rec.LayerEntries = nil, 0
	if o.Layer != nil {
		if err := r.captureLayer(ctx, o.Layer, rec, &added, distinct); err != nil {
			return fmt.Errorf("unable to capture the container's layer: %w", err)
		}
	}
	rec.Chunks = len(distinct)
	rec.AddedBytes = added.Load()
	if rec.Created.IsZero() {
		rec.Created = time.Now().UTC()
	}
	rec.DurationMs = time.Since(start).Milliseconds()
	if err := r.Store.Sync(); err != nil {
		return fmt.Errorf("unable to flush the store: %w", err)
	}
	if err := r.Save(rec); err != nil {
		return fmt.Errorf("unable to save the snapshot record: %w", err)
	}
	if o.Index != "" {
		// Only a cache: a failure costs a re-read next time.
		_ = saveIndex(o.Index, newIdx)
	}
	return nil
}

func (r *Repo) haveAll(chunks []string) bool {
	for _, c := range chunks {
		if !r.Store.Has(c) {
			return false
		}
	}
	return true
}

// chunkFile cuts e's content into chunks and stores the new ones.
func (r *Repo) chunkFile(root *os.Root, e *Entry, ch *chunker.Chunker, buf []byte, added *atomic.Int64, p *Progress) error {
	f, err := root.OpenFile(e.Path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var chunks []string
	var n int64
	put := func(data []byte) error {
		h := HashOf(data)
		a, err := r.Store.Put(h, data)
		if err != nil {
			return err
		}
		added.Add(a)
		chunks = append(chunks, h)
		n += int64(len(data))
		if p != nil {
			p.BytesDone.Add(int64(len(data)))
		}
		return nil
	}
	if e.Size <= MinChunk {
		// One chunk: no need to run the chunker.
		k, err := io.ReadFull(f, buf[:MinChunk+1])
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return err
		}
		data := buf[:k]
		if len(data) > 0 {
			if err := put(data); err != nil {
				return err
			}
		}
	} else {
		ch.ResetWithBoundaries(bufio.NewReaderSize(f, 1<<20), Pol, MinChunk, MaxChunk)
		ch.SetAverageBits(avgBits)
		for {
			c, err := ch.Next(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			if err := put(c.Data); err != nil {
				return err
			}
		}
	}
	// The file may have changed while it was read (a capture of a live
	// directory): the entry records what was read.
	e.Chunks, e.Size = chunks, n
	return nil
}

// putTree chunks an encoded entry list into the store.
func (r *Repo) putTree(tree []byte, added *atomic.Int64, distinct map[string]bool) ([]string, error) {
	var out []string
	tc := chunker.NewWithBoundaries(bytes.NewReader(tree), Pol, treeMin, treeMax)
	tc.SetAverageBits(treeBits)
	tbuf := make([]byte, treeMax)
	for {
		c, err := tc.Next(tbuf)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		h := HashOf(c.Data)
		n, err := r.Store.Put(h, c.Data)
		if err != nil {
			return nil, err
		}
		added.Add(n)
		out = append(out, h)
		distinct[h] = true
	}
	return out, nil
}

// loadTree reads and verifies a snapshot's entry list.
func (r *Repo) loadTree(s *Snapshot) ([]Entry, error) {
	return r.loadEntries(s, s.Tree, "tree")
}

// loadLayer reads and verifies a snapshot's layer entry list (none for
// a snapshot without a layer).
func (r *Repo) loadLayer(s *Snapshot) ([]Entry, error) {
	return r.loadEntries(s, s.Layer, "layer")
}

func (r *Repo) loadEntries(s *Snapshot, hashes []string, what string) ([]Entry, error) {
	var all bytes.Buffer
	for _, h := range hashes {
		b, err := r.Store.Get(h)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s %s: %w", s.ID, what, err)
		}
		all.Write(b)
	}
	var ents []Entry
	dec := json.NewDecoder(&all)
	for {
		var e Entry
		if err := dec.Decode(&e); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("snapshot %s %s: %w", s.ID, what, err)
		}
		ents = append(ents, e)
	}
	return ents, nil
}
