package delta

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// WriteWholeParallel is WriteWhole with the zstd compression of the
// literal chunks spread over workers goroutines (reading and hashing stay
// in order on the caller's goroutine); the op stream is the same as
// WriteWhole's but for which literals end up compressed. With workers < 2
// it is WriteWhole.
func WriteWholeParallel(r io.Reader, w *OpWriter, workers int) (Stats, error) {
	if workers < 2 || w.raw {
		return WriteWhole(r, w)
	}
	if err := w.Header(0, 0); err != nil {
		return Stats{}, err
	}
	enc, _, err := codecs()
	if err != nil {
		return w.Stats(), fmt.Errorf("unable to start zstd: %w", err)
	}
	type chunk struct {
		raw, z []byte
		plain  bool // not worth trying to compress
		done   chan struct{}
	}
	// Back-off as in OpWriter.literal: after a chunk that did not shrink
	// the next gap chunks are not tried; the gap doubles up to 16.
	var skip, gap atomic.Int32
	depth := 2 * workers
	work := make(chan *chunk, depth)
	order := make(chan *chunk, depth)
	free := make(chan *chunk, depth+1)
	for range workers {
		go func() {
			for c := range work {
				if len(c.raw) >= minCompress && !c.plain {
					c.z = enc.EncodeAll(c.raw, c.z[:0])
				} else {
					c.z = c.z[:0]
				}
				close(c.done)
			}
		}()
	}
	// emit writes the chunks in order; it runs on its own goroutine so
	// that reading and hashing overlap with the stream writes.
	emitErr := make(chan error, 1)
	go func() {
		var err error
		for c := range order {
			<-c.done
			if err == nil {
				z := c.z
				if len(z) == 0 || len(z) >= len(c.raw)-len(c.raw)/32 {
					if !c.plain && len(c.raw) >= minCompress {
						g := min(max(1, 2*gap.Load()), 16)
						gap.Store(g)
						skip.Store(g)
					}
					z = nil
				} else {
					gap.Store(0)
				}
				err = w.literalPrepared(c.raw, z)
			}
			select {
			case free <- c:
			default:
			}
		}
		emitErr <- err
	}()
	sum := sha256.New()
	var size int64
	var rerr error
	for {
		var c *chunk
		select {
		case c = <-free:
		default:
			c = &chunk{raw: make([]byte, LiteralChunk)}
		}
		c.raw = c.raw[:cap(c.raw)]
		n, err := io.ReadFull(r, c.raw)
		if n > 0 {
			c.raw = c.raw[:n]
			sum.Write(c.raw)
			size += int64(n)
			if size > MaxFileSize {
				rerr = fmt.Errorf("%w: file larger than %d bytes", ErrLimit, int64(MaxFileSize))
				break
			}
			c.done = make(chan struct{})
			c.plain = false
			if k := skip.Load(); k > 0 {
				c.plain = skip.CompareAndSwap(k, k-1)
			}
			order <- c
			work <- c
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			rerr = fmt.Errorf("unable to read file: %w", err)
			break
		}
	}
	close(work)
	close(order)
	if err := <-emitErr; err != nil {
		return w.Stats(), err
	}
	if rerr != nil {
		return w.Stats(), rerr
	}
	var s [32]byte
	sum.Sum(s[:0])
	if err := w.End(size, s); err != nil {
		return w.Stats(), err
	}
	return w.Stats(), nil
}

// literalPrepared writes raw (at most LiteralChunk bytes) as one literal
// op, as z when z is its zstd compression, else raw.
func (w *OpWriter) literalPrepared(raw, z []byte) error {
	if w.state != 1 {
		return fmt.Errorf("%w: literal outside a stream", ErrInvalid)
	}
	if len(raw) == 0 || len(raw) > LiteralChunk {
		return fmt.Errorf("%w: literal of %d bytes", ErrInvalid, len(raw))
	}
	var h [literalHeader]byte
	h[0] = litRaw
	data := raw
	if z != nil {
		h[0] = litZstd
		data = z
	}
	binary.BigEndian.PutUint32(h[1:], uint32(len(raw)))
	w.stats.Literals++
	w.stats.LiteralBytes += int64(len(raw))
	w.stats.LiteralWire += int64(len(data))
	w.stats.Size += int64(len(raw))
	return w.frame(OpLiteral, h[:], data)
}
