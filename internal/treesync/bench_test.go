package treesync

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"testing"
)

// benchTree writes dirs*files small files under root.
func benchTree(tb testing.TB, root string, dirs, files int) {
	tb.Helper()
	body := make([]byte, 2048)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	for d := range dirs {
		dir := filepath.Join(root, fmt.Sprintf("pkg%03d/sub%d", d, d%7))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		for f := range files {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file%04d.go", f)), body[:512+f%1536], 0o644); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// syncOnce sends src to dst over a loopback unix socket pair.
func syncOnce(tb testing.TB, src, dst string) { syncOpt(tb, src, dst, Options{}) }

// syncOpt sends src to dst with opt over a loopback unix socket pair.
func syncOpt(tb testing.TB, src, dst string, opt Options) {
	tb.Helper()
	a, b := net.Pipe()
	if ua, ub, err := unixPair(); err == nil {
		a, b = ua, ub
	}
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	errc := make(chan error, 1)
	go func() {
		_, err := Receive(ctx, b, dst, opt)
		errc <- err
	}()
	if _, err := Send(ctx, a, src, opt); err != nil {
		tb.Fatal(err)
	}
	if err := <-errc; err != nil {
		tb.Fatal(err)
	}
}

func unixPair() (net.Conn, net.Conn, error) {
	dir, err := os.MkdirTemp("", "treesync-bench")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	l, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		return nil, nil, err
	}
	defer l.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		ch <- c
	}()
	a, err := net.Dial("unix", filepath.Join(dir, "s"))
	if err != nil {
		return nil, nil, err
	}
	return a, <-ch, nil
}

// BenchmarkNoChange: a second sync of an unchanged tree of 30,000 small
// files (the bench corpus's count), sender and receiver in one process.
func BenchmarkNoChange(b *testing.B) {
	src, dst := b.TempDir(), b.TempDir()
	benchTree(b, src, 300, 100)
	syncOnce(b, src, dst)
	if p := os.Getenv("TREESYNC_CPUPROFILE"); p != "" { // the loop only, not the set-up
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	b.ResetTimer()
	for b.Loop() {
		syncOnce(b, src, dst)
	}
}

// BenchmarkInitial: a first sync of the tree at $TREESYNC_CORPUS (e.g. the
// bench corpus of integration/bench_sync_test.go) into an empty target,
// sender and receiver in one process over a unix socket; skipped without
// it. TREESYNC_CPUPROFILE=file writes a profile; TREESYNC_RAW=1 sends new
// files uncompressed (Options.Raw, what the daemon does for a peer on this
// host); TREESYNC_PLACERS=N runs N placers.
func BenchmarkInitial(b *testing.B) {
	src := os.Getenv("TREESYNC_CORPUS")
	if src == "" {
		b.Skip("TREESYNC_CORPUS not set")
	}
	if n, err := strconv.Atoi(os.Getenv("TREESYNC_PLACERS")); err == nil && n > 0 {
		defer func(n int) { placers = n }(placers)
		placers = n
	}
	if p := os.Getenv("TREESYNC_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	for b.Loop() {
		dst := filepath.Join(b.TempDir(), "dst")
		syncOpt(b, src, dst, Options{Raw: os.Getenv("TREESYNC_RAW") == "1"})
		b.StopTimer()
		os.RemoveAll(dst)
		b.StartTimer()
	}
}
