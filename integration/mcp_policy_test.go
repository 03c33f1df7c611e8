package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestMCPHTTPPolicyFileRules: the `protocol: mcp` rules a sandbox's policy
// file (OpenShell format) sets for a remote MCP server's URL apply to that
// server behind the http transport, with the server's own rules: tools/list
// is filtered, calls are refused naming the policy file's rule.
func TestMCPHTTPPolicyFileRules(t *testing.T) {
	e := newLocalEnv(t)
	ws := mcpWorkspace(t, "")
	s := mcp.NewServer(&mcp.Implementation{Name: "remote", Version: "1"}, nil)
	type none struct{}
	for _, name := range []string{"whoami", "whoami_admin", "delete_everything", "search_docs"} {
		mcp.AddTool(s, &mcp.Tool{Name: name}, func(ctx context.Context, req *mcp.CallToolRequest, _ none) (*mcp.CallToolResult, any, error) {
			if name != "whoami" {
				t.Errorf("%s reached the remote server", name)
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "called " + name}}}, nil, nil
		})
	}
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	port := l.Addr().(*net.TCPAddr).Port

	pol := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(pol, fmt.Appendf(nil, `version: 1
network_policies:
  remote_mcp:
    endpoints:
      - host: 127.0.0.1
        port: %d
        path: /mcp
        protocol: mcp
        rules:
          - allow: { method: initialize }
          - allow: { method: tools/list }
          - allow: { method: tools/call, tool: "whoami*" }
          - allow: { method: tools/call, tool: "search_*" }
        deny_rules:
          - { method: tools/call, tool: whoami_admin }
      - host: 127.0.0.1
        port: %d
        path: /other
        protocol: mcp
        rules:
          - allow: { method: tools/call, tool: delete_everything }
    binaries:
      - { path: /usr/bin/node }
`, port, port), 0o600)
	if out, errOut, code := e.ds("policy", "validate", pol); code != 0 {
		t.Fatalf("policy validate: %s %s", out, errOut)
	}
	e.createLocal("mp", "--workspace", ws, "--policy", pol)
	// The server's own rules apply as well: search_* is refused here.
	e.mustDS("mcp", "add", "mp", "remote", "--transport", "http", "--url", fmt.Sprintf("http://127.0.0.1:%d/mcp", port), "--deny-tool", "search_*")
	url := e.mcpURL("mp", "remote")
	out, _, _ := e.ds("exec", "mp", "--", "/sandbox/mcpclient", "-url", url, "tools")
	var listed map[string]any
	json.Unmarshal([]byte(out), &listed)
	if got := strings.Join(strs(listed["tools"]), ","); got != "whoami" {
		t.Fatalf("tools/list under the policy file's rules = %q, want whoami (%s)", got, out)
	}
	if r := e.client("mp", "-url", url, "call", "whoami", "{}"); r["text"] != "called whoami" {
		t.Fatalf("allowed call = %v", r)
	}
	for tool, want := range map[string]string{
		"whoami_admin":      `policy file deny_rules {method: "tools/call", tool: "whoami_admin"}`,
		"delete_everything": `policy file tools/call "delete_everything" is not matched by any rule`,
		"search_docs":       `deny-tool "search_*"`,
	} {
		if r := e.client("mp", "-url", url, "call", tool, "{}"); !strings.Contains(fmt.Sprint(r["call_error"]), want) {
			t.Errorf("call %s = %v, want an error with %q", tool, r, want)
		}
	}
	// Rules given to mcp add (METHOD[:TOOL]) apply with the policy file's.
	e.mustDS("mcp", "add", "mp", "remote2", "--transport", "http", "--url", fmt.Sprintf("http://127.0.0.1:%d/mcp", port),
		"--rule", "tools/list", "--rule", "tools/call:who*", "--deny-rule", "tools/call:whoami")
	url2 := e.mcpURL("mp", "remote2")
	if r := e.client("mp", "-url", url2, "call", "whoami", "{}"); !strings.Contains(fmt.Sprint(r["call_error"]), `deny_rules {method: "tools/call", tool: "whoami"}`) {
		t.Fatalf("call denied by --deny-rule = %v", r)
	}
	if _, errOut, code := e.ds("mcp", "add", "mp", "bad", "--transport", "http", "--url", "http://127.0.0.1:1/mcp", "--rule", "tools/list:x"); code != 2 || !strings.Contains(errOut, "tools/call only") {
		t.Fatalf("bad --rule: %d %q", code, errOut)
	}
	e.mustDS("mcp", "remove", "mp", "remote2")
	lj := e.mustDS("mcp", "list", "mp", "-o", "json")
	var ls []struct {
		EndpointPolicies []string `json:"endpoint_policies"`
		Denied           int      `json:"denied"`
	}
	if err := json.Unmarshal([]byte(lj), &ls); err != nil || len(ls) != 1 || strings.Join(ls[0].EndpointPolicies, ",") != "remote_mcp" || ls[0].Denied != 3 {
		t.Fatalf("mcp list does not name the policy file's rules: %v %s", err, lj)
	}
}
