package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestMCPHTTP: a remote Streamable HTTP server (the Go SDK's, on the host's
// loopback) fronted by the bridge: the provider's token is sent by the host,
// policy and logging apply, and the sandbox never sees the token.
func TestMCPHTTP(t *testing.T) {
	e := newLocalEnv(t)
	ws := mcpWorkspace(t, "")
	e.createLocal("mh", "--workspace", ws)
	tok := secret(t)

	s := mcp.NewServer(&mcp.Implementation{Name: "remote", Version: "1"}, nil)
	type none struct{}
	mcp.AddTool(s, &mcp.Tool{Name: "whoami"}, func(ctx context.Context, req *mcp.CallToolRequest, _ none) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "authorized"}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "delete_everything"}, func(ctx context.Context, req *mcp.CallToolRequest, _ none) (*mcp.CallToolResult, any, error) {
		t.Error("a denied tool reached the remote server")
		return &mcp.CallToolResult{}, nil, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+tok {
			http.Error(w, "missing or wrong token", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	e.mustDS("provider", "create", "--name", "remote-token", "--credential", "TOKEN="+tok)
	e.mustDS("mcp", "add", "mh", "remote", "--transport", "http", "--url", fmt.Sprintf("http://%s/mcp", l.Addr()),
		"--provider", "remote-token", "--deny-tool", "delete_*")
	url := e.mcpURL("mh", "remote")
	if r := e.client("mh", "-url", url, "call", "whoami", "{}"); r["text"] != "authorized" {
		t.Fatalf("call through the http transport = %v", r)
	}
	if r := e.client("mh", "-url", url, "call", "delete_everything", "{}"); !strings.Contains(fmt.Sprint(r["call_error"]), `deny-tool "delete_*"`) {
		t.Fatalf("denied call = %v", r)
	}
	if l := e.mcpList("mh")["remote"]; l.Transport != "http" || l.State != "running" || l.Tools != 1 || l.Calls != 1 || l.Denied != 1 {
		t.Fatalf("mcp list = %+v", l)
	}
	e.scanSandbox("mh", ws, tok)
}
