package process

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// waitZombie waits until pid has exited and is not reaped yet.
func waitZombie(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err == nil {
			if i := strings.LastIndexByte(string(b), ')'); i > 0 && strings.HasPrefix(string(b[i+1:]), " Z") {
				return
			}
		}
	}
	t.Fatalf("pid %d did not become a zombie", pid)
}

// orphan starts a child this package does not own (as a re-parented
// orphan would be) and waits until it is a zombie.
func orphan(t *testing.T) int {
	t.Helper()
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	waitZombie(t, p.Pid)
	return p.Pid
}

func gone(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return os.IsNotExist(err)
}

// TestReapOrphans: zombies this package does not own are reaped, whether
// or not a zombie it owns sits beside them; owned ones are left to their
// Wait, which still gets their exit status.
func TestReapOrphans(t *testing.T) {
	t.Run("orphan alone", func(t *testing.T) {
		pid := orphan(t)
		if n := ReapOrphans(); n != 1 || !gone(pid) {
			t.Fatalf("ReapOrphans = %d, pid %d gone: %v; want 1, true", n, pid, gone(pid))
		}
		if n := ReapOrphans(); n != 0 {
			t.Fatalf("second ReapOrphans = %d, want 0", n)
		}
	})
	t.Run("beside an owned zombie", func(t *testing.T) {
		cmd := exec.Command("sh", "-c", "exit 3")
		if err := startOwned(cmd); err != nil {
			t.Fatal(err)
		}
		waitZombie(t, cmd.Process.Pid)
		pid := orphan(t)
		if n := ReapOrphans(); n != 1 || !gone(pid) {
			t.Fatalf("ReapOrphans = %d, orphan %d gone: %v; want 1, true", n, pid, gone(pid))
		}
		err := cmd.Wait()
		disown(cmd.Process.Pid)
		if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 3 {
			t.Fatalf("the owned command's Wait: %v, state %v; want exit 3 (it was reaped by ReapOrphans?)", err, cmd.ProcessState)
		}
	})
}

// TestForkFromAnyThread: with ForkFromAnyThread a command starts on the
// calling thread (the spawner is not used) and is owned and waited for.
func TestForkFromAnyThread(t *testing.T) {
	anyThread.Store(true)
	defer anyThread.Store(false)
	spawned := false
	old := startWrapper
	defer func() { startWrapper = old }()
	cmd := exec.Command("sh", "-c", "exit 5")
	if err := startOwned(cmd); err != nil {
		t.Fatal(err)
	}
	owned.Lock()
	_, mine := owned.pids[cmd.Process.Pid]
	owned.Unlock()
	if !mine {
		t.Fatal("a command started from any thread is not owned: the PID 1 reaper would steal it")
	}
	if err := cmd.Wait(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 5 {
		t.Fatalf("Wait: %v, %v", err, cmd.ProcessState)
	}
	disown(cmd.Process.Pid)

	// A start wrapper (the local driver's cgroup placement) still runs on the spawner.
	startWrapper = func(start func() error) error { spawned = true; return start() }
	cmd = exec.Command("true")
	if err := startOwned(cmd); err != nil || !spawned {
		t.Fatalf("start with a wrapper: %v, wrapper ran: %v", err, spawned)
	}
	cmd.Wait()
	disown(cmd.Process.Pid)
}
