package treesync

import "testing"

func TestBufPool(t *testing.T) {
	var bp bufPool
	for _, tc := range []struct{ n, class int }{{0, 0}, {1, 0}, {2, 1}, {3, 2}, {4096, 12}, {4097, 13}, {smallFile, 20}} {
		if c := sizeClass(tc.n); c != tc.class {
			t.Errorf("sizeClass(%d) = %d, want %d", tc.n, c, tc.class)
		}
		b := bp.get(tc.n)
		if len(b) != tc.n || cap(b) != 1<<tc.class {
			t.Fatalf("get(%d): len %d cap %d, want cap %d", tc.n, len(b), cap(b), 1<<tc.class)
		}
		bp.put(b)
	}
	// Bigger than the classes: a plain slice, dropped on put.
	b := bp.get(smallFile + 1)
	if len(b) != smallFile+1 {
		t.Fatalf("get(smallFile+1): len %d", len(b))
	}
	bp.put(b)
	// A buffer whose capacity is not a class is not taken: a later get
	// never returns a slice shorter than asked.
	bp.put(make([]byte, 0, 3000))
	for range 10 {
		if b := bp.get(2049); cap(b) < 2049 || len(b) != 2049 {
			t.Fatalf("get(2049): len %d cap %d", len(b), cap(b))
		}
	}
	// A recycled buffer comes back with the asked length.
	b = bp.get(100)
	b[0] = 'x'
	bp.put(b)
	if b := bp.get(120); len(b) != 120 || cap(b) != 128 {
		t.Fatalf("get(120): len %d cap %d", len(b), cap(b))
	}
}
