package events

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// skipIfNotSupported skips on ErrNotSupported, unless DARKSHELL_REQUIRE_ALL
// is set: then a missing feature is a failure.
func skipIfNotSupported(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, ErrNotSupported) && os.Getenv("DARKSHELL_REQUIRE_ALL") == "" {
		t.Skipf("SKIP (eBPF unavailable): %v", err)
	}
	t.Fatal(err)
}

// TestEBPFHostNamespace loads the probes scoped to the test's own pid
// namespace and checks one child's exec, file events and exit.
func TestEBPFHostNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("DARKSHELL_REQUIRE_ALL") != "" {
			t.Fatal("needs root to load eBPF")
		}
		t.Skip("SKIP: needs root to load eBPF")
	}
	e, err := LoadEBPF(nil)
	skipIfNotSupported(t, err)
	defer e.Close()
	if err := e.Enable(); err != nil {
		t.Fatal(err)
	}
	hub := NewHub(1<<16, e.Hello())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, hub) }()

	dir := t.TempDir()
	cmd := exec.Command("/bin/sh", "-c", "cd "+dir+" && echo hi > a && mv a b && rm b && mkdir d && exit 3")
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("script: %v", err)
	}
	pid := cmd.Process.Pid
	want := []struct{ kind, path string }{
		{protocol.KindFileWrite, filepath.Join(dir, "a")},
		{protocol.KindFileRename, filepath.Join(dir, "a")},
		{protocol.KindFileUnlink, filepath.Join(dir, "b")},
		{protocol.KindFileMkdir, filepath.Join(dir, "d")},
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs := hub.History(&protocol.EventsRequest{History: true, Files: true})
		var execSeen, exitSeen bool
		got := 0
		for _, ev := range evs {
			if ev.Kind == protocol.KindExec && ev.PID == pid && ev.Binary == "/bin/sh" {
				execSeen = len(ev.Argv) == 3 && ev.Argv[0] == "/bin/sh"
			}
			if ev.Kind == protocol.KindExit && ev.PID == pid {
				exitSeen = ev.ExitCode != nil && *ev.ExitCode == 3 && ev.DurationNs > 0
			}
			if got < len(want) && ev.Kind == want[got].kind && ev.Path == want[got].path && ev.Result == protocol.ResultOK {
				got++
			}
		}
		if execSeen && exitSeen && got == len(want) {
			break
		}
		if time.Now().After(deadline) {
			for _, ev := range evs {
				if ev.PID >= pid {
					t.Logf("%+v", ev)
				}
			}
			t.Fatalf("exec=%v exit=%v file events in order=%d/%d", execSeen, exitSeen, got, len(want))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if l := e.Lost(); l != 0 {
		t.Logf("lost %d events (host activity)", l)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
