package protocol

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// Directory digests (FrameSyncDirSums, FrameSyncWant; spec.md section 7.4,
// "Directory digests"). A sender that may use them (the peer announced
// CapSyncDirSums) sends one digest per directory of its list instead of
// the list; the receiver digests its own directories the same way and
// answers with the directories that differ, whose entries alone are then
// listed. An unchanged 30k-file tree costs about 1,400 digests on the wire
// and no per-entry work beyond the walk on the receiver.

// DirSumSize is the size of one directory digest.
const DirSumSize = 16

// DirSum is the digest of one directory's entries.
type DirSum struct {
	Path string // "." for the root, else a valid sync path
	Sum  [DirSumSize]byte
}

// DirDigest accumulates the digest of one directory's direct entries. The
// result does not depend on the order of Add calls (the entries of a
// directory have distinct names): each entry is hashed with SHA-256 and
// the hashes are summed, so both sides may walk in any order. It covers
// exactly what a receiver compares: a file's mode, size and mtime, a
// directory's mode and mtime, a symlink's target; any other kind of entry
// (the receiver's fifos, sockets, devices) never matches a sender's.
// The zero value is the digest of an empty directory.
type DirDigest struct {
	a, b, n uint64
}

// Entry kinds of a DirDigest.
const (
	DigestFile    = 'f'
	DigestDir     = 'd'
	DigestSymlink = 'l'
	DigestOther   = 'o'
)

// Add adds the entry name (its base name) of kind (Digest*); fields that
// kind does not use are ignored.
func (d *DirDigest) Add(kind byte, name string, mode uint32, size, mtime int64, link string) {
	var stack [320]byte
	b := append(stack[:0], kind)
	b = binary.AppendUvarint(b, uint64(len(name)))
	b = append(b, name...)
	switch kind {
	case DigestFile:
		b = binary.AppendUvarint(b, uint64(mode&0o777))
		b = binary.AppendUvarint(b, uint64(size))
		b = binary.AppendVarint(b, mtime)
	case DigestDir:
		b = binary.AppendUvarint(b, uint64(mode&0o777))
		b = binary.AppendVarint(b, mtime)
	case DigestSymlink:
		b = binary.AppendUvarint(b, uint64(len(link)))
		b = append(b, link...)
	default:
		b[0] = DigestOther
	}
	h := sha256.Sum256(b)
	d.a += binary.LittleEndian.Uint64(h[0:])
	d.b += binary.LittleEndian.Uint64(h[8:])
	d.n++
}

// Sum returns the digest.
func (d *DirDigest) Sum() [DirSumSize]byte {
	var b [24]byte
	binary.LittleEndian.PutUint64(b[0:], d.n)
	binary.LittleEndian.PutUint64(b[8:], d.a)
	binary.LittleEndian.PutUint64(b[16:], d.b)
	h := sha256.Sum256(b[:])
	var s [DirSumSize]byte
	copy(s[:], h[:])
	return s
}

// AppendSyncDirSums appends the encoding of ds (at most MaxSyncBatchB, each
// path "." or valid) to dst:
//
//	uvarint count
//	per directory:
//	  uvarint bytes shared with the previous path of the batch
//	  uvarint length of the rest, then the rest
//	  16 bytes digest
func AppendSyncDirSums(dst []byte, ds []DirSum) ([]byte, error) {
	if len(ds) > MaxSyncBatchB {
		return dst, fmt.Errorf("%d directory digests in one batch, limit %d", len(ds), MaxSyncBatchB)
	}
	dst = binary.AppendUvarint(dst, uint64(len(ds)))
	prev := ""
	for i := range ds {
		p := ds[i].Path
		if p != "." {
			if err := ValidSyncPath(p); err != nil {
				return dst, err
			}
		}
		shared := 0
		for shared < len(prev) && shared < len(p) && prev[shared] == p[shared] {
			shared++
		}
		dst = binary.AppendUvarint(dst, uint64(shared))
		dst = binary.AppendUvarint(dst, uint64(len(p)-shared))
		dst = append(dst, p[shared:]...)
		dst = append(dst, ds[i].Sum[:]...)
		prev = p
	}
	return dst, nil
}

// DecodeSyncDirSums decodes a FrameSyncDirSums payload (see
// AppendSyncDirSums); every path must be "." or a valid sync path, and a
// malformed, truncated or trailing byte is an ErrInvalid error. Where
// the directories sit in the tree is the receiver's to check.
func DecodeSyncDirSums(b []byte) ([]DirSum, error) {
	r := &binReader{b: b}
	n := r.uvarint()
	if r.err != nil {
		return nil, fmt.Errorf("%w: directory digests: count %v", ErrInvalid, r.err)
	}
	// Every directory takes at least 18 bytes: no allocation beyond the input.
	if n > MaxSyncBatchB || n > uint64(len(r.b))/(2+DirSumSize) {
		return nil, fmt.Errorf("%w: directory digests: %d in %d bytes (limit %d per batch)", ErrInvalid, n, len(r.b), MaxSyncBatchB)
	}
	ds := make([]DirSum, n)
	ends := make([]int, n)
	var arena []byte
	prev := 0
	for i := range ds {
		shared := r.uvarint()
		rest := r.uvarint()
		if r.err != nil {
			return nil, fmt.Errorf("%w: directory digest %d: %v", ErrInvalid, i, r.err)
		}
		prevLen := 0
		if i > 0 {
			prevLen = ends[i-1] - prev
		}
		if shared > uint64(prevLen) || rest > MaxSyncPath || shared+rest > MaxSyncPath || shared+rest == 0 {
			return nil, fmt.Errorf("%w: directory digest %d: path of %d+%d bytes (previous %d, limit %d)", ErrInvalid, i, shared, rest, prevLen, MaxSyncPath)
		}
		start := len(arena)
		arena = append(arena, arena[prev:prev+int(shared)]...)
		arena = append(arena, r.bytes(rest)...)
		ends[i], prev = len(arena), start
		copy(ds[i].Sum[:], r.bytes(DirSumSize))
		if r.err != nil {
			return nil, fmt.Errorf("%w: directory digest %d: %v", ErrInvalid, i, r.err)
		}
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: directory digests: %d bytes after the last one", ErrInvalid, len(r.b))
	}
	paths := string(arena)
	start := 0
	for i := range ds {
		ds[i].Path = paths[start:ends[i]]
		start = ends[i]
		if ds[i].Path != "." {
			if err := ValidSyncPath(ds[i].Path); err != nil {
				return nil, fmt.Errorf("%w: directory digest %d: %v", ErrInvalid, i, err)
			}
		}
	}
	return ds, nil
}

// AppendSyncWant appends the FrameSyncWant bitmap of want: bit i (byte
// i/8, bit i%8, least significant first) is set when the receiver wants
// the entries of the sender's i-th directory.
func AppendSyncWant(dst []byte, want []bool) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, (len(want)+7)/8)...)
	for i, w := range want {
		if w {
			dst[start+i/8] |= 1 << (i % 8)
		}
	}
	return dst
}

// DecodeSyncWant decodes a FrameSyncWant bitmap for n directories: it
// must be (n+7)/8 bytes with no bit set past n.
func DecodeSyncWant(b []byte, n int) ([]bool, error) {
	if n < 0 || n > MaxSyncEntries || len(b) != (n+7)/8 {
		return nil, fmt.Errorf("%w: want bitmap of %d bytes for %d directories", ErrInvalid, len(b), n)
	}
	if n%8 != 0 && b[len(b)-1]>>(n%8) != 0 {
		return nil, fmt.Errorf("%w: want bitmap has bits past directory %d", ErrInvalid, n)
	}
	want := make([]bool, n)
	for i := range want {
		want[i] = b[i/8]&(1<<(i%8)) != 0
	}
	return want, nil
}
