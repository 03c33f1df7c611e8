package events

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/bohica-labs/darkshell/protocol"
)

// Log defaults.
const (
	DefaultLogSize = 16 << 20 // rotate after this many bytes
	DefaultLogKeep = 3        // rotated files kept: events.jsonl.1 .. .N
	LogName        = "events.jsonl"
)

// Log is a per-sandbox JSON-lines event log, rotated by size:
// events.jsonl, events.jsonl.1 (older), ... It is safe for concurrent use.
type Log struct {
	mu   sync.Mutex
	path string
	max  int64
	keep int
	f    *os.File
	size int64
}

// OpenLog opens (appending) the log in dir.
func OpenLog(dir string, maxSize int64, keep int) (*Log, error) {
	if maxSize <= 0 {
		maxSize = DefaultLogSize
	}
	if keep <= 0 {
		keep = DefaultLogKeep
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("unable to create log dir: %w", err)
	}
	l := &Log{path: filepath.Join(dir, LogName), max: maxSize, keep: keep}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Log) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("unable to open event log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("unable to stat event log: %w", err)
	}
	l.f, l.size = f, st.Size()
	return nil
}

// Write appends one event, rotating first when the file is full.
func (l *Log) Write(e *protocol.Event) error { return l.WriteBatch([]protocol.Event{*e}) }

// WriteBatch appends events in order with one write per file (a batch
// that crosses the size limit is split there, rotating in between).
func (l *Log) WriteBatch(es []protocol.Event) error {
	b, err := Encode(es) // what encodes is written all the same
	if werr := l.WriteEncoded(b); werr != nil {
		return werr
	}
	return err
}

// WriteEncoded appends encoded events in order with one write per file (a
// batch that crosses the size limit is split there, rotating in between).
// The bytes are written as they are, not copied.
func (l *Log) WriteEncoded(b *Encoded) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	start, n := 0, 0 // b.buf[start:n] is written next
	flush := func() error {
		if n == start {
			return nil
		}
		w, err := l.f.Write(b.buf[start:n])
		l.size += int64(w)
		start = n
		if err != nil {
			return fmt.Errorf("unable to write event log: %w", err)
		}
		return nil
	}
	for _, end := range b.end {
		if l.f == nil {
			return os.ErrClosed
		}
		if pending := l.size + int64(n-start); pending > 0 && pending+int64(end-n) > l.max {
			if err := flush(); err != nil {
				return err
			}
			if err := l.rotate(); err != nil {
				return err
			}
		}
		n = end
	}
	if l.f == nil {
		return os.ErrClosed
	}
	return flush()
}

func (l *Log) rotate() error {
	l.f.Close()
	l.f = nil
	os.Remove(fmt.Sprintf("%s.%d", l.path, l.keep))
	for i := l.keep - 1; i >= 1; i-- {
		os.Rename(fmt.Sprintf("%s.%d", l.path, i), fmt.Sprintf("%s.%d", l.path, i+1))
	}
	if err := os.Rename(l.path, l.path+".1"); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("unable to rotate event log: %w", err)
	}
	return l.open()
}

// Files lists the log's files, newest first.
func (l *Log) Files() []string { return LogFiles(filepath.Dir(l.path)) }

// LogFiles lists the event log files in dir, newest first.
func LogFiles(dir string) []string {
	out := []string{}
	base := filepath.Join(dir, LogName)
	if _, err := os.Stat(base); err == nil {
		out = append(out, base)
	}
	for i := 1; ; i++ {
		p := fmt.Sprintf("%s.%d", base, i)
		if _, err := os.Stat(p); err != nil {
			return out
		}
		out = append(out, p)
	}
}

// Close closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
