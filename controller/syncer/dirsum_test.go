package syncer

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// dirMtimes returns the mtime of every directory under root.
func dirMtimes(t *testing.T, root string) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if d.IsDir() {
			fi, err := d.Info()
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(root, p)
			if rel != "." {
				m[rel] = fi.ModTime().UnixNano()
			}
		}
		return nil
	})
	return m
}

func checkDirMtimes(t *testing.T, a, b string) {
	t.Helper()
	ma, mb := dirMtimes(t, a), dirMtimes(t, b)
	for p, mt := range ma {
		if mb[p] != mt {
			t.Errorf("directory %s: mtime %d, want %d", p, mb[p], mt)
		}
	}
}

// TestDirSums: with directory digests an unchanged tree sends digests only
// (a fraction of the list's bytes) and every kind of change still
// arrives: a file rewritten in place (its directory's mtime unchanged), a
// new file deep down (the directory mtimes are put back), receiver-side
// edits, extras kept without --delete and removed with it, a fifo, a
// symlink retargeted, a type change; in both directions.
func TestDirSums(t *testing.T) {
	src, home := t.TempDir(), t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	for d := range 20 {
		dir := filepath.Join(src, fmt.Sprintf("d%02d", d), "x")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range 50 {
			p := filepath.Join(dir, fmt.Sprintf("f%d", f))
			os.WriteFile(p, []byte(strings.Repeat(fmt.Sprint(d, f), 50)), 0o644)
			// Real trees' mtimes differ: the list cannot compress them away.
			mt := time.Unix(1_700_000_000+int64(rng.IntN(1e6)), int64(rng.IntN(1e9)))
			os.Chtimes(p, mt, mt)
		}
	}
	os.Mkdir(filepath.Join(src, "empty"), 0o700)
	os.Symlink("d00/x/f0", filepath.Join(src, "link"))
	ctx := context.Background()
	o := &pipeOpener{t: t, home: home}
	dst := filepath.Join(home, "w")
	on := Options{Delete: true, DirSums: true}
	push := func(opt Options) *protocol.SyncSummary {
		t.Helper()
		sum, err := Push(ctx, o, src, "w", opt)
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	first := push(on)
	checkSame(t, src, dst)
	checkDirMtimes(t, src, dst)

	list, sums := push(Options{Delete: true}), push(on)
	if sums.Entries != first.Entries || sums.Unchanged != sums.Entries || sums.BytesToSend != 0 || list.Unchanged != sums.Unchanged {
		t.Fatalf("idle push with digests: %+v (list: %+v)", sums, list)
	}
	if sums.SentBytes*3 > list.SentBytes {
		t.Fatalf("idle push sent %d bytes with digests, %d with the list", sums.SentBytes, list.SentBytes)
	}
	t.Logf("idle push: %d bytes with digests, %d with the list", sums.SentBytes, list.SentBytes)

	step := func(name string, opt Options, edit func(), check func(sum *protocol.SyncSummary)) {
		t.Helper()
		edit()
		sum := push(opt)
		if check != nil {
			check(sum)
		} else {
			checkSame(t, src, dst)
		}
		checkDirMtimes(t, src, dst)
		if again := push(opt); again.Unchanged != again.Entries {
			t.Fatalf("%s: the push after it did not find everything unchanged: %+v", name, again)
		}
	}
	later := time.Now().Add(time.Hour)
	step("rewrite in place", on, func() {
		p := filepath.Join(src, "d03", "x", "f4")
		fi, _ := os.Stat(p)
		dirFi, _ := os.Stat(filepath.Dir(p))
		f, _ := os.OpenFile(p, os.O_WRONLY, 0)
		f.WriteAt([]byte("ZZ"), 3)
		f.Close()
		os.Chtimes(p, later, later)
		if fi2, _ := os.Stat(p); fi2.Size() != fi.Size() {
			t.Fatal("size changed")
		}
		if d2, _ := os.Stat(filepath.Dir(p)); !d2.ModTime().Equal(dirFi.ModTime()) {
			t.Fatal("directory mtime changed")
		}
	}, func(sum *protocol.SyncSummary) {
		checkSame(t, src, dst)
		if sum.Modified != 1 || sum.Unchanged != sum.Entries-1 {
			t.Fatalf("summary %+v, want one modified", sum)
		}
	})
	step("new deep file", on, func() {
		os.WriteFile(filepath.Join(src, "d07", "x", "new"), []byte("new"), 0o600)
	}, nil)
	step("mode change", on, func() { os.Chmod(filepath.Join(src, "d09", "x", "f1"), 0o600) }, nil)
	step("receiver edits", on, func() {
		os.WriteFile(filepath.Join(dst, "d11", "x", "f2"), []byte("sandbox wrote this"), 0o644)
		os.Remove(filepath.Join(dst, "d12", "x", "f3"))
	}, nil)
	step("retarget symlink", on, func() {
		os.Remove(filepath.Join(src, "link"))
		os.Symlink("d01/x/f1", filepath.Join(src, "link"))
	}, nil)
	step("type change", on, func() {
		p := filepath.Join(src, "d13", "x", "f5")
		os.Remove(p)
		os.Mkdir(p, 0o755)
		os.WriteFile(filepath.Join(p, "inner"), []byte("i"), 0o644)
	}, nil)
	keep := Options{DirSums: true}
	step("extra kept without --delete", keep, func() {
		os.WriteFile(filepath.Join(dst, "d15", "x", "extra"), []byte("e"), 0o644)
		if err := syscall.Mkfifo(filepath.Join(dst, "d16", "fifo"), 0o644); err != nil {
			t.Fatal(err)
		}
	}, func(sum *protocol.SyncSummary) {
		if _, err := os.Stat(filepath.Join(dst, "d15", "x", "extra")); err != nil {
			t.Fatalf("extra file gone without --delete: %v", err)
		}
		if sum.Deleted != 0 || sum.Modified+sum.Added != 0 {
			t.Fatalf("summary %+v", sum)
		}
	})
	step("extra removed with --delete", on, func() {}, nil)
	o.wg.Wait()

	// Pull: sandboxd sends digests when the request says the controller
	// speaks them.
	local := filepath.Join(t.TempDir(), "l")
	pull := func() *protocol.SyncSummary {
		sum, err := Pull(ctx, o, "w", local, on)
		if err != nil {
			t.Fatal(err)
		}
		checkSame(t, dst, local)
		checkDirMtimes(t, dst, local)
		return sum
	}
	pull()
	os.WriteFile(filepath.Join(dst, "d18", "x", "f0"), []byte("changed in the sandbox"), 0o644)
	if sum := pull(); sum.Modified != 1 {
		t.Fatalf("pull summary %+v", sum)
	}
	if sum := pull(); sum.Unchanged != sum.Entries || sum.SentBytes*3 > list.SentBytes {
		t.Fatalf("idle pull summary %+v", sum)
	}
	o.wg.Wait()
}

// TestHostileDirSums: a sandbox that sends malformed or misplaced
// directory digests on pull is refused; one that answers a push's digests
// with a bad want bitmap is refused.
func TestHostileDirSums(t *testing.T) {
	var zero [protocol.DirSumSize]byte
	enc := func(ds ...protocol.DirSum) []byte {
		var b []byte
		// Encoded by hand: AppendSyncDirSums refuses what these test.
		b = append(b, byte(len(ds)))
		for _, d := range ds {
			b = append(b, 0, byte(len(d.Path)))
			b = append(b, d.Path...)
			b = append(b, d.Sum[:]...)
		}
		return b
	}
	cases := map[string][]byte{
		"not the root first": enc(protocol.DirSum{Path: "a", Sum: zero}),
		"before its parent":  enc(protocol.DirSum{Path: ".", Sum: zero}, protocol.DirSum{Path: "a/b", Sum: zero}),
		"twice":              enc(protocol.DirSum{Path: ".", Sum: zero}, protocol.DirSum{Path: ".", Sum: zero}),
		"dotdot":             enc(protocol.DirSum{Path: ".", Sum: zero}, protocol.DirSum{Path: "..", Sum: zero}),
		"garbage":            {0xff, 0xff, 0xff},
	}
	for name, payload := range cases {
		t.Run(name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "dst")
			o := &scriptOpener{script: func(s net.Conn, w *protocol.Writer) {
				w.Frame(protocol.FrameSyncDirSums, payload)
				w.Frame(protocol.FrameSyncDirSumsEnd, nil)
			}}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := Pull(ctx, o, "x", dst, Options{DirSums: true})
			if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "invalid") {
				t.Fatalf("err = %v, want an invalid-frame error", err)
			}
		})
	}
	src := t.TempDir()
	os.Mkdir(filepath.Join(src, "a"), 0o755)
	os.WriteFile(filepath.Join(src, "a", "f"), []byte("x"), 0o644)
	for name, bitmap := range map[string][]byte{"short": {}, "long": {1, 0}, "bits past the end": {0xff}} {
		t.Run("want "+name, func(t *testing.T) {
			o := &scriptOpener{script: func(s net.Conn, w *protocol.Writer) {
				for {
					f, err := protocol.ReadFrame(s, protocol.MaxPayload)
					if err != nil || f.Type == protocol.FrameSyncDirSumsEnd {
						break
					}
				}
				w.Frame(protocol.FrameSyncWant, bitmap)
			}}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := Push(ctx, o, src, "x", Options{DirSums: true})
			if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "want bitmap") {
				t.Fatalf("err = %v, want a want-bitmap error", err)
			}
		})
	}
}
