package mcpproxy

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type echoArgs struct {
	Text  string `json:"text"`
	Token string `json:"token,omitempty"`
}

// upstream is an in-process MCP server with an echo tool, a denied tool and
// a tool that reports progress.
func upstream(t testing.TB) func(context.Context) (mcp.Transport, error) {
	return func(ctx context.Context) (mcp.Transport, error) {
		s := mcp.NewServer(&mcp.Implementation{Name: "up", Version: "1"}, nil)
		mcp.AddTool(s, &mcp.Tool{Name: "echo"}, func(ctx context.Context, req *mcp.CallToolRequest, a echoArgs) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: a.Text}}}, nil, nil
		})
		mcp.AddTool(s, &mcp.Tool{Name: "danger_rm"}, func(ctx context.Context, req *mcp.CallToolRequest, a echoArgs) (*mcp.CallToolResult, any, error) {
			t.Error("denied tool reached the upstream")
			return &mcp.CallToolResult{}, nil, nil
		})
		mcp.AddTool(s, &mcp.Tool{Name: "slow"}, func(ctx context.Context, req *mcp.CallToolRequest, a echoArgs) (*mcp.CallToolResult, any, error) {
			for i := 1; i <= 3; i++ {
				_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: float64(i), Total: 3})
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil, nil
		})
		ct, st := mcp.NewInMemoryTransports()
		go func() { _ = s.Run(context.Background(), st) }()
		return ct, nil
	}
}

func TestProxyPolicyProgressAndEvents(t *testing.T) {
	var mu sync.Mutex
	var events []Event
	red := &Redactor{}
	red.SetValues([]string{"sekrit-value-123"})
	p, err := New(Options{Name: "up", Transport: upstream(t), Policy: Policy{Deny: []string{"danger_*"}}, Redactor: red,
		OnEvent: func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var progress []float64
	var pmu sync.Mutex
	c := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			pmu.Lock()
			progress = append(progress, r.Params.Progress)
			pmu.Unlock()
		}})
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
	if strings.Contains(strings.Join(names, ","), "danger_rm") || len(names) != 2 {
		t.Fatalf("tools/list = %v, want echo and slow only", names)
	}
	_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "danger_rm", Arguments: map[string]any{"text": "x"}})
	if err == nil || !strings.Contains(err.Error(), `deny-tool "danger_*"`) {
		t.Fatalf("denied call: err = %v, want the policy named", err)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi sekrit-value-123", "token": "abc"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Content[0].(*mcp.TextContent).Text; got != "hi sekrit-value-123" {
		t.Fatalf("echo = %q", got)
	}
	params := &mcp.CallToolParams{Name: "slow", Arguments: map[string]any{"text": "x"}}
	params.SetProgressToken("my-token")
	if _, err := cs.CallTool(ctx, params); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pmu.Lock()
		n := len(progress)
		pmu.Unlock()
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("progress notifications = %v, want 3", progress)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 3 || events[0].Decision != "deny" || events[1].Tool != "echo" {
		t.Fatalf("events = %+v", events)
	}
	b, _ := json.Marshal(events)
	if strings.Contains(string(b), "sekrit-value-123") || strings.Contains(string(b), `"abc"`) {
		t.Fatalf("events leak a secret: %s", b)
	}
	if st := p.Status(); st.State != StateRunning || st.Calls != 2 || st.Denied != 1 {
		t.Fatalf("status = %+v", st)
	}
}

func TestPolicyDecide(t *testing.T) {
	for _, c := range []struct {
		p    Policy
		tool string
		ok   bool
	}{
		{Policy{}, "x", true},
		{Policy{Deny: []string{"x*"}}, "xy", false},
		{Policy{Allow: []string{"get_*"}}, "get_a", true},
		{Policy{Allow: []string{"get_*"}}, "put_a", false},
		{Policy{Allow: []string{"*"}, Deny: []string{"put_*"}}, "put_a", false},
	} {
		if ok, _ := c.p.Decide(c.tool); ok != c.ok {
			t.Errorf("%+v.Decide(%q) = %v", c.p, c.tool, ok)
		}
	}
	if err := (Policy{Deny: []string{"["}}).Validate(); err == nil {
		t.Error("bad glob accepted")
	}
}
