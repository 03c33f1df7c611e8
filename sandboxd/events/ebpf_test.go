package events

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/probes"
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

// TestEBPFPidNamespace loads the probes, scopes them to a child's new pid
// namespace and checks that child's exec, file events and exit, with
// in-namespace pids, and that nothing of the host shows up; with each
// file hook, which the stream's hello names.
func TestEBPFPidNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("DARKSHELL_REQUIRE_ALL") != "" {
			t.Fatal("needs root to load eBPF")
		}
		t.Skip("SKIP: needs root to load eBPF")
	}
	// Short subtest names: t.TempDir's name holds the test's, and the
	// probe keeps 47 bytes of a directory name.
	for name, hook := range map[string]probes.FileHook{"tracepoints": probes.HookSyscallTracepoints, "tp_btf": probes.HookRawSysExit} {
		t.Run(name, func(t *testing.T) { testEBPFPidNamespace(t, hook) })
	}
}

func testEBPFPidNamespace(t *testing.T, hook probes.FileHook) {
	e, err := LoadEBPFWith(probes.Options{FileHook: hook}, nil)
	skipIfNotSupported(t, err)
	defer e.Close()
	if h := e.Hello(); h.FileProbe != string(hook) || h.Validate() != nil {
		t.Fatalf("hello %+v (%v), want file probe %s", h, h.Validate(), hook)
	}
	hub := NewHub(1<<16, e.Hello())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, hub) }()

	dir := t.TempDir()
	script := "cd " + dir + " && echo hi > a && mv a b && rm b && mkdir d && exit 3"
	cmd := exec.Command("/bin/sh", "-c", `read go; exec /bin/sh -c "$0"`, script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	in, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := e.ScopeToPID(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	in.Write([]byte("go\n"))
	in.Close()
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("script: %v", err)
	}
	// Host noise while scoped: must not show up.
	exec.Command("/bin/sh", "-c", "true hostnoise").Run()

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
			if ev.PID != 1 && ev.PID != 2 && ev.PID != 3 && ev.PID != 4 {
				t.Fatalf("event from outside the namespace: %+v", ev)
			}
			for _, a := range ev.Argv {
				if a == "hostnoise" {
					t.Fatalf("host activity traced: %+v", ev)
				}
			}
			if ev.Kind == protocol.KindExec && ev.PID == 1 && len(ev.Argv) == 3 && ev.Argv[2] == script {
				execSeen = ev.Binary == "/bin/sh"
			}
			if ev.Kind == protocol.KindExit && ev.PID == 1 {
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
				t.Logf("%+v", ev)
			}
			t.Fatalf("exec=%v exit=%v file events in order=%d/%d", execSeen, exitSeen, got, len(want))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if l := e.Lost(); l != 0 {
		t.Errorf("lost %d events", l)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestEBPFIdleReaderWakes: a reader with nothing to read waits in epoll, and
// the probes' wakeup (the first record after it caught up) brings it back:
// an exec after a quiet spell is read while the workload is still quiet
// (with wakeups off, the reader would sleep until its close).
func TestEBPFIdleReaderWakes(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("DARKSHELL_REQUIRE_ALL") != "" {
			t.Fatal("needs root to load eBPF")
		}
		t.Skip("SKIP: needs root to load eBPF")
	}
	e, err := LoadEBPF(nil)
	skipIfNotSupported(t, err)
	defer e.Close()
	hub := NewHub(1<<16, e.Hello())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, hub) }()

	// The script's last step blocks on its stdin until the test closes it:
	// no record comes after the exec of `true idlewake` until then.
	cmd := exec.Command("/bin/sh", "-c", `read go; exec /bin/sh -c "$0"`, "sleep 0.5; /bin/true idlewake; read x")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	in, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		in.Close()
		cmd.Wait()
	}()
	if err := e.ScopeToPID(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	in.Write([]byte("go\n"))

	deadline := time.Now().Add(10 * time.Second)
	for {
		var execd, exited bool
		for _, ev := range hub.History(&protocol.EventsRequest{History: true}) {
			if len(ev.Argv) == 2 && ev.Argv[1] == "idlewake" && ev.Kind == protocol.KindExec {
				execd = true
			}
			if ev.Kind == protocol.KindExit && ev.Binary == "/bin/true" && ev.ExitCode != nil && *ev.ExitCode == 0 {
				exited = true
			}
		}
		if execd && exited {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the exec (%v) and exit (%v) of `true idlewake` were not read while the workload was quiet (%d idle waits)", execd, exited, e.waits.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Once at the start, once or more during the sleep, once after true.
	if w := e.waits.Load(); w < 2 {
		t.Errorf("the reader waited in epoll %d times, want at least 2 (it polls instead of sleeping when idle)", w)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
