package mcp

import (
	"context"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/bohica-labs/darkshell/controller/provider"
	"github.com/bohica-labs/darkshell/controller/session"
	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/protocol"
	"github.com/bohica-labs/darkshell/sandboxd"
)

// TestMain doubles as a stdio MCP server (DS_TEST_MCP_SERVER=1) so the
// tests run real server processes without node.
func TestMain(m *testing.M) {
	if os.Getenv("DS_TEST_MCP_SERVER") == "1" {
		s := sdk.NewServer(&sdk.Implementation{Name: "envsrv", Version: "1"}, nil)
		type none struct{}
		sdk.AddTool(s, &sdk.Tool{Name: "token"}, func(ctx context.Context, req *sdk.CallToolRequest, _ none) (*sdk.CallToolResult, any, error) {
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "token=" + os.Getenv("TOKEN")}}}, nil, nil
		})
		sdk.AddTool(s, &sdk.Tool{Name: "forbidden"}, func(ctx context.Context, req *sdk.CallToolRequest, _ none) (*sdk.CallToolResult, any, error) {
			return &sdk.CallToolResult{}, nil, nil
		})
		_ = s.Run(context.Background(), &sdk.StdioTransport{})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestManagerBridgeAndInSandbox(t *testing.T) {
	h, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Create(&state.Sandbox{Name: "sb", Driver: "ssh", Created: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	ps := provider.Open(h)
	if err := ps.Create(&provider.Provider{Name: "p", Type: "generic", Credentials: map[string]string{"TOKEN": "tok-one-1234"}}); err != nil {
		t.Fatal(err)
	}
	ws := t.TempDir()
	srv := sandboxd.New(sandboxd.Options{DefaultDir: ws})
	ctx, cancel := context.WithCancel(context.Background())
	var smu sync.Mutex
	dial := func() *session.Session {
		a, b := net.Pipe()
		go srv.ServeConn(ctx, b)
		s, err := session.Dial(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	sess := dial()
	current := func(context.Context, string) (*session.Session, error) {
		smu.Lock()
		defer smu.Unlock()
		if !sess.Alive() {
			sess = dial() // the daemon's pool re-dials the same way
		}
		return sess, nil
	}
	t.Cleanup(func() {
		smu.Lock()
		sess.Close()
		smu.Unlock()
		cancel()
		c, cc := context.WithTimeout(context.Background(), 2*time.Second)
		defer cc()
		srv.Close(c)
	})
	m := NewManager(Options{Home: h, Providers: ps, Session: current})
	t.Cleanup(m.Close)

	self, _ := os.Executable()
	actx, acancel := context.WithTimeout(ctx, 30*time.Second)
	defer acancel()
	info, err := m.Add(actx, &Record{Sandbox: "sb", Name: "br", Transport: protocol.MCPBridge, Argv: []string{self},
		Env: []string{"DS_TEST_MCP_SERVER=1"}, Providers: []string{"p"}, Deny: []string{"forbid*"}})
	if err != nil {
		t.Fatal(err)
	}
	call := func(url, tool string) (string, error) {
		cs, err := sdk.NewClient(&sdk.Implementation{Name: "t", Version: "1"}, nil).Connect(actx, &sdk.StreamableClientTransport{Endpoint: url}, nil)
		if err != nil {
			return "", err
		}
		defer cs.Close()
		r, err := cs.CallTool(actx, &sdk.CallToolParams{Name: tool})
		if err != nil {
			return "", err
		}
		return r.Content[0].(*sdk.TextContent).Text, nil
	}
	if got, err := call(info.URL, "token"); err != nil || got != "token=tok-one-1234" {
		t.Fatalf("bridge call = %q, %v", got, err)
	}
	if _, err := call(info.URL, "forbidden"); err == nil || !strings.Contains(err.Error(), `deny-tool "forbid*"`) {
		t.Fatalf("denied call: %v", err)
	}
	// The session drops: the bridge relinks on a new one, same URL, same server.
	pid := m.running["sb/br"].proxy.Status().PID
	smu.Lock()
	sess.Close()
	smu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := call(info.URL, "token")
		if err == nil && got == "token=tok-one-1234" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no relink after the session dropped: %q, %v", got, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if p := m.running["sb/br"].proxy.Status().PID; p != pid {
		t.Fatalf("a session drop restarted the host server (pid %d -> %d)", pid, p)
	}

	// Rotation: the next call runs on a server with the new value.
	if _, err := ps.Update("p", map[string]string{"TOKEN": "tok-two-5678"}); err != nil {
		t.Fatal(err)
	}
	if n := m.Rotate("p"); n != 1 {
		t.Fatalf("rotated %d bridges", n)
	}
	if got, err := call(info.URL, "token"); err != nil || got != "token=tok-two-5678" {
		t.Fatalf("call after rotation = %q, %v", got, err)
	}

	in, err := m.Add(actx, &Record{Sandbox: "sb", Name: "in", Transport: protocol.MCPInSandbox, Argv: []string{self},
		Env: []string{"DS_TEST_MCP_SERVER=1", "TOKEN=plain"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := call(in.URL, "token"); err != nil || got != "token=plain" {
		t.Fatalf("in-sandbox call = %q, %v", got, err)
	}
	cfg, err := os.ReadFile(ws + "/.darkshell/mcp.json")
	if err != nil || !strings.Contains(string(cfg), info.URL) || !strings.Contains(string(cfg), in.URL) {
		t.Fatalf("mcp.json = %s, %v", cfg, err)
	}
	l, err := m.List("sb")
	if err != nil || len(l) != 2 {
		t.Fatalf("list = %+v, %v", l, err)
	}
	for _, s := range l {
		if s.State != "running" || s.PID <= 0 {
			t.Errorf("%s: %+v", s.Name, s)
		}
	}
	evs, _ := m.Logs("sb", "", 0)
	if len(evs) < 4 {
		t.Fatalf("call log has %d events", len(evs))
	}
	if err := m.Remove("sb", "in"); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove("sb", "br"); err != nil {
		t.Fatal(err)
	}
	if l, _ := m.List("sb"); len(l) != 0 {
		t.Fatalf("after remove: %+v", l)
	}
}
