// Package delta is DarkShell's block-level delta engine (rsync's algorithm)
// for sync between the controller and sandboxd. It works on io.Reader,
// io.Writer, io.ReaderAt and byte slices only: no file-system or network
// I/O, no logging, and it imports nothing else from this module.
//
// # Algorithm
//
// The receiver, which holds the old file, cuts it into blocks of
// BlockSize(size) bytes (sqrt(size) rounded to a power of two, within
// [2 KiB, 128 KiB]; only the last block may be shorter) and sends a
// Signature: per block a 32-bit weak rolling checksum and a strong hash
// (SHA-256 truncated to 8..16 bytes, chosen from the file size so that a
// false match is unlikely; SHA-256 because it is the fastest strong hash
// here with SHA-NI). Sign computes it.
//
// The weak checksum is a polynomial hash over Z/2^64,
// h = Σ T[x_i]·P^(n-1-i), with T a fixed table of pseudo-random 64-bit
// values and P odd; it rolls one byte in O(1) (h·P + T[in] − T[out]·P^n),
// and its top 32 bits are the checksum on the wire.
//
// The sender runs Diff: it slides a window of one block over the new file,
// rolling the weak checksum; a bit filter and a hash table find old blocks
// with the same weak checksum (at most MaxCandidates distinct ones, blocks
// with identical hashes collapsed to the lowest index), the strong hash
// confirms, and the window jumps a block. The block after the last match is
// tried first, so runs of blocks coalesce into one Copy. The old file's
// partial last block is matched right after the block before it or at the
// very end of the new data. Everything else becomes Literal ops of up to
// LiteralChunk bytes, zstd-compressed when that saves at least 1/32 (after
// a miss, compression is skipped for a doubling number of literals, up to
// 16). The end op carries the size and SHA-256 of the new file.
//
// The receiver runs Apply: it copies blocks from the old file, writes
// literals, and checks size and SHA-256 against the end op. WriteWhole
// makes a stream without copies (header block size 0) for new or small
// files; Apply takes it with any old file.
//
// # Signature encoding
//
// All integers are big-endian.
//
//	offset size field
//	0      1    version, 1
//	1      1    strong hash length L, 8..32
//	2      4    block size B, a power of two in [2048, 131072]
//	6      8    file size S, at most MaxFileSize (2^50)
//	14     4    block count N, must equal ceil(S/B) and be <= MaxBlocks (2^20)
//	18     N×(4+L) per block: weak checksum (4 bytes), strong hash (L bytes)
//
// ReadSignature checks the header before reading any block entry, grows
// memory only as entries arrive, reads exactly the encoding, and validates
// the result (Signature.Validate).
//
// # Op stream
//
// A stream is frames: kind (1 byte), payload length (4 bytes), payload. The
// length is checked against the kind's limit before the payload is read.
// Order: one header, any copies and literals, one end; nothing is read past
// the end frame.
//
//	kind 1 header  (12 bytes) block size (4), old file size (8); block size 0
//	               and size 0 mean a whole-file stream that may not copy
//	kind 2 copy    (8 bytes)  first block index (4), block count (4, >= 1);
//	               the blocks must lie within the old file of the header
//	kind 3 literal (5..5+MaxLiteral bytes) flags (1: 0 raw, 1 zstd),
//	               decompressed length D (4, 1..MaxLiteral), data; raw data
//	               is exactly D bytes, zstd data must decompress to exactly D
//	kind 4 end     (40 bytes) new file size (8), SHA-256 of the new file (32)
//
// # Safety rules
//
// Every input from the peer is hostile:
//   - decoders never allocate from a claimed length before checking it
//     against a fixed limit (MaxBlocks, MaxLiteral, frame limits), and
//     refuse with ErrLimit;
//   - zstd literals are decoded with a window and output cap of the claimed
//     length (at most MaxLiteral, 1 MiB): a bomb stops there with ErrLimit;
//   - Apply checks the header against its own old file (ErrMismatch) and
//     every copy against the old file's block count (ErrInvalid) before
//     reading; reads stay within [0, oldSize). ApplyLimit also caps the
//     output size, since a few bytes of copies can ask for a lot;
//   - the reconstructed file is accepted only if its size and SHA-256 match
//     the end op (ErrMismatch); callers write to a temporary file and
//     rename on success;
//   - Diff against a hostile signature stays linear: candidates per weak
//     checksum are bounded, and failed strong checks may hash at most twice
//     the bytes read (plus 64 blocks) before searching pauses.
//
// Errors wrap ErrInvalid, ErrLimit, ErrMismatch or ErrTruncated, or an I/O
// error of the caller's reader or writer.
package delta
