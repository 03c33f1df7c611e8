package localdriver

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
