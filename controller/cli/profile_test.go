package cli

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestStartCPUProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.prof")
	stop, err := startCPUProfile(path)
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	stop()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 64 || b[0] != 0x1f || b[1] != 0x8b { // a gzipped profile.proto
		t.Fatalf("not a CPU profile: %d bytes % x", len(b), b[:min(len(b), 4)])
	}
	if _, err := startCPUProfile(filepath.Join(t.TempDir(), "missing", "cpu.prof")); err == nil {
		t.Fatal("no error for a profile path in a missing directory")
	}
}
