package localdriver

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/state"
)

// TestStatus: the phase from the record and /proc alone.
func TestStatus(t *testing.T) {
	h, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sb := &state.Sandbox{Name: "s", Driver: "local"}
	p := paths{h.SandboxDir(sb.Name)}
	if err := os.MkdirAll(p.runDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	status := func(x Extra) driver.Status {
		sb.Extra, _ = json.Marshal(x)
		return Driver{}.Status(context.Background(), h, sb)
	}
	if st := status(Extra{}); st.Phase != driver.PhasePending {
		t.Errorf("no pid yet: %+v", st)
	}
	if st := status(Extra{Stopped: true}); st.Phase != driver.PhaseStopped {
		t.Errorf("stopped: %+v", st)
	}
	self := os.Getpid()
	st0, err := procStartTime(self)
	if err != nil {
		t.Fatal(err)
	}
	if st := status(Extra{PID: self, StartTime: st0}); st.Phase != driver.PhaseRunning {
		t.Errorf("running: %+v", st)
	}
	// A dead process, reaped here as the daemon reaps init.
	cmd := exec.Command("sh", "-c", "kill -9 $$")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	how, err := exitHow(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	// exitHow must not reap: the zombie is still ours to wait for.
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("wait after exitHow: %v", err)
	}
	recordExit(p, cmd.Process.Pid, how)
	os.WriteFile(p.log(), []byte("first\nlast words\n"), 0o600)
	st := status(Extra{PID: cmd.Process.Pid, StartTime: 1})
	if st.Phase != driver.PhaseFailed || !strings.Contains(st.Reason, "signal 9") || !strings.Contains(st.Reason, "last words") ||
		strings.Contains(st.Reason, "first") {
		t.Errorf("failed: %+v", st)
	}
	// Same pid, other start time (pid reuse): not the recorded init.
	if st := status(Extra{PID: self, StartTime: st0 + 1}); st.Phase != driver.PhaseFailed {
		t.Errorf("pid reused: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(p.dir, "run", "init-exit")); err != nil {
		t.Error(err)
	}
}

// TestInterruptedStop: Stop records its intent before it signals init, so a
// daemon killed while init ends leaves a record that says stopped; Start
// then finishes the stop before it launches (TestLocalRestoreKilled hit a
// record that still said running once init was gone).
func TestInterruptedStop(t *testing.T) {
	h, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// A stand-in for init: a child that ends on SIGTERM, reaped here as
	// the daemon reaps init.
	startInit := func() (*state.Sandbox, *exec.Cmd, chan struct{}) {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		st, err := procStartTime(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		sb := &state.Sandbox{Name: "s", Driver: "local"}
		sb.Extra, _ = json.Marshal(Extra{PID: cmd.Process.Pid, StartTime: st})
		if err := os.MkdirAll(h.SandboxDir(sb.Name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := h.Save(sb); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		return sb, cmd, done
	}

	sb, _, done := startInit()
	if err := (Driver{}).Stop(context.Background(), h, sb); err != nil {
		t.Fatal(err)
	}
	<-done
	saved, err := h.Get("s")
	if err != nil {
		t.Fatal(err)
	}
	x, _ := readExtra(saved)
	if !x.Stopping || x.Stopped {
		t.Fatalf("record saved by Stop: %+v, want stopping (saved before init was signalled)", x)
	}
	if st := (Driver{}).Status(context.Background(), h, saved); st.Phase != driver.PhaseStopped {
		t.Fatalf("status of an interrupted stop: %+v", st)
	}
	if _, err := (Driver{}).Connect(context.Background(), h, saved); err == nil || !strings.Contains(err.Error(), "is stopped") {
		t.Fatalf("connect to an interrupted stop: %v", err)
	}
	if x, _ := readExtra(sb); !x.Stopped || x.Stopping || x.PID != 0 {
		t.Fatalf("record after Stop returned: %+v", x)
	}

	// Init still ending when the next daemon starts the sandbox: Start
	// ends it first rather than taking it for running.
	sb, cmd, done := startInit()
	x, _ = readExtra(sb)
	x.Stopping = true
	sb.Extra, _ = json.Marshal(x)
	if st := (Driver{}).Status(context.Background(), h, sb); st.Phase != driver.PhaseStopped || !strings.Contains(st.Reason, "is ending") {
		t.Fatalf("status while init ends: %+v", st)
	}
	err = (Driver{}).Start(context.Background(), h, sb) // fails later: no workspace (or not root)
	select {
	case <-done:
	case <-time.After(2 * StopGrace):
		t.Fatalf("Start left the stopping init %d running (start: %v)", cmd.Process.Pid, err)
	}
	if err == nil {
		t.Fatal("Start with no workspace succeeded")
	}
}
