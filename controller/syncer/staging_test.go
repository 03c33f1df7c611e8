package syncer

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bohica-labs/darkshell/internal/treesync"
)

// TestInterruptNewDirs cuts a push that brings a new directory tree into an
// existing target at many points. A new directory is built under a
// temporary name and renamed into place once complete, so after any cut it
// is either absent under its name or whole (every file, complete); nothing
// temporary stays; a rerun completes. A new file of an existing directory
// is absent or complete.
func TestInterruptNewDirs(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	src, home := t.TempDir(), t.TempDir()
	dst := filepath.Join(home, "s")
	ctx := context.Background()
	os.WriteFile(filepath.Join(src, "keep"), []byte("old"), 0o644)
	o := &pipeOpener{t: t, home: home}
	if _, err := Push(ctx, o, src, "s", Options{}); err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for i := range 60 {
		rel := filepath.Join("tree", fmt.Sprintf("d%d", i%4), fmt.Sprintf("e%d", i%3), fmt.Sprintf("f%02d", i))
		want[rel] = randBytes(rng, 2000+i*300)
	}
	want["top-new"] = randBytes(rng, 5000)
	for rel, b := range want {
		os.MkdirAll(filepath.Join(src, filepath.Dir(rel)), 0o755)
		os.WriteFile(filepath.Join(src, rel), b, 0o640)
	}
	os.Symlink("d0/e0/f00", filepath.Join(src, "tree", "link"))
	os.MkdirAll(filepath.Join(src, "tree", "d1", "empty"), 0o711)
	for _, budget := range []int{10, 500, 3000, 12_000, 40_000, 90_000} {
		o := &pipeOpener{t: t, home: home, wrap: func(c net.Conn) net.Conn { return &failConn{Conn: c, budget: budget} }}
		if _, err := Push(ctx, o, src, "s", Options{}); err == nil {
			t.Fatalf("budget %d: push succeeded", budget)
		}
		o.wg.Wait()
		if _, err := os.Lstat(filepath.Join(dst, "tree")); err == nil {
			for rel, b := range want {
				if strings.HasPrefix(rel, "tree") {
					got, err := os.ReadFile(filepath.Join(dst, rel))
					if err != nil || !bytes.Equal(got, b) {
						t.Fatalf("budget %d: tree is in place but %s is not complete (%d of %d bytes, %v)", budget, rel, len(got), len(b), err)
					}
				}
			}
		}
		if got, err := os.ReadFile(filepath.Join(dst, "top-new")); err == nil && !bytes.Equal(got, want["top-new"]) {
			t.Fatalf("budget %d: top-new is partial", budget)
		}
		noTemps(t, dst)
	}
	sum, err := Push(ctx, o, src, "s", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Added == 0 {
		t.Fatalf("rerun added nothing: %+v", *sum)
	}
	checkSame(t, src, dst)
	// A staged directory gets its own mode and mtime once renamed.
	for _, d := range []string{"tree", "tree/d1/empty"} {
		a, _ := os.Stat(filepath.Join(src, d))
		b, err := os.Stat(filepath.Join(dst, d))
		if err != nil || a.Mode() != b.Mode() || !a.ModTime().Equal(b.ModTime()) {
			t.Fatalf("%s: mode/mtime %v %v, want %v %v (%v)", d, b.Mode(), b.ModTime(), a.Mode(), a.ModTime(), err)
		}
	}
}

// TestStagedLeftoverRemoved: a staged directory a killed receiver left
// behind (its name is temporary) is removed by the next push.
func TestStagedLeftoverRemoved(t *testing.T) {
	src, home := t.TempDir(), t.TempDir()
	dst := filepath.Join(home, "s")
	os.MkdirAll(filepath.Join(src, "a", "b"), 0o755)
	os.WriteFile(filepath.Join(src, "a", "b", "f"), []byte("x"), 0o644)
	left := filepath.Join(dst, treesync.TempPrefix+"0123456789abcdef", "b")
	os.MkdirAll(left, 0o700)
	os.WriteFile(filepath.Join(left, "f"), []byte("partial"), 0o600)
	o := &pipeOpener{t: t, home: home}
	if _, err := Push(context.Background(), o, src, "s", Options{Delete: true}); err != nil {
		t.Fatal(err)
	}
	checkSame(t, src, dst)
}
