package delta

import (
	"errors"
	"math"
	"math/bits"
)

// Limits and tuning constants. They are part of the wire contract: a peer
// that exceeds a limit is refused with ErrLimit.
const (
	// MinBlockSize and MaxBlockSize bound the block size of a Signature.
	// Block sizes are powers of two.
	MinBlockSize = 2 << 10
	MaxBlockSize = 128 << 10

	// MaxBlocks bounds the number of blocks in a Signature (decoded or
	// computed). With MaxBlockSize it caps delta transfer at 128 GiB per
	// file; larger files go whole (WriteWhole).
	MaxBlocks = 1 << 20

	// MinStrongLen and MaxStrongLen bound the length in bytes of the
	// per-block strong hash (a truncated SHA-256).
	MinStrongLen = 8
	MaxStrongLen = 32

	// MaxLiteral is the most bytes one literal op may carry once
	// decompressed. The decoder refuses anything larger before or while
	// decompressing.
	MaxLiteral = 1 << 20

	// LiteralChunk is the size at which the writer cuts literals into ops.
	LiteralChunk = 256 << 10

	// MaxCandidates bounds how many distinct blocks sharing one weak hash
	// Diff will consider at one position.
	MaxCandidates = 8

	// MaxFileSize bounds the size carried by header and end ops.
	MaxFileSize = 1 << 50
)

var (
	// ErrLimit is returned when input exceeds a hard limit: too many blocks,
	// an oversized frame, a literal that decompresses past MaxLiteral, an
	// output larger than allowed.
	ErrLimit = errors.New("delta: limit exceeded")
	// ErrInvalid is returned for a malformed signature or op stream: bad
	// field values, ops out of order, a Copy outside the old file.
	ErrInvalid = errors.New("delta: invalid input")
	// ErrMismatch is returned when the reconstructed file does not match the
	// size and SHA-256 of the end op, or the op stream was made for another
	// old file (block size or size differ).
	ErrMismatch = errors.New("delta: reconstructed file does not match")
	// ErrTruncated is returned when a signature or op stream ends early.
	ErrTruncated = errors.New("delta: truncated stream")
)

// BlockSize returns the block size used to sign a file of fileSize bytes:
// sqrt(fileSize) rounded to the nearest power of two (nearest in log2),
// clamped to [MinBlockSize, MaxBlockSize].
//
// sqrt balances the two costs of a delta: the signature grows as size/B
// while a single change costs about B of literal bytes. Powers of two keep
// offsets shifts. 2 KiB keeps the signature of small files below ~1% of
// their size; 128 KiB keeps a one-byte change cheap on huge files.
func BlockSize(fileSize int64) int {
	if fileSize <= MinBlockSize*MinBlockSize {
		return MinBlockSize
	}
	e := math.Round(math.Log2(math.Sqrt(float64(fileSize))))
	b := 1 << int(e)
	return min(max(b, MinBlockSize), MaxBlockSize)
}

// strongLen returns the strong-hash length used for a file: enough bits
// that the expected number of false block matches in one file (positions ×
// blocks / 2^(32+8L)) stays below 2^-8, clamped to [MinStrongLen, 16]. A
// false match is still caught by the whole-file SHA-256 of the end op.
func strongLen(size int64, blockSize int) int {
	if size <= 1 {
		return MinStrongLen
	}
	lg := bits.Len64(uint64(size))
	need := 2*lg - bits.Len(uint(blockSize)) + 8 // bits beyond the 32 weak ones
	l := (need + 7) / 8
	return min(max(l, MinStrongLen), 16)
}

// numBlocks returns ceil(size/blockSize).
func numBlocks(size int64, blockSize int) int64 {
	return (size + int64(blockSize) - 1) / int64(blockSize)
}

// Stats describes one op stream, as written by Diff/WriteWhole or read by
// Apply.
type Stats struct {
	Size         int64 // bytes of the reconstructed file
	CopyBytes    int64 // bytes taken from the old file
	LiteralBytes int64 // literal bytes, decompressed
	LiteralWire  int64 // literal payload bytes on the wire (after zstd)
	WireBytes    int64 // all bytes of the op stream, framing included
	Ops          int64 // frames, header and end included
	Copies       int64 // copy ops
	Literals     int64 // literal ops
}
