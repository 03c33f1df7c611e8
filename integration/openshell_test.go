package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/client"
	"github.com/bohica-labs/darkshell/controller/sshx/sshdtest"
)

// The openshell driver is tested against a STAND-IN for OpenShell
// (testdata/openshell-standin: an `openshell` CLI and a per-connection real
// OpenSSH `sshd -i` behind a unix socket), because OpenShell's gateway and
// supervisor cannot run here. docs/drivers.md lists what this exercises.

// standinUID is the uid of the stand-in's `sandbox` user (it exists only in
// the stand-in server's mount namespace, whose /etc/passwd names it).
const standinUID = 65010

// openshellEnv is an installation plus an OpenShell stand-in.
type openshellEnv struct {
	*env
	dir    string // the stand-in's directory: its `openshell` binary and state
	sbHome string // the sandbox user's home, the workspace
	serves map[string]*exec.Cmd
}

func newOpenShellEnv(t *testing.T, sandboxes ...string) *openshellEnv {
	t.Helper()
	requireIntegration(t)
	sshdtest.Require(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		requireFeature(t, "unshare (util-linux)")
	}
	// Not under /tmp: the stand-in server gets a /tmp of its own.
	dir, err := os.MkdirTemp("/var/tmp", "darkshell-openshell-")
	if err != nil {
		t.Fatal(err)
	}
	oe := &openshellEnv{dir: dir, sbHome: filepath.Join(dir, "home"), serves: map[string]*exec.Cmd{}}
	t.Cleanup(func() { oe.stop(); os.RemoveAll(dir) })
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chmod(dir, 0o755))
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "openshell"), "./testdata/openshell-standin")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the openshell stand-in: %v\n%s", err, out)
	}
	// The sandbox user, its home (the workspace, empty), a private /tmp,
	// and a login profile that talks, as OpenShell's login shells may.
	must(os.Mkdir(oe.sbHome, 0o755))
	must(os.Chown(oe.sbHome, standinUID, standinUID))
	must(os.Mkdir(filepath.Join(dir, "tmp"), 0o777))
	must(os.Chmod(filepath.Join(dir, "tmp"), 0o1777))
	for _, f := range []struct{ path, line string }{
		{"/etc/passwd", fmt.Sprintf("sandbox:x:%d:%d:OpenShell sandbox:%s:/bin/bash\n", standinUID, standinUID, oe.sbHome)},
		{"/etc/group", fmt.Sprintf("sandbox:x:%d:\n", standinUID)},
		{"/etc/profile", "echo 'Welcome to the OpenShell sandbox (stand-in)'\necho \"policy: $OPENSHELL_SANDBOX\"\n"},
	} {
		b, err := os.ReadFile(f.path)
		must(err)
		must(os.WriteFile(filepath.Join(dir, filepath.Base(f.path)), append(b, f.line...), 0o644))
	}
	cfg := []string{
		"UsePAM no", "StrictModes no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes", "AuthorizedKeysFile none",
		// Any client key is accepted, as OpenShell's server does.
		"AuthorizedKeysCommand /usr/bin/echo %t %k", "AuthorizedKeysCommandUser nobody",
		"AllowUsers sandbox", "PermitRootLogin no", "LogLevel ERROR", "PidFile none", "PrintMotd no",
		`SetEnv OPENSHELL_SANDBOX=1 DARKSHELL_SSHDTEST=` + dir + ` SANDBOXD_AGENT_IDLE=2m`,
		// Exec runs /bin/bash -lc CMD; a shell without a command is a login shell.
		`ForceCommand if [ -n "$SSH_ORIGINAL_COMMAND" ]; then exec /bin/bash -lc "$SSH_ORIGINAL_COMMAND"; else exec /bin/bash -l; fi`,
	}
	must(os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(strings.Join(cfg, "\n")+"\n"), 0o600))
	must(os.MkdirAll("/run/sshd", 0o755))
	for _, n := range sandboxes {
		must(os.MkdirAll(filepath.Join(dir, "sandboxes", n), 0o755))
		must(os.WriteFile(filepath.Join(dir, "sandboxes", n, "phase"), []byte("Ready"), 0o644))
		oe.serve(t, n)
	}
	// The daemon finds `openshell` on PATH, as a user's would.
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))

	e := &env{t: t, home: t.TempDir()}
	c, err := client.New(client.Options{Home: e.home, Darkshell: filepath.Join(binDir, "darkshell")})
	must(err)
	e.c = c
	t.Cleanup(e.cleanup)
	oe.env = e
	return oe
}

// serve starts (or restarts: a fresh host key) sandbox n's SSH server in
// its own mount namespace, where /etc/passwd knows the sandbox user,
// /etc/profile talks and /tmp is the stand-in's own (a container's would be).
func (oe *openshellEnv) serve(t *testing.T, n string) {
	t.Helper()
	oe.kill(n)
	sock := filepath.Join(oe.dir, "sandboxes", n, "ssh.sock")
	os.Remove(sock)
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`for f in passwd group profile; do mount --bind "$1/$f" /etc/$f || exit 1; done; mount --bind "$1/tmp" /tmp && exec "$1/openshell" serve "$2"`, "sh", oe.dir, n)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	oe.serves[n] = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return
		}
		select {
		case <-done:
			t.Fatalf("the stand-in SSH server of %s exited: %s", n, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stand-in SSH server of %s did not listen within 10s: %s", n, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill ends sandbox n's SSH server and its sshd -i children.
func (oe *openshellEnv) kill(n string) {
	if c := oe.serves[n]; c != nil && c.Process != nil {
		syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		for range 100 {
			if !pidAlive(c.Process.Pid) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	delete(oe.serves, n)
}

// stop ends every server and every process the sessions left (found by
// the stand-in's marker in their environment).
func (oe *openshellEnv) stop() {
	for n := range oe.serves {
		oe.kill(n)
	}
	marker := []byte("DARKSHELL_SSHDTEST=" + oe.dir + "\x00")
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if b, err := os.ReadFile("/proc/" + d.Name() + "/environ"); err == nil && bytes.Contains(b, marker) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// calls is the stand-in CLI's call log.
func (oe *openshellEnv) calls() string {
	b, _ := os.ReadFile(filepath.Join(oe.dir, "calls.log"))
	return string(b)
}

func setupOpenShellTarget(t *testing.T) *confTarget {
	oe := newOpenShellEnv(t, "conf")
	return &confTarget{env: oe.env, driver: "openshell", phases: true, workspace: oe.sbHome,
		createArgs: []string{"--driver", "openshell", "--driver-opt", "gateway=lab"},
		residue: func(t *testing.T, name string) func() []string {
			// OpenShell owns the sandbox: delete forgets it; what is darkshell's
			// is the record and the client key.
			key := filepath.Join(oe.home, "sandboxes", name, "keys", "id_ed25519")
			if _, err := os.Stat(key); err != nil {
				t.Fatalf("no client key at %s: %v", key, err)
			}
			return func() []string {
				if _, err := os.Stat(key); err == nil {
					return []string{"client key " + key}
				}
				return nil
			}
		}}
}

// TestOpenShellDriver: registration through `openshell sandbox ssh-config`,
// what the sandbox looks like through OpenShell's SSH path, a host key that
// changes at every server start, stop/start/status through the CLI,
// --proxy-command without ssh-config, clear errors, delete only forgets.
func TestOpenShellDriver(t *testing.T) {
	oe := newOpenShellEnv(t, "os1", "os2")
	e := oe.env

	if _, errOut, code := e.ds("sandbox", "create", "ghost", "--driver", "openshell"); code == 0 || !strings.Contains(errOut, `sandbox "ghost" not found`) {
		t.Fatalf("create of a sandbox OpenShell does not know: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(e.home, "sandboxes", "ghost")); err == nil {
		t.Fatal("a failed create left a record")
	}
	if _, errOut, code := e.ds("sandbox", "create", "x", "--driver", "openshell", "--memory-limit", "1G"); code == 0 || !strings.Contains(errOut, "OpenShell sets them") {
		t.Fatalf("limits: exit %d %q", code, errOut)
	}
	if _, errOut, code := e.ds("sandbox", "create", "x", "--driver", "openshell", "--driver-opt", "namespace=a"); code == 0 || !strings.Contains(errOut, "not known to the openshell driver") {
		t.Fatalf("unknown driver opt: exit %d %q", code, errOut)
	}

	if out, errOut, code := e.ds("sandbox", "create", "os1", "--driver", "openshell", "--driver-opt", "gateway=lab", "--label", "team=infra"); code != 0 {
		t.Fatalf("create: exit %d %s %s", code, out, errOut)
	}
	calls := oe.calls()
	for _, want := range []string{"-g lab sandbox ssh-config os1", "ssh-proxy --gateway-name lab --name os1 --workspace default"} {
		if !strings.Contains(calls, want) {
			t.Fatalf("the stand-in was not called with %q:\n%s", want, calls)
		}
	}
	out := e.mustBash("os1", `id -un; echo "$OPENSHELL_SANDBOX"; pwd`)
	if want := "sandbox\n1\n" + oe.sbHome + "\n"; out != want {
		t.Fatalf("in the sandbox: %q, want %q (user sandbox, OpenShell's env, the workspace as cwd)", out, want)
	}
	var sb api.Sandbox
	js, _, _ := e.ds("-o", "json", "sandbox", "get", "os1")
	if err := json.Unmarshal([]byte(js), &sb); err != nil || sb.Phase != "Running" || sb.Labels["team"] != "infra" || sb.SSH.User != "sandbox" ||
		!strings.Contains(sb.SSH.ProxyCommand, "ssh-proxy --gateway-name lab --name os1") {
		t.Fatalf("get: %v %s", err, js)
	}

	// The path darkshell uses is the one OpenSSH's client gets from
	// ssh-config: a login shell that talks before the command's output.
	sshCfg, _, code := runCmd(t, filepath.Join(oe.dir, "openshell"), "-g", "lab", "sandbox", "ssh-config", "os1")
	if code != 0 {
		t.Fatal("ssh-config failed")
	}
	cfgFile := filepath.Join(t.TempDir(), "ssh_config")
	os.WriteFile(cfgFile, []byte(sshCfg+"    IdentityFile "+filepath.Join(e.home, "sandboxes", "os1", "keys", "id_ed25519")+"\n"), 0o600)
	raw, rawErr, code := runCmd(t, "ssh", "-F", cfgFile, "openshell-os1.default", "echo marker-$((6*7))")
	if code != 0 || !strings.HasPrefix(raw, "Welcome to the OpenShell sandbox") || !strings.HasSuffix(raw, "marker-42\n") {
		t.Fatalf("OpenSSH through the stand-in: exit %d, %q %q; want login noise, then the command's output", code, raw, rawErr)
	}

	// A restarted server has a new host key: the driver does not pin it.
	oe.serve(t, "os1")
	if out := e.mustBash("os1", "echo again"); out != "again\n" {
		t.Fatalf("after a host key change: %q", out)
	}

	// stop, status and start through the CLI.
	if _, errOut, code := e.ds("sandbox", "stop", "os1"); code != 0 {
		t.Fatalf("stop: %d %s", code, errOut)
	}
	js, _, _ = e.ds("-o", "json", "sandbox", "get", "os1")
	if json.Unmarshal([]byte(js), &sb); sb.Phase != "Stopped" {
		t.Fatalf("after stop: %s", js)
	}
	if _, errOut, code := e.ds("exec", "os1", "--", "true"); code != 125 || !strings.Contains(errOut, "Stopped") {
		t.Fatalf("exec in a stopped sandbox: exit %d %q", code, errOut)
	}
	if _, errOut, code := e.ds("sandbox", "start", "os1"); code != 0 {
		t.Fatalf("start: %d %s", code, errOut)
	}
	if out := e.mustBash("os1", "echo back"); out != "back\n" {
		t.Fatalf("after start: %q", out)
	}
	for _, want := range []string{"-g lab sandbox stop os1", "-g lab sandbox start os1", "-g lab sandbox get os1 -o json"} {
		if !strings.Contains(oe.calls(), want) {
			t.Fatalf("the stand-in was not called with %q:\n%s", want, oe.calls())
		}
	}

	// --proxy-command: OpenShell's ProxyCommand given by hand, no ssh-config.
	proxy := filepath.Join(oe.dir, "openshell") + " ssh-proxy --gateway-name lab --name os2 --workspace default"
	if out, errOut, code := e.ds("sandbox", "create", "two", "--driver", "openshell", "--driver-opt", "name=os2", "--proxy-command", proxy); code != 0 {
		t.Fatalf("create with --proxy-command: exit %d %s %s", code, out, errOut)
	}
	if strings.Contains(oe.calls(), "ssh-config os2") {
		t.Fatal("ssh-config was read although --proxy-command was given")
	}
	if out := e.mustBash("two", "id -un"); out != "sandbox\n" {
		t.Fatalf("two: %q", out)
	}

	// delete forgets: OpenShell keeps its sandbox.
	for _, n := range []string{"os1", "two"} {
		if _, errOut, code := e.ds("sandbox", "delete", n); code != 0 {
			t.Fatalf("delete %s: %s", n, errOut)
		}
	}
	if strings.Contains(oe.calls(), "delete") {
		t.Fatalf("delete reached OpenShell:\n%s", oe.calls())
	}
	if _, err := os.Stat(filepath.Join(oe.dir, "sandboxes", "os1", "phase")); err != nil {
		t.Fatal("the OpenShell sandbox is gone")
	}
}

// runCmd runs a command and returns its output and exit code.
func runCmd(t *testing.T, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return o.String(), e.String(), 0
}
