package treesync

import (
	"context"
	"github.com/bohica-labs/darkshell/protocol"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestExcludePatterns(t *testing.T) {
	f := NewFilter(Options{Exclude: []string{"node_modules", "*.o", "build/out", ".git", "logs/", "/top", "a/**/z", "!keep.o"}})
	cases := []struct {
		p     string
		dir   bool
		want  bool
		label string
	}{
		{"node_modules", true, true, "basename at the root"},
		{"a/node_modules", true, true, "basename at any depth"},
		{"x.o", false, true, "glob"},
		{"d/x.o", false, true, "glob at depth"},
		{"keep.o", false, false, "! re-includes"},
		{"build/out", false, true, "anchored"},
		{"a/build/out", false, false, "anchored only at the root"},
		{"build/outx", false, false, "whole component"},
		{"logs", true, true, "dir-only on a dir"},
		{"logs", false, false, "dir-only on a file"},
		{"top", false, true, "leading slash"},
		{"a/top", false, false, "leading slash anchors"},
		{"a/z", false, true, "** matches zero components"},
		{"a/b/c/z", false, true, "** matches several"},
		{"b/a/z", false, false, "anchored **"},
		{"node_modules2", true, false, "no prefix match"},
		{"git", true, false, "no partial match"},
	}
	for _, c := range cases {
		if got := f.Excluded(c.p, c.dir); got != c.want {
			t.Errorf("%s: Excluded(%q, dir=%v) = %v, want %v", c.label, c.p, c.dir, got, c.want)
		}
	}
}

func TestIncludeMayContain(t *testing.T) {
	f := NewFilter(Options{Include: []string{"/.factory/", "src/app/*.go"}})
	for _, c := range []struct {
		dir  string
		want bool
	}{{".factory/x", false}, {"src", true}, {"src/app", true}, {"src/lib", false}, {"assets", false}, {"src/app/x", false}} {
		if got := f.MayContain(c.dir); got != c.want {
			t.Errorf("MayContain(%q) = %v, want %v", c.dir, got, c.want)
		}
	}
	if !NewFilter(Options{Include: []string{"*.md"}}).MayContain("deep/er") {
		t.Error("an unanchored include must reach every directory")
	}
}

func write(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, body := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(p, "/") {
			continue
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func scanPaths(t *testing.T, root string, opt Options) []string {
	t.Helper()
	r, err := os.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	es, err := Scan(context.Background(), r, opt)
	if err != nil {
		t.Fatal(err)
	}
	var ps []string
	for _, e := range es {
		ps = append(ps, e.Path)
	}
	return ps
}

func TestScanGitIgnoreAndInclude(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{
		".gitignore":          "*.log\n/build/\n!important.log\n",
		"a.log":               "x",
		"important.log":       "x",
		"main.go":             "x",
		"build/out":           "x",
		"sub/.gitignore":      "gen/\n",
		"sub/x.log":           "x",
		"sub/gen/y":           "x",
		"sub/build/z":         "x",
		".factory/plan.md":    "x",
		".factory/d/e":        "x",
		"deep/.factory/other": "x",
	})
	got := scanPaths(t, root, Options{GitIgnore: true})
	want := []string{".factory", ".factory/d", ".factory/d/e", ".factory/plan.md", ".gitignore",
		"deep", "deep/.factory", "deep/.factory/other", "important.log", "main.go",
		"sub", "sub/.gitignore", "sub/build", "sub/build/z"}
	if !slices.Equal(got, want) {
		t.Errorf("git-ignore scan:\n got %q\nwant %q", got, want)
	}
	if got := scanPaths(t, root, Options{}); len(got) != 20 {
		t.Errorf("plain scan lists %d entries, want 20: %q", len(got), got)
	}
	// An anchored include lists only that subtree (the rest is not walked).
	got = scanPaths(t, root, Options{Include: []string{"/.factory/"}})
	if want := []string{".factory", ".factory/d", ".factory/d/e", ".factory/plan.md"}; !slices.Equal(got, want) {
		t.Errorf("include /.factory/:\n got %q\nwant %q", got, want)
	}
	// An unanchored one matches at any depth and keeps the leading dirs.
	got = scanPaths(t, root, Options{Include: []string{"*.log"}})
	if want := []string{"a.log", "important.log", "sub", "sub/x.log"}; !slices.Equal(got, want) {
		t.Errorf("include *.log:\n got %q\nwant %q", got, want)
	}
}

// TestChecksumIndex: a --checksum scan of an unchanged tree hashes nothing
// the second time; a changed file is hashed again.
func TestChecksumIndex(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{"a": "1", "b/c": "2", "b/d": "3"})
	opt := Options{Checksum: true}
	scanPaths(t, root, opt)
	before := hashed.Load()
	scanPaths(t, root, opt)
	if n := hashed.Load() - before; n != 0 {
		t.Fatalf("unchanged tree: %d files hashed again", n)
	}
	os.WriteFile(filepath.Join(root, "b/c"), []byte("22"), 0o644)
	before = hashed.Load()
	scanPaths(t, root, opt)
	if n := hashed.Load() - before; n != 1 {
		t.Fatalf("one changed file: %d hashed", n)
	}
}

// FuzzEntriesZ: compressed entry batches from a hostile peer decode to
// valid entries or an error, never past the size limit.
func FuzzEntriesZ(f *testing.F) {
	z, _ := compressEntries([]byte(`{"entries":[{"p":"a","y":"d","m":493},{"p":"a/f","y":"f","s":3}]}`))
	f.Add(z)
	bomb, _ := compressEntries(make([]byte, 8<<20))
	f.Add(bomb)
	f.Fuzz(func(t *testing.T, p []byte) {
		var m protocol.SyncEntries
		if err := decodeEntriesZ(protocol.Frame{Type: protocol.FrameSyncEntriesZ, Payload: p}, &m, nil); err == nil {
			if err := m.Validate(); err != nil {
				t.Fatalf("decoded invalid entries: %v", err)
			}
		}
	})
}
