package integration

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// mcpServers returns the directory holding node_modules with the npm MCP
// servers (`make deps` installs them), or skips: loudly, and as a failure
// under DARKSHELL_REQUIRE_ALL=1.
func mcpServers(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("DARKSHELL_MCP_SERVERS")
	if dir == "" {
		root, err := exec.Command("go", "env", "GOMOD").Output()
		if err == nil {
			dir = filepath.Join(filepath.Dir(strings.TrimSpace(string(root))), ".cache", "mcp-servers")
		}
	}
	if _, err := exec.LookPath("node"); err != nil {
		requireFeature(t, "node (the npm MCP servers need it): install nodejs, then `make deps`")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js")); err != nil {
		requireFeature(t, "the npm MCP servers in "+dir+": run `make deps` (npm install of integration/testdata/mcp-servers)")
	}
	return dir
}

func everythingJS(dir string) string {
	return filepath.Join(dir, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js")
}

var (
	mcpClientOnce sync.Once
	mcpClientPath string
	mcpClientErr  error
)

// mcpClient builds the test client (official Go SDK) once, statically.
func mcpClient(t testing.TB) string {
	t.Helper()
	mcpClientOnce.Do(func() {
		dir, err := os.MkdirTemp("", "darkshell-mcpclient")
		if err != nil {
			mcpClientErr = err
			return
		}
		mcpClientPath = filepath.Join(dir, "mcpclient")
		cmd := exec.Command("go", "build", "-o", mcpClientPath, "./internal/mcpclient")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			mcpClientErr = fmt.Errorf("build mcpclient: %v\n%s", err, out)
		}
	})
	if mcpClientErr != nil {
		t.Fatal(mcpClientErr)
	}
	return mcpClientPath
}

func copyFile(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

// mcpWorkspace is a workspace holding the test client, sandboxd (for the
// stdio shim) and, with servers, a copy of the npm servers.
func mcpWorkspace(t testing.TB, servers string) string {
	t.Helper()
	ws := t.TempDir()
	os.Chmod(ws, 0o777)
	copyFile(t, mcpClient(t), filepath.Join(ws, "mcpclient"), 0o755)
	copyFile(t, filepath.Join(binDir, "sandboxd"), filepath.Join(ws, "sandboxd"), 0o755)
	if servers != "" {
		if out, err := exec.Command("cp", "-a", filepath.Join(servers, "node_modules"), filepath.Join(ws, "node_modules")).CombinedOutput(); err != nil {
			t.Fatalf("copy servers: %v %s", err, out)
		}
	}
	return ws
}

func secret(t testing.TB) string {
	b := make([]byte, 16)
	rand.Read(b)
	return "dsk-" + hex.EncodeToString(b)
}

// mcpURL reads a server's URL from the generated config inside the sandbox.
func (e *env) mcpURL(sb, server string) string {
	e.t.Helper()
	out := e.mustBash(sb, "cat /sandbox/.darkshell/mcp.json")
	var c struct {
		MCPServers map[string]struct {
			URL string `json:"url"`
		} `json:"mcpServers"`
	}
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		e.t.Fatalf("mcp.json: %v\n%s", err, out)
	}
	u := c.MCPServers[server].URL
	if !strings.HasPrefix(u, "http://127.0.0.1:") {
		e.t.Fatalf("mcp.json has no loopback URL for %s:\n%s", server, out)
	}
	return u
}

// client runs the test client inside the sandbox and decodes its output.
func (e *env) client(sb string, args ...string) map[string]any {
	e.t.Helper()
	out, errOut, code := e.ds(append([]string{"exec", sb, "--", "/sandbox/mcpclient"}, args...)...)
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		e.t.Fatalf("mcpclient %v: exit %d, %v\nstdout: %s\nstderr: %s", args, code, err, out, errOut)
	}
	if code != 0 {
		e.t.Fatalf("mcpclient %v: exit %d: %v\nstderr: %s", args, code, m["error"], errOut)
	}
	return m
}

type mcpInfo struct {
	Name      string `json:"name"`
	Transport string `json:"transport"`
	State     string `json:"state"`
	PID       int    `json:"pid"`
	Restarts  int    `json:"restarts"`
	Tools     int    `json:"tools"`
	Calls     int64  `json:"calls"`
	Denied    int64  `json:"denied"`
	LastError string `json:"last_error"`
	URL       string `json:"url"`
}

func (e *env) mcpList(sb string) map[string]mcpInfo {
	e.t.Helper()
	out, errOut, code := e.ds("mcp", "list", sb, "-o", "json")
	if code != 0 {
		e.t.Fatalf("mcp list: exit %d %s", code, errOut)
	}
	var l []mcpInfo
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		e.t.Fatalf("mcp list: %v\n%s", err, out)
	}
	m := map[string]mcpInfo{}
	for _, s := range l {
		m[s.Name] = s
	}
	return m
}

func (e *env) mustDS(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.ds(args...)
	if code != 0 {
		e.t.Fatalf("darkshell %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
	}
	return out
}

func strs(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestMCPBridge: a real npm server run on the host with a provider's
// secret, used from inside a local sandbox by the Go SDK client through the
// loopback URL: list, call, resources, progress; tool policy; credential
// isolation; crash mid-call and restart; client disconnect; malformed and
// oversized requests; rotation; the call log.
func TestMCPBridge(t *testing.T) {
	servers := mcpServers(t)
	e := newLocalEnv(t)
	ws := mcpWorkspace(t, "")
	e.createLocal("mb", "--workspace", ws)
	sec := secret(t)
	e.mustDS("provider", "create", "--name", "demo", "--type", "generic", "--credential", "DARKSHELL_TEST_SECRET="+sec)
	if out := e.mustDS("provider", "list", "-o", "json"); strings.Contains(out, sec) || !strings.Contains(out, "DARKSHELL_TEST_SECRET") {
		t.Fatalf("provider list must name keys, never values: %s", out)
	}
	fi, err := os.Stat(filepath.Join(e.home, "providers", "demo.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("provider file: %v mode %v", err, fi.Mode())
	}

	e.mustDS("mcp", "add", "mb", "every", "--transport", "bridge", "--provider", "demo",
		"--deny-tool", "toggle-*", "--deny-tool", "get-tiny-image", "--", "node", everythingJS(servers))
	url := e.mcpURL("mb", "every")

	// List, call, resources, progress through the bridge.
	r := e.client("mb", "-url", url, "suite")
	tools := strs(r["tools"])
	if len(tools) < 5 || strings.Contains(strings.Join(tools, ","), "toggle-") || strings.Contains(strings.Join(tools, ","), "get-tiny-image") {
		t.Fatalf("tools/list through the bridge = %v: want the server's tools minus the denied ones", tools)
	}
	if r["echo"] != "Echo: hello from the sandbox" || r["resources"].(float64) < 1 || r["resource_contents"].(float64) < 1 {
		t.Fatalf("suite = %v", r)
	}
	if r["progress"].(float64) != 3 {
		t.Fatalf("progress notifications through the bridge = %v, want 3", r["progress"])
	}

	// Policy: a denied tool is refused with the policy named.
	r = e.client("mb", "-url", url, "call", "get-tiny-image", "{}")
	if ce, _ := r["call_error"].(string); !strings.Contains(ce, `deny-tool "get-tiny-image"`) {
		t.Fatalf("denied call = %v, want an error naming the policy", r)
	}

	// The bridge server has the secret: its env tool shows it.
	r = e.client("mb", "-url", url, "call", "get-env", "{}")
	if txt, _ := r["text"].(string); !strings.Contains(txt, sec) {
		t.Fatal("the bridge server's environment lacks the provider's secret")
	}
	// ... and the sandbox has it nowhere.
	e.scanSandbox("mb", ws, sec)

	// mcp list and the call log.
	l := e.mcpList("mb")["every"]
	if l.State != "running" || l.PID <= 0 || l.Tools != len(tools) || l.Calls < 3 || l.Denied != 1 || l.URL != url {
		t.Fatalf("mcp list = %+v (tools %d)", l, len(tools))
	}
	logs := e.mustDS("mcp", "logs", "mb", "every", "-o", "json")
	if !strings.Contains(logs, `"decision":"deny"`) || !strings.Contains(logs, `"tool":"echo"`) || !strings.Contains(logs, `"kind":"policy_decision"`) {
		t.Fatalf("mcp logs lack the calls or the denial:\n%s", logs)
	}
	// The calls are events on the sandbox's one stream too (watch, trace, export).
	waitFor(t, 5*time.Second, "MCP calls in the event log", func() bool {
		b, _ := os.ReadFile(filepath.Join(e.home, "logs", "mb", "events.jsonl"))
		return strings.Contains(string(b), `"kind":"mcp_call"`) && strings.Contains(string(b), `"tool":"echo"`) &&
			strings.Contains(string(b), `"server":"every"`) && strings.Contains(string(b), `"source":"bridge"`)
	})

	// Crash mid-call: the call fails clearly, the server restarts, the next call works.
	done := make(chan map[string]any, 1)
	go func() {
		out, _, _ := e.ds("exec", "mb", "--", "/sandbox/mcpclient", "-url", url, "call", "trigger-long-running-operation", `{"duration":10,"steps":10}`)
		var m map[string]any
		json.Unmarshal([]byte(out), &m)
		done <- m
	}()
	// Kill the server once the call has reached it.
	waitFor(t, 30*time.Second, "the long call to start", func() bool { return e.mcpList("mb")["every"].Calls > l.Calls })
	time.Sleep(300 * time.Millisecond)
	syscall.Kill(l.PID, syscall.SIGKILL)
	select {
	case m := <-done:
		if ce, _ := m["call_error"].(string); !strings.Contains(ce, "exited during tools/call") {
			t.Fatalf("call during a crash = %v, want a clear error", m)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the call in flight did not end when its server crashed")
	}
	waitFor(t, 20*time.Second, "restart", func() bool {
		s := e.mcpList("mb")["every"]
		return s.Restarts >= 1 && s.State == "running" && s.PID > 0 && s.PID != l.PID
	})
	if r := e.client("mb", "-url", url, "call", "echo", `{"message":"after crash"}`); r["text"] != "Echo: after crash" {
		t.Fatalf("call after restart = %v", r)
	}

	// Client disconnect mid-call: the bridge keeps serving, no restart.
	before := e.mcpList("mb")["every"]
	e.ds("exec", "mb", "--", "/sandbox/mcpclient", "-timeout", "1s", "-url", url, "call", "trigger-long-running-operation", `{"duration":3,"steps":3}`)
	if r := e.client("mb", "-url", url, "call", "echo", `{"message":"after disconnect"}`); r["text"] != "Echo: after disconnect" {
		t.Fatalf("call after a client disconnect = %v", r)
	}
	if s := e.mcpList("mb")["every"]; s.Restarts != before.Restarts || s.PID != before.PID {
		t.Fatalf("a client disconnect restarted the server: %+v -> %+v", before, s)
	}

	// Malformed JSON-RPC and an oversized message get HTTP errors, not a crash.
	out := e.mustBash("mb", `cd /sandbox && `+
		`printf '{"jsonrpc":"2.0","id":1,"method":' > bad.json && `+
		`head -c 6000000 /dev/zero | tr '\0' 'a' > big.json && `+
		`for f in bad.json big.json; do /sandbox/mcpclient -url `+url+` call echo '{"message":"x"}' >/dev/null; `+
		`exec 3<>/dev/tcp/127.0.0.1/`+portOf(url)+`; `+
		`printf 'POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: %d\r\nConnection: close\r\n\r\n' $(stat -c %s $f) >&3; `+
		`cat $f >&3 2>/dev/null; head -1 <&3; exec 3>&-; done; rm -f bad.json big.json`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], " 400 ") || !strings.Contains(lines[1], " 413 ") {
		t.Fatalf("malformed / oversized requests: got %q, want HTTP 400 then 413", lines)
	}
	if r := e.client("mb", "-url", url, "call", "echo", `{"message":"still fine"}`); r["text"] != "Echo: still fine" {
		t.Fatalf("call after bad requests = %v", r)
	}

	// Rotation: the running bridge picks up the new value; the sandbox keeps its URL.
	sec2 := secret(t)
	e.mustDS("provider", "update", "demo", "--credential", "DARKSHELL_TEST_SECRET="+sec2)
	r = e.client("mb", "-url", url, "call", "get-env", "{}")
	if txt, _ := r["text"].(string); !strings.Contains(txt, sec2) || strings.Contains(txt, sec) {
		t.Fatal("after rotation the bridge server does not have the new secret (or still has the old one)")
	}
	e.scanSandbox("mb", ws, sec2)

	// Host logs are redacted.
	filepath.WalkDir(filepath.Join(e.home, "logs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), sec) || strings.Contains(string(b), sec2) {
				t.Errorf("host log %s contains a provider secret", p)
			}
		}
		return nil
	})

	// Remove: the URL goes away, the host server stops.
	pid := e.mcpList("mb")["every"].PID
	e.mustDS("mcp", "remove", "mb", "every")
	waitFor(t, 10*time.Second, "bridge server exit", func() bool { return !pidAlive(pid) })
	waitFor(t, 5*time.Second, "mcp.json without the removed server", func() bool {
		b, _ := os.ReadFile(filepath.Join(ws, ".darkshell", "mcp.json"))
		return !strings.Contains(string(b), "every")
	})
	if _, errOut, code := e.ds("provider", "delete", "demo"); code != 0 {
		t.Fatalf("provider delete: %s", errOut)
	}
}

func portOf(url string) string {
	s := strings.TrimPrefix(url, "http://127.0.0.1:")
	return s[:strings.IndexByte(s, '/')]
}

// scanSandbox fails if sec appears in any sandbox process's environment or
// command line, in the workspace, or in the sandbox's /tmp.
func (e *env) scanSandbox(sb, ws, sec string) {
	e.t.Helper()
	init := e.initPID(sb)
	for _, pid := range descendants(init) {
		for _, f := range []string{"environ", "cmdline"} {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
			if strings.Contains(string(b), sec) {
				e.t.Fatalf("the secret is in /proc/%d/%s of the sandbox", pid, f)
			}
		}
	}
	for _, dir := range []string{ws, fmt.Sprintf("/proc/%d/root/tmp", init), fmt.Sprintf("/proc/%d/root/dev/shm", init)} {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !d.Type().IsRegular() {
				return nil
			}
			f, err := os.Open(p)
			if err != nil {
				return nil
			}
			defer f.Close()
			b, _ := io.ReadAll(io.LimitReader(f, 64<<20))
			if strings.Contains(string(b), sec) {
				e.t.Fatalf("the secret is in %s", p)
			}
			return nil
		})
	}
}

// TestMCPInSandbox: real npm servers supervised by sandboxd inside the
// sandbox, reached at a loopback URL and through `sandboxd mcp connect`;
// policy; restart after a crash; providers refused.
func TestMCPInSandbox(t *testing.T) {
	servers := mcpServers(t)
	e := newLocalEnv(t)
	ws := mcpWorkspace(t, servers)
	e.createLocal("mi", "--workspace", ws)
	js := "/sandbox/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
	e.mustDS("mcp", "add", "mi", "every", "--transport", "in-sandbox", "--deny-tool", "get-env", "--", "node", js)
	e.mustDS("mcp", "add", "mi", "fs", "--transport", "in-sandbox", "--allow-tool", "read_*", "--allow-tool", "list_*",
		"--", "node", "/sandbox/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js", "/sandbox")

	url := e.mcpURL("mi", "every")
	r := e.client("mi", "-url", url, "suite")
	tools := strings.Join(strs(r["tools"]), ",")
	if strings.Contains(tools, "get-env") || !strings.Contains(tools, "echo") || r["progress"].(float64) != 3 || r["resources"].(float64) < 1 {
		t.Fatalf("in-sandbox suite = %v", r)
	}
	if r := e.client("mi", "-url", url, "call", "get-env", "{}"); !strings.Contains(fmt.Sprint(r["call_error"]), "deny-tool") {
		t.Fatalf("denied in-sandbox call = %v", r)
	}
	// The stdio shim.
	r = e.client("mi", "-stdio", "/sandbox/sandboxd mcp connect every", "suite")
	if r["echo"] != "Echo: hello from the sandbox" || r["progress"].(float64) != 3 {
		t.Fatalf("suite through `sandboxd mcp connect` = %v", r)
	}
	// Filesystem server: allow-list policy.
	os.WriteFile(filepath.Join(ws, "note.txt"), []byte("note from the host"), 0o644)
	fsURL := e.mcpURL("mi", "fs")
	r = e.client("mi", "-url", fsURL, "call", "read_text_file", `{"path":"/sandbox/note.txt"}`)
	if !strings.Contains(fmt.Sprint(r["text"]), "note from the host") {
		t.Fatalf("filesystem read = %v", r)
	}
	if r := e.client("mi", "-url", fsURL, "call", "write_file", `{"path":"/sandbox/x","content":"y"}`); !strings.Contains(fmt.Sprint(r["call_error"]), "allow-tool") {
		t.Fatalf("write_file outside the allow list = %v", r)
	}

	l := e.mcpList("mi")
	if l["every"].State != "running" || l["every"].PID <= 0 || l["every"].Transport != "in-sandbox" || l["fs"].Tools < 2 {
		t.Fatalf("mcp list = %+v", l)
	}
	// Crash: kill the server inside the sandbox (the pid is the sandbox's).
	e.mustBash("mi", "kill -9 "+strconv.Itoa(l["every"].PID))
	waitFor(t, 20*time.Second, "in-sandbox restart", func() bool {
		s := e.mcpList("mi")["every"]
		return s.Restarts >= 1 && s.State == "running" && s.PID != l["every"].PID
	})
	if r := e.client("mi", "-url", url, "call", "echo", `{"message":"again"}`); r["text"] != "Echo: again" {
		t.Fatalf("call after restart = %v", r)
	}
	if logs := e.mustDS("mcp", "logs", "mi", "-o", "json"); !strings.Contains(logs, `"server":"fs"`) || !strings.Contains(logs, `"decision":"deny"`) {
		t.Fatalf("in-sandbox call log:\n%s", logs)
	}
	// Credentials never enter the sandbox.
	e.mustDS("provider", "create", "--name", "p", "--credential", "K=abcdefgh")
	_, errOut, code := e.ds("mcp", "add", "mi", "leak", "--transport", "in-sandbox", "--provider", "p", "--", "node", js)
	if code == 0 || !strings.Contains(errOut, "credentials never enter the sandbox") {
		t.Fatalf("in-sandbox with a provider: exit %d %s", code, errOut)
	}
	// A server that cannot start is reported and leaves nothing behind.
	_, errOut, code = e.ds("mcp", "add", "mi", "broken", "--transport", "in-sandbox", "--", "/sandbox/no-such-binary")
	if code == 0 || !strings.Contains(errOut, "broken") {
		t.Fatalf("broken server: exit %d %s", code, errOut)
	}
	if _, ok := e.mcpList("mi")["broken"]; ok {
		t.Fatal("a server that failed to start was kept")
	}
}

// TestMCPDaemonRestart: the daemon stops its bridge servers when it stops
// and restores them (same URL in the sandbox) when it starts again.
func TestMCPDaemonRestart(t *testing.T) {
	servers := mcpServers(t)
	e := newLocalEnv(t)
	ws := mcpWorkspace(t, "")
	e.createLocal("mr", "--workspace", ws)
	e.mustDS("mcp", "add", "mr", "every", "--transport", "bridge", "--", "node", everythingJS(servers))
	url := e.mcpURL("mr", "every")
	pid := e.mcpList("mr")["every"].PID
	e.mustDS("daemon", "stop")
	waitFor(t, 10*time.Second, "bridge server stopped with the daemon", func() bool { return !pidAlive(pid) })
	// Any command starts the daemon again, which restores the server.
	waitFor(t, 30*time.Second, "bridge restored", func() bool {
		s := e.mcpList("mr")["every"]
		return s.State == "running" && s.URL == url
	})
	if r := e.client("mr", "-url", url, "call", "echo", `{"message":"restored"}`); r["text"] != "Echo: restored" {
		t.Fatalf("call after a daemon restart = %v", r)
	}
}

// TestMCPSSH: bridge and in-sandbox servers on an ssh sandbox, where
// sandboxd runs as the persistent agent behind `sandboxd serve` and the
// sandbox shares the host's loopback.
func TestMCPSSH(t *testing.T) {
	servers := mcpServers(t)
	e := newEnv(t)
	e.create("s")
	e.mustDS("mcp", "add", "s", "every", "--transport", "bridge", "--", "node", everythingJS(servers))
	e.mustDS("mcp", "add", "s", "local", "--transport", "in-sandbox", "--", "node", everythingJS(servers))
	b, err := os.ReadFile(filepath.Join(e.sbHome, ".darkshell", "mcp.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		MCPServers map[string]struct{ URL string } `json:"mcpServers"`
	}
	if err := json.Unmarshal(b, &c); err != nil || len(c.MCPServers) != 2 {
		t.Fatalf("mcp.json: %v %s", err, b)
	}
	for name, s := range c.MCPServers {
		out, err := exec.Command(mcpClient(t), "-url", s.URL, "suite").CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"echo":"Echo: hello from the sandbox"`) || !strings.Contains(string(out), `"progress":3`) {
			t.Fatalf("%s at %s: %v %s", name, s.URL, err, out)
		}
	}
}

// TestMCPSandboxDelete: deleting a sandbox stops its bridges and forgets
// them; a new sandbox of the same name starts without them.
func TestMCPSandboxDelete(t *testing.T) {
	servers := mcpServers(t)
	e := newLocalEnv(t)
	e.createLocal("md")
	e.mustDS("mcp", "add", "md", "every", "--transport", "bridge", "--", "node", everythingJS(servers))
	pid := e.mcpList("md")["every"].PID
	e.mustDS("sandbox", "delete", "md")
	waitFor(t, 20*time.Second, "bridge server stopped after the sandbox was deleted", func() bool { return !pidAlive(pid) })
	e.createLocal("md")
	if l := e.mcpList("md"); len(l) != 0 {
		t.Fatalf("a new sandbox inherited MCP servers: %+v", l)
	}
	e.mustDS("daemon", "stop")
	if l := e.mcpList("md"); len(l) != 0 {
		t.Fatalf("a restarted daemon restored a deleted sandbox's servers: %+v", l)
	}
}
