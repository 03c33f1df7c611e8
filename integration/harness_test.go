package integration

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/client"
	"github.com/bohica-labs/darkshell/controller/sshx/sshdtest"
)

var binDir string

func TestMain(m *testing.M) {
	if addrs := os.Getenv("DARKSHELL_TEST_HTTP_SERVER"); addrs != "" {
		serveTestHTTP(strings.Split(addrs, ","))
		return
	}
	if url := os.Getenv("DARKSHELL_TEST_HTTP_CLIENT"); url != "" {
		os.Exit(httpClientBench(url))
	}
	if spec := os.Getenv("DARKSHELL_TEST_SPAWN"); spec != "" {
		os.Exit(spawnLoop(spec))
	}
	flag.Parse() // testing.Short needs parsed flags
	binDir = os.Getenv("DARKSHELL_BIN_DIR")
	if binDir == "" && !testing.Short() {
		root, err := exec.Command("go", "env", "GOMOD").Output()
		if err == nil {
			dir := filepath.Dir(strings.TrimSpace(string(root)))
			cmd := exec.Command("make", "-C", dir, "build")
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "integration: make build failed:", err)
				os.Exit(1)
			}
			binDir = filepath.Join(dir, "bin")
		}
	}
	code := m.Run()
	stopKube() // the kubernetes tests' cluster, if one was started
	os.Exit(code)
}

func requireIntegration(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	if binDir == "" {
		t.Fatal("no binaries: set DARKSHELL_BIN_DIR or run `make build`")
	}
}

// env is one installation (its own DARKSHELL_HOME) with one ssh sandbox
// named "s" on a private loopback sshd whose sessions see an empty $HOME.
type env struct {
	t      testing.TB
	home   string // DARKSHELL_HOME
	sbHome string // $HOME inside the sandbox
	sshd   *sshdtest.Server
	c      *client.Client
}

func newEnv(t testing.TB, opts ...sshdtest.Option) *env {
	t.Helper()
	requireIntegration(t)
	e := &env{t: t, home: t.TempDir(), sbHome: t.TempDir()}
	e.sshd = sshdtest.Start(t, append([]sshdtest.Option{sshdtest.WithHome(e.sbHome)}, opts...)...)
	c, err := client.New(client.Options{Home: e.home, Darkshell: filepath.Join(binDir, "darkshell")})
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	t.Cleanup(e.cleanup)
	return e
}

// create registers the sandbox through the CLI.
func (e *env) create(name string) {
	e.t.Helper()
	out, errOut, code := e.ds("sandbox", "create", name, "--driver", "ssh",
		"--ssh", fmt.Sprintf("%s@127.0.0.1:%d", e.sshd.User, e.sshd.Port), "--identity", e.sshd.ClientKey)
	if code != 0 {
		e.t.Fatalf("create %s: exit %d\nstdout: %s\nstderr: %s\nsshd: %s", name, code, out, errOut, e.sshd.Log())
	}
}

func (e *env) cleanup() {
	if e.t.Failed() {
		b, err := os.ReadFile(filepath.Join(e.home, "logs", "daemon.log"))
		e.t.Logf("daemon.log (%v):\n%s", err, b)
	}
	cmd := exec.Command(filepath.Join(binDir, "darkshell"), "daemon", "stop")
	cmd.Env = append(os.Environ(), "DARKSHELL_HOME="+e.home)
	cmd.Run()
}

// ds runs the darkshell CLI in this installation.
func (e *env) ds(args ...string) (stdout, stderr string, code int) {
	return e.dsIn(nil, args...)
}

func (e *env) dsIn(stdin []byte, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "darkshell"), args...)
	cmd.Env = append(os.Environ(), "DARKSHELL_HOME="+e.home)
	var o, eb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &eb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	code = 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			e.t.Fatalf("run darkshell %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return o.String(), eb.String(), code
}

// pidAlive reports whether pid exists and is not a zombie.
func pidAlive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// pgrep returns pids whose command line contains all of pats.
func pgrep(pats ...string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, d := range ents {
		var pid int
		if _, err := fmt.Sscan(d.Name(), &pid); err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		cl := strings.ReplaceAll(string(b), "\x00", " ")
		ok := true
		for _, p := range pats {
			if !strings.Contains(cl, p) {
				ok = false
				break
			}
		}
		if ok && pidAlive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func syscallKill(pid int) { syscall.Kill(pid, syscall.SIGKILL) }

// childPIDs lists the direct children of pid.
func childPIDs(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		var c int
		fmt.Sscan(f, &c)
		out = append(out, c)
	}
	return out
}

// rawUpgrade opens an upgraded exec connection by hand, to send arbitrary frames.
func rawUpgrade(e *env, name string) (net.Conn, error) {
	if _, err := e.c.Version(context.Background()); err != nil { // make sure the daemon runs
		return nil, err
	}
	conn, err := net.Dial("unix", filepath.Join(e.home, "darkshell.sock"))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(conn, "POST /v1/sandboxes/%s/exec HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: darkshell-stream\r\n\r\n", name)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.StatusCode != 101 {
		conn.Close()
		return nil, fmt.Errorf("upgrade: %s", resp.Status)
	}
	return &readConn{conn, br}, nil
}

type readConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *readConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// requireLocal skips (or, with DARKSHELL_REQUIRE_ALL=1, fails) t when the
// local driver cannot run here: it needs root, Landlock, seccomp and the
// namespaces.
func requireLocal(t testing.TB) {
	t.Helper()
	requireIntegration(t)
	why := ""
	st, _ := os.ReadFile("/proc/self/status")
	abi, _, errno := syscall.Syscall(444 /* landlock_create_ruleset */, 0, 0, 1 /* LANDLOCK_CREATE_RULESET_VERSION */)
	switch {
	case os.Geteuid() != 0:
		why = "these tests run as root (TestLocalRootless covers the user-namespace mode by running darkshell as another uid)"
	case errno != 0 || int(abi) < 1:
		why = fmt.Sprintf("the kernel has no Landlock (landlock_create_ruleset: %v)", errno)
	case !strings.Contains(string(st), "\nSeccomp:"):
		why = "the kernel has no seccomp"
	}
	for _, ns := range []string{"mnt", "pid", "net", "uts", "ipc", "cgroup"} {
		if _, err := os.Stat("/proc/self/ns/" + ns); why == "" && err != nil {
			why = "the kernel lacks the " + ns + " namespace"
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("DARKSHELL_REQUIRE_ALL") == "1" {
		t.Fatal("DARKSHELL_REQUIRE_ALL=1 but " + why)
	}
	t.Skip("SKIPPING: " + why)
}

// requireFeature skips t because this machine lacks what, or fails it
// under DARKSHELL_REQUIRE_ALL=1.
func requireFeature(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("DARKSHELL_REQUIRE_ALL") == "1" {
		t.Fatal("DARKSHELL_REQUIRE_ALL=1 but this machine lacks " + what)
	}
	t.Skip("SKIPPING: this machine lacks " + what)
}

// newLocalEnv is an installation without sshd, for local-driver sandboxes.
// Sandboxes left at the end are deleted before the daemon stops.
func newLocalEnv(t testing.TB) *env {
	t.Helper()
	requireLocal(t)
	e := &env{t: t, home: t.TempDir()}
	c, err := client.New(client.Options{Home: e.home, Darkshell: filepath.Join(binDir, "darkshell")})
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	t.Cleanup(e.cleanup) // stops the daemon: runs after the deletes below
	t.Cleanup(func() {
		ents, _ := os.ReadDir(filepath.Join(e.home, "sandboxes"))
		for _, d := range ents {
			e.c.Delete(context.Background(), d.Name())
		}
	})
	return e
}

// createLocal creates a local-driver sandbox through the CLI.
func (e *env) createLocal(name string, args ...string) {
	e.t.Helper()
	out, errOut, code := e.ds(append([]string{"sandbox", "create", name}, args...)...)
	if code != 0 {
		e.t.Fatalf("create %s: exit %d\nstdout: %s\nstderr: %s", name, code, out, errOut)
	}
}

// waitForDaemon waits until the daemon of installation home answers on its
// socket.
func waitForDaemon(t testing.TB, home string, within time.Duration) {
	t.Helper()
	waitFor(t, within, "the daemon", func() bool {
		c, err := net.Dial("unix", filepath.Join(home, "darkshell.sock"))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}
