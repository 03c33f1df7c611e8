package snapshot

import (
	"context"
	"os"
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
