package delta

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// Apply reconstructs a file from ops into out, taking copied blocks from
// old (oldSize bytes, signed with blockSize). See ApplyLimit.
func Apply(old io.ReaderAt, oldSize int64, blockSize int, ops *OpReader, out io.Writer) (Stats, error) {
	return ApplyLimit(old, oldSize, blockSize, ops, out, MaxFileSize)
}

// ApplyLimit is Apply that refuses with ErrLimit to write more than
// maxSize bytes (a few bytes of copies can otherwise ask for a lot of
// output). It reads ops up to and including the end op.
//
// The header must name the same block size and old size as the caller
// (ErrMismatch otherwise) unless it is a whole-file header. Every copy is
// checked against the old file's bounds before it is read; the output's
// size and SHA-256 are checked against the end op (ErrMismatch). On error
// out holds garbage: write to a temporary file and rename it only on
// success.
func ApplyLimit(old io.ReaderAt, oldSize int64, blockSize int, ops *OpReader, out io.Writer, maxSize int64) (Stats, error) {
	wire0 := ops.WireBytes()
	st, err := apply(old, oldSize, blockSize, ops, out, maxSize)
	st.WireBytes = ops.WireBytes() - wire0
	return st, err
}

func apply(old io.ReaderAt, oldSize int64, blockSize int, ops *OpReader, out io.Writer, maxSize int64) (Stats, error) {
	var st Stats
	sum := sha256.New()
	var buf []byte
	emit := func(p []byte) error {
		if int64(len(p)) > maxSize-st.Size {
			return fmt.Errorf("%w: output larger than %d bytes", ErrLimit, maxSize)
		}
		st.Size += int64(len(p))
		sum.Write(p)
		if _, err := out.Write(p); err != nil {
			return fmt.Errorf("unable to write output: %w", err)
		}
		return nil
	}
	for {
		op, err := ops.Next()
		if errors.Is(err, io.EOF) {
			return st, fmt.Errorf("%w: op stream already ended", ErrInvalid)
		}
		if err != nil {
			return st, err
		}
		st.Ops++
		switch op.Kind {
		case OpHeader:
			if op.BlockSize != 0 && (op.BlockSize != blockSize || op.OldSize != oldSize) {
				return st, fmt.Errorf("%w: ops for an old file of %d bytes in blocks of %d, have %d bytes in blocks of %d",
					ErrMismatch, op.OldSize, op.BlockSize, oldSize, blockSize)
			}
		case OpCopy:
			// OpReader checked the range against the header, which matches.
			off := int64(op.Index) * int64(blockSize)
			n, err := copyRange(blockSize, oldSize, op.Index, op.Count)
			if err != nil {
				return st, err
			}
			if n > maxSize-st.Size {
				return st, fmt.Errorf("%w: output larger than %d bytes", ErrLimit, maxSize)
			}
			if int64(len(buf)) < min(n, 1<<20) {
				buf = make([]byte, min(n, 1<<20))
			}
			for n > 0 {
				b := buf[:min(n, int64(len(buf)))]
				k, err := old.ReadAt(b, off)
				if k < len(b) {
					if err == nil || errors.Is(err, io.EOF) {
						err = io.ErrUnexpectedEOF
					}
					return st, fmt.Errorf("unable to read old file at %d: %w", off, err)
				}
				if err := emit(b); err != nil {
					return st, err
				}
				off += int64(len(b))
				n -= int64(len(b))
				st.CopyBytes += int64(len(b))
			}
			st.Copies++
		case OpLiteral:
			if err := emit(op.Data); err != nil {
				return st, err
			}
			st.Literals++
			st.LiteralBytes += int64(len(op.Data))
			st.LiteralWire += int64(op.Wire)
		case OpEnd:
			var got [32]byte
			sum.Sum(got[:0])
			if op.Size != st.Size || got != op.Sum {
				return st, fmt.Errorf("%w: got %d bytes sha256 %x, end op says %d bytes sha256 %x",
					ErrMismatch, st.Size, got[:8], op.Size, op.Sum[:8])
			}
			return st, nil
		}
	}
}
