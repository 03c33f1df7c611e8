package process

import (
	"os/exec"
	"syscall"
	"testing"
)

// TestExitWaiter: the pidfd waiter reports exits and deaths by signal as
// wait4 would, and leaves no zombie behind.
func TestExitWaiter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		want   func(syscall.WaitStatus) bool
	}{
		{"exit 0", "exit 0", func(ws syscall.WaitStatus) bool { return ws.Exited() && ws.ExitStatus() == 0 }},
		{"exit 3", "exit 3", func(ws syscall.WaitStatus) bool { return ws.Exited() && ws.ExitStatus() == 3 }},
		{"exit 255", "exit 255", func(ws syscall.WaitStatus) bool { return ws.Exited() && ws.ExitStatus() == 255 }},
		{"SIGKILL", "kill -KILL $$", func(ws syscall.WaitStatus) bool { return ws.Signaled() && ws.Signal() == syscall.SIGKILL }},
		{"SIGTERM", "kill -TERM $$", func(ws syscall.WaitStatus) bool { return ws.Signaled() && ws.Signal() == syscall.SIGTERM }},
		{"SIGSEGV", "kill -SEGV $$", func(ws syscall.WaitStatus) bool { return ws.Signaled() && ws.Signal() == syscall.SIGSEGV }},
		{"after a while", "sleep 0.2; exit 7", func(ws syscall.WaitStatus) bool { return ws.Exited() && ws.ExitStatus() == 7 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pidfd := -1
			cmd := exec.Command("sh", "-c", tc.script)
			cmd.SysProcAttr = &syscall.SysProcAttr{PidFD: &pidfd}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			w, err := newExitWaiter(pidfd)
			if err != nil {
				t.Fatal(err)
			}
			ws, err := w.wait()
			if err != nil {
				t.Fatal(err)
			}
			if !tc.want(ws) {
				t.Fatalf("status %#x: exited %v code %d, signaled %v signal %v", uint32(ws), ws.Exited(), ws.ExitStatus(), ws.Signaled(), ws.Signal())
			}
			if got := exitStatus(ws, true); ws.Signaled() != (got.Signal != 0) || (ws.Exited() && got.Code != ws.ExitStatus()) {
				t.Fatalf("exitStatus(%#x) = %+v", uint32(ws), got)
			}
			// Reaped: the pid is no longer our child.
			var ws2 syscall.WaitStatus
			if pid, err := syscall.Wait4(cmd.Process.Pid, &ws2, syscall.WNOHANG, nil); err != syscall.ECHILD {
				t.Fatalf("wait4 after the waiter = %d, %v; want ECHILD (not reaped?)", pid, err)
			}
		})
	}
	if got := exitStatus(0, false); got.Code != 255 {
		t.Fatalf("exitStatus of an unreaped process = %+v, want code 255", got)
	}
}
