package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/protocol"
)

// The driver conformance suite: one set of behaviours every driver must
// have, run on one sandbox per driver through the real CLI and daemon
// (go test -run 'TestConformance/podman').
//
// To add a driver, append to conformanceDrivers a setup that makes an
// installation able to create sandboxes of it. To add a behaviour (the MCP
// bridge's reachability and port forwards are still to come), append a
// conformanceCase to conformanceCases: it runs on every driver.

// confTarget is one driver's installation, as the cases see it.
type confTarget struct {
	*env
	driver string
	// createArgs are the arguments of `sandbox create NAME ...` for this driver.
	createArgs []string
	// residue records what sandbox name consists of outside its state dir
	// (processes, cgroups, containers, volumes) and returns a check that
	// lists what of it is still there; called before delete.
	residue func(t *testing.T, name string) func() []string
	// phases is true for drivers that report a sandbox's phase.
	phases bool
	// workspace is the default remote of upload/download/sync.
	workspace string
}

// conformanceCase is one behaviour every driver must have. run gets the
// target and the name of a running sandbox; cases run in order and may
// leave files in the sandbox, not processes.
type conformanceCase struct {
	name string
	run  func(t *testing.T, c *confTarget, name string)
}

var conformanceDrivers = []struct {
	name  string
	setup func(t *testing.T) *confTarget
}{
	{"local", setupLocalTarget},
	{"ssh", setupSSHTarget},
	{"podman", setupPodmanTarget},
	{"openshell", setupOpenShellTarget},
}

// conformanceCases is the suite. Add MCP and forward cases here.
// The sync round trip comes first: it expects the workspace as create
// left it (a login shell may write history files there).
var conformanceCases = []conformanceCase{
	{"create", confCreate},
	{"sync round trip", confSyncRoundTrip},
	{"exec contract", confExecContract},
	{"signals", confSignals},
	{"warm exec", confWarmExec},
	{"pty", confPTY},
}

func TestConformance(t *testing.T) {
	for _, d := range conformanceDrivers {
		t.Run(d.name, func(t *testing.T) { runConformance(t, d.setup) })
	}
}

// runConformance runs the suite on one sandbox of the driver setup makes
// ready. (The kubernetes driver runs it from TestKubeConformance, so that
// its cluster tests can run on their own: make test-kube.)
func runConformance(t *testing.T, setup func(t *testing.T) *confTarget) {
	c := setup(t)
	const name = "conf"
	c.create(t, name)
	for _, cc := range conformanceCases {
		t.Run(cc.name, func(t *testing.T) {
			c.t = t
			defer func() { c.t = t }()
			cc.run(t, c, name)
		})
		c.t = t
	}
	t.Run("delete leaves nothing", func(t *testing.T) {
		c.t = t
		defer func() { c.t = t }()
		confDelete(t, c, name)
	})
	c.t = t
}

// create makes sandbox name through the CLI.
func (c *confTarget) create(t *testing.T, name string) {
	t.Helper()
	out, errOut, code := c.ds(append([]string{"sandbox", "create", name}, c.createArgs...)...)
	if code != 0 {
		t.Fatalf("create %s: exit %d\nstdout: %s\nstderr: %s", name, code, out, errOut)
	}
}

func setupLocalTarget(t *testing.T) *confTarget {
	e := newLocalEnv(t)
	return &confTarget{env: e, driver: "local", phases: true, workspace: "/sandbox",
		residue: func(t *testing.T, name string) func() []string {
			rec := e.record(name)
			return func() []string {
				var left []string
				if pidAlive(rec.Extra.PID) {
					left = append(left, fmt.Sprintf("init pid %d", rec.Extra.PID))
				}
				for _, cg := range rec.Extra.Cgroups {
					if _, err := os.Stat(cg); err == nil {
						left = append(left, "cgroup "+cg)
					}
				}
				return left
			}
		}}
}

// The ssh driver only registers a host it does not own: delete forgets
// it, and the sandboxd agent there ends on its own when idle (not a
// leftover of darkshell's).
func setupSSHTarget(t *testing.T) *confTarget {
	e := newEnv(t)
	return &confTarget{env: e, driver: "ssh", workspace: "sandbox", // relative to $HOME
		createArgs: []string{"--driver", "ssh", "--ssh", fmt.Sprintf("%s@127.0.0.1:%d", e.sshd.User, e.sshd.Port), "--identity", e.sshd.ClientKey},
		residue:    func(t *testing.T, name string) func() []string { return func() []string { return nil } },
	}
}

func setupPodmanTarget(t *testing.T) *confTarget {
	pe := newPodmanEnv(t)
	return &confTarget{env: pe.env, driver: "podman", phases: true, workspace: "/sandbox",
		createArgs: []string{"--driver", "podman", "--image", pe.archive},
		residue: func(t *testing.T, name string) func() []string {
			ctr := pe.get(name).Extra.Container
			id, err := pe.podman("inspect", "--format", "{{.Id}}", ctr)
			if err != nil {
				t.Fatal(err)
			}
			id = strings.TrimSpace(id)
			return func() []string {
				var left []string
				for _, c := range pe.containers(name) {
					left = append(left, "container "+c)
				}
				if v, _ := pe.podman("volume", "ls", "-q"); strings.TrimSpace(v) != "" {
					left = append(left, "volumes "+strings.Join(strings.Fields(v), ","))
				}
				for _, pid := range pgrep(id) { // conmon names the container id
					left = append(left, fmt.Sprintf("process %d", pid))
				}
				return left
			}
		}}
}

// confCreate: the sandbox is listed with its driver, running, and its
// sandboxd answers with the capabilities the other cases need; a second
// create of the same name is refused.
func confCreate(t *testing.T, c *confTarget, name string) {
	out, errOut, code := c.ds("-o", "json", "sandbox", "get", name)
	if code != 0 {
		t.Fatalf("get: exit %d %s", code, errOut)
	}
	var sb api.Sandbox
	if err := json.Unmarshal([]byte(out), &sb); err != nil {
		t.Fatal(err)
	}
	if sb.Driver != c.driver || (c.phases && sb.Phase != "Running") {
		t.Fatalf("get: driver %q phase %q, want %q Running:\n%s", sb.Driver, sb.Phase, c.driver, out)
	}
	out, _, code = c.ds("-o", "json", "version", name)
	for _, cp := range []string{protocol.CapExec, protocol.CapPTY, protocol.CapSync} {
		if code != 0 || !strings.Contains(out, `"`+cp+`"`) {
			t.Fatalf("version %s: exit %d, sandboxd lacks %q: %s", name, code, cp, out)
		}
	}
	out, errOut, code = c.ds("sandbox", "list")
	if code != 0 || !strings.Contains(out, name) || !strings.Contains(out, c.driver) {
		t.Fatalf("list: exit %d %q %q", code, out, errOut)
	}
	if _, errOut, code := c.ds(append([]string{"sandbox", "create", name}, c.createArgs...)...); code == 0 || !strings.Contains(errOut, "exists") {
		t.Fatalf("second create of %s: exit %d, stderr %q", name, code, errOut)
	}
}

// confExecContract: exit codes, stdout/stderr separation, stdin, env, cwd,
// argv without a shell, 127/126, timeouts, binary data.
func confExecContract(t *testing.T, c *confTarget, name string) {
	tests := []struct {
		name       string
		stdin      string
		args       []string
		wantCode   int
		wantOut    string
		wantErrSub string
	}{
		{"exit 0", "", []string{"--", "true"}, 0, "", ""},
		{"exit 3", "", []string{"--sh", "--", "exit 3"}, 3, "", ""},
		{"stderr separate", "", []string{"--sh", "--", "echo out; echo err >&2"}, 0, "out\n", "err\n"},
		{"stdin", "abc\n", []string{"-i", "--", "tr", "a-z", "A-Z"}, 0, "ABC\n", ""},
		{"no stdin without -i", "abc\n", []string{"--", "cat"}, 0, "", ""},
		{"env and dir", "", []string{"-e", "FOO=bar baz", "-w", "/tmp", "--sh", "--", "echo \"$FOO\"; pwd"}, 0, "bar baz\n/tmp\n", ""},
		{"argv not through a shell", "", []string{"--", "echo", "$HOME", "a;b"}, 0, "$HOME a;b\n", ""},
		{"not found", "", []string{"--", "no-such-command-xyz"}, 127, "", "no-such-command-xyz"},
		{"cannot invoke", "", []string{"--", "/etc/hostname"}, 126, "", "/etc/hostname"},
		{"missing dir", "", []string{"-w", "/no/such/dir", "--", "true"}, 126, "", "/no/such/dir"},
		{"unknown sandbox", "", nil, 125, "", "no-such-sandbox"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			var in []byte
			if tt.stdin != "" {
				in = []byte(tt.stdin)
			}
			args := append([]string{"exec", name}, tt.args...)
			if tt.args == nil {
				args = []string{"exec", "no-such-sandbox", "--", "true"}
			}
			out, errOut, code := c.dsIn(in, args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr %q", code, tt.wantCode, errOut)
			}
			if out != tt.wantOut {
				t.Errorf("stdout %q, want %q", out, tt.wantOut)
			}
			if !strings.Contains(errOut, tt.wantErrSub) {
				t.Errorf("stderr %q lacks %q", errOut, tt.wantErrSub)
			}
		})
	}
	t.Run("binary round trip", func(t *testing.T) {
		c.t = t
		var all []byte
		for i := range 256 {
			all = append(all, byte(i))
		}
		all = []byte(strings.Repeat(string(all), 4000)) // 1 MiB
		out, _, code := c.dsIn(all, "exec", name, "-i", "--", "cat")
		if code != 0 || out != string(all) {
			t.Fatalf("exit %d, %d bytes back of %d", code, len(out), len(all))
		}
	})
}

// confSignals: death by signal is 128+N; a signal sent through the API
// reaches the process; a timeout kills the whole process group.
func confSignals(t *testing.T, c *confTarget, name string) {
	for _, sig := range []struct {
		name string
		n    int
	}{{"KILL", 9}, {"TERM", 15}} {
		if _, errOut, code := c.ds("exec", name, "--sh", "--", "kill -"+sig.name+" $$"); code != 128+sig.n {
			t.Errorf("kill -%s $$: exit %d, want %d (%s)", sig.name, code, 128+sig.n, errOut)
		}
	}

	p, err := c.c.Exec(context.Background(), name, &protocol.ExecStart{Argv: []string{"sh", "-c",
		`trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done`}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var out syncBuf
	done := make(chan error, 1)
	var x *protocol.ExitMsg
	go func() {
		var err error
		x, err = p.Wait(&out, nil)
		done <- err
	}()
	waitFor(t, 10*time.Second, "the trap to be set", func() bool { return strings.Contains(out.String(), "ready") })
	if err := p.Signal(int(syscall.SIGTERM)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil || x.Status() != 7 || !strings.Contains(out.String(), "got-term") {
			t.Fatalf("after SIGTERM: %v, exit %+v, output %q; want the trap's exit 7", err, x, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("SIGTERM through the API did not end the process; output %q", out.String())
	}

	marker := fmt.Sprintf("conf-timeout-%d", time.Now().UnixNano())
	// A background sleep of a length no other test uses: suites run in
	// parallel, and the check below looks at the whole host.
	bg := fmt.Sprintf("300.%06d", time.Now().UnixNano()%1000000)
	_, errOut, code := c.ds("exec", name, "--timeout", "500ms", "--sh", "--", "sleep "+bg+" & sleep 301; : "+marker)
	if code != 128+15 && code != 128+9 {
		t.Fatalf("timeout: exit %d (%s), want killed", code, errOut)
	}
	if !strings.Contains(errOut, "timed out") {
		t.Errorf("timeout: stderr %q lacks 'timed out'", errOut)
	}
	// The host sees the sandbox's processes for every driver here.
	waitFor(t, 10*time.Second, "the timed-out group to die", func() bool { return len(pgrep(marker)) == 0 && len(pgrep("sleep "+bg)) == 0 })
}

// confWarmExec: commands through the daemon use its warm session, so they
// cost a stream open, not a new connection (or an engine exec, ~200 ms on
// podman). The bound is generous for a busy 2-core machine.
func confWarmExec(t *testing.T, c *confTarget, name string) {
	ds := c.apiExecTimes(name, 30)
	p50 := pct(ds, 50)
	t.Logf("%s: exec true through the daemon API, 30 runs: p50 %s, max %s", c.driver, p50, ds[len(ds)-1])
	if p50 > 60*time.Millisecond {
		t.Fatalf("exec p50 %s through the daemon: the warm session is not being used", p50)
	}
}

// confPTY: an interactive login shell on a terminal of the right size.
func confPTY(t *testing.T, c *confTarget, name string) {
	connectSession(t, c.home, name, "echo marker-$((40+2)); stty size\n", "marker-42", "30 100")
	out, errOut, code := c.ds("exec", name, "-t", "--", "sh", "-c", "test -t 0 && test -t 1 && echo tty")
	if code != 0 || !strings.Contains(out, "tty") {
		t.Fatalf("exec -t: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// confSyncRoundTrip: upload a tree to the driver's default place, use it
// there, download it back unchanged (content, modes, mtimes, symlinks).
func confSyncRoundTrip(t *testing.T, c *confTarget, name string) {
	src := t.TempDir()
	makeTree(t, src, 12, 1<<20)
	r := c.syncJSON("sandbox", "upload", name, src)
	if r.Added != r.Entries || r.Entries < 12 || r.Remote != c.workspace {
		t.Fatalf("upload: %+v; want every entry added to the default remote %q", r, c.workspace)
	}
	if out := c.mustBash(name, "sh "+r.Remote+"/run.sh && cat "+r.Remote+"/sub/deep/f002*"); !strings.HasPrefix(out, "hi\nline 2\n") {
		t.Fatalf("the uploaded tree does not run in the sandbox: %q", out)
	}
	local := filepath.Join(t.TempDir(), "back")
	if r := c.syncJSON("sandbox", "download", name, r.Remote, local); r.Direction != api.SyncPull {
		t.Fatalf("download: %+v", r)
	}
	if d := treeDiff(t, src, local); len(d) > 0 {
		t.Fatalf("round trip changed the tree: %v", d)
	}
	if _, errOut, code := c.ds("sandbox", "download", name, r.Remote+"/no/such/dir", local); code == 0 || !strings.Contains(errOut, "no/such/dir") {
		t.Fatalf("download of a missing dir: exit %d, %s", code, errOut)
	}
}

// confDelete: after delete the sandbox is unknown everywhere and nothing
// the driver made for it is left.
func confDelete(t *testing.T, c *confTarget, name string) {
	left := c.residue(t, name)
	if out, errOut, code := c.ds("sandbox", "delete", name); code != 0 {
		t.Fatalf("delete: exit %d %s %s", code, out, errOut)
	}
	waitFor(t, 10*time.Second, "the sandbox's parts to go", func() bool { return len(left()) == 0 })
	if _, err := os.Stat(filepath.Join(c.home, "sandboxes", name)); err == nil {
		t.Error("the state dir is still there")
	}
	if out, _, _ := c.ds("-o", "json", "sandbox", "list"); strings.Contains(out, `"`+name+`"`) {
		t.Errorf("still listed: %s", out)
	}
	if _, errOut, code := c.ds("exec", name, "--", "true"); code != 125 || !strings.Contains(errOut, "no such sandbox") {
		t.Errorf("exec after delete: exit %d %q", code, errOut)
	}
	if _, _, code := c.ds("sandbox", "delete", name); code == 0 {
		t.Error("a second delete succeeded")
	}
}

// execTrue runs `true` in sandbox name through the daemon API.
func (e *env) execTrue(name string) error {
	p, err := e.c.Exec(context.Background(), name, &protocol.ExecStart{Argv: []string{"true"}})
	if err != nil {
		return err
	}
	defer p.Close()
	x, err := p.Wait(nil, nil)
	if err == nil && x.Status() != 0 {
		err = fmt.Errorf("status %d", x.Status())
	}
	return err
}

// apiExecTimes runs `exec true` through the daemon API n times after a
// warm-up and returns the durations, sorted.
func (e *env) apiExecTimes(name string, n int) []time.Duration {
	e.t.Helper()
	var ds []time.Duration
	for i := range n + 3 {
		t0 := time.Now()
		if err := e.execTrue(name); err != nil {
			e.t.Fatalf("exec true: %v", err)
		}
		if i >= 3 {
			ds = append(ds, time.Since(t0))
		}
	}
	slices.Sort(ds)
	return ds
}
