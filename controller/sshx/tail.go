package sshx

import "sync"

// DefaultTailSize is how many bytes of stderr a [Proc] keeps.
const DefaultTailSize = 64 << 10

// Tail is an io.Writer that keeps only the last bytes written to it. It is
// safe for concurrent use; the zero value keeps DefaultTailSize bytes.
type Tail struct {
	mu    sync.Mutex
	max   int
	buf   []byte
	total int64
}

// NewTail returns a Tail that keeps the last max bytes.
func NewTail(max int) *Tail { return &Tail{max: max} }

// Write appends p, dropping the oldest bytes beyond the limit. It never fails.
func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	limit := t.max
	if limit <= 0 {
		limit = DefaultTailSize
	}
	t.total += int64(len(p))
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - limit; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// Bytes returns a copy of the kept bytes.
func (t *Tail) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.buf...)
}

// String returns the kept bytes as a string.
func (t *Tail) String() string { return string(t.Bytes()) }

// Truncated reports whether older bytes were dropped.
func (t *Tail) Truncated() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total > int64(len(t.buf))
}
