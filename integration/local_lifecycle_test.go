package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/verify"
)

// getJSON runs `sandbox get NAME -o json`.
func (e *env) getJSON(name string) api.Sandbox {
	e.t.Helper()
	out, errOut, code := e.ds("-o", "json", "sandbox", "get", name)
	if code != 0 {
		e.t.Fatalf("get %s: exit %d %s", name, code, errOut)
	}
	var sb api.Sandbox
	if err := json.Unmarshal([]byte(out), &sb); err != nil {
		e.t.Fatalf("get %s: %v\n%s", name, err, out)
	}
	return sb
}

// lifecycleOp runs `sandbox stop|start NAME -o json` and returns the view.
func (e *env) lifecycleOp(op, name string) api.Sandbox {
	e.t.Helper()
	out, errOut, code := e.ds("-o", "json", "sandbox", op, name)
	if code != 0 {
		e.t.Fatalf("%s %s: exit %d\nstdout: %s\nstderr: %s", op, name, code, out, errOut)
	}
	var sb api.Sandbox
	if err := json.Unmarshal([]byte(out), &sb); err != nil {
		e.t.Fatalf("%s %s: %v\n%s", op, name, err, out)
	}
	return sb
}

// TestLocalStopStart: stop ends every process of the sandbox and its
// cgroups but keeps the state dir and workspace; exec then fails with 125
// and says why; start runs it again with the same workspace and pinned
// host key; a stopped sandbox deletes cleanly.
func TestLocalStopStart(t *testing.T) {
	e := newLocalEnv(t)
	const name = "life"
	e.createLocal(name)
	dir := filepath.Join(e.home, "sandboxes", name)
	if ph := e.getJSON(name).Phase; ph != "Running" {
		t.Fatalf("phase after create = %q, want Running", ph)
	}
	e.mustBash(name, "echo kept > /sandbox/f; sleep 1000 </dev/null >/dev/null 2>&1 &")
	rec := e.record(name)
	procs := descendants(rec.Extra.PID)
	known, _ := os.ReadFile(filepath.Join(dir, "known_hosts"))

	if sb := e.lifecycleOp("stop", name); sb.Phase != "Stopped" || sb.Connected {
		t.Fatalf("stop: phase %q, connected %v", sb.Phase, sb.Connected)
	}
	for _, p := range procs {
		if pidAlive(p) {
			t.Fatalf("process %d (of %v) survived stop", p, procs)
		}
	}
	for _, d := range rec.Extra.Cgroups {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left after stop: %v", d, err)
		}
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), dir) {
		t.Fatalf("a mount is left on the host after stop:\n%s", mi)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "workspace", "f")); err != nil || string(b) != "kept\n" {
		t.Fatalf("workspace after stop: %q %v", b, err)
	}
	if ph := e.getJSON(name).Phase; ph != "Stopped" {
		t.Fatalf("get after stop: phase %q", ph)
	}
	out, _, _ := e.ds("sandbox", "list")
	if !strings.Contains(out, "PHASE") || !strings.Contains(out, "Stopped") {
		t.Fatalf("list after stop:\n%s", out)
	}
	_, errOut, code := e.ds("exec", name, "--", "true")
	if code != 125 || !strings.Contains(errOut, "is stopped") || !strings.Contains(errOut, "sandbox start "+name) {
		t.Fatalf("exec in a stopped sandbox: exit %d, stderr %q (want 125 and a clear message)", code, errOut)
	}
	e.lifecycleOp("stop", name) // stopping a stopped sandbox is fine

	if sb := e.lifecycleOp("start", name); sb.Phase != "Running" {
		t.Fatalf("start: phase %q", sb.Phase)
	}
	if got := e.mustBash(name, "cat /sandbox/f; id -u"); got != "kept\n65000\n" {
		t.Fatalf("after start: %q", got)
	}
	if now, _ := os.ReadFile(filepath.Join(dir, "known_hosts")); string(now) != string(known) {
		t.Fatal("start changed the pinned host key")
	}
	if pid := e.initPID(name); pid == rec.Extra.PID || !pidAlive(pid) {
		t.Fatalf("init after start: pid %d (was %d)", pid, rec.Extra.PID)
	}
	if out := e.mustBash(name, "cat /proc/[0-9]*/comm"); strings.Contains(out, "sleep") {
		t.Fatalf("a process from before the stop is back: %q", out)
	}
	e.lifecycleOp("start", name) // starting a running sandbox is fine
	e.mustBash(name, "true")

	// Stop, then delete: nothing is left.
	e.lifecycleOp("stop", name)
	if _, _, code := e.ds("sandbox", "delete", name); code != 0 {
		t.Fatal("delete of a stopped sandbox failed")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state dir left: %v", err)
	}
}

// TestLocalFailedPhase: init killed from the host (no stop) shows as
// Failed with the reason; start brings the sandbox back.
func TestLocalFailedPhase(t *testing.T) {
	e := newLocalEnv(t)
	const name = "crash"
	e.createLocal(name)
	e.mustBash(name, "echo kept > /sandbox/f")
	pid := e.initPID(name)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var sb api.Sandbox
	waitFor(t, 5*time.Second, "phase Failed", func() bool {
		sb = e.getJSON(name)
		return sb.Phase == "Failed"
	})
	if !strings.Contains(sb.Reason, "signal 9") {
		t.Fatalf("reason %q does not name the signal", sb.Reason)
	}
	out, _, _ := e.ds("sandbox", "get", name)
	if !strings.Contains(out, "Phase:    Failed") || !strings.Contains(out, "Reason:") {
		t.Fatalf("get text:\n%s", out)
	}
	_, errOut, code := e.ds("exec", name, "--", "true")
	if code != 125 || !strings.Contains(errOut, "not running") {
		t.Fatalf("exec in a failed sandbox: exit %d, %q", code, errOut)
	}
	if sb := e.lifecycleOp("start", name); sb.Phase != "Running" {
		t.Fatalf("start after a crash: phase %q", sb.Phase)
	}
	if got := e.mustBash(name, "cat /sandbox/f"); got != "kept\n" {
		t.Fatalf("after restart: %q", got)
	}
}

// verifyJSON runs `sandbox verify NAME -o json`.
func (e *env) verifyJSON(name string) (verify.Report, int) {
	e.t.Helper()
	out, errOut, code := e.ds("-o", "json", "sandbox", "verify", name)
	var rep verify.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		e.t.Fatalf("verify %s: exit %d, %v\nstdout: %s\nstderr: %s", name, code, err, out, errOut)
	}
	if len(rep.Cases) != len(verify.Cases) {
		e.t.Fatalf("verify %s: %d cases, want %d: %s", name, len(rep.Cases), len(verify.Cases), out)
	}
	for i, c := range verify.Cases {
		if rep.Cases[i].Case != c.Name || rep.Cases[i].Layer == "" || rep.Cases[i].Result == "" {
			e.t.Fatalf("verify %s: case %d = %+v, want %q", name, i, rep.Cases[i], c.Name)
		}
	}
	return rep, code
}

// TestLocalVerify: the escape suite passes in a local sandbox (every case
// refused by the expected layer, every control working) and fails in an
// --unconfined one, naming the cases Landlock and seccomp would refuse.
func TestLocalVerify(t *testing.T) {
	e := newLocalEnv(t)
	e.createLocal("ver")
	rep, code := e.verifyJSON("ver")
	if code != 0 || !rep.Passed || rep.LandlockABI < 1 || rep.Kernel == "" || rep.Driver != "local" {
		t.Fatalf("verify: exit %d, report %+v", code, rep)
	}
	for _, r := range rep.Cases {
		if !r.OK || r.Result != verify.Refused || r.Control != "ok" {
			t.Errorf("case %q: %+v", r.Case, r)
		}
	}
	out, _, code := e.ds("sandbox", "verify", "ver")
	if code != 0 || !strings.Contains(out, "PASS") || !strings.Contains(out, "Landlock ABI") || !strings.Contains(out, rep.Kernel) {
		t.Fatalf("verify text: exit %d\n%s", code, out)
	}

	e.createLocal("unc", "--unconfined")
	rep, code = e.verifyJSON("unc")
	if code == 0 || rep.Passed {
		t.Fatalf("verify of an unconfined sandbox: exit %d, passed %v", code, rep.Passed)
	}
	byName := map[string]verify.Result{}
	for _, r := range rep.Cases {
		byName[r.Case] = r
		if r.Control != "ok" {
			t.Errorf("case %q: control %q in the unconfined sandbox", r.Case, r.Control)
		}
	}
	for _, c := range []string{"write outside the allow-list (/proc/self/comm)", "mount", "namespace creation (unshare -r)", "ptrace"} {
		if r := byName[c]; r.OK || r.Result == verify.Refused {
			t.Errorf("unconfined: case %q still %s: %+v", c, r.Result, r)
		}
	}
	// The layers --unconfined keeps still refuse.
	for _, c := range []string{"write /etc", "route out", "host home dirs (/root, /home)"} {
		if r := byName[c]; !r.OK {
			t.Errorf("unconfined: case %q: %+v", c, r)
		}
	}
}

// TestSSHLifecycleUnsupported: stop and start say the ssh driver cannot;
// verify runs there and reports the truth (an unconfined target fails).
func TestSSHLifecycleUnsupported(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	for _, op := range []string{"stop", "start"} {
		_, errOut, code := e.ds("sandbox", op, "s")
		if code == 0 || !strings.Contains(errOut, "not supported by the ssh driver") {
			t.Fatalf("%s on ssh: exit %d, %q", op, code, errOut)
		}
	}
	if sb := e.getJSON("s"); sb.Phase != "" {
		t.Fatalf("ssh sandbox phase %q, want none", sb.Phase)
	}
	rep, code := e.verifyJSON("s")
	if code == 0 || rep.Passed || rep.Driver != "ssh" {
		t.Fatalf("verify on ssh: exit %d, report %+v", code, rep)
	}
}

// TestLocalChurn: 50 sandboxes created, used and deleted in a loop, some
// stopped and started on the way: no process, mount, cgroup or state dir
// is left, and the last one works like the first.
func TestLocalChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("50 sandboxes: not in -short")
	}
	e := newLocalEnv(t)
	var cgroups []string
	for i := range 50 {
		name := fmt.Sprintf("churn-%d", i)
		e.createLocal(name, "--pids-limit", "64")
		if got := e.mustBash(name, "echo $((6*7)) > /sandbox/x; cat /sandbox/x"); got != "42\n" {
			t.Fatalf("%s: %q", name, got)
		}
		if i%10 == 0 {
			e.lifecycleOp("stop", name)
			e.lifecycleOp("start", name)
			e.mustBash(name, "test -f /sandbox/x")
		}
		cgroups = append(cgroups, e.record(name).Extra.Cgroups...)
		if _, errOut, code := e.ds("sandbox", "delete", name); code != 0 {
			t.Fatalf("delete %s failed: %s", name, errOut)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(e.home, "sandboxes")); len(ents) != 0 {
		t.Fatalf("state left: %v", ents)
	}
	for _, d := range cgroups {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("cgroup %s left: %v", d, err)
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), e.home) {
		t.Fatalf("mounts left:\n%s", mi)
	}
	for _, p := range pgrep("sandboxd") {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p)); strings.Contains(string(b), e.home) {
			t.Fatalf("sandboxd %d of this test is still running", p)
		}
	}
}

// TestLocalCreateEnv: create --env values reach every command (and survive
// a stop/start); exec -e overrides them; the egress proxy is announced.
func TestLocalCreateEnv(t *testing.T) {
	e := newLocalEnv(t)
	e.createLocal("env", "--env", "FOO=from-create", "--env", "BAR=2")
	if got := e.mustBash("env", "echo $FOO $BAR $HTTPS_PROXY"); got != "from-create 2 http://127.0.0.1:7399\n" {
		t.Fatalf("env: %q", got)
	}
	if out, _, _ := e.ds("exec", "-e", "FOO=from-exec", "env", "--", "bash", "-c", "echo $FOO"); out != "from-exec\n" {
		t.Fatalf("exec -e does not override: %q", out)
	}
	e.lifecycleOp("stop", "env")
	e.lifecycleOp("start", "env")
	if got := e.mustBash("env", "echo $FOO"); got != "from-create\n" {
		t.Fatalf("after start: %q", got)
	}
}
