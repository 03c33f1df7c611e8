package mcpproxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// stdioUpstream is a stand-in for a stdio MCP server process: the SDK's
// server over a pair of pipes with newline-delimited JSON, the same framing
// a real server's stdin and stdout carry (the integration tests run real npm
// servers). seen counts every line the server read, raw.
type stdioUpstream struct {
	mu   sync.Mutex
	last []string // the last lines the server read
}

func (u *stdioUpstream) read(b string) {
	u.mu.Lock()
	u.last = append(u.last, b)
	u.mu.Unlock()
}

func (u *stdioUpstream) count(sub string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, l := range u.last {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

func (u *stdioUpstream) seen(sub string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, l := range u.last {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// tap copies every line it reads to the upstream's record.
type tap struct {
	r   io.Reader
	u   *stdioUpstream
	buf []byte
}

func (t *tap) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.buf = append(t.buf, p[:n]...)
	for {
		i := strings.IndexByte(string(t.buf), '\n')
		if i < 0 {
			break
		}
		t.u.read(string(t.buf[:i]))
		t.buf = t.buf[i+1:]
	}
	return n, err
}

func (u *stdioUpstream) open(t testing.TB) func(context.Context) (io.Reader, io.WriteCloser, error) {
	return func(ctx context.Context) (io.Reader, io.WriteCloser, error) {
		s := mcp.NewServer(&mcp.Implementation{Name: "up", Version: "1"}, nil)
		mcp.AddTool(s, &mcp.Tool{Name: "echo"}, func(ctx context.Context, req *mcp.CallToolRequest, a echoArgs) (*mcp.CallToolResult, any, error) {
			if a.Text == "fail" {
				return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "failed"}}}, nil, nil
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: a.Text}}}, nil, nil
		})
		mcp.AddTool(s, &mcp.Tool{Name: "danger_rm"}, func(ctx context.Context, req *mcp.CallToolRequest, a echoArgs) (*mcp.CallToolResult, any, error) {
			t.Error("denied tool reached the upstream")
			return &mcp.CallToolResult{}, nil, nil
		})
		mcp.AddTool(s, &mcp.Tool{Name: "wait"}, func(ctx context.Context, req *mcp.CallToolRequest, a echoArgs) (*mcp.CallToolResult, any, error) {
			<-ctx.Done()
			return nil, nil, ctx.Err()
		})
		toUp, fromProxy := io.Pipe()
		fromUp, toProxy := io.Pipe()
		go func() {
			_ = s.Run(context.Background(), &mcp.IOTransport{Reader: io.NopCloser(&tap{r: toUp, u: u}), Writer: toProxy})
			toProxy.Close()
			toUp.Close()
		}()
		return fromUp, fromProxy, nil
	}
}

type rawClient struct {
	t   *testing.T
	url string
	sid string
	pv  string
}

func (c *rawClient) post(body string, hdr map[string]string) (*http.Response, string) {
	c.t.Helper()
	req, _ := http.NewRequest("POST", c.url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if c.sid != "" {
		req.Header.Set("Mcp-Session-Id", c.sid)
	}
	if c.pv != "" {
		req.Header.Set("MCP-Protocol-Version", c.pv)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// newRelay starts a proxy over a stdio stand-in and a raw client with an
// initialized session.
func newRelay(t *testing.T, pol Policy, red *Redactor) (*Proxy, *rawClient, *stdioUpstream, func() []Event) {
	t.Helper()
	u := &stdioUpstream{}
	var mu sync.Mutex
	var events []Event
	p, err := New(Options{Name: "up", Stdio: u.open(t), Policy: pol, Redactor: red,
		OnEvent: func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	c := &rawClient{t: t, url: srv.URL}
	const v = "2025-06-18"
	r, body := c.post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"`+v+`","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`, nil)
	if c.sid = r.Header.Get("Mcp-Session-Id"); r.StatusCode != 200 || c.sid == "" {
		t.Fatalf("initialize: %d %s", r.StatusCode, body)
	}
	c.pv = v
	if r, body := c.post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil); r.StatusCode != 202 {
		t.Fatalf("initialized: %d %s", r.StatusCode, body)
	}
	return p, c, u, func() []Event { mu.Lock(); defer mu.Unlock(); return append([]Event(nil), events...) }
}

// TestRelayIDs: ids of every JSON type the protocol allows come back as
// the client wrote them, byte for byte (the SDK path would renumber a large
// integer through float64), and go upstream rewritten.
func TestRelayIDs(t *testing.T) {
	_, c, u, _ := newRelay(t, Policy{}, nil)
	for _, id := range []string{`7`, `0`, `-3`, `12345678901234567890`, `1.5e3`, `"abc"`, `""`, `"dsr-1"`, `"\u00e9\"x"`, `"😀"`} {
		r, body := c.post(`{"jsonrpc":"2.0","id":`+id+`,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`, nil)
		if r.StatusCode != 200 || r.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("id %s: %d %s %s (want the relay's application/json)", id, r.StatusCode, r.Header.Get("Content-Type"), body)
		}
		if !strings.Contains(body, `"id":`+id+`,`) && !strings.HasSuffix(body, `"id":`+id+`}`) {
			t.Errorf("id %s not preserved: %s", id, body)
		}
		if !strings.Contains(body, `"text":"hi"`) {
			t.Errorf("id %s: result lost: %s", id, body)
		}
	}
	if !u.seen(`"id":"dsr-`) {
		t.Error("the upstream never saw a rewritten id")
	}
}

// TestRelayPolicy: tool rules are applied to the raw frame, including the
// tricks a naive scan would miss (escaped keys, duplicate names: the
// upstream's JSON.parse takes the last), and events report each call.
func TestRelayPolicy(t *testing.T) {
	red := &Redactor{}
	red.SetValues([]string{"sekrit-value-123"})
	p, c, u, events := newRelay(t, Policy{Deny: []string{"danger_*"}}, red)
	call := func(params string) (int, string) {
		t.Helper()
		r, body := c.post(`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":`+params+`}`, nil)
		return r.StatusCode, body
	}
	for _, params := range []string{
		`{"name":"danger_rm","arguments":{}}`,
		`{"name":"echo","name":"danger_rm"}`,
		`{"na\u006de":"danger_rm"}`,
		`{"name":"danger\u005frm"}`,
		`{"name":"echo","arguments":{"text":"x"},"name":"danger_rm"}`,
	} {
		st, body := call(params)
		if st != 200 || !strings.Contains(body, `deny-tool \"danger_*\"`) || !strings.Contains(body, `"id":9`) {
			t.Errorf("%s: want a refusal naming the rule, got %d %s", params, st, body)
		}
	}
	if u.seen("danger") {
		t.Error("a denied call reached the upstream")
	}
	// Allowed call, with a secret in the arguments and an isError result.
	st, body := call(`{"name":"echo","arguments":{"text":"fail","token":"sekrit-value-123"}}`)
	if st != 200 || !strings.Contains(body, `"isError":true`) {
		t.Fatalf("allowed call: %d %s", st, body)
	}
	st, body = call(`{"name":"echo","arguments":{"text":"ok"}}`)
	if st != 200 || !strings.Contains(body, `"text":"ok"`) {
		t.Fatalf("allowed call: %d %s", st, body)
	}
	// Call events are reported after the client has its answer.
	deadline := time.Now().Add(5 * time.Second)
	for len(events()) < 7 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	var calls, denials int
	var sawErr bool
	for _, e := range events() {
		if e.Session != c.sid || e.Server != "up" {
			t.Errorf("event without its session or server: %+v", e)
		}
		switch e.Kind {
		case KindPolicy:
			denials++
			if e.Tool != "danger_rm" || e.Decision != "deny" || e.Rule == "" {
				t.Errorf("denial event: %+v", e)
			}
		case KindCall:
			calls++
			if e.Tool != "echo" || e.ResultSize == 0 || e.DurationMs <= 0 {
				t.Errorf("call event: %+v", e)
			}
			if strings.Contains(string(e.Args), "sekrit") {
				t.Errorf("secret in the logged arguments: %s", e.Args)
			}
			sawErr = sawErr || e.IsError
		}
	}
	if calls != 2 || denials != 5 || !sawErr {
		t.Errorf("events: %d calls, %d denials, isError seen %v; want 2, 5, true", calls, denials, sawErr)
	}
	if s := p.Status(); s.Calls != 2 || s.Denied != 5 {
		t.Errorf("status counts: %+v", s)
	}
}

// TestRelayRules: OpenShell-shaped rules with params conditions, judged on
// the raw params.
func TestRelayRules(t *testing.T) {
	pol := Policy{Rules: []protocol.MCPRule{{Method: "tools/call", Tool: []string{"echo"}, Params: map[string][]string{"arguments.text": {"ok*"}}}}}
	_, c, u, _ := newRelay(t, pol, nil)
	r, body := c.post(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"ok-1"}}}`, nil)
	if r.StatusCode != 200 || !strings.Contains(body, `"text":"ok-1"`) {
		t.Fatalf("allowed by params: %s", body)
	}
	_, body = c.post(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"bad"}}}`, nil)
	if !strings.Contains(body, "is not matched by any rule") {
		t.Fatalf("refused by params: %s", body)
	}
	_, body = c.post(`{"jsonrpc":"2.0","id":3,"method":"resources/list"}`, nil)
	if !strings.Contains(body, "method resources/list is denied") {
		t.Fatalf("method rule: %s", body)
	}
	if u.seen(`"bad"`) || u.seen("resources/list") {
		t.Error("a refused request reached the upstream")
	}
}

// TestRelayFallbacks: what the relay leaves to the SDK path still works
// (notifications without an id, unknown sessions, batches, bad headers),
// and oversized or malformed bodies get HTTP errors.
func TestRelayFallbacks(t *testing.T) {
	_, c, _, _ := newRelay(t, Policy{}, nil)
	// A notification has no id: the SDK path answers 202.
	if r, body := c.post(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":5}}`, nil); r.StatusCode != 202 {
		t.Errorf("notification: %d %s", r.StatusCode, body)
	}
	// tools/list is filtered by the SDK path (an SSE response).
	if r, body := c.post(`{"jsonrpc":"2.0","id":4,"method":"tools/list"}`, nil); r.StatusCode != 200 || !strings.Contains(r.Header.Get("Content-Type"), "text/event-stream") || !strings.Contains(body, `"echo"`) {
		t.Errorf("tools/list: %d %s", r.StatusCode, body)
	}
	// A call with a progress token goes through the SDK path.
	if r, body := c.post(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"p"},"_meta":{"progressToken":"t1"}}}`, nil); r.StatusCode != 200 || !strings.Contains(r.Header.Get("Content-Type"), "text/event-stream") || !strings.Contains(body, `"text":"p"`) {
		t.Errorf("progress call: %d %s %s", r.StatusCode, r.Header.Get("Content-Type"), body)
	}
	// Unknown session: 404 from the SDK.
	sid := c.sid
	c.sid = "nope"
	if r, _ := c.post(`{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo"}}`, nil); r.StatusCode != 404 {
		t.Errorf("unknown session: %d, want 404", r.StatusCode)
	}
	c.sid = sid
	// Another protocol version than the session's: not relayed.
	if r, _ := c.post(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}`, map[string]string{"MCP-Protocol-Version": "1999-01-01"}); r.StatusCode != 400 {
		t.Errorf("bad protocol version: %d, want 400", r.StatusCode)
	}
	// Malformed JSON and a partial message.
	for _, b := range []string{`{"jsonrpc":"2.0","id":8,"method":"tools/call"`, `not json`} {
		if r, body := c.post(b, nil); r.StatusCode != 400 {
			t.Errorf("malformed %q: %d %s, want 400", b, r.StatusCode, body)
		}
	}
	// Oversized body.
	big := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` + strings.Repeat("x", MaxBody) + `"}}}`
	if r, _ := c.post(big, nil); r.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized: %d, want 413", r.StatusCode)
	}
	// DELETE ends the session; the relay forgets it.
	req, _ := http.NewRequest("DELETE", c.url, nil)
	req.Header.Set("Mcp-Session-Id", c.sid)
	req.Header.Set("MCP-Protocol-Version", c.pv)
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode >= 300 {
		t.Fatalf("DELETE: %v %v", r, err)
	}
	if r, _ := c.post(`{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"echo"}}`, nil); r.StatusCode != 404 {
		t.Errorf("after DELETE: %d, want 404", r.StatusCode)
	}
}

// TestRelayCancel: a client that goes away mid-call gets the upstream told
// (notifications/cancelled with the rewritten id), and the relay goes on.
func TestRelayCancel(t *testing.T) {
	_, c, u, _ := newRelay(t, Policy{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", c.url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"wait","arguments":{"text":"w"}}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", c.sid)
	req.Header.Set("MCP-Protocol-Version", c.pv)
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("the waiting call returned")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !u.seen(`"method":"notifications/cancelled","params":{"requestId":"dsr-`) {
		if time.Now().After(deadline) {
			t.Fatal("the upstream was not told of the cancelled call")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, body := c.post(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"after"}}}`, nil); !strings.Contains(body, `"text":"after"`) {
		t.Fatalf("call after a cancel: %s", body)
	}
}

// TestRelaySDKClient: the official SDK client, through the relay, sees
// the same results (this is the path BenchmarkMCP measures).
func TestRelaySDKClient(t *testing.T) {
	u := &stdioUpstream{}
	p, err := New(Options{Name: "up", Stdio: u.open(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil).Connect(ctx, &mcp.StreamableClientTransport{Endpoint: srv.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	// The client does not wait for notifications/initialized to be
	// answered before its first calls, and until the SDK path has taken
	// it, calls go that way (more than one on a busy machine). Warm up
	// until a call takes the relay; from then on every call must.
	const relayed = `"id":"dsr-`
	for deadline := time.Now().Add(10 * time.Second); u.count(relayed) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no call took the relay within 10 s")
		}
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "warm"}}); err != nil {
			t.Fatal(err)
		}
	}
	// Count the upstream's tools/call lines only: the client's
	// notifications/initialized may reach it after Connect returns.
	const call = `"method":"tools/call"`
	before, beforeRelayed := u.count(call), u.count(relayed)
	for i := range 20 {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "n"}})
		if err != nil || len(res.Content) != 1 || res.Content[0].(*mcp.TextContent).Text != "n" {
			t.Fatalf("call %d: %v %+v", i, err, res)
		}
	}
	if got := u.count(call) - before; got != 20 {
		t.Errorf("the upstream read %d tools/call lines for 20 calls", got)
	}
	if n := u.count(relayed) - beforeRelayed; n != 20 {
		t.Errorf("%d of the SDK client's 20 calls took the relay", n)
	}
}
