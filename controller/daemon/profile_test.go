package daemon

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestStartProfile(t *testing.T) {
	d := &Daemon{log: slog.New(slog.DiscardHandler)}
	base := filepath.Join(t.TempDir(), "cpu.prof")
	t.Setenv("DARKSHELL_DAEMON_CPUPROFILE", base)
	stop := d.startProfile()
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	stop()
	b, err := os.ReadFile(fmt.Sprintf("%s.%d", base, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 64 || b[0] != 0x1f || b[1] != 0x8b { // a gzipped profile.proto
		t.Fatalf("not a CPU profile: %d bytes", len(b))
	}
	t.Setenv("DARKSHELL_DAEMON_CPUPROFILE", "")
	d.startProfile()() // unset: nothing written, nothing to stop
}
