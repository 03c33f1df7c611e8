package treesync

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestScanWalk: the walk lists parents first in lexical order, lists a
// symlink to a directory (also one pointing outside the root) as a
// symlink without entering it, leaves fifos out, does not hang on a fifo
// planted as .gitignore, and reports sizes, modes and mtimes from lstat.
func TestScanWalk(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	write(t, root, map[string]string{"b/z": "zz", "b/a": "a", "a": "x", "c/d/e": "eee"})
	write(t, outside, map[string]string{"secret": "s"})
	if err := os.Symlink(outside, filepath.Join(root, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("b", filepath.Join(root, "c/d/up")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "c/.gitignore"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	mt := time.Unix(1_700_000_000, 123)
	if err := os.Chtimes(filepath.Join(root, "b/z"), mt, mt); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(root, "b/z"), 0o640)
	r, err := os.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	es, err := Scan(ctx, r, Options{GitIgnore: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Path+":"+e.Type)
		if e.Path == "b/z" && (e.Size != 2 || e.Mode != 0o640 || e.MtimeNs != mt.UnixNano()) {
			t.Errorf("b/z: %+v", e)
		}
		if e.Path == "out" && e.Link != outside {
			t.Errorf("out: link %q", e.Link)
		}
	}
	want := []string{"a:f", "b:d", "b/a:f", "b/z:f", "c:d", "c/d:d", "c/d/e:f", "c/d/up:l", "out:l"}
	if !slices.Equal(got, want) {
		t.Fatalf("scan:\n got %q\nwant %q", got, want)
	}
	// The receiver's unsorted walk finds the same entries.
	items, err := walkTree(ctx, r, walkState{}, nil, func(p, name string, isDir bool, st walkState) (bool, bool, walkState, error) {
		return true, isDir, st, nil
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, it := range items {
		all = append(all, it.path)
	}
	slices.Sort(all)
	if want := []string{"a", "b", "b/a", "b/z", "c", "c/.gitignore", "c/d", "c/d/e", "c/d/up", "fifo", "out"}; !slices.Equal(all, want) {
		t.Fatalf("unsorted walk:\n got %q\nwant %q", all, want)
	}
}
