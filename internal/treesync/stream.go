package treesync

import (
	"encoding/binary"
	"io"
	"sync"

	"github.com/bohica-labs/darkshell/protocol"
)

// frameBatcher writes a byte stream as data frames of protocol.DataChunk
// bytes (the last one of a flush may be shorter), collected into stream
// writes of about batchBytes: one stream write per 32 KiB frame cost a mux
// round (and an SSH packet flush) each. Flush writes what is collected.
type frameBatcher struct {
	w    *protocol.Writer
	t    protocol.FrameType
	buf  []byte
	open int // offset of the last frame's header in buf, if it has room; -1: none
}

// batchBytes is the size of one batched stream write.
const batchBytes = 256 << 10

func newFrameBatcher(w *protocol.Writer, t protocol.FrameType) *frameBatcher {
	return &frameBatcher{w: w, t: t, open: -1, buf: make([]byte, 0, batchBytes+protocol.DataChunk+protocol.HeaderSize)}
}

func (b *frameBatcher) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if b.open < 0 {
			b.open = len(b.buf)
			b.buf = protocol.AppendFrame(b.buf, b.t, nil)
		}
		have := len(b.buf) - b.open - protocol.HeaderSize
		k := min(len(p), protocol.DataChunk-have)
		b.buf = append(b.buf, p[:k]...)
		p = p[k:]
		binary.BigEndian.PutUint32(b.buf[b.open+1:], uint32(have+k))
		if have+k == protocol.DataChunk {
			b.open = -1
			if len(b.buf) >= batchBytes {
				if err := b.Flush(); err != nil {
					return n - len(p), err
				}
			}
		}
	}
	return n, nil
}

// Flush writes the collected frames.
func (b *frameBatcher) Flush() error {
	b.open = -1
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Raw(b.buf)
	b.buf = b.buf[:0]
	return err
}

// prefetcher reads a stream ahead into up to prefetchBlocks blocks of
// prefetchBlock bytes, so the peer keeps sending (the mux window stays
// open) while this side writes a file; a hostile peer can make it hold at
// most prefetchBlocks*prefetchBlock bytes.
type prefetcher struct {
	ch   chan []byte // filled blocks; closed once err is set
	free chan []byte
	cur  []byte // unread part of blk
	blk  []byte
	err  error // the source's read error (set before ch is closed)
	stop chan struct{}
	once sync.Once
}

const (
	prefetchBlock  = 256 << 10
	prefetchBlocks = 48
)

// newPrefetcher starts reading r; close stops it (a read blocked in r ends
// when r is closed).
func newPrefetcher(r io.Reader) *prefetcher {
	p := &prefetcher{ch: make(chan []byte, prefetchBlocks), free: make(chan []byte, prefetchBlocks+2), stop: make(chan struct{})}
	go func() {
		defer close(p.ch)
		for {
			var b []byte
			select {
			case b = <-p.free:
			default:
				b = make([]byte, prefetchBlock)
			}
			n, err := r.Read(b[:cap(b)])
			if n > 0 {
				select {
				case p.ch <- b[:n]:
				case <-p.stop:
					p.err = io.ErrClosedPipe
					return
				}
			}
			if err != nil {
				p.err = err
				return
			}
		}
	}()
	return p
}

func (p *prefetcher) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		if p.blk != nil {
			select {
			case p.free <- p.blk:
			default:
			}
			p.blk = nil
		}
		blk, ok := <-p.ch
		if !ok {
			return 0, p.err
		}
		p.blk, p.cur = blk, blk
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// empty reports whether a Read may have to wait for the source (nothing
// read ahead is left). Only the reader calls it, so "not empty" stays true
// until it reads.
func (p *prefetcher) empty() bool { return len(p.cur) == 0 && len(p.ch) == 0 }

func (p *prefetcher) close() { p.once.Do(func() { close(p.stop) }) }

// splitRW reads from r and writes to w.
type splitRW struct {
	io.Reader
	io.Writer
}
