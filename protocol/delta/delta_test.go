package delta

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// randBytes returns n deterministic pseudo-random bytes.
func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 'd'}).Read(b)
	return b
}

// strictReaderAt fails the test on any read outside [0, size).
type strictReaderAt struct {
	tb testing.TB
	b  []byte
}

func (r strictReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(r.b)) {
		r.tb.Fatalf("read out of range: [%d, %d) of %d", off, off+int64(len(p)), len(r.b))
	}
	return copy(p, r.b[off:]), nil
}

type result struct {
	diff, apply Stats
	sigLen      int64
	stream      []byte
}

// roundTrip signs old with blockSize (0: BlockSize), sends the signature
// through its encoding, diffs new, applies, and checks the output is new.
func roundTrip(tb testing.TB, old, new []byte, blockSize int) result {
	tb.Helper()
	if blockSize == 0 {
		blockSize = BlockSize(int64(len(old)))
	}
	sig, err := SignBlocks(bytes.NewReader(old), int64(len(old)), blockSize, strongLen(int64(len(old)), blockSize))
	if err != nil {
		tb.Fatalf("Sign: %v", err)
	}
	enc, err := sig.MarshalBinary()
	if err != nil {
		tb.Fatalf("MarshalBinary: %v", err)
	}
	if int64(len(enc)) != sig.EncodedLen() {
		tb.Fatalf("encoded %d bytes, EncodedLen %d", len(enc), sig.EncodedLen())
	}
	sig2, err := UnmarshalSignature(enc)
	if err != nil {
		tb.Fatalf("UnmarshalSignature: %v", err)
	}
	var stream bytes.Buffer
	ds, err := Diff(sig2, bytes.NewReader(new), NewOpWriter(&stream))
	if err != nil {
		tb.Fatalf("Diff: %v", err)
	}
	if ds.WireBytes != int64(stream.Len()) {
		tb.Fatalf("Diff WireBytes %d, stream %d", ds.WireBytes, stream.Len())
	}
	raw := bytes.Clone(stream.Bytes())
	var out bytes.Buffer
	as, err := Apply(strictReaderAt{tb, old}, int64(len(old)), sig.BlockSize, NewOpReader(&stream), &out)
	if err != nil {
		tb.Fatalf("Apply: %v", err)
	}
	if !bytes.Equal(out.Bytes(), new) {
		tb.Fatalf("Apply output differs: got %d bytes, want %d", out.Len(), len(new))
	}
	if stream.Len() != 0 {
		tb.Fatalf("Apply left %d bytes of the stream unread", stream.Len())
	}
	if ds != as {
		tb.Fatalf("stats differ:\ndiff  %+v\napply %+v", ds, as)
	}
	if ds.Size != int64(len(new)) || ds.CopyBytes+ds.LiteralBytes != ds.Size {
		tb.Fatalf("stats do not add up: %+v for %d bytes", ds, len(new))
	}
	return result{diff: ds, apply: as, sigLen: int64(len(enc)), stream: raw}
}

func TestBlockSize(t *testing.T) {
	for _, tc := range []struct {
		size int64
		want int
	}{
		{0, 2 << 10}, {1, 2 << 10}, {4 << 20, 2 << 10}, {64 << 20, 8 << 10},
		{200 << 20, 16 << 10}, {1 << 30, 32 << 10}, {16 << 30, 128 << 10}, {1 << 40, 128 << 10},
	} {
		if got := BlockSize(tc.size); got != tc.want {
			t.Errorf("BlockSize(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
}

func TestWeakRolls(t *testing.T) {
	data := randBytes(1, 10000)
	for _, n := range []int{1, 7, 8, 9, 2048} {
		u := rollTable(n)
		h := weakSum(data[:n])
		for i := 0; i+n < len(data); i++ {
			h = h*weakP + weakT[data[i+n]] - u[data[i]]
			if want := weakSum(data[i+1 : i+1+n]); h != want {
				t.Fatalf("n=%d i=%d: rolled %x, want %x", n, i, h, want)
			}
		}
	}
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestRoundTripCases(t *testing.T) {
	const B = MinBlockSize
	base := randBytes(2, 10*B+123) // ends with a partial block
	aligned := randBytes(3, 8*B)
	zeros := make([]byte, 40*B)
	rep := bytes.Repeat(randBytes(4, B), 30)
	for _, tc := range []struct {
		name     string
		old, new []byte
		check    func(t *testing.T, s Stats)
	}{
		{name: "both empty", old: nil, new: nil},
		{name: "empty old", old: nil, new: base},
		{name: "empty new", old: base, new: nil},
		{name: "one byte both", old: []byte{1}, new: []byte{1}, check: copied(1)},
		{name: "one byte changed", old: []byte{1}, new: []byte{2}},
		{name: "one byte to many", old: []byte{1}, new: base},
		{name: "exactly one block", old: base[:B], new: base[:B], check: copied(B)},
		{name: "short new file", old: base, new: base[5:100]},
		{name: "short old file", old: base[:100], new: base[:1000]},
		{name: "identical", old: base, new: base, check: func(t *testing.T, s Stats) {
			if s.LiteralBytes != 0 || s.Copies != 1 {
				t.Errorf("identical file: %+v, want one copy and no literal", s)
			}
		}},
		{name: "identical aligned", old: aligned, new: aligned, check: copied(len(aligned))},
		{name: "append", old: base, new: cat(base, []byte("tail")), check: copied(len(base))},
		{name: "append aligned", old: aligned, new: cat(aligned, base[:5000]), check: copied(len(aligned))},
		{name: "truncate unaligned", old: base, new: base[:5*B+7], check: copied(5 * B)},
		{name: "truncate aligned", old: base, new: base[:5*B], check: copied(5 * B)},
		{name: "insert front", old: base, new: cat([]byte("x"), base), check: copied(len(base))},
		{name: "insert middle", old: base, new: cat(base[:3*B+5], []byte("hello"), base[3*B+5:])},
		{name: "delete aligned block", old: base, new: cat(base[:2*B], base[3*B:]), check: copied(len(base) - B)},
		{name: "delete unaligned", old: base, new: cat(base[:2*B+9], base[3*B+100:])},
		{name: "replace", old: base, new: cat(base[:4*B], randBytes(5, B), base[5*B:]), check: copied(len(base) - B)},
		{name: "duplicated region", old: base, new: cat(base[:6*B], base[2*B:6*B], base[6*B:]), check: copied(len(base) + 4*B)},
		{name: "reordered", old: base, new: cat(base[5*B:], base[:5*B])},
		{name: "partial tail after new front", old: base, new: cat(randBytes(6, 3*B+11), base[9*B:]), check: copied(B + 123)},
		{name: "zeros", old: zeros, new: zeros, check: func(t *testing.T, s Stats) {
			if s.LiteralBytes != 0 || s.Copies != 1 {
				t.Errorf("zeros: %+v, want one copy", s)
			}
		}},
		{name: "zeros shifted", old: zeros, new: cat([]byte{1, 2, 3}, zeros[:len(zeros)-B+1])},
		{name: "repeated blocks", old: rep, new: cat(rep[:B*3], []byte("!"), rep[B*3:])},
		{name: "compressible literal", old: nil, new: bytes.Repeat([]byte("darkshell "), 100000), check: func(t *testing.T, s Stats) {
			if s.LiteralWire*10 > s.LiteralBytes {
				t.Errorf("text literal not compressed: %+v", s)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, b := range []int{0, B, 4 * B} {
				r := roundTrip(t, tc.old, tc.new, b)
				if tc.check != nil && (b == 0 || b == B) && BlockSize(int64(len(tc.old))) == B {
					tc.check(t, r.diff)
				}
			}
		})
	}
}

func copied(n int) func(*testing.T, Stats) {
	return func(t *testing.T, s Stats) {
		t.Helper()
		if s.CopyBytes != int64(n) {
			t.Errorf("copied %d bytes, want %d (%+v)", s.CopyBytes, n, s)
		}
	}
}

// edit applies one random edit to b.
func edit(r *rand.Rand, b []byte, B int) []byte {
	at := func() int { return r.IntN(len(b) + 1) }
	if r.IntN(2) == 0 && len(b) >= B {
		at = func() int { return r.IntN(len(b)/B+1) * B } // block aligned
	}
	n := r.IntN(2*B) + 1
	if r.IntN(4) == 0 {
		n = r.IntN(16) + 1
	}
	switch r.IntN(7) {
	case 0: // insert
		i := at()
		return cat(b[:i], randBytes(r.Uint64(), n), b[i:])
	case 1: // delete
		i := at()
		return cat(b[:i], b[min(len(b), i+n):])
	case 2: // replace
		i := at()
		j := min(len(b), i+n)
		return cat(b[:i], randBytes(r.Uint64(), j-i), b[j:])
	case 3: // append
		return cat(b, randBytes(r.Uint64(), n))
	case 4: // truncate
		return b[:at()]
	case 5: // duplicate a region
		i := at()
		j := min(len(b), i+n)
		k := at()
		return cat(b[:k], b[i:j], b[k:])
	default: // repetitive run
		i := at()
		return cat(b[:i], bytes.Repeat([]byte{byte(r.IntN(3))}, n), b[i:])
	}
}

func TestRoundTripRandom(t *testing.T) {
	iters := 400
	if testing.Short() {
		iters = 100
	}
	r := rand.New(rand.NewPCG(7, 11))
	const B = MinBlockSize
	for i := range iters {
		var old []byte
		switch r.IntN(6) {
		case 0:
			old = nil
		case 1:
			old = randBytes(r.Uint64(), r.IntN(3))
		case 2:
			old = randBytes(r.Uint64(), B*(1+r.IntN(8)))
		case 3:
			old = bytes.Repeat(randBytes(r.Uint64(), 1+r.IntN(B)), 1+r.IntN(20))
		default:
			old = randBytes(r.Uint64(), r.IntN(40*B))
		}
		new := old
		for range r.IntN(6) {
			new = edit(r, new, B)
		}
		bs := []int{0, B, 2 * B}[r.IntN(3)]
		t.Run(fmt.Sprintf("%d/old=%d/new=%d", i, len(old), len(new)), func(t *testing.T) {
			roundTrip(t, old, new, bs)
		})
	}
}

func TestWholeFile(t *testing.T) {
	for _, data := range [][]byte{nil, {7}, randBytes(8, 3*LiteralChunk+5), bytes.Repeat([]byte("abc"), 500000)} {
		var stream bytes.Buffer
		ws, err := WriteWhole(bytes.NewReader(data), NewOpWriter(&stream))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		old := []byte("some old content that must not matter")
		as, err := Apply(strictReaderAt{t, old}, int64(len(old)), MinBlockSize, NewOpReader(&stream), &out)
		if err != nil {
			t.Fatalf("Apply whole (%d bytes): %v", len(data), err)
		}
		if !bytes.Equal(out.Bytes(), data) || ws != as {
			t.Fatalf("whole-file round trip of %d bytes failed: %+v vs %+v", len(data), ws, as)
		}
	}
}

// TestEfficiency200MiB changes 1 MiB in the middle of a 200 MiB file.
func TestEfficiency200MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("200 MiB under -short")
	}
	const size = 200 << 20
	old := randBytes(9, size)
	new := bytes.Clone(old)
	off := size/2 + 12345 // not block aligned
	copy(new[off:], randBytes(10, 1<<20))
	sig, err := Sign(bytes.NewReader(old), size)
	if err != nil {
		t.Fatal(err)
	}
	var stream bytes.Buffer
	ds, err := Diff(sig, bytes.NewReader(new), NewOpWriter(&stream))
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(new)
	h := sha256.New()
	if _, err := Apply(bytes.NewReader(old), size, sig.BlockSize, NewOpReader(&stream), h); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("reconstructed file differs")
	}
	total := sig.EncodedLen() + ds.WireBytes
	t.Logf("1 MiB changed in 200 MiB: block %d B, signature %d B, op stream %d B (%.3f MiB), both %d B (%.3f MiB); %d copies, %d literal bytes",
		sig.BlockSize, sig.EncodedLen(), ds.WireBytes, float64(ds.WireBytes)/(1<<20), total, float64(total)/(1<<20), ds.Copies, ds.LiteralBytes)
	if ds.WireBytes >= 1258291 {
		t.Errorf("op stream %d bytes, want < 1.2 MiB", ds.WireBytes)
	}
	if total >= 1258291 {
		t.Errorf("signature + op stream %d bytes, want < 1.2 MiB", total)
	}
}

func TestEfficiencyUnchanged(t *testing.T) {
	size := 64 << 20
	if testing.Short() {
		size = 8 << 20
	}
	data := randBytes(11, size)
	sig, err := Sign(bytes.NewReader(data), int64(size))
	if err != nil {
		t.Fatal(err)
	}
	var stream bytes.Buffer
	ds, err := Diff(sig, bytes.NewReader(data), NewOpWriter(&stream))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("unchanged %d MiB: op stream %d B, signature %d B", size>>20, ds.WireBytes, sig.EncodedLen())
	if ds.WireBytes*1000 >= int64(size) {
		t.Errorf("op stream %d bytes for an unchanged %d-byte file", ds.WireBytes, size)
	}
	var out bytes.Buffer
	if _, err := Apply(bytes.NewReader(data), int64(size), sig.BlockSize, NewOpReader(&stream), &out); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("Apply: %v", err)
	}
}

// TestHostileSignature: a forged signature whose weak checksums hit
// windows of the new data but whose strong hashes never match must not make
// Diff hash every window (that would be quadratic: size × block size).
func TestHostileSignature(t *testing.T) {
	const B = MinBlockSize
	for _, tc := range []struct {
		name string
		data []byte
		at   func(i int) int // window whose weak checksum block i claims
	}{
		// Zeros: every window has the same weak checksum, so every
		// position is a weak hit.
		{"zeros", make([]byte, 8<<20), func(int) int { return 0 }},
		{"random windows", randBytes(12, 8<<20), func(i int) int { return i * 7 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 4096
			sig := &Signature{BlockSize: B, StrongLen: 8, Size: int64(n * B), Weak: make([]uint32, n), Strong: make([]byte, n*8)}
			for i := range n {
				sig.Weak[i] = weakKey(weakSum(tc.data[tc.at(i) : tc.at(i)+B]))
				sig.Strong[i*8] = byte(i) // never the real hash
				sig.Strong[i*8+1] = byte(i >> 8)
			}
			d, ds, err := diff(sig, bytes.NewReader(tc.data), NewOpWriter(io.Discard))
			if err != nil {
				t.Fatal(err)
			}
			if ds.CopyBytes != 0 || ds.LiteralBytes != int64(len(tc.data)) {
				t.Fatalf("forged signature: %+v", ds)
			}
			t.Logf("%s: hashed %d bytes in failed strong checks for %d bytes of input", tc.name, d.wasted, len(tc.data))
			if limit := 3*int64(len(tc.data)) + 64*B; d.wasted > limit {
				t.Fatalf("failed strong checks hashed %d bytes, want at most %d", d.wasted, limit)
			}
		})
	}
}

// frameBytes encodes one raw frame.
func frameBytes(kind OpKind, payload ...[]byte) []byte {
	p := cat(payload...)
	return cat([]byte{byte(kind), byte(len(p) >> 24), byte(len(p) >> 16), byte(len(p) >> 8), byte(len(p))}, p)
}

func be32(v uint32) []byte { return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }
func be64(v uint64) []byte { return cat(be32(uint32(v>>32)), be32(uint32(v))) }

func TestHostileOps(t *testing.T) {
	const B = MinBlockSize
	old := randBytes(13, 3*B+100) // 4 blocks
	hdr := frameBytes(OpHeader, be32(B), be64(uint64(len(old))))
	end := func(data []byte) []byte {
		s := sha256.Sum256(data)
		return frameBytes(OpEnd, be64(uint64(len(data))), s[:])
	}
	lit := func(flags byte, raw uint32, data []byte) []byte {
		return frameBytes(OpLiteral, []byte{flags}, be32(raw), data)
	}
	bombStream := func() []byte {
		// Zeros streamed through an encoder: no content size in the frame
		// header, so only the output limit can stop it.
		var b bytes.Buffer
		zw, err := zstdNewStreamWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(make([]byte, 4*MaxLiteral))
		zw.Close()
		return b.Bytes()
	}()
	enc, _, _ := codecs()
	bombAll := enc.EncodeAll(make([]byte, 4*MaxLiteral), nil) // with content size
	t.Logf("zstd bombs: %d and %d bytes expand to %d", len(bombStream), len(bombAll), 4*MaxLiteral)
	for _, tc := range []struct {
		name   string
		stream []byte
		want   error
	}{
		{"empty stream", nil, ErrTruncated},
		{"no header", cat(frameBytes(OpCopy, be32(0), be32(1)), end(old[:B])), ErrInvalid},
		{"two headers", cat(hdr, hdr), ErrInvalid},
		{"unknown kind", cat(hdr, frameBytes(9, nil)), ErrInvalid},
		{"copy index out of range", cat(hdr, frameBytes(OpCopy, be32(4), be32(1)), end(nil)), ErrInvalid},
		{"copy count out of range", cat(hdr, frameBytes(OpCopy, be32(2), be32(3)), end(nil)), ErrInvalid},
		{"copy count overflow", cat(hdr, frameBytes(OpCopy, be32(1), be32(0xFFFFFFFF)), end(nil)), ErrInvalid},
		{"copy count zero", cat(hdr, frameBytes(OpCopy, be32(1), be32(0)), end(nil)), ErrInvalid},
		{"copy huge index", cat(hdr, frameBytes(OpCopy, be32(0xFFFFFFFF), be32(1)), end(nil)), ErrInvalid},
		{"copy short payload", cat(hdr, frameBytes(OpCopy, be32(1))), ErrInvalid},
		{"copy in whole-file stream", cat(frameBytes(OpHeader, be32(0), be64(0)), frameBytes(OpCopy, be32(0), be32(1)), end(old[:B])), ErrInvalid},
		{"header for another file", cat(frameBytes(OpHeader, be32(B), be64(uint64(len(old)+1))), end(nil)), ErrMismatch},
		{"header other block size", cat(frameBytes(OpHeader, be32(2*B), be64(uint64(len(old)))), end(nil)), ErrMismatch},
		{"header bad block size", cat(frameBytes(OpHeader, be32(B+1), be64(uint64(len(old)))), end(nil)), ErrInvalid},
		{"frame too large", cat(hdr, []byte{byte(OpLiteral), 0xFF, 0xFF, 0xFF, 0xFF}), ErrLimit},
		{"literal claims too much", cat(hdr, lit(litRaw, MaxLiteral+1, nil)), ErrLimit},
		{"literal empty", cat(hdr, lit(litRaw, 0, nil), end(nil)), ErrInvalid},
		{"literal raw length lie", cat(hdr, lit(litRaw, 10, []byte("abc")), end(nil)), ErrInvalid},
		{"literal bad flags", cat(hdr, lit(7, 3, []byte("abc")), end(nil)), ErrInvalid},
		{"literal bad zstd", cat(hdr, lit(litZstd, 3, []byte("not zstd")), end(nil)), ErrInvalid},
		{"zstd bomb streamed", cat(hdr, lit(litZstd, 1000, bombStream), end(nil)), ErrLimit},
		{"zstd bomb streamed max claim", cat(hdr, lit(litZstd, MaxLiteral, bombStream), end(nil)), ErrLimit},
		{"zstd bomb with size", cat(hdr, lit(litZstd, MaxLiteral, bombAll), end(nil)), ErrLimit},
		{"zstd shorter than claimed", cat(hdr, lit(litZstd, 100, enc.EncodeAll(make([]byte, 50), nil)), end(nil)), ErrInvalid},
		{"wrong hash", cat(hdr, lit(litRaw, 3, []byte("abc")), end([]byte("abd"))), ErrMismatch},
		{"wrong size", cat(hdr, lit(litRaw, 3, []byte("abc")), frameBytes(OpEnd, be64(4), make([]byte, 32))), ErrMismatch},
		{"end too large", cat(hdr, frameBytes(OpEnd, be64(1<<62), make([]byte, 32))), ErrLimit},
		{"truncated after copy", cat(hdr, frameBytes(OpCopy, be32(0), be32(1))), ErrTruncated},
		{"truncated inside frame", cat(hdr, frameBytes(OpCopy, be32(0), be32(1)))[:len(hdr)+7], ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Apply(strictReaderAt{t, old}, int64(len(old)), B, NewOpReader(bytes.NewReader(tc.stream)), io.Discard)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}

	t.Run("output limit", func(t *testing.T) {
		s := cat(hdr, frameBytes(OpCopy, be32(0), be32(4)), frameBytes(OpCopy, be32(0), be32(4)), end(nil))
		_, err := ApplyLimit(strictReaderAt{t, old}, int64(len(old)), B, NewOpReader(bytes.NewReader(s)), io.Discard, int64(len(old))+10)
		if !errors.Is(err, ErrLimit) {
			t.Fatalf("got %v, want ErrLimit", err)
		}
	})

	t.Run("every truncation", func(t *testing.T) {
		new := cat(old[B:], []byte("fresh bytes"), old[:B])
		full := roundTrip(t, old, new, B).stream
		for i := range len(full) {
			_, err := Apply(strictReaderAt{t, old}, int64(len(old)), B, NewOpReader(bytes.NewReader(full[:i])), io.Discard)
			if !errors.Is(err, ErrTruncated) {
				t.Fatalf("cut at %d of %d: got %v, want ErrTruncated", i, len(full), err)
			}
		}
	})

	t.Run("old file shrank", func(t *testing.T) {
		s := cat(hdr, frameBytes(OpCopy, be32(3), be32(1)), end(old[3*B:]))
		_, err := Apply(bytes.NewReader(old[:3*B+50]), int64(len(old)), B, NewOpReader(bytes.NewReader(s)), io.Discard)
		if err == nil {
			t.Fatal("copy from a file shorter than its size succeeded")
		}
	})
}

func TestSignatureDecode(t *testing.T) {
	sig, err := Sign(bytes.NewReader(randBytes(14, 5*MinBlockSize+1)), 5*MinBlockSize+1)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := sig.MarshalBinary()
	hdr := func(version, strong byte, block uint32, size uint64, count uint32) []byte {
		return cat([]byte{version, strong}, be32(block), be64(size), be32(count))
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"truncated", enc[:len(enc)-1], ErrTruncated},
		{"trailing", cat(enc, []byte{0}), ErrInvalid},
		{"version", cat([]byte{2}, enc[1:]), ErrInvalid},
		{"count over MaxBlocks", hdr(1, 8, MaxBlockSize, 1<<40, MaxBlocks+1), ErrLimit},
		{"size over blocks", hdr(1, 8, MinBlockSize, MaxBlocks*MinBlockSize+1, MaxBlocks), ErrLimit},
		{"size over MaxFileSize", hdr(1, 8, MinBlockSize, 1<<62, 1), ErrLimit},
		{"count mismatch", hdr(1, 8, MinBlockSize, 10, 2), ErrInvalid},
		{"block size not power of two", hdr(1, 8, 3000, 10, 1), ErrInvalid},
		{"block size too small", hdr(1, 8, 1024, 10, 1), ErrInvalid},
		{"strong too short", hdr(1, 4, MinBlockSize, 10, 1), ErrInvalid},
		{"strong too long", hdr(1, 33, MinBlockSize, 10, 1), ErrInvalid},
		{"lying count, no data", hdr(1, 8, MaxBlockSize, MaxBlocks*MaxBlockSize, MaxBlocks), ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := UnmarshalSignature(tc.b); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := Sign(bytes.NewReader(nil), 10); !errors.Is(err, ErrTruncated) {
		t.Errorf("Sign of a short reader: %v", err)
	}
	if _, err := Sign(bytes.NewReader(nil), int64(MaxBlocks)*MaxBlockSize+1); !errors.Is(err, ErrLimit) {
		t.Errorf("Sign of a huge file: %v", err)
	}
	if err := (*Signature)(nil).Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil Validate: %v", err)
	}
}

func benchData(b *testing.B) []byte {
	b.Helper()
	return randBytes(15, 64<<20)
}

func BenchmarkSign(b *testing.B) {
	data := benchData(b)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := Sign(bytes.NewReader(data), int64(len(data))); err != nil {
			b.Fatal(err)
		}
	}
}

func benchDiff(b *testing.B, mutate func([]byte) []byte) {
	old := benchData(b)
	sig, err := Sign(bytes.NewReader(old), int64(len(old)))
	if err != nil {
		b.Fatal(err)
	}
	new := mutate(bytes.Clone(old))
	b.SetBytes(int64(len(new)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := Diff(sig, bytes.NewReader(new), NewOpWriter(io.Discard)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDiff(b *testing.B) {
	b.Run("unchanged", func(b *testing.B) { benchDiff(b, func(d []byte) []byte { return d }) })
	b.Run("shifted-edits", func(b *testing.B) {
		benchDiff(b, func(d []byte) []byte {
			// one inserted byte every MiB: every block boundary moves
			var out []byte
			for i := 0; i < len(d); i += 1 << 20 {
				out = append(append(out, d[i:i+1<<20]...), 'x')
			}
			return out
		})
	})
	b.Run("all-new", func(b *testing.B) { benchDiff(b, func(d []byte) []byte { return randBytes(16, len(d)) }) })
}

func BenchmarkApply(b *testing.B) {
	old := benchData(b)
	sig, _ := Sign(bytes.NewReader(old), int64(len(old)))
	var s bytes.Buffer
	if _, err := Diff(sig, bytes.NewReader(old), NewOpWriter(&s)); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(old)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := Apply(bytes.NewReader(old), int64(len(old)), sig.BlockSize, NewOpReader(bytes.NewReader(s.Bytes())), io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// TestWholeFileParallel: the parallel whole-file writer gives a stream
// that rebuilds the file, compresses what compresses (also after a run of
// incompressible chunks) and matches WriteWhole's figures.
func TestWholeFileParallel(t *testing.T) {
	mixed := append(randBytes(11, 4*LiteralChunk), bytes.Repeat([]byte("text "), 3*LiteralChunk)...)
	for _, data := range [][]byte{nil, {7}, randBytes(8, 3*LiteralChunk+5), bytes.Repeat([]byte("abc"), 500000), mixed} {
		for _, workers := range []int{1, 2, 4} {
			var stream bytes.Buffer
			ws, err := WriteWholeParallel(bytes.NewReader(data), NewOpWriter(&stream), workers)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			as, err := Apply(strictReaderAt{t, nil}, 0, MinBlockSize, NewOpReader(&stream), &out)
			if err != nil {
				t.Fatalf("Apply whole (%d bytes, %d workers): %v", len(data), workers, err)
			}
			if !bytes.Equal(out.Bytes(), data) || ws != as {
				t.Fatalf("parallel round trip of %d bytes (%d workers) failed: %+v vs %+v", len(data), workers, ws, as)
			}
			if len(data) >= 1000 && bytes.Count(data, []byte("abc")) > 1000 && ws.LiteralWire > int64(len(data))/10 {
				t.Fatalf("compressible data not compressed: %d of %d bytes on the wire", ws.LiteralWire, len(data))
			}
			if bytes.Equal(data, mixed) && ws.LiteralWire > int64(len(data))-2*LiteralChunk {
				t.Fatalf("text after random chunks not compressed: %d of %d bytes", ws.LiteralWire, len(data))
			}
		}
	}
}

// TestSetCompressOff: with compression off, literals travel raw (and the
// stream still rebuilds the file).
func TestSetCompressOff(t *testing.T) {
	data := bytes.Repeat([]byte("compressible "), 100000)
	for _, workers := range []int{1, 2} {
		var stream bytes.Buffer
		ow := NewOpWriter(&stream)
		ow.SetCompress(false)
		ws, err := WriteWholeParallel(bytes.NewReader(data), ow, workers)
		if err != nil {
			t.Fatal(err)
		}
		if ws.LiteralWire != int64(len(data)) {
			t.Fatalf("%d workers: %d literal bytes on the wire for %d raw", workers, ws.LiteralWire, len(data))
		}
		var out bytes.Buffer
		if _, err := Apply(strictReaderAt{t, nil}, 0, MinBlockSize, NewOpReader(&stream), &out); err != nil || !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("raw stream does not rebuild the file: %v", err)
		}
	}
}

// TestAppendWholeRaw: AppendWholeRaw builds exactly the op stream WriteWhole
// writes with compression off (which ApplyLimit accepts and rebuilds), at
// every literal-chunk boundary, and appends after what dst holds.
func TestAppendWholeRaw(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, minCompress - 1, 4096, LiteralChunk - 1, LiteralChunk, LiteralChunk + 1, 3*LiteralChunk + 5, MaxLiteral} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(rnd.IntN(4)) // compressible: WriteWhole must not compress it either
		}
		var want bytes.Buffer
		ow := NewOpWriter(&want)
		ow.SetCompress(false)
		if _, err := WriteWhole(bytes.NewReader(data), ow); err != nil {
			t.Fatal(err)
		}
		got, err := AppendWholeRaw([]byte("prefix"), data)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(got, []byte("prefix")) || !bytes.Equal(got[6:], want.Bytes()) {
			t.Fatalf("%d bytes: AppendWholeRaw differs from WriteWhole (%d vs %d bytes)", n, len(got)-6, want.Len())
		}
		if len(got)-6 != WholeRawLen(n) {
			t.Fatalf("%d bytes: WholeRawLen %d, stream has %d", n, WholeRawLen(n), len(got)-6)
		}
		var out bytes.Buffer
		if _, err := ApplyLimit(bytes.NewReader(nil), 0, 0, NewOpReader(bytes.NewReader(got[6:])), &out, int64(n)); err != nil || !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("%d bytes: apply: %v", n, err)
		}
	}
}
