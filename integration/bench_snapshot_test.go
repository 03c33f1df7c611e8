package integration

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
)

// dirBytes is the apparent size of every regular file under dir.
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// BenchmarkSnapshot (make bench-snapshot): snapshot and restore of the
// generated 2 GiB workspace in a local sandbox against tar (plain and
// zstd) on the same tree: seconds and stored bytes, a second snapshot with
// nothing changed, the store's growth after a one-file change (target
// < 1 MiB), and restore into a new sandbox against tar -x. Snapshots run
// through the CLI as a user would (processes frozen, the host workspace
// read in place, chunk + zstd into the store).
func BenchmarkSnapshot(b *testing.B) {
	requireLocal(b)
	corpus := benchCorpus(b)
	ws := privateCopy(b, corpus)
	e := newLocalEnv(b)
	const name = "bench"
	e.createLocal(name, "--workspace", ws)
	total := dirBytes(ws)

	type row struct {
		what  string
		secs  float64
		bytes int64
		note  string
	}
	var rows []row
	timed := func(f func()) float64 {
		t0 := time.Now()
		f()
		return time.Since(t0).Seconds()
	}

	// tar, the peer: archive of the same tree, plain and zstd.
	tmp := b.TempDir()
	tarFile, tarZst := filepath.Join(tmp, "ws.tar"), filepath.Join(tmp, "ws.tar.zst")
	tarSecs := timed(func() {
		if out, err := exec.Command("tar", "-cf", tarFile, "-C", ws, ".").CombinedOutput(); err != nil {
			b.Fatalf("tar: %v %s", err, out)
		}
	})
	fi, _ := os.Stat(tarFile)
	rows = append(rows, row{"tar -c", tarSecs, fi.Size(), "peer"})
	zstSecs := 0.0
	if _, err := exec.LookPath("zstd"); err == nil {
		zstSecs = timed(func() {
			if out, err := exec.Command("tar", "-I", "zstd -T0", "-cf", tarZst, "-C", ws, ".").CombinedOutput(); err != nil {
				b.Fatalf("tar zstd: %v %s", err, out)
			}
		})
		fz, _ := os.Stat(tarZst)
		rows = append(rows, row{"tar -c | zstd -T0", zstSecs, fz.Size(), "peer"})
		os.Remove(tarZst)
	}

	// Snapshot 1: cold (mirror empty, store empty).
	var s1, s2, s3 float64
	r1 := e.snapTimed(name, &s1)
	r2 := e.snapTimed(name, &s2)
	rows = append(rows, row{"snapshot (cold)", s1, r1.Snapshot.AddedBytes, coldNote(r1)})
	rows = append(rows, row{"snapshot (nothing changed)", s2, r2.Snapshot.AddedBytes, ""})

	// One file changed: a source file (a private copy, not the cache's
	// hard link) gets a line appended.
	one := filepath.Join(ws, "src", "pkg07", "sub7", "file00007.go")
	unlink(b, one)
	f, err := os.OpenFile(one, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		b.Fatal(err)
	}
	f.WriteString("// changed\n")
	f.Close()
	r3 := e.snapTimed(name, &s3)
	rows = append(rows, row{"snapshot (one file changed)", s3, r3.Snapshot.AddedBytes, "store growth; target < 1 MiB"})

	// Restore: into a new sandbox (staged, verified, swapped in) vs tar -x.
	res := timed(func() { e.restoreTimed(name, r1.Snapshot.ID, "--to", "bench-copy") })
	rows = append(rows, row{"restore --to NEW", res, 0, "every chunk verified"})
	xdir := filepath.Join(tmp, "x")
	os.Mkdir(xdir, 0o755)
	xSecs := timed(func() {
		if out, err := exec.Command("tar", "-xf", tarFile, "-C", xdir).CombinedOutput(); err != nil {
			b.Fatalf("tar -x: %v %s", err, out)
		}
	})
	rows = append(rows, row{"tar -x", xSecs, 0, "peer"})
	os.RemoveAll(xdir)
	os.Remove(tarFile)
	storeBytes := dirBytes(filepath.Join(e.home, "snapshots", "store", "chunks"))

	var sb strings.Builder
	fmt.Fprintf(&sb, "\nsnapshot bench: workspace %d MiB in %s (3 snapshots stored in %d MiB)\n", total>>20, corpus, storeBytes>>20)
	fmt.Fprintf(&sb, "%-30s %9s %14s   %s\n", "case", "seconds", "stored bytes", "note")
	for _, r := range rows {
		bs := "-"
		if r.bytes > 0 || strings.HasPrefix(r.what, "snapshot") {
			bs = fmt.Sprint(r.bytes)
		}
		fmt.Fprintf(&sb, "%-30s %9.2f %14s   %s\n", r.what, r.secs, bs, r.note)
	}
	fmt.Fprintf(&sb, "ratios: cold snapshot / tar -c = %.2fx time, %.2fx bytes", s1/tarSecs, float64(r1.Snapshot.AddedBytes)/float64(fi.Size()))
	if zstSecs > 0 {
		fmt.Fprintf(&sb, "; / tar|zstd = %.2fx time", s1/zstSecs)
	}
	fmt.Fprintf(&sb, "\n        unchanged snapshot / tar -c = %.2fx time; restore / tar -x = %.2fx time\n", s2/tarSecs, res/xSecs)
	fmt.Fprintf(&sb, "        one-file change grew the store by %d bytes (%.3f MiB; target < 1 MiB: %v)\n", r3.Snapshot.AddedBytes, float64(r3.Snapshot.AddedBytes)/(1<<20), r3.Snapshot.AddedBytes < 1<<20)
	b.Log(sb.String())
	fmt.Print(sb.String())
}

// coldNote says how the cold snapshot read the workspace.
func coldNote(r *api.SnapshotResult) string {
	if r.Pulled != nil {
		return fmt.Sprintf("pull %.2fs, %d files", float64(r.Pulled.DurationMs)/1000, r.Snapshot.Files)
	}
	return fmt.Sprintf("read in place, frozen=%v, %d files", r.Snapshot.Frozen, r.Snapshot.Files)
}

// snapTimed takes a snapshot through the CLI without the harness's
// 2-minute limit (a cold 2 GiB snapshot on a loaded machine may need more).
func (e *env) snapTimed(name string, secs *float64) *api.SnapshotResult {
	e.t.Helper()
	t0 := time.Now()
	cmd := e.dsCmd("-o", "json", "sandbox", "snapshot", name)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		e.t.Fatalf("snapshot %s: %v\nstdout: %s\nstderr: %s", name, err, out.String(), errOut.String())
	}
	if secs != nil {
		*secs = time.Since(t0).Seconds()
	}
	var r api.SnapshotResult
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil || r.Snapshot == nil {
		e.t.Fatalf("snapshot %s: %v\n%s", name, err, out.String())
	}
	return &r
}

// restoreTimed is e.restore without the harness's 2-minute limit.
func (e *env) restoreTimed(args ...string) {
	e.t.Helper()
	cmd := e.dsCmd(append([]string{"-o", "json", "sandbox", "restore"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		e.t.Fatalf("restore %v: %v\n%s", args, err, out)
	}
}
