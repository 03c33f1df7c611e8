package protocol

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func dirSumCase() []DirSum {
	var a, b DirDigest
	a.Add(DigestFile, "x.go", 0o644, 12, 1_700_000_000_000_000_001, "")
	b.Add(DigestDir, "sub", 0o755, 0, 5, "")
	b.Add(DigestSymlink, "l", 0, 0, 0, "../x")
	var empty DirDigest
	return []DirSum{{".", a.Sum()}, {"src", b.Sum()}, {"src/sub", empty.Sum()}, {"ünï/日本", a.Sum()}}
}

func TestSyncDirSumsRoundTrip(t *testing.T) {
	ds := dirSumCase()
	b, err := AppendSyncDirSums(nil, ds)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeSyncDirSums(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ds) {
		t.Fatalf("round trip: %+v, want %+v", got, ds)
	}
	// Front coding: "src/sub" shares "src" with the previous path.
	if !bytes.Contains(b, []byte{3, 4, '/', 's', 'u', 'b'}) {
		t.Fatalf("src/sub is not front-coded: %x", b)
	}
}

func TestSyncDirSumsRefused(t *testing.T) {
	good, _ := AppendSyncDirSums(nil, dirSumCase())
	sum := make([]byte, DirSumSize)
	cases := map[string][]byte{
		"empty":          {},
		"count too high": {5, 0, 1, 'a'},
		"dotdot":         append([]byte{1, 0, 2, '.', '.'}, sum...),
		"absolute":       append([]byte{1, 0, 2, '/', 'a'}, sum...),
		"shared too long": append(append([]byte{2, 0, 1, 'a'}, sum...),
			append([]byte{3, 1, 'b'}, sum...)...),
		"truncated digest": {1, 0, 1, 'a', 1, 2, 3},
		"trailing":         append(bytes.Clone(good), 0),
		"empty path":       append([]byte{1, 0, 0}, sum...),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := DecodeSyncDirSums(in); !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := AppendSyncDirSums(nil, []DirSum{{Path: "../x"}}); err == nil {
		t.Fatal("encoded an invalid path")
	}
}

func TestDirDigest(t *testing.T) {
	add := func(d *DirDigest, order []int) {
		es := []struct {
			k    byte
			name string
			mode uint32
			size int64
			mt   int64
			link string
		}{{DigestFile, "a", 0o644, 3, 10, ""}, {DigestDir, "b", 0o755, 0, 11, ""}, {DigestSymlink, "c", 0, 0, 0, "t"}}
		for _, i := range order {
			e := es[i]
			d.Add(e.k, e.name, e.mode, e.size, e.mt, e.link)
		}
	}
	var x, y DirDigest
	add(&x, []int{0, 1, 2})
	add(&y, []int{2, 0, 1})
	if x.Sum() != y.Sum() {
		t.Fatal("digest depends on the order of entries")
	}
	base := x.Sum()
	changes := map[string]func(d *DirDigest){
		"mtime": func(d *DirDigest) {
			d.Add(DigestFile, "a", 0o644, 3, 12, "")
			d.Add(DigestDir, "b", 0o755, 0, 11, "")
			d.Add(DigestSymlink, "c", 0, 0, 0, "t")
		},
		"size": func(d *DirDigest) {
			d.Add(DigestFile, "a", 0o644, 4, 10, "")
			d.Add(DigestDir, "b", 0o755, 0, 11, "")
			d.Add(DigestSymlink, "c", 0, 0, 0, "t")
		},
		"mode": func(d *DirDigest) {
			d.Add(DigestFile, "a", 0o600, 3, 10, "")
			d.Add(DigestDir, "b", 0o755, 0, 11, "")
			d.Add(DigestSymlink, "c", 0, 0, 0, "t")
		},
		"dir mtime": func(d *DirDigest) {
			d.Add(DigestFile, "a", 0o644, 3, 10, "")
			d.Add(DigestDir, "b", 0o755, 0, 1, "")
			d.Add(DigestSymlink, "c", 0, 0, 0, "t")
		},
		"link target": func(d *DirDigest) {
			d.Add(DigestFile, "a", 0o644, 3, 10, "")
			d.Add(DigestDir, "b", 0o755, 0, 11, "")
			d.Add(DigestSymlink, "c", 0, 0, 0, "u")
		},
		"type": func(d *DirDigest) {
			d.Add(DigestDir, "a", 0o644, 0, 10, "")
			d.Add(DigestDir, "b", 0o755, 0, 11, "")
			d.Add(DigestSymlink, "c", 0, 0, 0, "t")
		},
		"extra":   func(d *DirDigest) { add(d, []int{0, 1, 2}); d.Add(DigestOther, "fifo", 0, 0, 0, "") },
		"missing": func(d *DirDigest) { add(d, []int{0, 1}) },
		"renamed": func(d *DirDigest) {
			d.Add(DigestFile, "A", 0o644, 3, 10, "")
			d.Add(DigestDir, "b", 0o755, 0, 11, "")
			d.Add(DigestSymlink, "c", 0, 0, 0, "t")
		},
	}
	for name, f := range changes {
		var d DirDigest
		f(&d)
		if d.Sum() == base {
			t.Errorf("%s: digest unchanged", name)
		}
	}
	// Fields a kind does not use do not count.
	var z DirDigest
	z.Add(DigestFile, "a", 0o644, 3, 10, "ignored")
	z.Add(DigestDir, "b", 0o755, 99, 11, "")
	z.Add(DigestSymlink, "c", 0o777, 5, 6, "t")
	if z.Sum() != base {
		t.Error("unused fields changed the digest")
	}
}

func TestSyncWant(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 100} {
		want := make([]bool, n)
		for i := range want {
			want[i] = i%3 == 1
		}
		b := AppendSyncWant(nil, want)
		if len(b) != (n+7)/8 {
			t.Fatalf("n=%d: %d bytes", n, len(b))
		}
		got, err := DecodeSyncWant(b, n)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("n=%d: got %v %v", n, got, err)
		}
	}
	for name, c := range map[string]struct {
		b []byte
		n int
	}{"short": {[]byte{1}, 9}, "long": {[]byte{1, 0}, 8}, "bit past n": {[]byte{0x10}, 4}, "negative": {nil, -1}} {
		if _, err := DecodeSyncWant(c.b, c.n); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
}

// FuzzSyncDirSums: any input decodes to digests that encode back to the
// same digests, or is refused; never a panic.
func FuzzSyncDirSums(f *testing.F) {
	b, _ := AppendSyncDirSums(nil, dirSumCase())
	f.Add(b)
	f.Add([]byte{1, 0, 2, '.', '.'})
	f.Add([]byte{2, 0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, '/'})
	f.Fuzz(func(t *testing.T, in []byte) {
		ds, err := DecodeSyncDirSums(in)
		if err != nil {
			return
		}
		out, err := AppendSyncDirSums(nil, ds)
		if err != nil {
			t.Fatalf("decoded digests do not encode: %v", err)
		}
		ds2, err := DecodeSyncDirSums(out)
		if err != nil || !reflect.DeepEqual(ds, ds2) {
			t.Fatalf("re-encoding changed the digests: %v", err)
		}
	})
}

// FuzzSyncWant: a bitmap decodes for n directories and encodes back to
// the same bytes, or is refused.
func FuzzSyncWant(f *testing.F) {
	f.Add([]byte{0x05}, 3)
	f.Add([]byte{0xff, 0x01}, 9)
	f.Add([]byte{}, 0)
	f.Fuzz(func(t *testing.T, in []byte, n int) {
		want, err := DecodeSyncWant(in, n)
		if err != nil {
			return
		}
		if out := AppendSyncWant(nil, want); !bytes.Equal(out, in) {
			t.Fatalf("re-encoding changed the bitmap: %x, want %x", out, in)
		}
	})
}
