package protocol

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func binCase() []SyncEntry {
	sha := strings.Repeat("ab", 32)
	return []SyncEntry{
		{Path: "a", Type: SyncDir, Mode: 0o755, MtimeNs: 1_700_000_000_000_000_001},
		{Path: "a/f", Type: SyncFile, Mode: 0o644, Size: 3, MtimeNs: 1_700_000_000_000_000_002, Sum: sha},
		{Path: "a/fg", Type: SyncFile, Mode: 0o600, MtimeNs: 1_699_999_999_000_000_000},
		{Path: "l", Type: SyncSymlink, Link: "a/f"},
		{Path: "ü/日本", Type: SyncDir, Mode: 0o700},
	}
}

// TestGoldenSyncEntriesBin pins the binary entry encoding in
// testdata/golden/sync-entries-bin.golden (-update rewrites it) and checks
// that the golden bytes decode to the value.
func TestGoldenSyncEntriesBin(t *testing.T) {
	es := binCase()
	b, err := AppendSyncEntriesBin(nil, es)
	if err != nil {
		t.Fatal(err)
	}
	var g bytes.Buffer
	for p := b; len(p) > 0; {
		n := min(32, len(p))
		fmt.Fprintf(&g, "payload %s\n", hex.EncodeToString(p[:n]))
		p = p[n:]
	}
	golden := filepath.Join("testdata", "golden", "sync-entries-bin.golden")
	if *update {
		if err := os.WriteFile(golden, g.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gb, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v: run `go test ./protocol -run TestGoldenSyncEntriesBin -update`", err)
	}
	if !bytes.Equal(gb, g.Bytes()) {
		t.Fatalf("binary entry encoding changed (a wire change needs a new frame type or protocol version)\n--- golden\n%s--- now\n%s", gb, g.Bytes())
	}
	got, err := DecodeSyncEntriesBin(parseGolden(t, gb))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, es) {
		t.Fatalf("decoded %+v\nwant %+v", got, es)
	}
}

func TestSyncEntriesBinRoundTrip(t *testing.T) {
	var es []SyncEntry
	for i := range 3000 {
		es = append(es, SyncEntry{Path: fmt.Sprintf("src/pkg%02d/sub%d/file%05d.go", i%97, i%13, i), Type: SyncFile,
			Mode: 0o644, Size: int64(i * 1000), MtimeNs: int64(1e18) + int64(i%7)*1e9 - int64(i)})
	}
	b, err := AppendSyncEntriesBin(nil, es)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeSyncEntriesBin(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, es) {
		t.Fatal("round trip changed the entries")
	}
	if _, err := DecodeSyncEntriesBin(nil); err == nil {
		t.Fatal("empty input decoded")
	}
	if got, err := DecodeSyncEntriesBin([]byte{0}); err != nil || len(got) != 0 {
		t.Fatalf("empty batch: %v, %d", err, len(got))
	}
}

// TestSyncEntriesBinHostile: what a hostile sender can put in a batch is
// refused with an error that names the problem.
func TestSyncEntriesBinHostile(t *testing.T) {
	enc := func(es ...SyncEntry) []byte {
		b, err := AppendSyncEntriesBin(nil, es)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := enc(SyncEntry{Path: "a", Type: SyncDir}, SyncEntry{Path: "a/b", Type: SyncFile, Size: 1})
	raw := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"dotdot", raw([]byte{1, binFile, 0, 4}, []byte("../x"), []byte{0, 0, 0}), `".." component`},
		{"absolute", raw([]byte{1, binFile, 0, 4}, []byte("/etc"), []byte{0, 0, 0}), "absolute"},
		{"NUL", raw([]byte{1, binFile, 0, 3}, []byte("a\x00b"), []byte{0, 0, 0}), "NUL"},
		{"shared past previous", raw([]byte{1, binFile, 2, 1}, []byte("x"), []byte{0, 0, 0}), "previous 0"},
		{"too long", raw([]byte{1, binFile, 0, 0x81, 0x40}, bytes.Repeat([]byte("a"), 8193)), "limit 4096"},
		{"mode", raw([]byte{1, binFile, 0, 1}, []byte("x"), []byte{0x80, 0x10, 0, 0}), "mode"},
		{"size", raw([]byte{1, binFile, 0, 1, 'x', 0}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, []byte{0}), "size"},
		{"kind", raw([]byte{1, 9, 0, 1, 'x', 0}, []byte{0, 0, 0}), "unknown kind"},
		{"sum on dir", raw([]byte{1, binDir | binHasSum, 0, 1, 'x', 0, 0}, make([]byte, 32)), "checksum on a directory"},
		{"empty link", raw([]byte{1, binSymlink, 0, 1, 'x', 0, 0}), "symlink target"},
		{"truncated", good[:len(good)-1], "truncated"},
		{"count overflows", bytes.Repeat([]byte{0xff}, 11), "overflows 64 bits"},
		{"size overflows", raw([]byte{1, binFile, 0, 1, 'x', 0}, bytes.Repeat([]byte{0xff}, 10), []byte{0x7f}), "overflows 64 bits"},
		{"trailing", append(bytes.Clone(good), 0), "after the last entry"},
		{"count", []byte{0xff, 0xff, 0x03}, "entries in"},
		{"empty path", []byte{1, binFile, 0, 0, 0, 0, 0}, "path of 0+0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeSyncEntriesBin(c.in)
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrInvalid naming %q", err, c.want)
			}
		})
	}
}

// FuzzSyncEntriesBin: any input decodes to valid entries that encode back
// to the same bytes, or is refused; never a panic or an allocation beyond
// the input's size.
func FuzzSyncEntriesBin(f *testing.F) {
	b, _ := AppendSyncEntriesBin(nil, binCase())
	f.Add(b)
	f.Add([]byte{1, binFile, 0, 4, '.', '.', '/', 'x', 0, 0, 0})
	f.Add([]byte{2, binDir, 0, 1, 'a', 0, 0, binFile, 1, 2, '/', 'b', 0, 5, 2})
	f.Fuzz(func(t *testing.T, in []byte) {
		es, err := DecodeSyncEntriesBin(in)
		if err != nil {
			return
		}
		for i := range es {
			if err := es[i].Validate(); err != nil {
				t.Fatalf("decoded an invalid entry: %v", err)
			}
		}
		out, err := AppendSyncEntriesBin(nil, es)
		if err != nil {
			t.Fatalf("decoded entries do not encode: %v", err)
		}
		es2, err := DecodeSyncEntriesBin(out)
		if err != nil || !reflect.DeepEqual(es, es2) {
			t.Fatalf("re-encoding changed the entries: %v", err)
		}
	})
}
