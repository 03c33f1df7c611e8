package protocol

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// Binary entry lists (FrameSyncEntriesB, spec.md section 7.4). A JSON list
// of 30k entries cost the receiver more CPU to decode than the walk of its
// own tree; this encoding is decoded in one pass with one string per batch.

// MaxSyncBatchB bounds the entries of one binary batch.
const MaxSyncBatchB = 16384

// Entry kinds of the binary encoding (the low bits of the kind byte).
const (
	binFile    = 1
	binDir     = 2
	binSymlink = 3
	binHasSum  = 0x80 // a 32-byte SHA-256 follows the entry's fields
)

// AppendSyncEntriesBin appends the binary encoding of es (at most
// MaxSyncBatchB, each valid) to dst:
//
//	uvarint count
//	per entry:
//	  byte    kind: 1 file, 2 dir, 3 symlink; | 0x80 with a checksum
//	  uvarint bytes shared with the previous path of the batch
//	  uvarint length of the rest, then the rest
//	  uvarint mode (permission bits)
//	  files:        uvarint size
//	  files, dirs:  varint mtime minus the previous entry's mtime (ns)
//	  symlinks:     uvarint target length, then the target
//	  with 0x80:    32 bytes of SHA-256
func AppendSyncEntriesBin(dst []byte, es []SyncEntry) ([]byte, error) {
	if len(es) > MaxSyncBatchB {
		return dst, fmt.Errorf("%d entries in one batch, limit %d", len(es), MaxSyncBatchB)
	}
	dst = binary.AppendUvarint(dst, uint64(len(es)))
	prev, mtime := "", int64(0)
	for i := range es {
		e := &es[i]
		if err := e.Validate(); err != nil {
			return dst, err
		}
		var kind byte
		switch e.Type {
		case SyncFile:
			kind = binFile
		case SyncDir:
			kind = binDir
		case SyncSymlink:
			kind = binSymlink
		}
		var sum []byte
		if e.Sum != "" {
			var err error
			if sum, err = hex.DecodeString(e.Sum); err != nil || len(sum) != 32 {
				return dst, fmt.Errorf("%q: bad checksum", e.Path)
			}
			kind |= binHasSum
		}
		shared := 0
		for shared < len(prev) && shared < len(e.Path) && prev[shared] == e.Path[shared] {
			shared++
		}
		dst = append(dst, kind)
		dst = binary.AppendUvarint(dst, uint64(shared))
		dst = binary.AppendUvarint(dst, uint64(len(e.Path)-shared))
		dst = append(dst, e.Path[shared:]...)
		dst = binary.AppendUvarint(dst, uint64(e.Mode))
		switch e.Type {
		case SyncFile:
			dst = binary.AppendUvarint(dst, uint64(e.Size))
			dst = binary.AppendVarint(dst, e.MtimeNs-mtime)
			mtime = e.MtimeNs
		case SyncDir:
			dst = binary.AppendVarint(dst, e.MtimeNs-mtime)
			mtime = e.MtimeNs
		case SyncSymlink:
			dst = binary.AppendUvarint(dst, uint64(len(e.Link)))
			dst = append(dst, e.Link...)
		}
		dst = append(dst, sum...)
		prev = e.Path
	}
	return dst, nil
}

var (
	errBinShort    = errors.New("truncated")
	errBinOverflow = errors.New("a number overflows 64 bits")
)

type binReader struct {
	b   []byte
	err error
}

// number consumes one varint that decode (binary.Uvarint or
// binary.Varint) read: n == 0 means the bytes ran out, n < 0 that the
// number overflows 64 bits.
func number[T uint64 | int64](r *binReader, decode func([]byte) (T, int)) T {
	if r.err != nil {
		return 0
	}
	v, n := decode(r.b)
	switch {
	case n == 0:
		r.err = errBinShort
		return 0
	case n < 0:
		r.err = errBinOverflow
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *binReader) uvarint() uint64 { return number(r, binary.Uvarint) }

func (r *binReader) varint() int64 { return number(r, binary.Varint) }

func (r *binReader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errBinShort
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

// DecodeSyncEntriesBin decodes a binary batch (see AppendSyncEntriesBin)
// and validates every entry as SyncEntry.Validate does; any malformed,
// out-of-range or trailing byte is an ErrInvalid error naming the entry.
// The paths of one batch share one string allocation.
func DecodeSyncEntriesBin(b []byte) ([]SyncEntry, error) {
	r := &binReader{b: b}
	n := r.uvarint()
	if r.err != nil {
		return nil, fmt.Errorf("%w: binary sync entries: count %v", ErrInvalid, r.err)
	}
	// Every entry takes at least 5 bytes: no allocation beyond the input.
	if n > MaxSyncBatchB || n > uint64(len(r.b))/5 {
		return nil, fmt.Errorf("%w: binary sync entries: %d entries in %d bytes (limit %d per batch)", ErrInvalid, n, len(r.b), MaxSyncBatchB)
	}
	es := make([]SyncEntry, n)
	ends := make([]int, n)
	var arena []byte
	prev := 0 // start of the previous path in arena
	var mtime int64
	for i := range es {
		e := &es[i]
		kind := r.bytes(1)
		shared := r.uvarint()
		rest := r.uvarint()
		if r.err != nil {
			return nil, fmt.Errorf("%w: binary sync entry %d: %v", ErrInvalid, i, r.err)
		}
		prevLen := 0
		if i > 0 {
			prevLen = ends[i-1] - prev
		}
		if shared > uint64(prevLen) || rest > MaxSyncPath || shared+rest > MaxSyncPath || shared+rest == 0 {
			return nil, fmt.Errorf("%w: binary sync entry %d: path of %d+%d bytes (previous %d, limit %d)", ErrInvalid, i, shared, rest, prevLen, MaxSyncPath)
		}
		start := len(arena)
		arena = append(arena, arena[prev:prev+int(shared)]...)
		arena = append(arena, r.bytes(rest)...)
		ends[i], prev = len(arena), start
		mode := r.uvarint()
		if mode > 0o777 {
			return nil, fmt.Errorf("%w: binary sync entry %d: mode %o has bits other than 0777", ErrInvalid, i, mode)
		}
		e.Mode = uint32(mode)
		switch kind[0] &^ binHasSum {
		case binFile:
			e.Type = SyncFile
			size := r.uvarint()
			if size > MaxSyncFileSize {
				return nil, fmt.Errorf("%w: binary sync entry %d: size %d out of range", ErrInvalid, i, size)
			}
			e.Size = int64(size)
			mtime += r.varint()
			e.MtimeNs = mtime
		case binDir:
			if kind[0]&binHasSum != 0 {
				return nil, fmt.Errorf("%w: binary sync entry %d: checksum on a directory", ErrInvalid, i)
			}
			e.Type = SyncDir
			mtime += r.varint()
			e.MtimeNs = mtime
		case binSymlink:
			if kind[0]&binHasSum != 0 {
				return nil, fmt.Errorf("%w: binary sync entry %d: checksum on a symlink", ErrInvalid, i)
			}
			e.Type = SyncSymlink
			ln := r.uvarint()
			if ln == 0 || ln > MaxSyncPath {
				return nil, fmt.Errorf("%w: binary sync entry %d: symlink target of %d bytes", ErrInvalid, i, ln)
			}
			e.Link = string(r.bytes(ln))
		default:
			if r.err == nil {
				return nil, fmt.Errorf("%w: binary sync entry %d: unknown kind %#x", ErrInvalid, i, kind[0])
			}
		}
		if kind != nil && kind[0]&binHasSum != 0 {
			if sum := r.bytes(32); sum != nil {
				e.Sum = hex.EncodeToString(sum)
			}
		}
		if r.err != nil {
			return nil, fmt.Errorf("%w: binary sync entry %d: %v", ErrInvalid, i, r.err)
		}
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: binary sync entries: %d bytes after the last entry", ErrInvalid, len(r.b))
	}
	paths := string(arena)
	start := 0
	for i := range es {
		es[i].Path = paths[start:ends[i]]
		start = ends[i]
		if err := es[i].Validate(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	return es, nil
}
