package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rootlessUID is the unprivileged uid the test runs darkshell as (no
// passwd entry is needed).
const rootlessUID = 4321

// TestLocalRootless: darkshell run by an unprivileged user makes local
// sandboxes in a user namespace: same confinement (Landlock, seccomp, the
// namespaces), the caller's own uid mapped to the sandbox uid, limits
// refused with a clear error, and delete leaves nothing.
func TestLocalRootless(t *testing.T) {
	requireLocal(t) // as root: to switch to rootlessUID
	for _, f := range []string{"/proc/sys/kernel/unprivileged_userns_clone", "/proc/sys/user/max_user_namespaces"} {
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == "0" {
			requireFeature(t, "unprivileged user namespaces ("+f+" is 0)")
		}
	}
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755) // the uid must traverse the test's temp dirs
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "darkshell")
	for _, name := range []string{"darkshell", "darkshell-core"} { // the front finds the core next to it
		b, err := os.ReadFile(filepath.Join(binDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	home := filepath.Join(dir, "home")
	os.Mkdir(home, 0o700)
	if err := os.Chown(home, rootlessUID, rootlessUID); err != nil {
		t.Fatal(err)
	}
	ds := func(args ...string) (string, string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + home, "DARKSHELL_HOME=" + home}
		cmd.Dir = home
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: rootlessUID, Gid: rootlessUID, NoSetGroups: false}}
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return o.String(), e.String(), code
	}
	t.Cleanup(func() {
		ds("sandbox", "delete", "rl")
		ds("daemon", "stop")
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(home, "sandboxes", "rl", "sandboxd.log")); err == nil {
				t.Logf("sandboxd.log:\n%s", b)
			}
			if b, err := os.ReadFile(filepath.Join(home, "logs", "daemon.log")); err == nil {
				t.Logf("daemon.log:\n%s", b)
			}
		}
	})
	if _, errOut, code := ds("sandbox", "create", "rl", "--memory-limit", "64M"); code == 0 || !strings.Contains(errOut, "need root") {
		t.Fatalf("limits without root: exit %d %q", code, errOut)
	}
	if out, errOut, code := ds("sandbox", "create", "rl"); code != 0 {
		t.Fatalf("create as uid %d: exit %d %s %s", rootlessUID, code, out, errOut)
	}
	out, errOut, code := ds("exec", "rl", "--", "bash", "-c", "id -u; id -g; echo hi > /sandbox/f; grep -E '^(NoNewPrivs|Seccomp|CapEff):' /proc/self/status")
	if code != 0 {
		t.Fatalf("exec: %d %q %q", code, out, errOut)
	}
	if f := strings.Fields(out); len(f) < 2 || f[0] != "65000" || f[1] != "65000" || !strings.Contains(out, "NoNewPrivs:\t1") ||
		!strings.Contains(out, "Seccomp:\t2") || !strings.Contains(out, "CapEff:\t0000000000000000") {
		t.Fatalf("inside: %q", out)
	}
	// The workspace file belongs to the caller on the host.
	fi, err := os.Stat(filepath.Join(home, "sandboxes", "rl", "workspace", "f"))
	if err != nil || fi.Sys().(*syscall.Stat_t).Uid != rootlessUID {
		t.Fatalf("workspace file on the host: %v %+v", err, fi)
	}
	// Confinement holds: host files invisible, Landlock, seccomp, no route.
	for script, want := range map[string]string{
		"ls /root":                 "No such file or directory",
		"echo x > /proc/self/comm": "Permission denied",
		"unshare -r true":          "Operation not permitted",
		"test $(tail -n +2 /proc/net/route | wc -l) = 0 && echo 'no route' >&2 && exit 1": "no route",
	} {
		_, errOut, code := ds("exec", "rl", "--", "bash", "-c", script)
		if code == 0 || !strings.Contains(errOut, want) {
			t.Errorf("%q: exit %d %q, want %q", script, code, errOut, want)
		}
	}
	out, _, _ = ds("sandbox", "get", "rl", "-o", "json")
	var sb struct {
		Remote struct{ Confined []string } `json:"remote"`
	}
	json.Unmarshal([]byte(out), &sb)
	c := strings.Join(sb.Remote.Confined, ",")
	for _, want := range []string{"user-ns", "landlock", "seccomp", "net-ns", "pid-ns"} {
		if !strings.Contains(c, want) {
			t.Errorf("confinements %q lack %s", c, want)
		}
	}
	if _, errOut, code := ds("sandbox", "delete", "rl"); code != 0 {
		t.Fatalf("delete: %d %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(home, "sandboxes", "rl")); !os.IsNotExist(err) {
		t.Fatalf("state left: %v", err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), home) {
		t.Fatal("mounts left")
	}
}
