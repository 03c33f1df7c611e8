package process

import (
	"bytes"
	"testing"
)

func TestRing(t *testing.T) {
	type write struct {
		stderr bool
		data   string
	}
	tests := []struct {
		name       string
		limit      int
		writes     []write
		start, end int64
		readAt     int64
		want       string
		wantStderr bool
	}{
		{"empty", 8, nil, 0, 0, 0, "", false},
		{"coalesces one stream", 16, []write{{false, "ab"}, {false, "cd"}}, 0, 4, 0, "abcd", false},
		{"stops at stream change", 16, []write{{false, "ab"}, {true, "cd"}, {false, "e"}}, 0, 5, 1, "b", false},
		{"stderr run", 16, []write{{false, "ab"}, {true, "cd"}, {false, "e"}}, 0, 5, 2, "cd", true},
		{"drops oldest", 4, []write{{false, "abc"}, {true, "def"}}, 2, 6, 2, "c", false},
		{"partial chunk kept", 4, []write{{true, "abcdef"}}, 2, 6, 3, "def", true},
		{"before start", 4, []write{{false, "abcdef"}}, 2, 6, 1, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRing(tt.limit)
			for _, w := range tt.writes {
				r.write(w.stderr, []byte(w.data))
			}
			if r.start != tt.start || r.end != tt.end || int64(r.size) != tt.end-tt.start {
				t.Fatalf("start %d end %d size %d, want %d %d", r.start, r.end, r.size, tt.start, tt.end)
			}
			buf := make([]byte, 64)
			n, stderr := r.read(tt.readAt, buf)
			if string(buf[:n]) != tt.want || stderr != tt.wantStderr {
				t.Errorf("read(%d) = %q stderr=%v, want %q stderr=%v", tt.readAt, buf[:n], stderr, tt.want, tt.wantStderr)
			}
		})
	}
}

// TestRingBounded streams far more than the limit and checks memory stays bounded.
func TestRingBounded(t *testing.T) {
	r := newRing(100 << 10)
	p := bytes.Repeat([]byte{'x'}, 7000)
	for range 10000 {
		r.write(false, p)
		if r.size > r.limit {
			t.Fatalf("ring holds %d bytes, limit %d", r.size, r.limit)
		}
	}
	if held := len(r.chunks) * chunkSize; held > r.limit+2*chunkSize {
		t.Errorf("%d chunks (%d bytes) for a %d byte ring", len(r.chunks), held, r.limit)
	}
	if cap(r.chunks) > 64 {
		t.Errorf("chunk index grew to %d", cap(r.chunks))
	}
	if r.end != 70000000 {
		t.Errorf("end %d", r.end)
	}
}
