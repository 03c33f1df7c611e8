package mcpproxy

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/bohica-labs/darkshell/protocol"
)

func TestDecideRequestRules(t *testing.T) {
	allowRead := Policy{Rules: []protocol.MCPRule{
		{Method: "tools/list"},
		{Method: "tools/call", Tool: []string{"read_*", "list_*"}},
		{Method: "tools/call", Tool: []string{"write_file"}, Params: map[string][]string{"arguments.path": {"/sandbox/out/*"}}},
	}, DenyRules: []protocol.MCPRule{{Method: "tools/call", Tool: []string{"read_secret*"}}}}
	for _, c := range []struct {
		name         string
		p            Policy
		method, tool string
		params       string
		ok           bool
		rule         string
	}{
		{"no rules", Policy{}, "prompts/list", "", "", true, ""},
		{"listed method", allowRead, "tools/list", "", "", true, `rules {method: "tools/list"}`},
		{"method without rule", allowRead, "prompts/list", "", "", false, "prompts/list is not matched by any rule"},
		{"tool allowed", allowRead, "tools/call", "read_file", `{"name":"read_file"}`, true, `tool: {any: ["read_*" "list_*"]}`},
		{"tool denied by deny_rules", allowRead, "tools/call", "read_secret_key", `{"name":"read_secret_key"}`, false, `deny_rules {method: "tools/call", tool: "read_secret*"}`},
		{"tool not listed", allowRead, "tools/call", "delete_file", `{"name":"delete_file"}`, false, `tools/call "delete_file" is not matched`},
		{"params met", allowRead, "tools/call", "write_file", `{"name":"write_file","arguments":{"path":"/sandbox/out/a.txt"}}`, true, "params"},
		{"params unmet", allowRead, "tools/call", "write_file", `{"name":"write_file","arguments":{"path":"/etc/passwd"}}`, false, "not matched"},
		{"params missing", allowRead, "tools/call", "write_file", `{"name":"write_file","arguments":{}}`, false, "not matched"},
		{"params not a string", allowRead, "tools/call", "write_file", `{"name":"write_file","arguments":{"path":["/sandbox/out/a"]}}`, false, "not matched"},
		{"deny only", Policy{DenyRules: []protocol.MCPRule{{Method: "resources/*"}}}, "resources/read", "", "", false, "deny_rules"},
		{"deny only, other method", Policy{DenyRules: []protocol.MCPRule{{Method: "resources/*"}}}, "tools/call", "x", "", true, ""},
		{"globs and rules both apply", Policy{Deny: []string{"read_file"}, Rules: allowRead.Rules}, "tools/call", "read_file", "", false, `deny-tool "read_file"`},
		{"star method", Policy{Rules: []protocol.MCPRule{{Method: "*"}}}, "completion/complete", "", "", true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			ok, rule := c.p.DecideRequest(c.method, c.tool, json.RawMessage(c.params))
			if ok != c.ok || !strings.Contains(rule, c.rule) {
				t.Fatalf("DecideRequest(%s, %s) = %v %q, want %v %q", c.method, c.tool, ok, rule, c.ok, c.rule)
			}
		})
	}
	// Listing: a tool whose only allow rule has params is listed; a deny
	// rule with params does not hide it.
	withParams := Policy{Rules: allowRead.Rules, DenyRules: []protocol.MCPRule{
		{Method: "tools/call", Tool: []string{"list_dir"}, Params: map[string][]string{"arguments.path": {"/etc*"}}}}}
	for tool, want := range map[string]bool{"write_file": true, "list_dir": true, "read_file": true, "delete_file": false} {
		if ok, _ := withParams.Decide(tool); ok != want {
			t.Errorf("Decide(%s) = %v, want %v", tool, ok, want)
		}
	}
	if ok, _ := withParams.DecideRequest("tools/call", "list_dir", json.RawMessage(`{"name":"list_dir","arguments":{"path":"/etc/ssh"}}`)); ok {
		t.Error("the params deny rule did not refuse the call")
	}
}

func TestMCPRuleValidate(t *testing.T) {
	for _, c := range []struct {
		r    protocol.MCPRule
		want string
	}{
		{protocol.MCPRule{Method: "tools/call", Tool: []string{"a*"}}, ""},
		{protocol.MCPRule{Method: "*", Tool: []string{"a"}}, ""},
		{protocol.MCPRule{}, "method is required"},
		{protocol.MCPRule{Method: "tools/list", Tool: []string{"a"}}, "tools/call only"},
		{protocol.MCPRule{Method: "tools/call", Tool: []string{"[ab]"}}, "only * and ?"},
		{protocol.MCPRule{Method: "tools/call", Params: map[string][]string{"arguments..x": {"a"}}}, "dotted"},
		{protocol.MCPRule{Method: "tools/call", Params: map[string][]string{"name": {}}}, "no glob"},
	} {
		err := c.r.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: %v, want %q", c.r, err, c.want)
		}
	}
	for _, c := range []struct {
		g, s string
		ok   bool
	}{
		{"*", "tools/call", true}, {"tools/*", "tools/call", true}, {"t?ols/call", "tools/call", true},
		{"read_*_file", "read_big_file", true}, {"read_*_file", "read_file", false}, {"*a*b*c", "xaxbxbc", true},
		{"abc", "abcd", false}, {"", "", true}, {"**", "", true},
	} {
		if protocol.MatchMCPGlob(c.g, c.s) != c.ok {
			t.Errorf("MatchMCPGlob(%q, %q) != %v", c.g, c.s, c.ok)
		}
	}
}

// TestProxyRules: OpenShell-shaped rules filter tools/list, refuse calls
// and methods with the rule named, and let allowed calls through.
func TestProxyRules(t *testing.T) {
	var mu sync.Mutex
	var events []Event
	pol := Policy{
		Rules: []protocol.MCPRule{
			{Method: "tools/list"},
			{Method: "tools/call", Tool: []string{"echo"}, Params: map[string][]string{"arguments.text": {"ok *"}}},
			{Method: "tools/call", Tool: []string{"slow", "danger_*"}},
		},
		DenyRules: []protocol.MCPRule{{Method: "tools/call", Tool: []string{"danger_*"}}},
	}
	p, err := New(Options{Name: "up", Transport: upstream(t), Policy: pol,
		OnEvent: func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: srv.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	tl, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, x := range tl.Tools {
		names = append(names, x.Name)
	}
	slices.Sort(names)
	if strings.Join(names, ",") != "echo,slow" {
		t.Fatalf("tools/list = %v, want echo and slow", names)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "danger_rm", Arguments: map[string]any{"text": "x"}}); err == nil ||
		!strings.Contains(err.Error(), `deny_rules {method: "tools/call", tool: "danger_*"}`) {
		t.Fatalf("denied call: %v", err)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "not ok"}}); err == nil ||
		!strings.Contains(err.Error(), "not matched by any rule") {
		t.Fatalf("call with params no rule allows: %v", err)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "ok fine"}})
	if err != nil || res.Content[0].(*mcp.TextContent).Text != "ok fine" {
		t.Fatalf("allowed call: %v %v", res, err)
	}
	if _, err := cs.ListPrompts(ctx, nil); err == nil || !strings.Contains(err.Error(), "method prompts/list is denied") {
		t.Fatalf("prompts/list without a rule: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 4 || events[0].Decision != "deny" || events[1].Decision != "deny" || events[2].Decision != "allow" ||
		events[3].Method != "prompts/list" || events[3].Kind != KindPolicy {
		t.Fatalf("events = %+v", events)
	}
	if st := p.Status(); st.Calls != 1 || st.Denied != 3 {
		t.Fatalf("status = %+v", st)
	}
}

// TestEndpointPolicy: a policy file's rules apply on top of the server's
// own; a request must pass both.
func TestEndpointPolicy(t *testing.T) {
	p := Policy{Deny: []string{"drop_*"}, Endpoint: &Policy{
		Rules:     []protocol.MCPRule{{Method: "tools/list"}, {Method: "tools/call", Tool: []string{"read_*", "drop_*"}}},
		DenyRules: []protocol.MCPRule{{Method: "tools/call", Tool: []string{"read_secret"}}},
	}}
	for _, c := range []struct {
		method, tool string
		ok           bool
		rule         string
	}{
		{"tools/call", "read_file", true, ""},
		{"tools/call", "read_secret", false, "policy file deny_rules"},
		{"tools/call", "drop_table", false, `deny-tool "drop_*"`},
		{"tools/call", "write_file", false, "policy file tools/call \"write_file\" is not matched"},
		{"tools/list", "", true, ""},
		{"prompts/list", "", false, "policy file prompts/list is not matched"},
	} {
		ok, rule := p.DecideRequest(c.method, c.tool, nil)
		if ok != c.ok || !strings.Contains(rule, c.rule) {
			t.Errorf("%s %s: %v %q, want %v %q", c.method, c.tool, ok, rule, c.ok, c.rule)
		}
	}
	if ok, _ := p.Decide("read_secret"); ok {
		t.Error("tools/list shows a tool the policy file denies")
	}
	if !p.HasRules() || (Policy{Endpoint: &Policy{}}).HasRules() {
		t.Error("HasRules")
	}
	if err := (Policy{Endpoint: &Policy{Rules: []protocol.MCPRule{{}}}}).Validate(); err == nil {
		t.Error("a bad endpoint rule was accepted")
	}
}
