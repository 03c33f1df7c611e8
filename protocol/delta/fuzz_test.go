package delta

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
)

func FuzzDecodeSignature(f *testing.F) {
	for _, n := range []int{0, 1, MinBlockSize, 3*MinBlockSize + 5} {
		sig, err := Sign(bytes.NewReader(randBytes(uint64(n), n)), int64(n))
		if err != nil {
			f.Fatal(err)
		}
		b, _ := sig.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{1, 8, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		sig, err := UnmarshalSignature(b)
		if err != nil {
			if sig != nil {
				t.Fatal("signature with an error")
			}
			return
		}
		if err := sig.Validate(); err != nil {
			t.Fatalf("decoded signature invalid: %v", err)
		}
		again, err := sig.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs: %v", err)
		}
		// A decoded signature must be safe to diff against.
		if _, err := Diff(sig, bytes.NewReader(b), NewOpWriter(io.Discard)); err != nil {
			t.Fatalf("Diff against a valid signature: %v", err)
		}
	})
}

// fuzzOld is the old file FuzzOpReader and FuzzApply work against.
var fuzzOld = randBytes(99, 2*MinBlockSize+300)

func fuzzSeeds(f *testing.F) {
	old := fuzzOld
	for _, new := range [][]byte{
		nil, old, old[:10], cat(old[MinBlockSize:], []byte("x"), old[:MinBlockSize]),
		bytes.Repeat([]byte("compressible "), 100),
	} {
		sig, _ := Sign(bytes.NewReader(old), int64(len(old)))
		var s bytes.Buffer
		if _, err := Diff(sig, bytes.NewReader(new), NewOpWriter(&s)); err != nil {
			f.Fatal(err)
		}
		f.Add(s.Bytes())
		s.Reset()
		if _, err := WriteWhole(bytes.NewReader(new), NewOpWriter(&s)); err != nil {
			f.Fatal(err)
		}
		f.Add(s.Bytes())
	}
}

func FuzzOpReader(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewOpReader(bytes.NewReader(b))
		for i := 0; ; i++ {
			op, err := r.Next()
			if err != nil {
				if r.WireBytes() > int64(len(b)) {
					t.Fatalf("read %d bytes of %d", r.WireBytes(), len(b))
				}
				return
			}
			if op.Kind == OpLiteral && (len(op.Data) == 0 || len(op.Data) > MaxLiteral) {
				t.Fatalf("literal of %d bytes", len(op.Data))
			}
			if i > len(b) {
				t.Fatal("more ops than bytes")
			}
		}
	})
}

func FuzzApply(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		old := fuzzOld
		var out bytes.Buffer
		r := NewOpReader(bytes.NewReader(b))
		st, err := ApplyLimit(strictReaderAt{t, old}, int64(len(old)), BlockSize(int64(len(old))), r, &out, 1<<20)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrLimit) && !errors.Is(err, ErrMismatch) && !errors.Is(err, ErrTruncated) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		// Success: the output is what the end op promised.
		end := b[r.WireBytes()-endPayload : r.WireBytes()]
		sum := sha256.Sum256(out.Bytes())
		if !bytes.Equal(end[8:], sum[:]) || st.Size != int64(out.Len()) {
			t.Fatalf("output %d bytes does not match the end op", out.Len())
		}
	})
}
