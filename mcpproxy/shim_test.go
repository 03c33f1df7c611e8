package mcpproxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The shim's peer in these tests is a real Streamable HTTP server: the
// SDK's server handler on loopback (the integration tests put the shim in
// front of DarkShell's in-sandbox endpoint and the npm server-everything).

// shimPeer is the server and what it saw.
type shimPeer struct {
	srv *mcp.Server
	hs  *httptest.Server

	mu      sync.Mutex
	posts   []http.Header // headers of every POST, in order
	methods []string      // HTTP methods, in order

	release     chan struct{}
	releaseOnce sync.Once
}

// free answers the calls of wait.
func (p *shimPeer) free() { p.releaseOnce.Do(func() { close(p.release) }) }

type shimArgs struct {
	Text string `json:"text,omitempty"`
}

func newShimPeer(t *testing.T, jsonResponse bool, config ...func(*http.Server)) *shimPeer {
	t.Helper()
	p := &shimPeer{release: make(chan struct{})}
	p.srv = mcp.NewServer(&mcp.Implementation{Name: "peer", Version: "1"}, nil)
	mcp.AddTool(p.srv, &mcp.Tool{Name: "echo"}, func(ctx context.Context, req *mcp.CallToolRequest, a shimArgs) (*mcp.CallToolResult, any, error) {
		return text("echo: " + a.Text), nil, nil
	})
	mcp.AddTool(p.srv, &mcp.Tool{Name: "whoami"}, func(ctx context.Context, req *mcp.CallToolRequest, a shimArgs) (*mcp.CallToolResult, any, error) {
		return text(req.Session.ID()), nil, nil
	})
	// steps reports progress 1..3, then answers.
	mcp.AddTool(p.srv, &mcp.Tool{Name: "steps"}, func(ctx context.Context, req *mcp.CallToolRequest, a shimArgs) (*mcp.CallToolResult, any, error) {
		for i := 1; i <= 3; i++ {
			if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: float64(i), Total: 3}); err != nil {
				return nil, nil, err
			}
		}
		return text("steps done"), nil, nil
	})
	// drop reports progress, closes its SSE stream (the client must resume
	// with Last-Event-ID), reports again and answers.
	mcp.AddTool(p.srv, &mcp.Tool{Name: "drop"}, func(ctx context.Context, req *mcp.CallToolRequest, a shimArgs) (*mcp.CallToolResult, any, error) {
		tok := req.Params.GetProgressToken()
		_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: 1, Total: 2})
		if req.Extra == nil || req.Extra.CloseSSEStream == nil {
			return nil, nil, fmt.Errorf("no CloseSSEStream")
		}
		req.Extra.CloseSSEStream(mcp.CloseSSEStreamArgs{RetryAfter: 10 * time.Millisecond})
		time.Sleep(50 * time.Millisecond)
		_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: 2, Total: 2})
		return text("resumed"), nil, nil
	})
	// wait answers once release is called: concurrent requests or a deadlock.
	mcp.AddTool(p.srv, &mcp.Tool{Name: "wait"}, func(ctx context.Context, req *mcp.CallToolRequest, a shimArgs) (*mcp.CallToolResult, any, error) {
		select {
		case <-p.release:
			return text("released " + a.Text), nil, nil
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	})
	mcp.AddTool(p.srv, &mcp.Tool{Name: "release"}, func(ctx context.Context, req *mcp.CallToolRequest, a shimArgs) (*mcp.CallToolResult, any, error) {
		p.free()
		return text("released"), nil, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return p.srv }, &mcp.StreamableHTTPOptions{
		JSONResponse: jsonResponse,
		EventStore:   mcp.NewMemoryEventStore(nil),
	})
	p.hs = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.methods = append(p.methods, r.Method)
		if r.Method == http.MethodPost {
			p.posts = append(p.posts, r.Header.Clone())
		}
		p.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	for _, c := range config {
		c(p.hs.Config)
	}
	p.hs.Start()
	t.Cleanup(func() {
		p.hs.CloseClientConnections()
		p.hs.Close()
	})
	return p
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

func (p *shimPeer) sessions() []*mcp.ServerSession {
	var out []*mcp.ServerSession
	for ss := range p.srv.Sessions() {
		out = append(out, ss)
	}
	return out
}

// agent drives a shim as an agent would: lines on its stdin, lines from
// its stdout.
type agent struct {
	t     *testing.T
	in    *io.PipeWriter
	lines chan string
	done  chan error
}

type msg struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
		ProtocolVersion string `json:"protocolVersion"`
	} `json:"result"`
	Error *struct {
		Code    int64  `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	raw string
}

func (m msg) text() string {
	if len(m.Result.Content) == 0 {
		return ""
	}
	return m.Result.Content[0].Text
}

func startShim(t *testing.T, opts ShimOptions) *agent {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	a := &agent{t: t, in: inW, lines: make(chan string, 100), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		err := Shim(ctx, opts, inR, outW)
		outW.Close()
		a.done <- err
	}()
	go func() {
		sc := bufio.NewScanner(outR)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			a.lines <- sc.Text()
		}
		close(a.lines)
	}()
	t.Cleanup(func() {
		cancel()
		inW.Close()
		select {
		case <-a.done:
		case <-time.After(10 * time.Second):
			t.Error("the shim did not stop")
		}
	})
	return a
}

func (a *agent) send(line string) {
	a.t.Helper()
	if _, err := io.WriteString(a.in, line+"\n"); err != nil {
		a.t.Fatalf("write to the shim: %v", err)
	}
}

func (a *agent) recv() msg {
	a.t.Helper()
	select {
	case l, ok := <-a.lines:
		if !ok {
			a.t.Fatal("the shim's stdout ended")
		}
		var m msg
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			a.t.Fatalf("the shim wrote a line that is not JSON: %q: %v", l, err)
		}
		m.raw = l
		return m
	case <-time.After(10 * time.Second):
		a.t.Fatal("no message from the shim in 10s")
	}
	return msg{}
}

const shimVersion = "2025-11-25"

// initialize opens the session as a client would.
func (a *agent) initialize() msg {
	a.t.Helper()
	a.send(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"` + shimVersion + `","capabilities":{"roots":{}},"clientInfo":{"name":"agent","version":"1"}}}`)
	m := a.recv()
	if string(m.ID) != "0" || m.Result.ProtocolVersion != shimVersion {
		a.t.Fatalf("initialize answer: %s", m.raw)
	}
	a.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	return m
}

func call(id int, tool, text string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":{"text":%q}}}`, id, tool, text)
}

// TestShimRelay: JSON and SSE answers, progress before the response, the
// session id and negotiated protocol version on every later request, and
// the session deleted at the end of stdin.
func TestShimRelay(t *testing.T) {
	for _, tc := range []struct {
		name string
		json bool
	}{{"sse", false}, {"json", true}} {
		t.Run(tc.name, func(t *testing.T) {
			p := newShimPeer(t, tc.json)
			a := startShim(t, ShimOptions{Name: "peer", URL: p.hs.URL})
			a.initialize()
			a.send(call(1, "echo", "hi"))
			if m := a.recv(); string(m.ID) != "1" || m.text() != "echo: hi" {
				t.Fatalf("echo: %s", m.raw)
			}
			a.send(`{"jsonrpc":"2.0","id":"s-2","method":"tools/call","params":{"name":"whoami"}}`)
			m := a.recv()
			ss := p.sessions()
			if string(m.ID) != `"s-2"` || len(ss) != 1 || m.text() != ss[0].ID() {
				t.Fatalf("whoami = %s; server sessions %d", m.raw, len(ss))
			}
			a.send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"whoami"}}`)
			if m2 := a.recv(); m2.text() != m.text() {
				t.Fatalf("the session changed: %s then %s", m.text(), m2.text())
			}
			if !tc.json {
				// Progress: every notification, in order, then the response.
				a.send(`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"steps","_meta":{"progressToken":"tok"}}}`)
				for i := 1; i <= 3; i++ {
					n := a.recv()
					if n.Method != "notifications/progress" || !strings.Contains(string(n.Params), fmt.Sprintf(`"progress":%d`, i)) || !strings.Contains(string(n.Params), `"progressToken":"tok"`) {
						t.Fatalf("progress %d: %s", i, n.raw)
					}
				}
				if m := a.recv(); string(m.ID) != "4" || m.text() != "steps done" {
					t.Fatalf("steps: %s", m.raw)
				}
			}
			p.mu.Lock()
			posts := append([]http.Header(nil), p.posts...)
			p.mu.Unlock()
			if posts[0].Get("Mcp-Session-Id") != "" {
				t.Fatalf("initialize was sent with a session id: %v", posts[0])
			}
			for i, h := range posts[1:] {
				if h.Get("Mcp-Session-Id") != ss[0].ID() || h.Get("Mcp-Protocol-Version") != shimVersion {
					t.Fatalf("POST %d after initialize: session %q version %q", i+1, h.Get("Mcp-Session-Id"), h.Get("Mcp-Protocol-Version"))
				}
			}
			// End of stdin: the shim deletes the session and returns.
			a.in.Close()
			if err := <-a.done; err != nil {
				t.Fatalf("shim: %v", err)
			}
			a.done <- nil
			if n := len(p.sessions()); n != 0 {
				t.Fatalf("%d sessions left after the end of stdin", n)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.methods[len(p.methods)-1] != http.MethodDelete {
				t.Fatalf("HTTP requests: %v (want a DELETE at the end)", p.methods)
			}
		})
	}
}

// TestShimConcurrent: requests are concurrent POSTs answered to their own
// ids. wait answers only once release was called, which is sent after two
// waits: a shim that relays one request at a time never answers.
func TestShimConcurrent(t *testing.T) {
	p := newShimPeer(t, false)
	a := startShim(t, ShimOptions{Name: "peer", URL: p.hs.URL})
	a.initialize()
	a.send(call(1, "wait", "one"))
	a.send(call(2, "wait", "two"))
	a.send(call(3, "release", ""))
	got := map[string]string{}
	for range 3 {
		m := a.recv()
		got[string(m.ID)] = m.text()
	}
	if got["1"] != "released one" || got["2"] != "released two" || got["3"] != "released" {
		t.Fatalf("answers: %v", got)
	}
}

// TestShimResume: an SSE answer stream that the server closes before the
// response is resumed with Last-Event-ID; nothing is lost or repeated.
func TestShimResume(t *testing.T) {
	p := newShimPeer(t, false)
	a := startShim(t, ShimOptions{Name: "peer", URL: p.hs.URL})
	a.initialize()
	a.send(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"drop","_meta":{"progressToken":7}}}`)
	for i := 1; i <= 2; i++ {
		if n := a.recv(); n.Method != "notifications/progress" || !strings.Contains(string(n.Params), fmt.Sprintf(`"progress":%d`, i)) {
			t.Fatalf("progress %d: %s", i, n.raw)
		}
	}
	if m := a.recv(); string(m.ID) != "5" || m.text() != "resumed" {
		t.Fatalf("drop: %s", m.raw)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	gets := strings.Count(strings.Join(p.methods, " "), "GET")
	if gets < 2 { // the standalone stream and the resumption
		t.Fatalf("HTTP requests: %v (want a resuming GET)", p.methods)
	}
}

// TestShimServerRequest: requests the server sends on its own (ping)
// reach the agent over the GET stream, and the agent's responses, a result
// and an error, go back to the server.
func TestShimServerRequest(t *testing.T) {
	p := newShimPeer(t, false)
	a := startShim(t, ShimOptions{Name: "peer", URL: p.hs.URL})
	a.initialize()
	// The GET stream opens after notifications/initialized; a round trip
	// makes sure the server has the session initialized.
	a.send(call(1, "echo", "x"))
	a.recv()
	ss := p.sessions()[0]
	for _, answer := range []string{`"result":{}`, `"error":{"code":-32000,"message":"the agent says no"}`} {
		ch := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ch <- ss.Ping(ctx, nil)
		}()
		m := a.recv()
		if m.Method != "ping" || len(m.ID) == 0 {
			t.Fatalf("server request: %s", m.raw)
		}
		a.send(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,` + answer + `}`)
		err := <-ch
		if strings.Contains(answer, "result") && err != nil || strings.Contains(answer, "error") && (err == nil || !strings.Contains(err.Error(), "the agent says no")) {
			t.Fatalf("ping answered with %s through the shim: %v", answer, err)
		}
	}
}

// TestShimErrors: an upstream that is down, a session the server forgot,
// and bad stdin lines each get a JSON-RPC error naming the cause; the next
// line is served.
func TestShimErrors(t *testing.T) {
	t.Run("down", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		url := "http://" + l.Addr().String() + "/mcp"
		l.Close()
		a := startShim(t, ShimOptions{Name: "gone", URL: url})
		a.send(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"` + shimVersion + `","capabilities":{},"clientInfo":{"name":"agent","version":"1"}}}`)
		m := a.recv()
		if string(m.ID) != "0" || m.Error == nil || m.Error.Code != CodeUnreachable || !strings.Contains(m.Error.Message, `unable to reach MCP server "gone"`) ||
			!strings.Contains(m.Error.Message, "connection refused") {
			t.Fatalf("initialize with the server down: %s", m.raw)
		}
	})
	t.Run("went-down", func(t *testing.T) {
		p := newShimPeer(t, false)
		a := startShim(t, ShimOptions{Name: "peer", URL: p.hs.URL})
		a.initialize()
		// Down: no new connections, and the ones open (the GET stream)
		// closed. (hs.Close would wait for the GET stream the shim
		// reopens.)
		p.hs.Listener.Close()
		p.hs.CloseClientConnections()
		a.send(call(1, "echo", "x"))
		if m := a.recv(); string(m.ID) != "1" || m.Error == nil || !strings.Contains(m.Error.Message, `unable to reach MCP server "peer"`) {
			t.Fatalf("call with the server gone: %s", m.raw)
		}
	})
	t.Run("idle-closed", func(t *testing.T) {
		// The server closes kept-alive connections that stay idle: the
		// next call goes over a new one.
		p := newShimPeer(t, true, func(s *http.Server) { s.IdleTimeout = 20 * time.Millisecond })
		a := startShim(t, ShimOptions{Name: "peer", URL: p.hs.URL})
		a.initialize()
		for i := 1; i <= 3; i++ {
			time.Sleep(100 * time.Millisecond)
			a.send(call(i, "echo", "again"))
			if m := a.recv(); string(m.ID) != strconv.Itoa(i) || m.text() != "echo: again" {
				t.Fatalf("call %d after the server closed the idle connection: %s", i, m.raw)
			}
		}
	})
	t.Run("session-expired", func(t *testing.T) {
		p := newShimPeer(t, true)
		a := startShim(t, ShimOptions{Name: "peer", URL: p.hs.URL})
		a.initialize()
		old := p.sessions()[0].ID()
		p.sessions()[0].Close()
		a.send(call(1, "echo", "x"))
		m := a.recv()
		if string(m.ID) != "1" || m.Error == nil || m.Error.Code != CodeSessionExpired || !strings.Contains(m.Error.Message, "initialized again") || !strings.Contains(m.Error.Message, old) {
			t.Fatalf("call in a forgotten session: %s", m.raw)
		}
		// Initializing again through the same shim opens a new session.
		a.initialize()
		a.send(call(2, "whoami", ""))
		if m := a.recv(); string(m.ID) != "2" || m.text() == "" || m.text() == old {
			t.Fatalf("after initializing again: %s", m.raw)
		}
	})
	t.Run("bad-lines", func(t *testing.T) {
		p := newShimPeer(t, true)
		a := startShim(t, ShimOptions{Name: "peer", URL: p.hs.URL, MaxLine: 1024})
		a.initialize()
		for _, tc := range []struct {
			name, line, id string
			code           int64
			want           string
		}{
			{"malformed", `{"jsonrpc":"2.0","id":1,"method":`, "null", -32700, "not one JSON-RPC object"},
			{"not json", `hello`, "null", -32700, "not one JSON-RPC object"},
			{"oversized", call(7, "echo", strings.Repeat("a", 2000)), "7", -32600, "longer than 1024 bytes"},
			{"oversized, id last", `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo","arguments":{"text":"` + strings.Repeat("a", 2000) + `"}},"id":8}`, "null", -32600, "longer than 1024 bytes"},
			{"no jsonrpc", `{"id":9,"method":"tools/list"}`, "9", -32600, `"jsonrpc":"2.0"`},
			{"batch", `[` + call(10, "echo", "a") + `,` + call(11, "echo", "b") + `]`, "10", -32600, "batches are not supported"},
		} {
			a.send(tc.line)
			m := a.recv()
			if string(m.ID) != tc.id || m.Error == nil || m.Error.Code != tc.code || !strings.Contains(m.Error.Message, tc.want) {
				t.Fatalf("%s: %s", tc.name, m.raw)
			}
			if tc.name == "batch" {
				if m := a.recv(); string(m.ID) != "11" || m.Error == nil {
					t.Fatalf("batch, second request: %s", m.raw)
				}
			}
			// The next line is served.
			a.send(call(100, "echo", tc.name))
			if m := a.recv(); string(m.ID) != "100" || m.text() != "echo: "+tc.name {
				t.Fatalf("after %s: %s", tc.name, m.raw)
			}
		}
	})
}

// TestShimSDKClient: the SDK's own client through the shim, at the
// protocol version it prefers (from 2026-07-28 a POST names its method and
// tool in headers that the server checks).
func TestShimSDKClient(t *testing.T) {
	p := newShimPeer(t, false)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Shim(ctx, ShimOptions{Name: "peer", URL: p.hs.URL}, inR, outW)
		outW.Close()
	}()
	var mu sync.Mutex
	var progress []float64
	c := mcp.NewClient(&mcp.Implementation{Name: "sdk-agent", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			mu.Lock()
			progress = append(progress, r.Params.Progress)
			mu.Unlock()
		},
	})
	cs, err := c.Connect(ctx, &mcp.IOTransport{Reader: outR, Writer: inW}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := cs.ListTools(ctx, nil)
	if err != nil || len(tl.Tools) != 6 {
		t.Fatalf("tools/list: %v %v", tl, err)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "sdk"}})
	if err != nil || res.Content[0].(*mcp.TextContent).Text != "echo: sdk" {
		t.Fatalf("echo: %v %v", res, err)
	}
	params := &mcp.CallToolParams{Name: "steps"}
	params.SetProgressToken("p")
	if res, err := cs.CallTool(ctx, params); err != nil || res.Content[0].(*mcp.TextContent).Text != "steps done" {
		t.Fatalf("steps: %v %v", res, err)
	}
	cs.Close()
	if err := <-done; err != nil {
		t.Fatalf("shim: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(progress) != 3 || progress[2] != 3 {
		t.Fatalf("progress through the shim: %v", progress)
	}
}

// TestShimMethodHeaders: from protocol 2026-07-28 a POST names its method
// and, for tools/call, prompts/get and resources/read, what it acts on, in
// headers the server checks against the body. (The SDK server in these
// tests negotiates 2025-11-25, so this is checked on the function.)
func TestShimMethodHeaders(t *testing.T) {
	base := http.Header{"Accept": {"a"}, versionHeader: {minVersionMethodHeaders}}
	for _, tc := range []struct{ msg, method, name string }{
		{call(1, "echo", "x"), "tools/call", "echo"},
		{`{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a"}}`, "resources/read", "file:///a"},
		{`{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"p"}}`, "prompts/get", "p"},
		{`{"jsonrpc":"2.0","method":"notifications/initialized"}`, "notifications/initialized", ""},
		{`{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{"name":"not-a-name"}}`, "tools/list", ""},
	} {
		b := []byte(tc.msg)
		f, err := scanFrame(b)
		if err != nil {
			t.Fatal(err)
		}
		h := methodHeaders(base, b, &f)
		if h.Get("Mcp-Method") != tc.method || h.Get("Mcp-Name") != tc.name || h.Get("Accept") != "a" {
			t.Errorf("%s: %v", tc.msg, h)
		}
	}
	if len(base) != 2 {
		t.Fatalf("the shared headers changed: %v", base)
	}
}

// TestShimCancel: when the shim's context ends (sandboxd is signalled),
// a request in flight is answered with an error and the shim returns, also
// with stdin still open.
func TestShimCancel(t *testing.T) {
	p := newShimPeer(t, false)
	t.Cleanup(p.free) // the server session ends once its calls do
	inR, inW := io.Pipe()
	defer inW.Close()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Shim(ctx, ShimOptions{Name: "peer", URL: p.hs.URL}, inR, outW)
		outW.Close()
	}()
	a := &agent{t: t, in: inW, lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			a.lines <- sc.Text()
		}
		close(a.lines)
	}()
	a.initialize()
	a.send(call(1, "wait", "forever"))
	// The call reached the server once its POST is logged.
	for i := 0; ; i++ {
		p.mu.Lock()
		n := len(p.posts)
		p.mu.Unlock()
		if n >= 3 {
			break
		}
		if i > 500 {
			t.Fatal("the call did not reach the server")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if m := a.recv(); string(m.ID) != "1" || m.Error == nil || !strings.Contains(m.Error.Message, "stopping") {
		t.Fatalf("the call in flight when the shim stopped: %s", m.raw)
	}
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Fatalf("shim: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the shim did not stop")
	}
}
