package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBlueprintCreate: one command makes a sandbox with its policy,
// limits, env, uploads, a bridged MCP server, a forward and a workdir,
// reporting per-phase timings; a failing phase rolls everything back.
func TestBlueprintCreate(t *testing.T) {
	e := newLocalEnv(t)
	servers := mcpServers(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "src", "pkg"), 0o755)
	os.WriteFile(filepath.Join(dir, "src", "pkg", "main.go"), []byte("package main\n"), 0o644)
	abs, _ := filepath.Abs("../policies/default.yaml")
	bp := fmt.Sprintf(`version: 1
name: bpdev
driver: local
policy:
  file: %s
env:
  MODE: fast
resources:
  pids: 128
  memory: 256M
uploads:
  - from: src
    to: /sandbox/src
mcp_servers:
  - name: every
    transport: bridge
    command: [node, %s]
    denied_tools: ["get-env"]
forwards:
  - port: "7311"
workdir: /sandbox/work
labels:
  team: agents
`, abs, everythingJS(servers))
	file := filepath.Join(dir, "dev.yaml")
	os.WriteFile(file, []byte(bp), 0o600)
	if out, errOut, code := e.ds("blueprint", "validate", file); code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("validate: %d %q %q", code, out, errOut)
	}
	out, errOut, code := e.ds("-o", "json", "sandbox", "create", "--from", file)
	if code != 0 {
		t.Fatalf("create --from: %d %s %s", code, out, errOut)
	}
	var rep struct {
		Sandbox string
		Phases  []struct {
			Phase string
			Ms    int64
		}
		TotalMs int64 `json:"total_ms"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range rep.Phases {
		names = append(names, fmt.Sprintf("%s=%dms", p.Phase, p.Ms))
	}
	t.Logf("phases: %v, total %d ms", names, rep.TotalMs)
	if rep.Sandbox != "bpdev" || len(rep.Phases) != 6 || rep.Phases[0].Phase != "create" || rep.Phases[5].Phase != "ready" {
		t.Fatalf("report: %s", out)
	}
	if got := e.mustBash("bpdev", "cat /sandbox/src/pkg/main.go; echo $MODE; test -d /sandbox/work && echo workdir"); got != "package main\nfast\nworkdir\n" {
		t.Fatalf("inside: %q", got)
	}
	if out, _, _ := e.ds("sandbox", "get", "bpdev"); !strings.Contains(out, "pids") || !strings.Contains(out, "default.yaml") {
		t.Fatalf("get: %s", out)
	}
	if out, _, _ := e.ds("mcp", "list", "bpdev"); !strings.Contains(out, "every") {
		t.Fatalf("mcp list: %s", out)
	}
	if out, _, _ := e.ds("forward", "list"); !strings.Contains(out, "7311") {
		t.Fatalf("forward list: %s", out)
	}
	// --name makes another sandbox from the same file; here its forward's
	// host port is taken (by bpdev), so the late phase fails and the
	// sandbox, its upload and its MCP server are rolled back.
	_, errOut, code = e.ds("sandbox", "create", "--from", file, "--name", "bpdev2")
	if code == 0 || !strings.Contains(errOut, "phase forwards") || !strings.Contains(errOut, "address already in use") {
		t.Fatalf("--name with a taken port: %d %q", code, errOut)
	}
	if out, _, _ := e.ds("mcp", "list", "bpdev2"); strings.Contains(out, "every") {
		t.Fatalf("rolled-back sandbox still has its MCP server: %s", out)
	}
	if _, err := os.Stat(filepath.Join(e.home, "sandboxes", "bpdev2")); !os.IsNotExist(err) {
		t.Fatalf("state of the rolled-back sandbox left: %v", err)
	}

	// A phase that fails: nothing is left, and the phase is named.
	broken := strings.Replace(bp, "name: bpdev", "name: bpbroken", 1)
	broken = strings.Replace(broken, "command: [node, ", "command: [/nonexistent-mcp-server, ", 1)
	broken = strings.Replace(broken, `port: "7311"`, `port: "7312"`, 1)
	bfile := filepath.Join(dir, "broken.yaml")
	os.WriteFile(bfile, []byte(broken), 0o600)
	_, errOut, code = e.ds("sandbox", "create", "--from", bfile)
	if code == 0 || !strings.Contains(errOut, "phase mcp") || !strings.Contains(errOut, "nothing was left behind") {
		t.Fatalf("broken blueprint: %d %q", code, errOut)
	}
	if out, _, _ := e.ds("-o", "json", "sandbox", "list"); strings.Contains(out, "bpbroken") {
		t.Fatalf("the failed create left a sandbox: %s", out)
	}
	if _, err := os.Stat(filepath.Join(e.home, "sandboxes", "bpbroken")); !os.IsNotExist(err) {
		t.Fatalf("state left: %v", err)
	}
	// An invalid blueprint creates nothing and says where.
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\nname: x\nenv:\n  GITHUB_TOKEN: ghp_abcdefghijklmnopqrstuvwxyz0123456789\n"), 0o600)
	if _, errOut, code := e.ds("sandbox", "create", "--from", bad); code == 0 || !strings.Contains(errOut, bad+":4:") || !strings.Contains(errOut, "provider") {
		t.Fatalf("secret in env: %d %q", code, errOut)
	}
}
