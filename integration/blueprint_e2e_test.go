package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBlueprintEndToEnd: one blueprint with two uploads, a bridged npm MCP
// server holding a provider's credential, an in-sandbox npm MCP server,
// OpenShell-shaped tool rules on both, a forward, limits, env and a
// workdir; one command makes it, and from inside the sandbox the agent
// uses all of it. A blueprint whose in-sandbox server cannot start leaves
// nothing behind.
func TestBlueprintEndToEnd(t *testing.T) {
	servers := mcpServers(t)
	e := newLocalEnv(t)
	dir := t.TempDir()
	project := filepath.Join(dir, "project")
	os.MkdirAll(filepath.Join(project, "docs"), 0o755)
	os.WriteFile(filepath.Join(project, "docs", "notes.txt"), []byte("notes from the first upload"), 0o644)
	os.WriteFile(filepath.Join(project, "scratch.tmp"), []byte("excluded"), 0o644)
	copyFile(t, mcpClient(t), filepath.Join(project, "mcpclient"), 0o755)

	sec := secret(t)
	e.mustDS("provider", "create", "--name", "demo", "--type", "generic", "--credential", "DARKSHELL_TEST_SECRET="+sec)
	// Confined sandboxes may listen on 7300-7399 only (Landlock).
	fwdPort := freeSandboxPort(t, 7340)
	policyFile, _ := filepath.Abs("../policies/default.yaml")
	fsJS := "/sandbox/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"
	bp := fmt.Sprintf(`version: 1
name: bpe2e
driver: local
policy:
  file: %s
resources: {pids: 256, memory: 512M}
env: {MODE: e2e}
uploads:
  - from: project
    to: /sandbox/project
    exclude: ["*.tmp"]
  - from: %s
    to: /sandbox/node_modules
mcp_servers:
  - name: every
    transport: bridge
    command: [node, %s]
    providers: [demo]
    env: [DARKSHELL_TEST_SECRET]
    rules:
      - allow: { method: tools/list }
      - allow: { method: tools/call, tool: { any: [echo, get-env] } }
    deny_rules:
      - { method: tools/call, tool: echo, params: { arguments.message: "forbidden*" } }
  - name: fs
    transport: in-sandbox
    command: [node, %s, /sandbox]
    rules:
      - allow: { method: tools/list }
      - allow: { method: tools/call, tool: "read_*" }
      - allow: { method: tools/call, tool: write_file, params: { arguments.path: "/sandbox/out/*" } }
forwards:
  - port: "%d"
workdir: /sandbox/out
`, policyFile, filepath.Join(servers, "node_modules"), everythingJS(servers), fsJS, fwdPort)
	file := filepath.Join(dir, "e2e.yaml")
	os.WriteFile(file, []byte(bp), 0o600)
	if out, errOut, code := e.ds("blueprint", "validate", file); code != 0 {
		t.Fatalf("validate: %d %s %s", code, out, errOut)
	}
	out, errOut, code := e.ds("-o", "json", "sandbox", "create", "--from", file)
	if code != 0 {
		t.Fatalf("create --from: %d %s %s", code, out, errOut)
	}
	var rep struct {
		Phases []struct {
			Phase  string
			Ms     int64
			Detail string
		}
		TotalMs int64 `json:"total_ms"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	var phases []string
	for _, p := range rep.Phases {
		phases = append(phases, p.Phase)
	}
	t.Logf("phases %+v, total %d ms", rep.Phases, rep.TotalMs)
	if strings.Join(phases, ",") != "create,uploads,mcp,forwards,workdir,ready" || !strings.Contains(rep.Phases[1].Detail, "2 trees") {
		t.Fatalf("phases: %s", out)
	}

	// Uploads (with the exclude), env, workdir, limits, policy.
	if got := e.mustBash("bpe2e", "cat /sandbox/project/docs/notes.txt; echo; test -e /sandbox/project/scratch.tmp || echo excluded; echo $MODE; test -d /sandbox/out && echo workdir; test -f "+fsJS+" && echo server"); got != "notes from the first upload\nexcluded\ne2e\nworkdir\nserver\n" {
		t.Fatalf("inside: %q", got)
	}
	if v, _, _ := e.ds("version", "bpe2e"); !strings.Contains(v, "pids.max=256") || !strings.Contains(v, "memory.limit=536870912") {
		t.Fatalf("limits: %s", v)
	}
	if g, _, _ := e.ds("sandbox", "get", "bpe2e"); !strings.Contains(g, "default.yaml") {
		t.Fatalf("policy: %s", g)
	}

	client := "/sandbox/project/mcpclient"
	call := func(url, tool, args string) map[string]any {
		t.Helper()
		out, errOut, code := e.ds("exec", "bpe2e", "--", client, "-url", url, "call", tool, args)
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil || code != 0 {
			t.Fatalf("mcpclient call %s: exit %d %v\n%s\n%s", tool, code, err, out, errOut)
		}
		return m
	}
	// The bridged server: the rules list two tools, allow and refuse calls
	// (deny_rules on an argument), and its credential stays on the host.
	every := e.mcpURL("bpe2e", "every")
	out, _, _ = e.ds("exec", "bpe2e", "--", client, "-url", every, "tools")
	var listed map[string]any
	json.Unmarshal([]byte(out), &listed)
	if tools := strings.Join(strs(listed["tools"]), ","); tools != "echo,get-env" {
		t.Fatalf("bridged tools/list under the rules = %q (%s)", tools, out)
	}
	if r := call(every, "echo", `{"message":"hi"}`); r["text"] != "Echo: hi" {
		t.Fatalf("echo = %v", r)
	}
	if r := call(every, "echo", `{"message":"forbidden words"}`); !strings.Contains(fmt.Sprint(r["call_error"]), `deny_rules {method: "tools/call", tool: "echo", params: {...}}`) {
		t.Fatalf("echo with a denied argument = %v", r)
	}
	if r := call(every, "get-tiny-image", `{}`); !strings.Contains(fmt.Sprint(r["call_error"]), "not matched by any rule") {
		t.Fatalf("a tool no rule allows = %v", r)
	}
	if r := call(every, "get-env", `{}`); !strings.Contains(fmt.Sprint(r["text"]), sec) {
		t.Fatal("the bridged server lacks the provider's credential")
	}
	// The in-sandbox server reads the first upload and writes only where
	// its params rule allows.
	fs := e.mcpURL("bpe2e", "fs")
	if r := call(fs, "read_text_file", `{"path":"/sandbox/project/docs/notes.txt"}`); !strings.Contains(fmt.Sprint(r["text"]), "notes from the first upload") {
		t.Fatalf("in-sandbox read = %v", r)
	}
	if r := call(fs, "write_file", `{"path":"/sandbox/out/a.txt","content":"written by the agent"}`); r["call_error"] != nil {
		t.Fatalf("allowed write = %v", r)
	}
	if got := e.mustBash("bpe2e", "cat /sandbox/out/a.txt"); got != "written by the agent" {
		t.Fatalf("written file: %q", got)
	}
	if r := call(fs, "write_file", `{"path":"/sandbox/project/x.txt","content":"no"}`); !strings.Contains(fmt.Sprint(r["call_error"]), "not matched by any rule") {
		t.Fatalf("write outside /sandbox/out = %v", r)
	}
	// The forward: a host port reaches a server inside the sandbox.
	e.mustBash("bpe2e", fmt.Sprintf(`setsid -f node -e "require('net').createServer(s=>s.pipe(s)).listen(%d,'127.0.0.1')" >/dev/null 2>&1`, fwdPort))
	waitFor(t, 10*time.Second, "the sandbox echo server", func() bool {
		_, _, code := e.bash("bpe2e", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d", fwdPort))
		return code == 0
	})
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", fwdPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, c, "through the blueprint's forward\n")
	c.Close()
	// The credential is nowhere in the sandbox.
	e.scanSandbox("bpe2e", filepath.Join(e.home, "sandboxes", "bpe2e", "workspace"), sec)
	if logs := e.mustDS("mcp", "logs", "bpe2e", "-o", "json"); !strings.Contains(logs, `"decision":"deny"`) || !strings.Contains(logs, `"server":"fs"`) {
		t.Fatalf("mcp logs:\n%s", logs)
	}

	// An in-sandbox server that cannot start: after both uploads the mcp
	// phase fails, and nothing is left (sandbox, state, MCP servers,
	// forward).
	broken := strings.Replace(bp, "name: bpe2e", "name: bpe2e-broken", 1)
	broken = strings.Replace(broken, fsJS, "/sandbox/no-such-server.js", 1)
	port2 := freeSandboxPort(t, fwdPort+1)
	broken = strings.Replace(broken, fmt.Sprintf(`port: "%d"`, fwdPort), fmt.Sprintf(`port: "%d"`, port2), 1)
	bridges := countProcs(everythingJS(servers))
	bfile := filepath.Join(dir, "broken.yaml")
	os.WriteFile(bfile, []byte(broken), 0o600)
	_, errOut, code = e.ds("sandbox", "create", "--from", bfile)
	if code == 0 || !strings.Contains(errOut, "phase mcp") || !strings.Contains(errOut, "fs") {
		t.Fatalf("broken in-sandbox server: %d %q", code, errOut)
	}
	if out, _, _ := e.ds("-o", "json", "sandbox", "list"); strings.Contains(out, "bpe2e-broken") {
		t.Fatalf("the failed create left a sandbox: %s", out)
	}
	if _, err := os.Stat(filepath.Join(e.home, "sandboxes", "bpe2e-broken")); !os.IsNotExist(err) {
		t.Fatalf("state left: %v", err)
	}
	if out, _, _ := e.ds("mcp", "list", "bpe2e-broken"); strings.Contains(out, "every") {
		t.Fatalf("MCP servers left: %s", out)
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port2), time.Second); err == nil {
		c.Close()
		t.Fatal("a forward of the failed create is listening")
	}
	// Its bridged server (started before the in-sandbox one failed) is gone.
	waitFor(t, 10*time.Second, "the rolled-back bridge server to exit", func() bool { return countProcs(everythingJS(servers)) == bridges })

	// Deleting the sandbox stops its bridged server and frees its forward.
	e.mustDS("sandbox", "delete", "bpe2e")
	waitFor(t, 10*time.Second, "the deleted sandbox's bridge server to exit", func() bool { return countProcs(everythingJS(servers)) == bridges-1 })
	waitFor(t, 10*time.Second, "the deleted sandbox's forward to close", func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", fwdPort), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
}

// countProcs counts host processes whose command line contains s.
func countProcs(s string) int {
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		if b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline")); err == nil && strings.Contains(string(b), s) {
			n++
		}
	}
	return n
}

// freeSandboxPort returns a host loopback port from first up to 7399 that
// is free now.
func freeSandboxPort(t testing.TB, first int) int {
	t.Helper()
	for p := first; p <= 7399; p++ {
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			l.Close()
			return p
		}
	}
	t.Fatalf("no free port in %d-7399", first)
	return 0
}
