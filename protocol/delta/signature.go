package delta

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// sigVersion is the signature encoding version (first byte on the wire).
const sigVersion = 1

// sigHeaderLen is the fixed part of an encoded Signature.
const sigHeaderLen = 1 + 1 + 4 + 8 + 4

// Signature describes an old file block by block: for block i, bytes
// [i·BlockSize, min((i+1)·BlockSize, Size)), a 32-bit weak rolling checksum
// Weak[i] and a strong hash Strong[i·StrongLen:(i+1)·StrongLen] (SHA-256
// truncated to StrongLen bytes). Only the last block may be shorter.
type Signature struct {
	BlockSize int      // power of two in [MinBlockSize, MaxBlockSize]
	StrongLen int      // bytes per strong hash, [MinStrongLen, MaxStrongLen]
	Size      int64    // size of the signed file
	Weak      []uint32 // one per block
	Strong    []byte   // StrongLen bytes per block
}

// Blocks returns the number of blocks, ceil(Size/BlockSize).
func (s *Signature) Blocks() int { return len(s.Weak) }

// blockLen returns the length of block i.
func (s *Signature) blockLen(i int) int {
	if i == len(s.Weak)-1 {
		return int(s.Size - int64(i)*int64(s.BlockSize))
	}
	return s.BlockSize
}

// strong returns the strong hash of block i.
func (s *Signature) strong(i int) []byte {
	return s.Strong[i*s.StrongLen : (i+1)*s.StrongLen]
}

// Validate reports whether s is well formed: a nil Signature is invalid,
// the block size is a power of two within limits, the block count matches
// the size and stays within MaxBlocks. It wraps ErrInvalid or ErrLimit.
func (s *Signature) Validate() error {
	if s == nil {
		return fmt.Errorf("%w: nil signature", ErrInvalid)
	}
	if err := checkShape(s.BlockSize, s.StrongLen, s.Size); err != nil {
		return err
	}
	n := numBlocks(s.Size, s.BlockSize)
	switch {
	case int64(len(s.Weak)) != n:
		return fmt.Errorf("%w: %d weak sums for %d blocks", ErrInvalid, len(s.Weak), n)
	case int64(len(s.Strong)) != n*int64(s.StrongLen):
		return fmt.Errorf("%w: %d strong bytes for %d blocks", ErrInvalid, len(s.Strong), n)
	}
	return nil
}

// checkShape checks the scalar fields of a Signature.
func checkShape(blockSize, strongLen int, size int64) error {
	switch {
	case blockSize < MinBlockSize || blockSize > MaxBlockSize || blockSize&(blockSize-1) != 0:
		return fmt.Errorf("%w: block size %d", ErrInvalid, blockSize)
	case strongLen < MinStrongLen || strongLen > MaxStrongLen:
		return fmt.Errorf("%w: strong hash length %d", ErrInvalid, strongLen)
	case size < 0 || size > MaxFileSize:
		return fmt.Errorf("%w: size %d", ErrLimit, size)
	case numBlocks(size, blockSize) > MaxBlocks:
		return fmt.Errorf("%w: %d blocks, at most %d", ErrLimit, numBlocks(size, blockSize), MaxBlocks)
	}
	return nil
}

// Sign reads exactly size bytes from r and returns their Signature, with
// BlockSize(size) and a strong-hash length chosen for the size. Files that
// would need more than MaxBlocks blocks are refused with ErrLimit (send them
// whole).
func Sign(r io.Reader, size int64) (*Signature, error) {
	b := BlockSize(size)
	return SignBlocks(r, size, b, strongLen(size, b))
}

// SignBlocks is Sign with an explicit block size and strong-hash length.
func SignBlocks(r io.Reader, size int64, blockSize, strongLen int) (*Signature, error) {
	if err := checkShape(blockSize, strongLen, size); err != nil {
		return nil, err
	}
	n := numBlocks(size, blockSize)
	s := &Signature{
		BlockSize: blockSize,
		StrongLen: strongLen,
		Size:      size,
		Weak:      make([]uint32, n),
		Strong:    make([]byte, n*int64(strongLen)),
	}
	per := max(1, (1<<20)/blockSize)
	buf := make([]byte, per*blockSize)
	i := 0
	for left := size; left > 0; {
		chunk := buf[:min(int64(len(buf)), left)]
		if _, err := io.ReadFull(r, chunk); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%w: file shorter than %d bytes", ErrTruncated, size)
			}
			return nil, fmt.Errorf("unable to read file to sign: %w", err)
		}
		left -= int64(len(chunk))
		for len(chunk) > 0 {
			blk := chunk[:min(len(chunk), blockSize)]
			chunk = chunk[len(blk):]
			s.Weak[i] = weakKey(weakSum(blk))
			h := sha256.Sum256(blk)
			copy(s.strong(i), h[:])
			i++
		}
	}
	return s, nil
}

// EncodedLen returns the number of bytes WriteTo writes.
func (s *Signature) EncodedLen() int64 {
	return sigHeaderLen + int64(len(s.Weak))*int64(4+s.StrongLen)
}

// WriteTo writes the binary encoding of s (see the package doc).
func (s *Signature) WriteTo(w io.Writer) (int64, error) {
	if err := s.Validate(); err != nil {
		return 0, err
	}
	var total int64
	buf := make([]byte, 0, 64<<10)
	buf = append(buf, sigVersion, byte(s.StrongLen))
	buf = binary.BigEndian.AppendUint32(buf, uint32(s.BlockSize))
	buf = binary.BigEndian.AppendUint64(buf, uint64(s.Size))
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(s.Weak)))
	for i := range s.Weak {
		if len(buf)+4+s.StrongLen > cap(buf) {
			n, err := w.Write(buf)
			total += int64(n)
			if err != nil {
				return total, err
			}
			buf = buf[:0]
		}
		buf = binary.BigEndian.AppendUint32(buf, s.Weak[i])
		buf = append(buf, s.strong(i)...)
	}
	n, err := w.Write(buf)
	return total + int64(n), err
}

// MarshalBinary returns the binary encoding of s.
func (s *Signature) MarshalBinary() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var b sliceWriter
	b.b = make([]byte, 0, s.EncodedLen())
	_, err := s.WriteTo(&b)
	return b.b, err
}

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

// ReadSignature decodes one Signature from r, reading exactly its encoding
// and nothing after it. The header is checked against the limits before
// anything is allocated, memory grows only as block entries arrive, and the
// result is validated.
func ReadSignature(r io.Reader) (*Signature, error) {
	var h [sigHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, readErr(err)
	}
	if h[0] != sigVersion {
		return nil, fmt.Errorf("%w: signature version %d", ErrInvalid, h[0])
	}
	s := &Signature{
		StrongLen: int(h[1]),
		BlockSize: int(binary.BigEndian.Uint32(h[2:])),
	}
	size := binary.BigEndian.Uint64(h[6:])
	count := binary.BigEndian.Uint32(h[14:])
	if size > MaxFileSize {
		return nil, fmt.Errorf("%w: size %d", ErrLimit, size)
	}
	s.Size = int64(size)
	if count > MaxBlocks {
		return nil, fmt.Errorf("%w: %d blocks, at most %d", ErrLimit, count, MaxBlocks)
	}
	// Check everything but the block entries before reading them.
	if err := checkShape(s.BlockSize, s.StrongLen, s.Size); err != nil {
		return nil, err
	}
	if int64(count) != numBlocks(s.Size, s.BlockSize) {
		return nil, fmt.Errorf("%w: %d blocks for size %d and block size %d", ErrInvalid, count, s.Size, s.BlockSize)
	}
	entry := 4 + s.StrongLen
	const batch = 4096
	buf := make([]byte, min(int(count), batch)*entry)
	s.Weak = make([]uint32, 0, min(int(count), batch))
	s.Strong = make([]byte, 0, min(int(count), batch)*s.StrongLen)
	for left := int(count); left > 0; {
		k := min(left, batch)
		b := buf[:k*entry]
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, readErr(err)
		}
		for j := range k {
			e := b[j*entry : (j+1)*entry]
			s.Weak = append(s.Weak, binary.BigEndian.Uint32(e))
			s.Strong = append(s.Strong, e[4:]...)
		}
		left -= k
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// UnmarshalSignature decodes a Signature from b, which must hold exactly
// one encoding.
func UnmarshalSignature(b []byte) (*Signature, error) {
	r := &sliceReader{b: b}
	s, err := ReadSignature(r)
	if err != nil {
		return nil, err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after signature", ErrInvalid, len(r.b))
	}
	return s, nil
}

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// readErr maps an early end of stream to ErrTruncated.
func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %v", ErrTruncated, err)
	}
	return err
}
