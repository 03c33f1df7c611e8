package syncer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/internal/treesync"
	"github.com/bohica-labs/darkshell/protocol"
	"github.com/bohica-labs/darkshell/sandboxd/syncd"
)

// pipeOpener serves every stream in-process with sandboxd/syncd, the way
// sandboxd's dispatch does.
type pipeOpener struct {
	t    *testing.T
	home string
	wrap func(net.Conn) net.Conn // optional, on the controller end
	wg   sync.WaitGroup
}

func (o *pipeOpener) Open(ctx context.Context) (net.Conn, error) {
	c, s := net.Pipe()
	o.wg.Go(func() {
		defer s.Close()
		f, err := protocol.ReadFrame(s, protocol.MaxPayload)
		if err != nil {
			return
		}
		if err := syncd.Serve(ctx, s, f, o.home); err != nil {
			_ = s.SetWriteDeadline(time.Now().Add(time.Second))
			_ = protocol.NewWriter(s).Error(protocol.CodeInternal, "%v", err)
		}
	})
	if o.wrap != nil {
		return o.wrap(c), nil
	}
	return c, nil
}

var names = []string{"a", "b", "file", "ünïcödé", "日本語", "sp ace", "-dash", ".hidden", "x.go", "emoji😀", "tab\tname", "new\nline"}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	// Partly compressible, partly random.
	for i := range b {
		if i%64 < 32 {
			b[i] = byte(rng.Uint32())
		} else {
			b[i] = byte('a' + i%7)
		}
	}
	return b
}

func randSize(rng *rand.Rand) int {
	switch rng.IntN(4) {
	case 0:
		return 0
	case 1:
		return rng.IntN(100)
	case 2:
		return rng.IntN(10_000)
	}
	return rng.IntN(300_000)
}

var modes = []os.FileMode{0o644, 0o600, 0o755, 0o444, 0o700}

func mkEntry(t *testing.T, rng *rand.Rand, p string, kind int) {
	t.Helper()
	var err error
	switch kind {
	case 0:
		err = os.Mkdir(p, []os.FileMode{0o755, 0o700, 0o555}[rng.IntN(3)])
	case 1:
		err = os.Symlink([]string{"a", "../outside", "/etc/passwd", "日本語/x"}[rng.IntN(4)], p)
	default:
		if err = os.WriteFile(p, randBytes(rng, randSize(rng)), 0o600); err == nil {
			err = os.Chmod(p, modes[rng.IntN(len(modes))])
		}
		mt := time.Unix(1_700_000_000+rng.Int64N(1e8), rng.Int64N(1e9))
		if err == nil {
			err = os.Chtimes(p, mt, mt)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

// genTree fills dir with about n random entries.
func genTree(t *testing.T, rng *rand.Rand, dir string, n int) {
	dirs := []string{dir}
	for i := range n {
		parent := dirs[rng.IntN(len(dirs))]
		p := filepath.Join(parent, fmt.Sprintf("%s%d", names[rng.IntN(len(names))], i))
		k := rng.IntN(8)
		if k == 0 {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
			dirs = append(dirs, p)
			continue
		}
		mkEntry(t, rng, p, k)
	}
	// Read-only directories are made read-only at the end.
	for _, d := range dirs[1:] {
		if rng.IntN(6) == 0 {
			if err := os.Chmod(d, 0o555); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// allEntries lists dir's entries (relative paths), parents first.
func allEntries(t *testing.T, dir string) []string {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// editTree applies random edits: add, modify, truncate, delete, type
// change, mode change, rename.
func editTree(t *testing.T, rng *rand.Rand, dir string, n int) {
	makeWritable(t, dir)
	for i := range n {
		ents := allEntries(t, dir)
		if len(ents) == 0 {
			mkEntry(t, rng, filepath.Join(dir, "fresh"), 2)
			continue
		}
		p := filepath.Join(dir, ents[rng.IntN(len(ents))])
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		mt := time.Unix(1_800_000_000+int64(i), 0)
		switch op := rng.IntN(8); {
		case op == 7 && fi.Mode().IsRegular(): // rename
			os.Rename(p, filepath.Join(dir, fmt.Sprintf("renamed%d_%d", i, rng.Uint32())))
		case op == 0 && fi.IsDir(): // add inside
			mkEntry(t, rng, filepath.Join(p, fmt.Sprintf("added%d_%d", i, rng.Uint32())), rng.IntN(4))
		case op == 1 && fi.Mode().IsRegular() && fi.Size() > 10: // modify in place
			b, _ := os.ReadFile(p)
			copy(b[len(b)/2:], randBytes(rng, min(100, len(b)/2)))
			b = append(b, randBytes(rng, rng.IntN(5000))...)
			os.WriteFile(p, b, 0)
			os.Chtimes(p, mt, mt)
		case op == 2 && fi.Mode().IsRegular(): // truncate
			os.Truncate(p, fi.Size()/3)
			os.Chtimes(p, mt, mt)
		case op == 3: // delete
			os.RemoveAll(p)
		case op == 4: // type change
			os.RemoveAll(p)
			mkEntry(t, rng, p, rng.IntN(3))
		case op == 5 && fi.Mode()&fs.ModeSymlink == 0: // mode change
			os.Chmod(p, modes[rng.IntN(len(modes))]|0o200)
		default: // add at top
			mkEntry(t, rng, filepath.Join(dir, fmt.Sprintf("top%d_%d", i, rng.Uint32())), rng.IntN(4))
		}
	}
}

func makeWritable(t *testing.T, dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
}

// diffTrees compares content, type, mode bits, symlink targets, file
// mtimes and empty directories; it returns the differences.
func diffTrees(t *testing.T, a, b string) []string {
	t.Helper()
	type ent struct {
		typ  string
		mode fs.FileMode
		data string
		mt   int64
	}
	read := func(root string) map[string]ent {
		m := map[string]ent{}
		for _, rel := range allEntries(t, root) {
			p := filepath.Join(root, rel)
			fi, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			e := ent{mode: fi.Mode().Perm()}
			switch {
			case fi.Mode().IsRegular():
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				e.typ, e.data, e.mt = "f", string(b), fi.ModTime().UnixNano()
			case fi.IsDir():
				e.typ = "d"
			case fi.Mode()&fs.ModeSymlink != 0:
				l, _ := os.Readlink(p)
				e.typ, e.data, e.mode = "l", l, 0
			}
			m[rel] = e
		}
		return m
	}
	ma, mb := read(a), read(b)
	var out []string
	for p, ea := range ma {
		eb, ok := mb[p]
		switch {
		case !ok:
			out = append(out, "missing "+p)
		case ea.typ != eb.typ:
			out = append(out, fmt.Sprintf("%s: type %s vs %s", p, ea.typ, eb.typ))
		case ea.mode != eb.mode:
			out = append(out, fmt.Sprintf("%s: mode %o vs %o", p, ea.mode, eb.mode))
		case ea.data != eb.data:
			out = append(out, p+": content differs")
		case ea.mt != eb.mt:
			out = append(out, p+": mtime differs")
		}
	}
	for p := range mb {
		if _, ok := ma[p]; !ok {
			out = append(out, "extra "+p)
		}
	}
	sort.Strings(out)
	return out
}

func noTemps(t *testing.T, dir string) {
	t.Helper()
	for _, p := range allEntries(t, dir) {
		if strings.HasPrefix(filepath.Base(p), treesync.TempPrefix) {
			t.Errorf("temporary file left: %s", p)
		}
	}
}

func checkSame(t *testing.T, a, b string) {
	t.Helper()
	if d := diffTrees(t, a, b); len(d) > 0 {
		t.Fatalf("trees differ (%d):\n%s", len(d), strings.Join(d[:min(len(d), 20)], "\n"))
	}
	noTemps(t, b)
}

// seedModes yields each of n seeds with directory digests off and on.
func seedModes(n uint64) func(yield func(uint64, bool) bool) {
	return func(yield func(uint64, bool) bool) {
		for seed := range n {
			for _, ds := range []bool{false, true} {
				if !yield(seed, ds) {
					return
				}
			}
		}
	}
}

func TestPushRandom(t *testing.T) {
	for seed, dirSums := range seedModes(6) {
		t.Run(fmt.Sprintf("%d/dirsums=%v", seed, dirSums), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			raw := seed%2 == 1 // new files without zstd, as to a sandbox on this host
			src, home := t.TempDir(), t.TempDir()
			o := &pipeOpener{t: t, home: home}
			ctx := context.Background()
			genTree(t, rng, src, 60)
			sum, err := Push(ctx, o, src, "sandbox", Options{DirSums: dirSums, Raw: raw})
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(home, "sandbox")
			checkSame(t, src, dst)
			if sum.Added != sum.Entries || sum.Modified+sum.Deleted+sum.Unchanged != 0 {
				t.Errorf("first push summary %+v", sum)
			}
			// Nothing changed: nothing sent.
			sum, err = Push(ctx, o, src, "sandbox", Options{Delete: true, DirSums: dirSums, Raw: raw})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Unchanged != sum.Entries || sum.BytesToSend != 0 {
				t.Errorf("idle push summary %+v", sum)
			}
			for round := range 3 {
				editTree(t, rng, src, 15)
				sum, err := Push(ctx, o, src, dst, Options{Delete: true, DryRun: round == 0, DirSums: dirSums, Raw: raw})
				if err != nil {
					t.Fatal(err)
				}
				if round == 0 {
					if len(diffTrees(t, src, dst)) == 0 || sum.Added+sum.Modified+sum.Deleted == 0 {
						t.Fatalf("dry run changed the tree or planned nothing: %+v", sum)
					}
					continue
				}
				checkSame(t, src, dst)
			}
			o.wg.Wait()
		})
	}
}

func TestPullRandom(t *testing.T) {
	for seed, dirSums := range seedModes(6) {
		t.Run(fmt.Sprintf("%d/dirsums=%v", seed, dirSums), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			home, dst := t.TempDir(), filepath.Join(t.TempDir(), "local")
			remote := filepath.Join(home, "tree")
			os.Mkdir(remote, 0o755)
			o := &pipeOpener{t: t, home: home}
			ctx := context.Background()
			genTree(t, rng, remote, 60)
			if _, err := Pull(ctx, o, "tree", dst, Options{DirSums: dirSums}); err != nil {
				t.Fatal(err)
			}
			checkSame(t, remote, dst)
			for range 3 {
				editTree(t, rng, remote, 15)
				if _, err := Pull(ctx, o, remote, dst, Options{Delete: true, DirSums: dirSums}); err != nil {
					t.Fatal(err)
				}
				checkSame(t, remote, dst)
			}
			o.wg.Wait()
		})
	}
}

func TestChecksumAndExclude(t *testing.T) {
	src, home := t.TempDir(), t.TempDir()
	o := &pipeOpener{t: t, home: home}
	ctx := context.Background()
	mt := time.Unix(1_700_000_000, 0)
	os.WriteFile(filepath.Join(src, "f"), []byte("hello world"), 0o644)
	os.Chtimes(filepath.Join(src, "f"), mt, mt)
	os.MkdirAll(filepath.Join(src, "node_modules/x"), 0o755)
	os.WriteFile(filepath.Join(src, "node_modules/x/big"), []byte("zzz"), 0o644)
	os.WriteFile(filepath.Join(src, "keep.log"), []byte("log"), 0o644)
	opt := Options{Exclude: []string{"node_modules", "*.log"}}
	if _, err := Push(ctx, o, src, "d", opt); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(home, "d")
	if ents := allEntries(t, dst); len(ents) != 1 || ents[0] != "f" {
		t.Fatalf("excluded entries sent: %v", ents)
	}
	// An excluded file on the receiver survives --delete.
	os.WriteFile(filepath.Join(dst, "local.log"), []byte("mine"), 0o644)
	// Same size, same mtime, other content: only --checksum sees it.
	os.WriteFile(filepath.Join(src, "f"), []byte("HELLO WORLD"), 0o644)
	os.Chtimes(filepath.Join(src, "f"), mt, mt)
	opt.Delete = true
	if _, err := Push(ctx, o, src, "d", opt); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "f")); string(b) != "hello world" {
		t.Fatalf("quick check should have skipped the file, got %q", b)
	}
	opt.Checksum = true
	sum, err := Push(ctx, o, src, "d", opt)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "f")); string(b) != "HELLO WORLD" || sum.Modified != 1 {
		t.Fatalf("checksum push: %q %+v", b, sum)
	}
	if _, err := os.Stat(filepath.Join(dst, "local.log")); err != nil {
		t.Fatalf("excluded receiver file deleted: %v", err)
	}
}

// failConn fails writes after budget bytes.
type failConn struct {
	net.Conn
	mu     sync.Mutex
	budget int
}

func (c *failConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.budget <= 0 {
		c.Conn.Close()
		return 0, errors.New("injected failure")
	}
	if len(p) > c.budget {
		n, _ := c.Conn.Write(p[:c.budget])
		c.budget = 0
		c.Conn.Close()
		return n, errors.New("injected failure")
	}
	c.budget -= len(p)
	return c.Conn.Write(p)
}

// TestInterrupt cuts a push at many points: every file is old or new, no
// temporary file stays, and a rerun completes.
func TestInterrupt(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	src, home := t.TempDir(), t.TempDir()
	dst := filepath.Join(home, "s")
	ctx := context.Background()
	old := randBytes(rng, 400_000)
	os.WriteFile(filepath.Join(src, "big"), old, 0o644)
	os.WriteFile(filepath.Join(src, "small"), []byte("v1"), 0o644)
	o := &pipeOpener{t: t, home: home}
	if _, err := Push(ctx, o, src, "s", Options{}); err != nil {
		t.Fatal(err)
	}
	neu := append(randBytes(rng, 200_000), old[200_000:]...)
	neu = append(neu, randBytes(rng, 100_000)...)
	os.WriteFile(filepath.Join(src, "big"), neu, 0o644)
	os.WriteFile(filepath.Join(src, "small"), []byte("v2"), 0o644)
	// New small files go through the placers: each is absent or complete.
	fresh := map[string][]byte{}
	for i := range 20 {
		name := fmt.Sprintf("new%02d", i)
		fresh[name] = randBytes(rng, 3000+i*500)
		os.WriteFile(filepath.Join(src, name), fresh[name], 0o644)
	}
	for _, budget := range []int{10, 200, 1000, 5000, 12_000, 30_000, 60_000, 120_000} {
		o := &pipeOpener{t: t, home: home, wrap: func(c net.Conn) net.Conn { return &failConn{Conn: c, budget: budget} }}
		if _, err := Push(ctx, o, src, "s", Options{}); err == nil {
			t.Fatalf("budget %d: push succeeded", budget)
		}
		o.wg.Wait()
		b, _ := os.ReadFile(filepath.Join(dst, "big"))
		if !bytes.Equal(b, old) && !bytes.Equal(b, neu) {
			t.Fatalf("budget %d: big is neither old nor new (%d bytes)", budget, len(b))
		}
		for name, want := range fresh {
			if b, err := os.ReadFile(filepath.Join(dst, name)); err == nil && !bytes.Equal(b, want) {
				t.Fatalf("budget %d: %s is partial (%d of %d bytes)", budget, name, len(b), len(want))
			}
		}
		noTemps(t, dst)
	}
	if _, err := Push(ctx, o, src, "s", Options{}); err != nil {
		t.Fatal(err)
	}
	checkSame(t, src, dst)
}

// TestGitIgnoreIncludeDelete: .gitignore'd files are not sent and survive
// --delete on the receiver; an include pulls only its subtree and --delete
// leaves the rest of the target alone; the meter ends at the plan's totals.
func TestGitIgnoreIncludeDelete(t *testing.T) {
	src, home := t.TempDir(), t.TempDir()
	o := &pipeOpener{t: t, home: home}
	ctx := context.Background()
	files := map[string]string{
		".gitignore":       "bin/\n*.tmp\n",
		"main.go":          "package main",
		"bin/tool":         "ELF",
		"x.tmp":            "tmp",
		".factory/plan.md": "plan",
		"src/a.go":         "a",
	}
	for p, b := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755)
		os.WriteFile(filepath.Join(src, p), []byte(b), 0o644)
	}
	dst := filepath.Join(home, "w")
	m := &treesync.Meter{}
	sum, err := Push(ctx, o, src, "w", Options{GitIgnore: true, Delete: true, Meter: m})
	if err != nil {
		t.Fatal(err)
	}
	if got := allEntries(t, dst); strings.Join(got, ",") != ".factory,.factory/plan.md,.gitignore,main.go,src,src/a.go" {
		t.Fatalf("git-ignore push sent %v", got)
	}
	if m.FilesDone.Load() != m.FilesTotal.Load() || m.BytesDone.Load() != m.BytesTotal.Load() || m.FilesTotal.Load() != 4 || m.BytesTotal.Load() != sum.BytesToSend {
		t.Fatalf("meter %d/%d files %d/%d bytes, summary %+v", m.FilesDone.Load(), m.FilesTotal.Load(), m.BytesDone.Load(), m.BytesTotal.Load(), sum)
	}
	// Build outputs made in the sandbox are ignored there too: --delete keeps them.
	os.MkdirAll(filepath.Join(dst, "bin"), 0o755)
	os.WriteFile(filepath.Join(dst, "bin/built"), []byte("x"), 0o755)
	os.WriteFile(filepath.Join(dst, "stray.go"), []byte("x"), 0o644)
	if _, err := Push(ctx, o, src, "w", Options{GitIgnore: true, Delete: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "bin/built")); err != nil {
		t.Errorf("--delete removed an ignored receiver file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dst, "stray.go")); err == nil {
		t.Error("--delete kept a file the source lacks")
	}
	// Pull only .factory into a directory with other content, with --delete.
	local := t.TempDir()
	os.WriteFile(filepath.Join(local, "mine"), []byte("keep"), 0o644)
	os.MkdirAll(filepath.Join(local, ".factory"), 0o755)
	os.WriteFile(filepath.Join(local, ".factory/old"), []byte("gone"), 0o644)
	if _, err := Pull(ctx, o, "w", local, Options{Include: []string{"/.factory/"}, Delete: true}); err != nil {
		t.Fatal(err)
	}
	if got := allEntries(t, local); strings.Join(got, ",") != ".factory,.factory/plan.md,mine" {
		t.Fatalf("include pull: %v", got)
	}
	o.wg.Wait()
}

// TestRenameReusesContent: a renamed or copied file is rebuilt from the
// receiver's old file (copy ops), not sent again.
func TestRenameReusesContent(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	src, home := t.TempDir(), t.TempDir()
	o := &pipeOpener{t: t, home: home}
	ctx := context.Background()
	data := randBytes(rng, 300_000)
	os.MkdirAll(filepath.Join(src, "a"), 0o755)
	os.WriteFile(filepath.Join(src, "a", "old.bin"), data, 0o644)
	if _, err := Push(ctx, o, src, "d", Options{Delete: true}); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(src, "b"), 0o755)
	os.Rename(filepath.Join(src, "a", "old.bin"), filepath.Join(src, "b", "new.bin"))
	sum, err := Push(ctx, o, src, "d", Options{Delete: true})
	if err != nil {
		t.Fatal(err)
	}
	if sum.CopyBytes != int64(len(data)) || sum.LiteralBytes != 0 || sum.Deleted != 1 {
		t.Fatalf("rename was not rebuilt from the old file: %+v", sum)
	}
	checkSame(t, src, filepath.Join(home, "d"))
	// A download never diffs against host files the sandbox did not name
	// (their signatures would reach the sandbox).
	local := t.TempDir()
	os.WriteFile(filepath.Join(local, "mine.bin"), data, 0o600)
	sum, err = Pull(ctx, o, "d", local, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.CopyBytes != 0 {
		t.Fatalf("pull used an unlisted host file as a basis: %+v", sum)
	}
	o.wg.Wait()
}

// TestSparseFile: a large file that is mostly a hole arrives with its
// content and stays sparse (the zero runs are not written).
func TestSparseFile(t *testing.T) {
	src, home := t.TempDir(), t.TempDir()
	o := &pipeOpener{t: t, home: home}
	p := filepath.Join(src, "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("head"), 0)
	f.WriteAt([]byte("tail"), 64<<20)
	f.Close()
	if _, err := Push(context.Background(), o, src, "d", Options{}); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(home, "d", "disk.img")
	checkSame(t, src, filepath.Join(home, "d"))
	var st syscall.Stat_t
	if err := syscall.Stat(dst, &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > 8<<20 {
		t.Fatalf("64 MiB sparse file uses %d bytes on disk: holes were written", used)
	}
	o.wg.Wait()
}
