package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPoolLocalMCP: a claimed sandbox gets the blueprint's bridged MCP
// server (holding a provider's credential on the host), its forward and its
// workdir, as a booted one does; the agent in it calls the server. The
// member had none of them before the claim.
func TestPoolLocalMCP(t *testing.T) {
	servers := mcpServers(t)
	e := newLocalEnv(t)
	dir := t.TempDir()
	sec := secret(t)
	e.mustDS("provider", "create", "--name", "demo", "--type", "generic", "--credential", "DARKSHELL_TEST_SECRET="+sec)
	project := filepath.Join(dir, "project")
	os.MkdirAll(project, 0o755)
	copyFile(t, mcpClient(t), filepath.Join(project, "mcpclient"), 0o755)
	fwdPort := freeSandboxPort(t, 7350)
	bp := filepath.Join(dir, "bp.yaml")
	os.WriteFile(bp, []byte(fmt.Sprintf(`version: 1
name: poolmcp
driver: local
uploads:
  - from: project
    to: /sandbox/project
mcp_servers:
  - name: every
    transport: bridge
    command: [node, %s]
    providers: [demo]
    env: [DARKSHELL_TEST_SECRET]
forwards:
  - port: "%d"
workdir: /sandbox/out
`, everythingJS(servers), fwdPort)), 0o644)
	t.Cleanup(func() { e.ds("pool", "delete", "poolmcp") })
	e.mustDS("pool", "set", bp, "--size", "1", "--wait")
	st := e.waitPoolReady("poolmcp", 1)
	member := filepath.Join(e.home, "pools", "poolmcp", "sandboxes", st.Members[0].Name, "workspace")
	if _, err := os.Stat(filepath.Join(member, ".darkshell", "mcp.json")); err == nil {
		t.Fatal("the pool member has an MCP config before any claim")
	}

	out := e.mustDS("-o", "json", "sandbox", "create", "--from", bp, "--name", "m1")
	var rep struct {
		Phases []struct{ Phase, Detail string } `json:"phases"`
	}
	json.Unmarshal([]byte(out), &rep)
	var phases []string
	for _, p := range rep.Phases {
		phases = append(phases, p.Phase)
	}
	if len(rep.Phases) == 0 || !strings.Contains(rep.Phases[0].Detail, "claimed from warm pool poolmcp") ||
		strings.Join(phases, ",") != "create,uploads,mcp,forwards,workdir,ready" {
		t.Fatalf("create --from with a pool: %s", out)
	}
	every := e.mcpURL("m1", "every")
	out, errOut, code := e.ds("exec", "m1", "--", "/sandbox/project/mcpclient", "-url", every, "call", "get-env", "{}")
	if code != 0 || !strings.Contains(out, sec) {
		t.Fatalf("the bridged server in the claimed sandbox lacks the provider's credential (exit %d): %s %s", code, out, errOut)
	}
	if got := e.mustBash("m1", `env | grep -c "`+sec+`" || true`); strings.TrimSpace(got) != "0" {
		t.Fatalf("the credential reached the claimed sandbox's env")
	}
	if l := e.mustDS("forward", "list", "m1"); !strings.Contains(l, fmt.Sprint(fwdPort)) {
		t.Fatalf("forward list m1: %s", l)
	}
	if got := e.mustBash("m1", "test -d /sandbox/out && echo workdir"); got != "workdir\n" {
		t.Fatalf("workdir: %q", got)
	}
}
