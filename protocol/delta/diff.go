package delta

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/bits"
	"slices"
	"sync"
)

// index finds old full blocks by weak checksum: a bit filter rejects most
// positions with one load, then an open-addressing table maps a weak
// checksum to at most MaxCandidates blocks with distinct strong hashes.
type index struct {
	filter      []uint64
	filterShift uint
	slots       []slot
	slotShift   uint
	cands       []uint32
}

type slot struct {
	key   uint32
	start uint32 // into cands
	n     uint32 // 0: empty
}

func newIndex(sig *Signature, full int) *index {
	ix := &index{}
	if full == 0 {
		return ix
	}
	order := make([]uint32, full)
	for i := range order {
		order[i] = uint32(i)
	}
	slices.SortFunc(order, func(a, b uint32) int {
		if c := cmp.Compare(sig.Weak[a], sig.Weak[b]); c != 0 {
			return c
		}
		if c := bytes.Compare(sig.strong(int(a)), sig.strong(int(b))); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	type group struct{ key, start, n uint32 }
	var groups []group
	ix.cands = make([]uint32, 0, full)
	for i := 0; i < len(order); {
		key := sig.Weak[order[i]]
		g := group{key: key, start: uint32(len(ix.cands))}
		j := i
		for ; j < len(order) && sig.Weak[order[j]] == key; j++ {
			// Keep the lowest index of each distinct strong hash, at most
			// MaxCandidates per weak checksum.
			if j > i && bytes.Equal(sig.strong(int(order[j])), sig.strong(int(order[j-1]))) {
				continue
			}
			if g.n < MaxCandidates {
				ix.cands = append(ix.cands, order[j])
				g.n++
			}
		}
		groups = append(groups, g)
		i = j
	}
	fbits := bits.Len(uint(len(groups)*64 - 1))
	fbits = min(max(fbits, 12), 26)
	ix.filter = make([]uint64, 1<<fbits/64)
	ix.filterShift = uint(32 - fbits)
	sbits := bits.Len(uint(len(groups)*2 - 1))
	sbits = max(sbits, 4)
	ix.slots = make([]slot, 1<<sbits)
	ix.slotShift = uint(32 - sbits)
	mask := uint32(len(ix.slots) - 1)
	for _, g := range groups {
		f := g.key >> ix.filterShift
		ix.filter[f/64] |= 1 << (f % 64)
		s := g.key >> ix.slotShift
		for ix.slots[s].n != 0 {
			s = (s + 1) & mask
		}
		ix.slots[s] = slot(g)
	}
	return ix
}

// maybe reports whether key may be in the index.
func (ix *index) maybe(key uint32) bool {
	if len(ix.filter) == 0 {
		return false
	}
	f := key >> ix.filterShift
	return ix.filter[f/64]&(1<<(f%64)) != 0
}

// lookup returns the candidate blocks for key.
func (ix *index) lookup(key uint32) []uint32 {
	mask := uint32(len(ix.slots) - 1)
	for s := key >> ix.slotShift; ix.slots[s].n != 0; s = (s + 1) & mask {
		if ix.slots[s].key == key {
			return ix.cands[ix.slots[s].start : ix.slots[s].start+ix.slots[s].n]
		}
	}
	return nil
}

// differ is the state of one Diff.
type differ struct {
	sig  *Signature
	ix   *index
	w    *OpWriter
	r    io.Reader
	sum  hash.Hash
	u    *[256]uint64
	B    int
	full int // blocks of exactly B bytes

	buf            []byte
	lit, pos, end  int // pending literal [lit,pos); window [pos,pos+B); data [.., end)
	eof            bool
	read           int64
	h              uint64
	hvalid         bool
	next           int // block expected at pos after a match, or -1
	search         bool
	wasted, budget int64

	runStart, runCount uint32 // pending copy run
}

// Diff writes to w the op stream that turns the file sig describes into
// the contents of newData: a header, copies of old blocks and literals, and
// an end op with the size and SHA-256 of newData. It reads newData once, in
// order, and holds at most a few MiB of it.
func Diff(sig *Signature, newData io.Reader, w *OpWriter) (Stats, error) {
	_, st, err := diff(sig, newData, w)
	return st, err
}

func diff(sig *Signature, newData io.Reader, w *OpWriter) (*differ, Stats, error) {
	if err := sig.Validate(); err != nil {
		return nil, Stats{}, err
	}
	if err := w.Header(sig.BlockSize, sig.Size); err != nil {
		return nil, Stats{}, err
	}
	B := sig.BlockSize
	d := &differ{
		sig:  sig,
		w:    w,
		r:    newData,
		sum:  sha256.New(),
		B:    B,
		full: int(sig.Size / int64(B)),
		buf:  make([]byte, 2<<20+2*B),
		next: -1,
	}
	if d.full > 0 {
		d.ix = newIndex(sig, d.full)
		d.u = rollTable(B)
	}
	if err := d.run(); err != nil {
		return d, w.Stats(), err
	}
	var s [32]byte
	d.sum.Sum(s[:0])
	if err := w.End(d.read, s); err != nil {
		return d, w.Stats(), err
	}
	return d, w.Stats(), nil
}

// fill moves the pending data to the front of the buffer and reads more.
func (d *differ) fill() error {
	if d.lit > 0 {
		copy(d.buf, d.buf[d.lit:d.end])
		d.pos -= d.lit
		d.end -= d.lit
		d.lit = 0
	}
	n, err := io.ReadFull(d.r, d.buf[d.end:])
	d.sum.Write(d.buf[d.end : d.end+n])
	d.end += n
	d.read += int64(n)
	if d.read > MaxFileSize {
		return fmt.Errorf("%w: new file larger than %d bytes", ErrLimit, int64(MaxFileSize))
	}
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		d.eof = true
	case err != nil:
		return fmt.Errorf("unable to read new file: %w", err)
	}
	// Failed strong checks may cost at most twice the bytes read plus 64
	// blocks; past that Diff stops searching until reading catches up, so
	// hostile input cannot make it quadratic.
	d.budget = 2*d.read + 64*int64(d.B)
	if d.full > 0 && !d.search && d.wasted <= d.budget {
		d.search, d.hvalid = true, false
	}
	return nil
}

func (d *differ) run() error {
	B := d.B
	for {
		if d.end-d.pos < B {
			if d.eof {
				break
			}
			if err := d.fill(); err != nil {
				return err
			}
			continue
		}
		if d.next == d.full && d.partialAt(d.pos) {
			if err := d.copyPartial(d.pos); err != nil {
				return err
			}
			continue
		}
		if !d.search {
			// Literal everything but the last B bytes, kept for the tail.
			d.pos = max(d.pos, d.end-B)
			if err := d.literal(d.pos); err != nil {
				return err
			}
			if d.eof {
				break
			}
			if err := d.fill(); err != nil {
				return err
			}
			continue
		}
		if !d.hvalid {
			d.h = weakSum(d.buf[d.pos : d.pos+B])
			d.hvalid = true
		}
		if j := d.match(); j >= 0 {
			if err := d.literal(d.pos); err != nil {
				return err
			}
			if err := d.copy(uint32(j)); err != nil {
				return err
			}
			d.pos += B
			d.lit = d.pos
			d.hvalid = false
			d.next = j + 1
			continue
		}
		d.next = -1
		if d.pos+B == d.end {
			if d.eof {
				break
			}
			if err := d.fill(); err != nil {
				return err
			}
			continue
		}
		// Roll until a filter hit, the end of the data or a full chunk.
		buf := d.buf[:d.end]
		t, u := &weakT, d.u
		filter, shift := d.ix.filter, d.ix.filterShift
		pos, h := d.pos, d.h
		stop := min(d.end-B, d.lit+LiteralChunk)
		in := buf[B : stop+B]
		out := buf[:stop]
		for pos < stop {
			h = h*weakP + t[in[pos]] - u[out[pos]]
			pos++
			f := uint32(h>>32) >> shift
			if filter[f/64]&(1<<(f%64)) != 0 {
				break
			}
		}
		d.pos, d.h = pos, h
		if d.pos-d.lit >= LiteralChunk {
			if err := d.literal(d.pos); err != nil {
				return err
			}
		}
	}
	return d.tail()
}

// match returns the old full block equal to the window at pos, or -1.
func (d *differ) match() int {
	key := weakKey(d.h)
	win := d.buf[d.pos : d.pos+d.B]
	var sum [32]byte
	have := false
	if n := d.next; n >= 0 && n < d.full && d.sig.Weak[n] == key {
		sum, have = sha256.Sum256(win), true
		if bytes.Equal(sum[:d.sig.StrongLen], d.sig.strong(n)) {
			return n
		}
	}
	var cands []uint32
	if d.ix.maybe(key) {
		cands = d.ix.lookup(key)
	}
	if len(cands) > 0 {
		if !have {
			sum, have = sha256.Sum256(win), true
		}
		for _, c := range cands {
			if bytes.Equal(sum[:d.sig.StrongLen], d.sig.strong(int(c))) {
				return int(c)
			}
		}
	}
	if have {
		d.wasted += int64(d.B)
		if d.wasted > d.budget {
			d.search = false
		}
	}
	return -1
}

// literal emits the pending literal up to to.
func (d *differ) literal(to int) error {
	if to <= d.lit {
		return nil
	}
	if err := d.flushCopy(); err != nil {
		return err
	}
	err := d.w.Literal(d.buf[d.lit:to])
	d.lit = to
	return err
}

// copy adds block j to the pending copy run.
func (d *differ) copy(j uint32) error {
	if d.runCount > 0 && j == d.runStart+d.runCount && d.runCount < 1<<31 {
		d.runCount++
		return nil
	}
	if err := d.flushCopy(); err != nil {
		return err
	}
	d.runStart, d.runCount = j, 1
	return nil
}

func (d *differ) flushCopy() error {
	if d.runCount == 0 {
		return nil
	}
	err := d.w.Copy(d.runStart, d.runCount)
	d.runCount = 0
	return err
}

// partialAt reports whether the old file ends with a partial block and the
// new data holds it at i.
func (d *differ) partialAt(i int) bool {
	L, ok := d.partialLen()
	if !ok || i < d.lit || d.end-i < L {
		return false
	}
	t := d.buf[i : i+L]
	if weakKey(weakSum(t)) != d.sig.Weak[d.full] {
		return false
	}
	s := sha256.Sum256(t)
	return bytes.Equal(s[:d.sig.StrongLen], d.sig.strong(d.full))
}

// partialLen returns the length of the old file's partial last block, if
// it has one.
func (d *differ) partialLen() (int, bool) {
	if d.sig.Blocks() == d.full {
		return 0, false
	}
	return d.sig.blockLen(d.full), true
}

// copyPartial emits the partial last old block found at i.
func (d *differ) copyPartial(i int) error {
	if err := d.literal(i); err != nil {
		return err
	}
	if err := d.copy(uint32(d.full)); err != nil {
		return err
	}
	d.pos = i + d.sig.blockLen(d.full)
	d.lit = d.pos
	d.hvalid = false
	d.next = -1
	return nil
}

// tail handles the last bytes, fewer than a block past the last checked
// window. When the old file ends with a partial block, it is matched right
// after the block before it or at the very end of the new data.
func (d *differ) tail() error {
	if L, ok := d.partialLen(); ok {
		var at int
		switch {
		case d.next == d.full && d.partialAt(d.pos):
			at = d.pos
		case d.partialAt(d.end - L):
			at = d.end - L
		default:
			at = -1
		}
		if at >= 0 {
			if err := d.copyPartial(at); err != nil {
				return err
			}
		}
	}
	if err := d.literal(d.end); err != nil {
		return err
	}
	return d.flushCopy()
}

// WriteWhole writes r as a whole-file op stream: a header with block size 0,
// zstd literals and the end op. Apply takes it with any old file.
func WriteWhole(r io.Reader, w *OpWriter) (Stats, error) {
	if err := w.Header(0, 0); err != nil {
		return Stats{}, err
	}
	sum := sha256.New()
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := *bp
	var size int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			sum.Write(buf[:n])
			size += int64(n)
			if size > MaxFileSize {
				return w.Stats(), fmt.Errorf("%w: file larger than %d bytes", ErrLimit, int64(MaxFileSize))
			}
			if err := w.Literal(buf[:n]); err != nil {
				return w.Stats(), err
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return w.Stats(), fmt.Errorf("unable to read file: %w", err)
		}
	}
	var s [32]byte
	sum.Sum(s[:0])
	if err := w.End(size, s); err != nil {
		return w.Stats(), err
	}
	return w.Stats(), nil
}

// chunkPool holds LiteralChunk buffers for WriteWhole, which runs once per
// file of a tree.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, LiteralChunk); return &b }}

// WholeRawLen is the length of the op stream AppendWholeRaw makes for a
// file of n bytes.
func WholeRawLen(n int) int {
	chunks := (n + LiteralChunk - 1) / LiteralChunk
	return frameHeaderLen + headerPayload + chunks*(frameHeaderLen+literalHeader) + n + frameHeaderLen + endPayload
}

// AppendWholeRaw appends to dst the whole-file op stream of data with
// uncompressed literals: the bytes WriteWhole writes through an OpWriter
// with compression off, built in one pass without its buffers and copies
// (an initial upload to this host sends every file this way).
func AppendWholeRaw(dst, data []byte) ([]byte, error) {
	if int64(len(data)) > MaxFileSize {
		return dst, fmt.Errorf("%w: file larger than %d bytes", ErrLimit, int64(MaxFileSize))
	}
	dst = slices.Grow(dst, WholeRawLen(len(data)))
	dst = append(dst, byte(OpHeader))
	dst = binary.BigEndian.AppendUint32(dst, headerPayload)
	dst = append(dst, make([]byte, headerPayload)...) // block size 0, old size 0
	for p := data; len(p) > 0; {
		c := p[:min(len(p), LiteralChunk)]
		p = p[len(c):]
		dst = append(dst, byte(OpLiteral))
		dst = binary.BigEndian.AppendUint32(dst, uint32(literalHeader+len(c)))
		dst = append(dst, litRaw)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(c)))
		dst = append(dst, c...)
	}
	sum := sha256.Sum256(data)
	dst = append(dst, byte(OpEnd))
	dst = binary.BigEndian.AppendUint32(dst, endPayload)
	dst = binary.BigEndian.AppendUint64(dst, uint64(len(data)))
	return append(dst, sum[:]...), nil
}
