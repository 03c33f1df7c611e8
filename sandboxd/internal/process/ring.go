package process

import "github.com/bohica-labs/darkshell/protocol"

// chunkSize is the capacity of one ring chunk; small writes of the same
// stream are packed into the newest chunk until it is full.
const chunkSize = protocol.DataChunk

// chunk is a run of output bytes from one stream.
type chunk struct {
	stderr bool
	start  int64 // offset of data[0]
	data   []byte
}

// ring keeps the most recent output of a process as chunks tagged stdout or
// stderr, addressed by one combined offset. It holds at most limit bytes
// (plus the unused tail of one chunk). It is not safe for concurrent use;
// Process guards it with its mutex.
type ring struct {
	limit  int
	chunks []*chunk
	start  int64 // oldest offset still held
	end    int64 // offset of the next byte to be appended
	size   int   // bytes held: end - start
}

func newRing(limit int) *ring {
	if limit <= 0 {
		limit = protocol.DefaultRing
	}
	return &ring{limit: limit}
}

// free reports how many bytes can be appended before the byte at offset keep
// would be dropped.
func (r *ring) free(keep int64) int {
	used := r.end - keep
	if used < 0 {
		used = 0
	}
	return r.limit - int(used)
}

// write appends p, dropping the oldest bytes when the ring is full.
func (r *ring) write(stderr bool, p []byte) {
	for len(p) > 0 {
		var last *chunk
		if n := len(r.chunks); n > 0 {
			last = r.chunks[n-1]
		}
		if last == nil || last.stderr != stderr || len(last.data) == cap(last.data) {
			last = &chunk{stderr: stderr, start: r.end, data: make([]byte, 0, chunkSize)}
			r.chunks = append(r.chunks, last)
		}
		n := min(len(p), cap(last.data)-len(last.data))
		last.data = append(last.data, p[:n]...)
		p = p[n:]
		r.end += int64(n)
		r.size += n
	}
	r.trim()
}

// trim drops the oldest bytes beyond the limit.
func (r *ring) trim() {
	for r.size > r.limit {
		c := r.chunks[0]
		over := r.size - r.limit
		if over >= len(c.data) {
			r.chunks[0] = nil
			r.chunks = r.chunks[1:]
			r.size -= len(c.data)
			r.start += int64(len(c.data))
			continue
		}
		c.data = c.data[over:]
		c.start += int64(over)
		r.size -= over
		r.start += int64(over)
	}
	// Compact the slice header once the dropped prefix dominates, so the
	// backing array does not grow without bound.
	if cap(r.chunks) > 64 && len(r.chunks) < cap(r.chunks)/4 {
		r.chunks = append([]*chunk(nil), r.chunks...)
	}
}

// read copies output starting at off into dst. It returns the number of bytes
// copied (all from one stream) and whether they came from stderr. off must be
// within [start, end).
func (r *ring) read(off int64, dst []byte) (n int, stderr bool) {
	if off < r.start || off >= r.end {
		return 0, false
	}
	// Binary search for the chunk holding off.
	lo, hi := 0, len(r.chunks)-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if r.chunks[mid].start <= off {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	c := r.chunks[lo]
	n = copy(dst, c.data[off-c.start:])
	// Coalesce following chunks of the same stream into one frame.
	for i := lo + 1; n < len(dst) && i < len(r.chunks) && r.chunks[i].stderr == c.stderr; i++ {
		n += copy(dst[n:], r.chunks[i].data)
	}
	return n, c.stderr
}
