// Package snapshottest builds random trees, edits them and compares them
// as a snapshot round trip must keep them (content, modes, symlinks, empty
// directories, mtimes): fixtures for the snapshot unit and integration tests.
package snapshottest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Sizes of the "large file" class: above the snapshot chunker's minimum
// (256 KiB) and up to a few times its maximum (4 MiB).
const (
	bigMin = 256 << 10
	bigMax = 4 << 20
)

// Tree maps a relative path ("." the root) to what must survive of it.
type Tree = map[string]Node

// Node is what a round trip must keep of one entry.
type Node struct {
	typ     string
	mode    fs.FileMode
	mtimeNs int64
	sum     string // file content
	target  string // symlink
}

// Describe lists dir's tree (root included) as the round trip must keep it.
func Describe(t testing.TB, dir string) Tree {
	t.Helper()
	out := Tree{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n := Node{mode: fi.Mode(), mtimeNs: fi.ModTime().UnixNano()}
		switch {
		case fi.IsDir():
			n.typ = "d"
		case fi.Mode()&fs.ModeSymlink != 0:
			n.typ = "l"
			n.target, _ = os.Readlink(p)
			n.mode = 0 // symlink modes mean nothing on Linux
		default:
			n.typ = "f"
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h := sha256.Sum256(b)
			n.sum = hex.EncodeToString(h[:])
		}
		out[rel] = n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// SameTree fails t, naming up to ten differences, unless got is want.
func SameTree(t testing.TB, want, got Tree) {
	t.Helper()
	var diffs []string
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			diffs = append(diffs, "missing "+p)
		} else if g != w {
			diffs = append(diffs, fmt.Sprintf("%s: want %+v, got %+v", p, w, g))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, "extra "+p)
		}
	}
	slices.Sort(diffs)
	if len(diffs) > 0 {
		if len(diffs) > 10 {
			diffs = append(diffs[:10], fmt.Sprintf("... %d more", len(diffs)-10))
		}
		t.Fatalf("trees differ:\n%s", strings.Join(diffs, "\n"))
	}
}

// RandData returns n bytes, random or source-like text (compressible).
func RandData(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	if rng.IntN(2) == 0 {
		var seed [32]byte
		for i := range seed {
			seed[i] = byte(rng.Uint32())
		}
		rand.NewChaCha8(seed).Read(b)
	} else {
		words := []string{"func ", "return ", "sandbox ", "chunk ", "\n", "{ ", "} "}
		for i := 0; i < n; {
			w := words[rng.IntN(len(words))]
			i += copy(b[i:], w)
		}
	}
	return b
}

func randSize(rng *rand.Rand) int {
	switch rng.IntN(10) {
	case 0:
		return 0
	case 1:
		if rng.IntN(4) == 0 {
			return bigMin + rng.IntN(2*bigMax)
		}
		return bigMin + rng.IntN(bigMin)
	default:
		return rng.IntN(40 << 10)
	}
}

var modes = []fs.FileMode{0o644, 0o600, 0o755, 0o700, 0o444, 0o640}

func writeRand(t testing.TB, rng *rand.Rand, p string) {
	t.Helper()
	os.Remove(p)
	if err := os.WriteFile(p, RandData(rng, randSize(rng)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, modes[rng.IntN(len(modes))]); err != nil {
		t.Fatal(err)
	}
	mt := time.Unix(1_600_000_000+rng.Int64N(100_000_000), rng.Int64N(1e9))
	os.Chtimes(p, mt, mt)
}

// GenTree fills dir with n random entries: nested dirs, empty dirs, files
// of every size class, symlinks (also dangling and absolute).
func GenTree(t testing.TB, rng *rand.Rand, dir string, n int) {
	t.Helper()
	dirs := []string{dir}
	for i := 0; i < n; i++ {
		parent := dirs[rng.IntN(len(dirs))]
		p := filepath.Join(parent, fmt.Sprintf("e%03d-%d", i, rng.IntN(1000)))
		switch k := rng.IntN(10); {
		case k < 2:
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
			dirs = append(dirs, p)
		case k < 3:
			targets := []string{"../x", "/etc/passwd", "missing", filepath.Base(parent)}
			if err := os.Symlink(targets[rng.IntN(len(targets))], p); err != nil {
				t.Fatal(err)
			}
		default:
			writeRand(t, rng, p)
		}
	}
	// Directory mtimes last (writing inside changes them).
	for _, d := range dirs[1:] {
		mt := time.Unix(1_500_000_000+rng.Int64N(1e8), 0)
		os.Chtimes(d, mt, mt)
		if rng.IntN(4) == 0 {
			os.Chmod(d, 0o750)
		}
	}
}

// EditTree changes, adds and removes random entries.
func EditTree(t testing.TB, rng *rand.Rand, dir string, n int) {
	t.Helper()
	var files, all []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if p != dir {
			all = append(all, p)
			if d.Type().IsRegular() {
				files = append(files, p)
			}
		}
		return nil
	})
	for i := 0; i < n; i++ {
		switch rng.IntN(4) {
		case 0: // rewrite a file (unless a removal took it)
			if len(files) > 0 {
				p := files[rng.IntN(len(files))]
				if _, err := os.Stat(filepath.Dir(p)); err == nil {
					writeRand(t, rng, p)
				}
			}
		case 1: // flip a byte in the middle of a file, keep size and mtime
			if len(files) > 0 {
				p := files[rng.IntN(len(files))]
				fi, err := os.Stat(p)
				if err == nil && fi.Size() > 0 {
					os.Chmod(p, 0o644)
					f, _ := os.OpenFile(p, os.O_RDWR, 0)
					b := make([]byte, 1)
					off := rng.Int64N(fi.Size())
					f.ReadAt(b, off)
					b[0]++
					f.WriteAt(b, off)
					f.Close()
					os.Chtimes(p, fi.ModTime(), fi.ModTime())
					os.Chmod(p, fi.Mode().Perm())
				}
			}
		case 2: // add
			writeRand(t, rng, filepath.Join(dir, fmt.Sprintf("new-%d", rng.IntN(1e6))))
		case 3: // remove
			if len(all) > 0 {
				os.RemoveAll(all[rng.IntN(len(all))])
			}
		}
	}
}

// Equal reports whether two trees are the same.
func Equal(a, b Tree) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Files lists the regular files of a tree, sorted.
func Files(tr Tree) []string {
	var out []string
	for p, n := range tr {
		if n.typ == "f" {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// WithoutLinkTimes clears symlink mtimes, which the sync stream (the
// capture path of a live sandbox) does not carry.
func WithoutLinkTimes(tr Tree) Tree {
	for p, n := range tr {
		if n.typ == "l" {
			n.mtimeNs = 0
			tr[p] = n
		}
	}
	return tr
}
