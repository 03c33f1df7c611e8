package snapshot

import (
	"context"
	"fmt"
	"github.com/bohica-labs/darkshell/controller/snapshot/snapshottest"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func newRepo(t testing.TB) *Repo {
	t.Helper()
	r, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func capture(t testing.TB, r *Repo, dir, sandbox, name string) *Snapshot {
	t.Helper()
	s := &Snapshot{ID: NewID(), Sandbox: sandbox, Name: name}
	if err := r.Capture(context.Background(), dir, s, CaptureOptions{Index: r.IndexPath(sandbox)}); err != nil {
		t.Fatal(err)
	}
	return s
}

func materialize(t testing.TB, r *Repo, s *Snapshot) snapshottest.Tree {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "out")
	if err := r.Materialize(context.Background(), s, dst, MaterializeOptions{}); err != nil {
		t.Fatal(err)
	}
	return snapshottest.Describe(t, dst)
}

// scale is full, or short under -short (the race run).
func scale(full, short int) int {
	if testing.Short() {
		return short
	}
	return full
}

func TestPolIrreducible(t *testing.T) {
	if !Pol.Irreducible() {
		t.Fatal("the chunker polynomial is not irreducible")
	}
}

// TestRoundTripRandom: random trees with random edits, each snapshot
// restores byte-identical (content, modes, symlinks, empty dirs, mtimes),
// also after later snapshots and a GC.
func TestRoundTripRandom(t *testing.T) {
	seeds := uint64(4)
	if testing.Short() {
		seeds = 1
	}
	for seed := uint64(1); seed <= seeds; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			r := newRepo(t)
			src := t.TempDir()
			snapshottest.GenTree(t, rng, src, scale(150, 60))
			var snaps []*Snapshot
			var wants []snapshottest.Tree
			for round := 0; round < 4; round++ {
				if round > 0 {
					snapshottest.EditTree(t, rng, src, 20)
				}
				want := snapshottest.Describe(t, src)
				s := capture(t, r, src, "sb", fmt.Sprint("r", round))
				snapshottest.SameTree(t, want, materialize(t, r, s))
				snaps, wants = append(snaps, s), append(wants, want)
			}
			if _, err := r.GC(context.Background()); err != nil {
				t.Fatal(err)
			}
			for i, s := range snaps {
				snapshottest.SameTree(t, wants[i], materialize(t, r, s))
			}
			// Deleting the first and collecting keeps the others whole.
			if err := r.Delete(snaps[0].ID); err != nil {
				t.Fatal(err)
			}
			gc, err := r.GC(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("gc: %+v", gc)
			for i, s := range snaps[1:] {
				snapshottest.SameTree(t, wants[i+1], materialize(t, r, s))
			}
			res, err := r.Verify(context.Background(), snaps[1:], nil)
			if err != nil || len(res.Problems) > 0 {
				t.Fatalf("verify: %v %+v", err, res)
			}
		})
	}
}

// TestIndexSeesSameSizeEdits: a byte changed in place with size and mtime
// kept (the index keys on ctime and inode too) is captured.
func TestIndexSeesSameSizeEdits(t *testing.T) {
	r := newRepo(t)
	src := t.TempDir()
	p := filepath.Join(src, "f")
	os.WriteFile(p, []byte("hello world"), 0o644)
	mt := time.Unix(1_700_000_000, 0)
	os.Chtimes(p, mt, mt)
	capture(t, r, src, "sb", "a")
	time.Sleep(10 * time.Millisecond)
	os.WriteFile(p, []byte("hello WORLD"), 0o644)
	os.Chtimes(p, mt, mt)
	want := snapshottest.Describe(t, src)
	snapshottest.SameTree(t, want, materialize(t, r, capture(t, r, src, "sb", "b")))
}

// TestDedup: a second snapshot after a one-file change adds about that
// file (compressed) and the tree chunks around its entry.
func TestDedup(t *testing.T) {
	r := newRepo(t)
	src := t.TempDir()
	rng := rand.New(rand.NewPCG(9, 9))
	for i := 0; i < scale(1000, 300); i++ {
		d := filepath.Join(src, fmt.Sprintf("pkg%02d", i%40))
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, fmt.Sprintf("f%04d.go", i)), snapshottest.RandData(rng, 2000+rng.IntN(8000)), 0o644)
	}
	os.WriteFile(filepath.Join(src, "big.bin"), snapshottest.RandData(rand.New(rand.NewPCG(1, 1)), scale(12, 6)<<20), 0o644)
	a := capture(t, r, src, "sb", "a")
	if a.AddedBytes == 0 {
		t.Fatal("the first snapshot stored nothing")
	}
	os.WriteFile(filepath.Join(src, "pkg07", "f0007.go"), []byte("changed"), 0o644)
	b := capture(t, r, src, "sb", "b")
	t.Logf("first %d bytes stored, second %d", a.AddedBytes, b.AddedBytes)
	if b.AddedBytes > 256<<10 {
		t.Fatalf("a one-file change added %d bytes to the store", b.AddedBytes)
	}
	// A byte changed in the middle of the big file: a chunk or two, not 12 MiB.
	f, _ := os.OpenFile(filepath.Join(src, "big.bin"), os.O_RDWR, 0)
	f.WriteAt([]byte{1, 2, 3}, 3<<20)
	f.Close()
	c := capture(t, r, src, "sb", "c")
	if c.AddedBytes > 3*MaxChunk {
		t.Fatalf("a 3-byte change in a 12 MiB file added %d bytes", c.AddedBytes)
	}
	// Same tree again: nothing new.
	d := capture(t, r, src, "sb", "d")
	if d.AddedBytes != 0 {
		t.Fatalf("an unchanged tree added %d bytes", d.AddedBytes)
	}
}

// TestVerifyAndCorruption: verify finds a damaged chunk, a restore
// refuses it and leaves the target as it was.
func TestVerifyAndCorruption(t *testing.T) {
	r := newRepo(t)
	src := t.TempDir()
	snapshottest.GenTree(t, rand.New(rand.NewPCG(3, 3)), src, 60)
	s := capture(t, r, src, "sb", "a")
	res, err := r.Verify(context.Background(), []*Snapshot{s}, nil)
	if err != nil || len(res.Problems) != 0 || res.Chunks == 0 {
		t.Fatalf("verify of a good store: %v %+v", err, res)
	}
	ents, _ := r.loadTree(s)
	var victim string
	for _, e := range ents {
		if len(e.Chunks) > 0 {
			victim = e.Chunks[0]
			break
		}
	}
	// Replace the chunk by another valid zstd frame of other content.
	other := filepath.Join(t.TempDir(), "o")
	os.WriteFile(other, []byte("other"), 0o600)
	r2 := newRepo(t)
	o := capture(t, r2, filepath.Dir(other), "x", "x")
	oents, _ := r2.loadTree(o)
	var oc string
	for _, e := range oents {
		if len(e.Chunks) > 0 {
			oc = e.Chunks[0]
		}
	}
	zb, _ := os.ReadFile(r2.Store.path(oc))
	os.WriteFile(r.Store.path(victim), zb, 0o600)
	res, err = r.Verify(context.Background(), []*Snapshot{s}, nil)
	if err != nil || len(res.Problems) == 0 || !strings.Contains(res.Problems[0].Error, "corrupt") {
		t.Fatalf("verify missed the damaged chunk: %v %+v", err, res)
	}
	target := t.TempDir()
	os.WriteFile(filepath.Join(target, "keep"), []byte("old"), 0o644)
	before := snapshottest.Describe(t, target)
	if err := r.ReplaceDir(context.Background(), s, target, MaterializeOptions{}); err == nil {
		t.Fatal("a restore from a damaged chunk succeeded")
	}
	snapshottest.SameTree(t, before, snapshottest.Describe(t, target))
	// A missing chunk is named too.
	os.Remove(r.Store.path(victim))
	res, _ = r.Verify(context.Background(), []*Snapshot{s}, nil)
	if len(res.Problems) == 0 || !strings.Contains(res.Problems[0].Error, "missing") {
		t.Fatalf("verify missed the missing chunk: %+v", res)
	}
}

// TestGCRacesSnapshots: snapshots, deletes and collections at once; every
// surviving snapshot restores whole.
func TestGCRacesSnapshots(t *testing.T) {
	r := newRepo(t)
	rng := rand.New(rand.NewPCG(5, 5))
	const writers = 3
	srcs := make([]string, writers)
	for i := range srcs {
		srcs[i] = t.TempDir()
		snapshottest.GenTree(t, rng, srcs[i], scale(80, 30))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	type taken struct {
		s    *Snapshot
		want snapshottest.Tree
	}
	var mu sync.Mutex
	var all []taken
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; ctx.Err() == nil && i < 8; i++ {
				snapshottest.EditTree(t, rng, srcs[w], 5)
				want := snapshottest.Describe(t, srcs[w])
				s := &Snapshot{ID: NewID(), Sandbox: fmt.Sprint("sb", w), Name: fmt.Sprint(i)}
				if err := r.Capture(context.Background(), srcs[w], s, CaptureOptions{Index: r.IndexPath(s.Sandbox)}); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				all = append(all, taken{s, want})
				// Delete an older one now and then: its chunks become garbage
				// while newer snapshots share most of them.
				if len(all) > 4 && rng.IntN(2) == 0 {
					k := rng.IntN(len(all) - 2)
					r.Delete(all[k].s.ID)
					all = slices.Delete(all, k, k+1)
				}
				mu.Unlock()
			}
		}(w)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if _, err := r.GC(context.Background()); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	if _, err := r.GC(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, tk := range all {
		snapshottest.SameTree(t, tk.want, materialize(t, r, tk.s))
	}
	t.Logf("%d snapshots survived the race whole", len(all))
}

func TestFindPrune(t *testing.T) {
	r := newRepo(t)
	now := time.Now().UTC()
	for i, sb := range []string{"a", "a", "a", "b"} {
		s := &Snapshot{ID: fmt.Sprintf("s-%02d", i), Sandbox: sb, Name: fmt.Sprint("n", i%3), Created: now.Add(time.Duration(i-10) * time.Hour)}
		if err := r.Save(s); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		sandbox, ref, want, err string
	}{
		{"", "s-01", "s-01", ""},
		{"a", "n1", "s-01", ""},
		{"", "n0", "", "ambiguous"},
		{"b", "n0", "s-03", ""},
		{"b", "n1", "", "no such snapshot"},
	}
	for _, tc := range tests {
		s, err := r.Find(tc.sandbox, tc.ref)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Find(%q,%q): want error %q, got %v", tc.sandbox, tc.ref, tc.err, err)
			}
			continue
		}
		if err != nil || s.ID != tc.want {
			t.Errorf("Find(%q,%q) = %v, %v; want %s", tc.sandbox, tc.ref, s, err, tc.want)
		}
	}
	gone, err := r.Prune("a", 2, 0, now)
	if err != nil || len(gone) != 1 || gone[0].ID != "s-00" {
		t.Fatalf("prune --keep 2: %v %v", gone, err)
	}
	gone, err = r.Prune("a", 0, 8*time.Hour+30*time.Minute, now)
	if err != nil || len(gone) != 1 || gone[0].ID != "s-01" {
		t.Fatalf("prune --max-age: %v %v", gone, err)
	}
	if l, _ := r.List(""); len(l) != 2 {
		t.Fatalf("left: %d", len(l))
	}
}

// Kill tests: a child process (this test binary) captures or restores and
// is killed with SIGKILL at a random moment; the repository must keep its
// last good state and the target must be the old tree or the new one.

const helperEnv = "DARKSHELL_SNAPSHOT_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(helper(h))
	}
	os.Exit(m.Run())
}

func helper(spec string) int {
	op, rest, _ := strings.Cut(spec, ":")
	f := strings.Split(rest, "|")
	r, err := Open(f[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch op {
	case "capture":
		s := &Snapshot{ID: NewID(), Sandbox: "sb", Name: "killed"}
		err = r.Capture(context.Background(), f[1], s, CaptureOptions{Index: r.IndexPath("sb"), Workers: 1})
	case "restore":
		var s *Snapshot
		if s, err = r.Find("", f[2]); err == nil {
			err = r.ReplaceDir(context.Background(), s, f[1], MaterializeOptions{Workers: 1})
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func runKilled(t *testing.T, spec string, after time.Duration) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+spec)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(after)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
}

func TestKillDuringCaptureAndRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("kill test: runs without -short")
	}
	r := newRepo(t)
	rng := rand.New(rand.NewPCG(11, 11))
	src := t.TempDir()
	snapshottest.GenTree(t, rng, src, 300)
	wantA := snapshottest.Describe(t, src)
	a := capture(t, r, src, "sb", "a")
	snapshottest.EditTree(t, rng, src, 80)
	for i := 0; i < 12; i++ {
		runKilled(t, "capture:"+r.Dir()+"|"+src, time.Duration(rng.IntN(60))*time.Millisecond)
		l, err := r.List("")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range l {
			res, err := r.Verify(context.Background(), []*Snapshot{s}, nil)
			if err != nil || len(res.Problems) > 0 {
				t.Fatalf("after a killed capture, snapshot %s does not verify: %v %+v", s.Name, err, res)
			}
		}
	}
	snapshottest.SameTree(t, wantA, materialize(t, r, a))
	if _, err := r.GC(context.Background()); err != nil {
		t.Fatal(err)
	}
	snapshottest.SameTree(t, wantA, materialize(t, r, a))

	// Restore a into a target holding b's tree, killed at random moments.
	wantB := snapshottest.Describe(t, src)
	b := capture(t, r, src, "sb", "b")
	target := filepath.Join(t.TempDir(), "ws")
	if err := r.Materialize(context.Background(), b, target, MaterializeOptions{}); err != nil {
		t.Fatal(err)
	}
	sawNew := false
	for i := 0; i < 12; i++ {
		runKilled(t, "restore:"+r.Dir()+"|"+target+"|"+a.ID, time.Duration(rng.IntN(80))*time.Millisecond)
		if _, err := r.Recover(target); err != nil {
			t.Fatal(err)
		}
		got := snapshottest.Describe(t, target)
		// Either tree, whole: compare with both.
		switch {
		case snapshottest.Equal(got, wantA):
			sawNew = true
			// Put b back for the next round.
			if err := r.ReplaceDir(context.Background(), b, target, MaterializeOptions{}); err != nil {
				t.Fatal(err)
			}
		case snapshottest.Equal(got, wantB):
		default:
			snapshottest.SameTree(t, wantB, got) // fails, naming the differences
		}
		leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(target), ".ws.ds-*"))
		if len(leftovers) > 0 {
			t.Fatalf("left behind after recovery: %v", leftovers)
		}
	}
	t.Logf("a killed restore completed in some rounds: %v", sawNew)
}
