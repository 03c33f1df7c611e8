package exporter

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"github.com/bohica-labs/darkshell/controller/export"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// ErrSpoolFull is returned by Spool.Put when a batch does not fit.
var ErrSpoolFull = errors.New("export spool full")

// Spool is a bounded on-disk FIFO of batches a backend has not taken yet:
// one file per batch (JSON lines), named by an increasing number, written
// atomically. It survives a daemon restart. It is safe for concurrent use.
type Spool struct {
	dir string
	max int64

	mu   sync.Mutex
	size int64
	segs []spoolSeg // oldest first
	next uint64
}

type spoolSeg struct {
	n    uint64
	size int64
}

// OpenSpool opens (creating) the spool in dir, bounded to maxBytes.
func OpenSpool(dir string, maxBytes int64) (*Spool, error) {
	if maxBytes <= 0 {
		maxBytes = export.DefaultSpoolBytes
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("unable to create spool %s: %w", dir, err)
	}
	s := &Spool{dir: dir, max: maxBytes}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("unable to read spool %s: %w", dir, err)
	}
	for _, e := range ents {
		var n uint64
		if !strings.HasSuffix(e.Name(), ".jsonl") {
			continue
		}
		if _, err := fmt.Sscanf(e.Name(), "%020d.jsonl", &n); err != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		s.segs = append(s.segs, spoolSeg{n: n, size: info.Size()})
		s.size += info.Size()
	}
	sort.Slice(s.segs, func(i, j int) bool { return s.segs[i].n < s.segs[j].n })
	if len(s.segs) > 0 {
		s.next = s.segs[len(s.segs)-1].n + 1
	}
	return s, nil
}

func (s *Spool) name(n uint64) string { return filepath.Join(s.dir, fmt.Sprintf("%020d.jsonl", n)) }

// Len is the number of batches held; Bytes their size.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.segs)
}

// Bytes is the spool's size on disk.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// Put appends a batch of records (each one JSON document without a
// newline); ErrSpoolFull if it would pass the bound.
func (s *Spool) Put(recs [][]byte) error {
	var buf bytes.Buffer
	for _, r := range recs {
		buf.Write(r)
		buf.WriteByte('\n')
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.size+int64(buf.Len()) > s.max {
		return ErrSpoolFull
	}
	n := s.next
	tmp := s.name(n) + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o600); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("unable to write spool: %w", err)
	}
	if err := os.Rename(tmp, s.name(n)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("unable to write spool: %w", err)
	}
	s.next++
	s.segs = append(s.segs, spoolSeg{n: n, size: int64(buf.Len())})
	s.size += int64(buf.Len())
	return nil
}

// Peek returns the oldest batch and its id (ok false: empty).
func (s *Spool) Peek() (id uint64, recs [][]byte, ok bool, err error) {
	s.mu.Lock()
	if len(s.segs) == 0 {
		s.mu.Unlock()
		return 0, nil, false, nil
	}
	seg := s.segs[0]
	s.mu.Unlock()
	b, err := os.ReadFile(s.name(seg.n))
	if err != nil {
		return seg.n, nil, true, fmt.Errorf("unable to read spool: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		recs = append(recs, bytes.Clone(sc.Bytes()))
	}
	return seg.n, recs, true, sc.Err()
}

// Drop removes batch id (after it was sent, or found unreadable).
func (s *Spool) Drop(id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, seg := range s.segs {
		if seg.n == id {
			os.Remove(s.name(id))
			s.size -= seg.size
			s.segs = append(s.segs[:i], s.segs[i+1:]...)
			return
		}
	}
}
