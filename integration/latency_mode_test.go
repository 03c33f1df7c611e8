package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sysmonSetting is what internal/cpus adds to GODEBUG for the processes on
// the exec path (see internal/cpus/sysmon.go).
const sysmonSetting = "schedtrace=2147483647"

// TestLatencyModeRuntimeSetting: the daemon and the sandboxd agent run with
// the runtime setting latency mode wants, and no command run in a sandbox
// inherits it (nor anything they start).
func TestLatencyModeRuntimeSetting(t *testing.T) {
	if os.Getenv("GOMAXPROCS") != "" || os.Getenv("DARKSHELL_LATENCY_MODE") == "0" || os.Getenv("DARKSHELL_SYSMON_AWAKE") == "0" {
		t.Skip("latency mode or its awake sysmon is off in this environment (GOMAXPROCS, DARKSHELL_LATENCY_MODE=0 or DARKSHELL_SYSMON_AWAKE=0 set)")
	}
	e := newEnv(t)
	e.create("s")
	environ := func(pid string) string {
		t.Helper()
		b, err := os.ReadFile("/proc/" + pid + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		return strings.ReplaceAll(string(b), "\x00", "\n")
	}
	if d := environ(strconv.Itoa(e.daemonPID())); !strings.Contains(d, sysmonSetting) {
		t.Errorf("the daemon started without GODEBUG=%s:\n%s", sysmonSetting, d)
	}
	// The command's parent is the sandboxd agent that forked it.
	out := e.mustBash("s", `echo "parent=$PPID"; echo "own=$GODEBUG"; sh -c 'echo "grandchild=$GODEBUG"'`)
	var parent string
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "parent="); ok {
			parent = v
		}
	}
	if a := environ(parent); !strings.Contains(a, sysmonSetting) {
		t.Errorf("the sandboxd agent (pid %s) started without GODEBUG=%s:\n%s", parent, sysmonSetting, a)
	}
	if strings.Contains(out, "schedtrace") || !strings.Contains(out, "own=\n") || !strings.Contains(out, "grandchild=\n") {
		t.Errorf("a command in the sandbox inherited the runtime setting:\n%s", out)
	}
}

// TestLatencyModeRuntimeSettingLocal: the same for a local-driver sandbox,
// whose sandboxd init is started with the setting by the daemon.
func TestLatencyModeRuntimeSettingLocal(t *testing.T) {
	e := newLocalEnv(t)
	e.createLocal("l")
	awake := os.Getenv("GOMAXPROCS") == "" && os.Getenv("DARKSHELL_LATENCY_MODE") != "0" && os.Getenv("DARKSHELL_SYSMON_AWAKE") != "0"
	if os.Geteuid() == 0 && awake { // init is not dumpable: only root reads its environment
		b, err := os.ReadFile("/proc/" + strconv.Itoa(e.initPID("l")) + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), sysmonSetting) {
			t.Errorf("sandboxd init started without GODEBUG=%s", sysmonSetting)
		}
	}
	out := e.mustBash("l", `echo "own=$GODEBUG"; sh -c 'echo "grandchild=$GODEBUG"'`)
	if strings.Contains(out, "schedtrace") || !strings.Contains(out, "own=\n") || !strings.Contains(out, "grandchild=\n") {
		t.Errorf("a command in the local sandbox inherited the runtime setting:\n%s", out)
	}
}

// TestLatencyModeForegroundDaemon: `darkshell daemon run` started by hand
// (without the setting) runs itself again with it, keeping its pid.
func TestLatencyModeForegroundDaemon(t *testing.T) {
	requireIntegration(t)
	if os.Getenv("GOMAXPROCS") != "" || os.Getenv("DARKSHELL_LATENCY_MODE") == "0" || os.Getenv("DARKSHELL_SYSMON_AWAKE") == "0" {
		t.Skip("latency mode or its awake sysmon is off in this environment (GOMAXPROCS, DARKSHELL_LATENCY_MODE=0 or DARKSHELL_SYSMON_AWAKE=0 set)")
	}
	home := t.TempDir()
	daemon := exec.Command(filepath.Join(binDir, "darkshell"), "daemon", "run")
	daemon.Env = append(os.Environ(), "DARKSHELL_HOME="+home)
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		daemon.Process.Signal(syscall.SIGTERM)
		daemon.Wait()
	})
	waitForDaemon(t, home, 10*time.Second)
	b, err := os.ReadFile("/proc/" + strconv.Itoa(daemon.Process.Pid) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), sysmonSetting) {
		t.Errorf("the foreground daemon (pid %d) did not run itself again with GODEBUG=%s", daemon.Process.Pid, sysmonSetting)
	}
}
