package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkCaptureDir captures the tree $DARKSHELL_BENCH_TREE (e.g. the
// bench corpus, ~/.cache/darkshell-bench/corpus-1.0) cold into a fresh
// store: the chunk + hash + zstd path of a snapshot without the daemon,
// for CPU profiles (go test -bench CaptureDir -cpuprofile).
func BenchmarkCaptureDir(b *testing.B) {
	dir := os.Getenv("DARKSHELL_BENCH_TREE")
	if dir == "" {
		b.Skip("set DARKSHELL_BENCH_TREE to a directory to capture")
	}
	for b.Loop() {
		r, err := Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		s := &Snapshot{ID: NewID(), Sandbox: "bench", Name: "cold"}
		if err := r.Capture(context.Background(), dir, s, CaptureOptions{}); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(s.Bytes)/b.Elapsed().Seconds()/(1<<20), "MiB/s")
	}
}

// BenchmarkMaterializeDir restores a capture of $DARKSHELL_BENCH_TREE
// (taken once, outside the timing) into a fresh directory: the read +
// verify + write path of a restore, for CPU profiles.
func BenchmarkMaterializeDir(b *testing.B) {
	dir := os.Getenv("DARKSHELL_BENCH_TREE")
	if dir == "" {
		b.Skip("set DARKSHELL_BENCH_TREE to a directory to capture")
	}
	r, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	s := &Snapshot{ID: NewID(), Sandbox: "bench", Name: "src"}
	if err := r.Capture(context.Background(), dir, s, CaptureOptions{}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		dst := filepath.Join(b.TempDir(), "out")
		if err := r.Materialize(context.Background(), s, dst, MaterializeOptions{}); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(s.Bytes)/b.Elapsed().Seconds()/(1<<20), "MiB/s")
	}
}
