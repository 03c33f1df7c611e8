package delta

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// OpKind is the type byte of an op frame.
type OpKind uint8

// Op kinds, in the order a stream carries them: one header, any number of
// copies and literals, one end.
const (
	OpHeader  OpKind = 1 // block size and size of the old file the ops refer to
	OpCopy    OpKind = 2 // Count consecutive old blocks from Index
	OpLiteral OpKind = 3 // bytes, raw or zstd
	OpEnd     OpKind = 4 // size and SHA-256 of the reconstructed file
)

// Payload lengths and frame layout.
const (
	frameHeaderLen  = 1 + 4 // kind, payload length
	headerPayload   = 4 + 8 // block size, old size
	copyPayload     = 4 + 4 // index, count
	literalHeader   = 1 + 4 // flags, decompressed length
	endPayload      = 8 + 32
	maxLiteralFrame = literalHeader + MaxLiteral
)

// Literal flags.
const (
	litRaw  = 0
	litZstd = 1
)

// minCompress is the shortest literal worth trying to compress.
const minCompress = 128

var (
	zOnce sync.Once
	zEnc  *zstd.Encoder
	zDec  *zstd.Decoder
	zErr  error
)

// codecs returns the shared zstd encoder and decoder, sized for every CPU
// (a long-running process may run on one P until it widens for bulk work:
// internal/cpus). EncodeAll and DecodeAll are safe for concurrent use. The
// decoder refuses windows and outputs larger than MaxLiteral.
func codecs() (*zstd.Encoder, *zstd.Decoder, error) {
	zOnce.Do(func() {
		zEnc, zErr = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(runtime.NumCPU()),
			zstd.WithWindowSize(MaxLiteral),
			zstd.WithLowerEncoderMem(true))
		if zErr != nil {
			return
		}
		zDec, zErr = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(runtime.NumCPU()),
			zstd.WithDecoderMaxMemory(MaxLiteral),
			zstd.WithDecoderMaxWindow(MaxLiteral),
			zstd.WithDecodeAllCapLimit(true),
			zstd.WithDecoderLowmem(true))
	})
	return zEnc, zDec, zErr
}

// OpWriter encodes an op stream. It buffers; End flushes. It is not safe for
// concurrent use.
type OpWriter struct {
	w       *bufio.Writer
	scratch []byte
	stats   Stats
	block   int
	oldSize int64
	state   int // 0 before header, 1 in body, 2 after end

	// Compression back-off: after a literal that did not shrink, skip the
	// next skip literals; the gap doubles on each miss up to 16.
	skip, gap int
	err       error
	// raw: literals are not compressed (SetCompress).
	raw bool
}

// SetCompress turns the zstd compression of literals on (the default) or
// off, for the literals written from now on. Off suits a link that is
// faster than the compressor (the same host): zstd would cost CPU on both
// sides and save nothing.
func (w *OpWriter) SetCompress(on bool) { w.raw = !on }

// NewOpWriter returns an OpWriter writing frames to w.
func NewOpWriter(w io.Writer) *OpWriter {
	return &OpWriter{w: bufio.NewWriterSize(w, 64<<10)}
}

// Stats returns the figures of the stream written since the last Header.
func (w *OpWriter) Stats() Stats { return w.stats }

func (w *OpWriter) frame(kind OpKind, payload ...[]byte) error {
	if w.err != nil {
		return w.err
	}
	n := 0
	for _, p := range payload {
		n += len(p)
	}
	var h [frameHeaderLen]byte
	h[0] = byte(kind)
	binary.BigEndian.PutUint32(h[1:], uint32(n))
	if _, err := w.w.Write(h[:]); err != nil {
		w.err = err
		return err
	}
	for _, p := range payload {
		if _, err := w.w.Write(p); err != nil {
			w.err = err
			return err
		}
	}
	w.stats.WireBytes += int64(frameHeaderLen + n)
	w.stats.Ops++
	return nil
}

// Header starts a stream for an old file of oldSize bytes signed with
// blockSize. Use blockSize 0 and oldSize 0 for a whole-file stream (no
// copies). It resets Stats.
func (w *OpWriter) Header(blockSize int, oldSize int64) error {
	if w.state == 1 {
		return fmt.Errorf("%w: header inside a stream", ErrInvalid)
	}
	if err := checkHeader(blockSize, oldSize); err != nil {
		return err
	}
	w.stats = Stats{}
	w.block, w.oldSize, w.state = blockSize, oldSize, 1
	var p [headerPayload]byte
	binary.BigEndian.PutUint32(p[0:], uint32(blockSize))
	binary.BigEndian.PutUint64(p[4:], uint64(oldSize))
	return w.frame(OpHeader, p[:])
}

// checkHeader validates the fields of a header op.
func checkHeader(blockSize int, oldSize int64) error {
	if blockSize == 0 {
		if oldSize != 0 {
			return fmt.Errorf("%w: whole-file header with old size %d", ErrInvalid, oldSize)
		}
		return nil
	}
	return checkShape(blockSize, MinStrongLen, oldSize)
}

// Copy writes a copy of count consecutive old blocks starting at index.
func (w *OpWriter) Copy(index, count uint32) error {
	if w.state != 1 {
		return fmt.Errorf("%w: copy outside a stream", ErrInvalid)
	}
	n, err := copyRange(w.block, w.oldSize, index, count)
	if err != nil {
		return err
	}
	var p [copyPayload]byte
	binary.BigEndian.PutUint32(p[0:], index)
	binary.BigEndian.PutUint32(p[4:], count)
	w.stats.Copies++
	w.stats.CopyBytes += n
	w.stats.Size += n
	return w.frame(OpCopy, p[:])
}

// copyRange checks a copy against the old file and returns its length.
func copyRange(blockSize int, oldSize int64, index, count uint32) (int64, error) {
	if blockSize == 0 {
		return 0, fmt.Errorf("%w: copy in a whole-file stream", ErrInvalid)
	}
	nb := numBlocks(oldSize, blockSize)
	if count == 0 || int64(index) >= nb || int64(count) > nb-int64(index) {
		return 0, fmt.Errorf("%w: copy of blocks [%d, %d+%d) from a file of %d blocks", ErrInvalid, index, index, count, nb)
	}
	end := min((int64(index)+int64(count))*int64(blockSize), oldSize)
	return end - int64(index)*int64(blockSize), nil
}

// Literal writes p as one or more literal ops of at most LiteralChunk bytes,
// each zstd-compressed when that makes it smaller.
func (w *OpWriter) Literal(p []byte) error {
	if w.state != 1 {
		return fmt.Errorf("%w: literal outside a stream", ErrInvalid)
	}
	for len(p) > 0 {
		c := p[:min(len(p), LiteralChunk)]
		p = p[len(c):]
		if err := w.literal(c); err != nil {
			return err
		}
	}
	return nil
}

func (w *OpWriter) literal(p []byte) error {
	var h [literalHeader]byte
	binary.BigEndian.PutUint32(h[1:], uint32(len(p)))
	data := p
	if len(p) >= minCompress && w.skip == 0 && !w.raw {
		enc, _, err := codecs()
		if err != nil {
			return fmt.Errorf("unable to start zstd: %w", err)
		}
		w.scratch = enc.EncodeAll(p, w.scratch[:0])
		// Pay only if it saves at least 1/32.
		if len(w.scratch) < len(p)-len(p)/32 {
			h[0] = litZstd
			data = w.scratch
			w.gap = 0
		} else {
			w.gap = min(max(1, 2*w.gap), 16)
			w.skip = w.gap
		}
	} else if w.skip > 0 {
		w.skip--
	}
	w.stats.Literals++
	w.stats.LiteralBytes += int64(len(p))
	w.stats.LiteralWire += int64(len(data))
	w.stats.Size += int64(len(p))
	return w.frame(OpLiteral, h[:], data)
}

// End writes the end op with the size and SHA-256 of the new file, and
// flushes.
func (w *OpWriter) End(size int64, sum [32]byte) error {
	if w.state != 1 {
		return fmt.Errorf("%w: end outside a stream", ErrInvalid)
	}
	if size < 0 || size > MaxFileSize {
		return fmt.Errorf("%w: size %d", ErrLimit, size)
	}
	w.state = 2
	var p [endPayload]byte
	binary.BigEndian.PutUint64(p[0:], uint64(size))
	copy(p[8:], sum[:])
	if err := w.frame(OpEnd, p[:]); err != nil {
		return err
	}
	return w.Flush()
}

// Flush writes buffered frames to the underlying writer.
func (w *OpWriter) Flush() error {
	if w.err != nil {
		return w.err
	}
	w.err = w.w.Flush()
	return w.err
}

// Op is one decoded op. For OpLiteral, Data is the decompressed bytes,
// valid until the next call to Next.
type Op struct {
	Kind OpKind

	BlockSize int   // OpHeader
	OldSize   int64 // OpHeader

	Index, Count uint32 // OpCopy

	Data       []byte // OpLiteral, decompressed
	Compressed bool   // OpLiteral: was zstd on the wire
	Wire       int    // OpLiteral: payload bytes on the wire

	Size int64    // OpEnd
	Sum  [32]byte // OpEnd: SHA-256 of the new file
}

// OpReader decodes an op stream. It reads exactly the frames (no read-ahead
// past the end op), so the stream may be followed by other data; wrap an
// unbuffered source in a bufio.Reader. Every frame is checked against its
// limit before its payload is read, and ops must come in order: header,
// body, end.
type OpReader struct {
	r       io.Reader
	payload []byte
	lit     []byte
	state   int // 0 before header, 1 in body, 2 after end
	wire    int64
	block   int
	oldSize int64
}

// NewOpReader returns an OpReader reading frames from r.
func NewOpReader(r io.Reader) *OpReader { return &OpReader{r: r} }

// Reset makes r read a new op stream from rd, keeping its buffers.
func (r *OpReader) Reset(rd io.Reader) {
	*r = OpReader{r: rd, payload: r.payload[:0], lit: r.lit[:0]}
}

// WireBytes returns the bytes read so far.
func (r *OpReader) WireBytes() int64 { return r.wire }

// Next returns the next op. After the end op it returns io.EOF without
// reading. A stream that ends before the end op gives ErrTruncated.
func (r *OpReader) Next() (Op, error) {
	if r.state == 2 {
		return Op{}, io.EOF
	}
	var h [frameHeaderLen]byte
	if _, err := io.ReadFull(r.r, h[:]); err != nil {
		return Op{}, readErr(err)
	}
	kind, n := OpKind(h[0]), binary.BigEndian.Uint32(h[1:])
	var limit uint32
	switch kind {
	case OpHeader:
		limit = headerPayload
	case OpCopy:
		limit = copyPayload
	case OpLiteral:
		limit = maxLiteralFrame
	case OpEnd:
		limit = endPayload
	default:
		return Op{}, fmt.Errorf("%w: op kind %d", ErrInvalid, kind)
	}
	if n > limit {
		return Op{}, fmt.Errorf("%w: op %d of %d bytes, at most %d", ErrLimit, kind, n, limit)
	}
	if (kind == OpHeader) != (r.state == 0) {
		return Op{}, fmt.Errorf("%w: op %d out of order", ErrInvalid, kind)
	}
	if cap(r.payload) < int(n) {
		r.payload = make([]byte, n)
	}
	p := r.payload[:n]
	if _, err := io.ReadFull(r.r, p); err != nil {
		return Op{}, readErr(err)
	}
	r.wire += int64(frameHeaderLen) + int64(n)
	op := Op{Kind: kind}
	switch kind {
	case OpHeader:
		if n != headerPayload {
			return Op{}, fmt.Errorf("%w: header of %d bytes", ErrInvalid, n)
		}
		op.BlockSize = int(binary.BigEndian.Uint32(p))
		size := binary.BigEndian.Uint64(p[4:])
		if size > MaxFileSize {
			return Op{}, fmt.Errorf("%w: old size %d", ErrLimit, size)
		}
		op.OldSize = int64(size)
		if err := checkHeader(op.BlockSize, op.OldSize); err != nil {
			return Op{}, err
		}
		r.block, r.oldSize, r.state = op.BlockSize, op.OldSize, 1
	case OpCopy:
		if n != copyPayload {
			return Op{}, fmt.Errorf("%w: copy of %d bytes", ErrInvalid, n)
		}
		op.Index, op.Count = binary.BigEndian.Uint32(p), binary.BigEndian.Uint32(p[4:])
		if _, err := copyRange(r.block, r.oldSize, op.Index, op.Count); err != nil {
			return Op{}, err
		}
	case OpLiteral:
		if err := r.literal(p, &op); err != nil {
			return Op{}, err
		}
	case OpEnd:
		if n != endPayload {
			return Op{}, fmt.Errorf("%w: end of %d bytes", ErrInvalid, n)
		}
		size := binary.BigEndian.Uint64(p)
		if size > MaxFileSize {
			return Op{}, fmt.Errorf("%w: size %d", ErrLimit, size)
		}
		op.Size = int64(size)
		copy(op.Sum[:], p[8:])
		r.state = 2
	}
	return op, nil
}

func (r *OpReader) literal(p []byte, op *Op) error {
	if len(p) < literalHeader {
		return fmt.Errorf("%w: literal of %d bytes", ErrInvalid, len(p))
	}
	flags, raw, data := p[0], binary.BigEndian.Uint32(p[1:]), p[literalHeader:]
	op.Wire = len(data)
	if raw == 0 {
		return fmt.Errorf("%w: empty literal", ErrInvalid)
	}
	if raw > MaxLiteral {
		return fmt.Errorf("%w: literal of %d bytes, at most %d", ErrLimit, raw, MaxLiteral)
	}
	switch flags {
	case litRaw:
		if uint32(len(data)) != raw {
			return fmt.Errorf("%w: raw literal of %d bytes claims %d", ErrInvalid, len(data), raw)
		}
		op.Data = data
	case litZstd:
		_, dec, err := codecs()
		if err != nil {
			return fmt.Errorf("unable to start zstd: %w", err)
		}
		if cap(r.lit) < int(raw) {
			r.lit = make([]byte, 0, raw)
		}
		// The cap limit makes the decoder stop at raw bytes.
		out, err := dec.DecodeAll(data, r.lit[:0:raw])
		if err != nil {
			if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
				return fmt.Errorf("%w: literal decompresses past %d bytes: %v", ErrLimit, raw, err)
			}
			return fmt.Errorf("%w: literal: %v", ErrInvalid, err)
		}
		if len(out) != int(raw) {
			return fmt.Errorf("%w: literal decompressed to %d bytes, claims %d", ErrInvalid, len(out), raw)
		}
		op.Data = out
		op.Compressed = true
	default:
		return fmt.Errorf("%w: literal flags %#x", ErrInvalid, flags)
	}
	return nil
}
