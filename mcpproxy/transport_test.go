package mcpproxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestStreamableHTTPWire checks the endpoint at the HTTP level against the
// MCP Streamable HTTP transport: session id on initialize, protocol version
// header, SSE or JSON responses, the GET stream, DELETE, and errors for
// malformed and oversized bodies.
func TestStreamableHTTPWire(t *testing.T) {
	p, err := New(Options{Name: "up", Transport: upstream(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)

	do := func(method, body, sid string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if sid != "" {
			req.Header.Set("Mcp-Session-Id", sid)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	read := func(r *http.Response) string {
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		return string(b)
	}
	const v = "2025-06-18"
	r := do("POST", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"`+v+`","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`, "", nil)
	sid := r.Header.Get("Mcp-Session-Id")
	if body := read(r); r.StatusCode != 200 || sid == "" || !strings.Contains(body, `"protocolVersion":"`+v+`"`) {
		t.Fatalf("initialize: %d sid=%q %s", r.StatusCode, sid, body)
	}
	pv := map[string]string{"MCP-Protocol-Version": v}
	if r := do("POST", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, sid, pv); r.StatusCode != 202 {
		t.Fatalf("initialized: %d %s", r.StatusCode, read(r))
	}
	r = do("POST", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, sid, pv)
	if ct, body := r.Header.Get("Content-Type"), read(r); r.StatusCode != 200 || !strings.Contains(ct, "text/event-stream") || !strings.Contains(body, `"name":"echo"`) {
		t.Fatalf("tools/list: %d %s %s", r.StatusCode, ct, body)
	}
	// The standalone GET stream opens.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	greq, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	greq.Header.Set("Accept", "text/event-stream")
	greq.Header.Set("Mcp-Session-Id", sid)
	greq.Header.Set("MCP-Protocol-Version", v)
	if gr, err := http.DefaultClient.Do(greq); err != nil || gr.StatusCode != 200 || !strings.Contains(gr.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("GET stream: %v %+v", err, gr)
	} else {
		gr.Body.Close()
	}
	cancel()
	// Malformed JSON-RPC, oversized bodies, unknown sessions.
	if r := do("POST", `{"jsonrpc":"2.0","id":3,"method":`, sid, pv); r.StatusCode != 400 {
		t.Fatalf("malformed: %d %s", r.StatusCode, read(r))
	}
	if r := do("POST", `{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{"x":"`+strings.Repeat("a", MaxBody)+`"}}`, sid, pv); r.StatusCode != 413 {
		t.Fatalf("oversized: %d", r.StatusCode)
	}
	if r := do("POST", `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`, "no-such-session", pv); r.StatusCode != 404 {
		t.Fatalf("unknown session: %d %s", r.StatusCode, read(r))
	}
	// DELETE ends the session.
	if r := do("DELETE", "", sid, pv); r.StatusCode >= 300 {
		t.Fatalf("DELETE: %d %s", r.StatusCode, read(r))
	}
	if r := do("POST", `{"jsonrpc":"2.0","id":6,"method":"tools/list"}`, sid, pv); r.StatusCode != 404 {
		t.Fatalf("after DELETE: %d %s", r.StatusCode, read(r))
	}
}
