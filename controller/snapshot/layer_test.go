package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestLayerPath(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"/etc/x", "etc/x", true},
		{"/root/.cache/a b", "root/.cache/a b", true},
		{"etc/x", "", false},
		{"/", "", false},
		{"/../x", "", false},
		{"/a/../../b", "", false},
		{"/a//b", "", false},
		{"/a/", "", false},
		{"/a\x00b", "", false},
	} {
		got, err := LayerPath(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("LayerPath(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// layerFixture is a container root with a changed layer: what capture
// reads.
func layerFixture(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	for _, d := range []string{"etc", "root", "opt/d"} {
		os.MkdirAll(filepath.Join(src, d), 0o755)
	}
	os.WriteFile(filepath.Join(src, "etc/somefile"), []byte("secret\n"), 0o640)
	os.Chmod(filepath.Join(src, "etc/somefile"), 0o640)
	os.WriteFile(filepath.Join(src, "root/g"), []byte("layer1\n"), 0o644)
	os.WriteFile(filepath.Join(src, "opt/d/f"), make([]byte, 3*MaxChunk/2), 0o755)
	os.Symlink("../etc/somefile", filepath.Join(src, "root/link"))
	os.Chmod(filepath.Join(src, "opt/d"), 0o750)
	ts := time.Unix(1600000000, 123456789)
	for _, p := range []string{"etc/somefile", "root/g", "opt/d/f", "opt/d"} {
		os.Chtimes(filepath.Join(src, p), ts, ts)
	}
	return src
}

type pstat struct {
	mode    os.FileMode
	mtimeNs int64
	target  string
	content string
}

func statAll(t *testing.T, root string, paths ...string) map[string]pstat {
	t.Helper()
	out := map[string]pstat{}
	for _, p := range paths {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			continue
		}
		s := pstat{mode: fi.Mode(), mtimeNs: fi.Sys().(*syscall.Stat_t).Mtim.Nano()}
		if fi.Mode()&os.ModeSymlink != 0 {
			s.target, _ = os.Readlink(filepath.Join(root, p))
		} else if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(filepath.Join(root, p))
			s.content = string(b)
		}
		out[p] = s
	}
	return out
}

// TestLayerRoundTrip: a layer captured beside a workspace survives GC and
// verify, and applied onto an "image" root replaces changed paths (a file
// where a directory was too), removes deleted ones and keeps the rest.
func TestLayerRoundTrip(t *testing.T) {
	r := newRepo(t)
	src := layerFixture(t)
	ws := t.TempDir()
	os.WriteFile(filepath.Join(ws, "w"), []byte("kept"), 0o644)
	rec := &Snapshot{ID: NewID(), Sandbox: "s", Name: "one"}
	layer := &LayerSource{Root: src,
		Changed: []string{"/etc/somefile", "/root/g", "/root/link", "/opt/d", "/opt/d/f", "/root/gone-meanwhile", "/sandbox/w"},
		Deleted: []string{"/etc/os-release", "/sandbox/old"},
		Skip:    []string{"/sandbox"},
	}
	if err := r.Capture(context.Background(), ws, rec, CaptureOptions{Layer: layer}); err != nil {
		t.Fatal(err)
	}
	if rec.LayerEntries != 6 {
		t.Fatalf("layer entries %d, want 6 (5 read, 1 deleted; the workspace and a vanished path left out)", rec.LayerEntries)
	}
	if _, err := r.GC(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v, err := r.Verify(context.Background(), []*Snapshot{rec}, nil); err != nil || len(v.Problems) != 0 {
		t.Fatalf("verify: %v %+v", err, v)
	}

	dst := t.TempDir() // the image's root
	for _, d := range []string{"etc", "root/g", "opt"} {
		os.MkdirAll(filepath.Join(dst, d), 0o755) // root/g: a directory in the image
	}
	os.WriteFile(filepath.Join(dst, "etc/os-release"), []byte("ID=x"), 0o644)
	os.WriteFile(filepath.Join(dst, "etc/somefile"), []byte("image version"), 0o644)
	os.WriteFile(filepath.Join(dst, "etc/passwd"), []byte("root"), 0o644)
	os.WriteFile(filepath.Join(dst, "root/link"), []byte("a file"), 0o644)
	if err := r.ApplyLayer(context.Background(), rec, dst); err != nil {
		t.Fatal(err)
	}
	paths := []string{"etc/somefile", "root/g", "root/link", "opt/d", "opt/d/f"}
	want, got := statAll(t, src, paths...), statAll(t, dst, paths...)
	for _, p := range paths {
		if want[p] != got[p] {
			t.Errorf("%s: got %+v, want %+v", p, got[p], want[p])
		}
	}
	if _, err := os.Lstat(filepath.Join(dst, "etc/os-release")); !os.IsNotExist(err) {
		t.Errorf("deleted path still there: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "etc/passwd")); string(b) != "root" {
		t.Errorf("an unchanged image file was touched: %q", b)
	}
}

// TestLayerHostile: paths from the container that are not clean, or lead
// through a symlink out of its root, are refused at capture and at apply,
// and nothing outside the root is read or written.
func TestLayerHostile(t *testing.T) {
	r := newRepo(t)
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "x"), []byte("host secret"), 0o644)
	src := t.TempDir()
	os.Symlink(outside, filepath.Join(src, "evil"))
	ws := t.TempDir()
	for _, changed := range []string{"/evil/x", "/../x", "relative"} {
		rec := &Snapshot{ID: NewID(), Sandbox: "s", Name: "h"}
		err := r.Capture(context.Background(), ws, rec, CaptureOptions{Layer: &LayerSource{Root: src, Changed: []string{changed}}})
		if err == nil {
			t.Errorf("capture of %q: no error", changed)
		}
	}

	// A good snapshot applied onto a root whose etc leads out.
	good := t.TempDir()
	os.MkdirAll(filepath.Join(good, "etc"), 0o755)
	os.WriteFile(filepath.Join(good, "etc/x"), []byte("from the layer"), 0o644)
	rec := &Snapshot{ID: NewID(), Sandbox: "s", Name: "g"}
	if err := r.Capture(context.Background(), ws, rec, CaptureOptions{Layer: &LayerSource{Root: good, Changed: []string{"/etc/x"}}}); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	os.Symlink(outside, filepath.Join(dst, "etc"))
	err := r.ApplyLayer(context.Background(), rec, dst)
	if err == nil || !strings.Contains(err.Error(), "etc/x") {
		t.Errorf("apply through a symlink out of the root: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "x")); string(b) != "host secret" {
		t.Fatalf("apply wrote outside the root: %q", b)
	}
}

// TestRecordWithoutLayer: a workspace-only capture writes no layer field
// (the format older records have), and applying such a record's layer is
// a no-op.
func TestRecordWithoutLayer(t *testing.T) {
	r := newRepo(t)
	ws := t.TempDir()
	os.WriteFile(filepath.Join(ws, "f"), []byte("x"), 0o644)
	s := capture(t, r, ws, "s", "old")
	b, err := os.ReadFile(r.recordPath(s.ID))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), `"layer`) {
		t.Fatalf("a workspace-only record names a layer:\n%s", b)
	}
	loaded, err := r.Find("s", "old")
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := r.ApplyLayer(context.Background(), loaded, dst); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dst); len(ents) != 0 {
		t.Fatalf("applying no layer wrote %v", ents)
	}
	if got := materialize(t, r, loaded); len(got) != 2 {
		t.Fatalf("workspace of the old-format record: %v", got)
	}
}
