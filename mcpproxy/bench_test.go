package mcpproxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// BenchmarkProxyCall: one tools/call through the proxy's Streamable HTTP
// endpoint to an in-process upstream (the proxy's own overhead).
func BenchmarkProxyCall(b *testing.B) {
	benchThroughProxy(b, Options{Name: "up", Transport: upstream(b)})
}

// benchCalls times b.N echo calls on cs.
func benchCalls(b *testing.B, cs *mcp.ClientSession) {
	b.Helper()
	ctx := context.Background()
	params := &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := cs.CallTool(ctx, params); err != nil {
			b.Fatal(err)
		}
	}
}

// benchThroughProxy times echo calls from an SDK client through a proxy
// made with opts, served on a loopback Streamable HTTP endpoint.
func benchThroughProxy(b *testing.B, opts Options) {
	b.Helper()
	p, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "b", Version: "1"}, nil).Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: srv.URL}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer cs.Close()
	benchCalls(b, cs)
}

// BenchmarkDirectCall: the same call straight to the upstream (baseline).
func BenchmarkDirectCall(b *testing.B) {
	ctx := context.Background()
	t, _ := upstream(b)(ctx)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "b", Version: "1"}, nil).Connect(ctx, t, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer cs.Close()
	benchCalls(b, cs)
}

// BenchmarkRelayCall: the same call through the raw relay (the upstream is
// the stdio stand-in of relay_test.go: the SDK server over pipes).
func BenchmarkRelayCall(b *testing.B) {
	u := &stdioUpstream{}
	benchThroughProxy(b, Options{Name: "up", Stdio: u.open(b)})
}

// BenchmarkSDKStdioCall: the SDK path over the same stdio stand-in (the
// relay switched off by a remote-looking upstream is not possible here, so
// the SDK client talks to it through the Transport option instead).
func BenchmarkSDKStdioCall(b *testing.B) {
	u := &stdioUpstream{}
	open := u.open(b)
	benchThroughProxy(b, Options{Name: "up", Transport: func(ctx context.Context) (mcp.Transport, error) {
		r, w, err := open(ctx)
		if err != nil {
			return nil, err
		}
		return &mcp.IOTransport{Reader: io.NopCloser(r), Writer: w}, nil
	}})
}

var benchFrame = []byte(`{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"echo","arguments":{"message":"bench"}}}`)

// BenchmarkRelayFrame: what the relay does to a request on its own path:
// scan, policy, id rewrite (the event's redaction runs after the answer).
func BenchmarkRelayFrame(b *testing.B) {
	pol := Policy{Deny: []string{"danger_*"}}
	b.ReportAllocs()
	for b.Loop() {
		f, err := scanFrame(benchFrame)
		if err != nil {
			b.Fatal(err)
		}
		if ok, _ := pol.DecideRequest(f.method, f.tool, f.params(benchFrame)); !ok {
			b.Fatal("denied")
		}
		_ = withID(benchFrame, &f, []byte(`"dsr-1"`), true)
	}
}

// BenchmarkSDKFrame: what the SDK path did with the same request before
// it reached policy: decode the message and its params (the proxy then
// re-encoded it for the upstream and decoded the reply twice more).
func BenchmarkSDKFrame(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		m, err := jsonrpc.DecodeMessage(benchFrame)
		if err != nil {
			b.Fatal(err)
		}
		var p mcp.CallToolParamsRaw
		if err := json.Unmarshal(m.(*jsonrpc.Request).Params, &p); err != nil {
			b.Fatal(err)
		}
		if _, err := jsonrpc.EncodeMessage(m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkShimCall: the same call from an SDK client over stdio pipes
// through the stdio shim (`sandboxd mcp connect`) to the relay; beside
// BenchmarkRelayCall (the SDK client over HTTP), the shim's cost. raw is
// the shim's own HTTP/1.1 writer, http.Client the standard client tuned
// for loopback.
func BenchmarkShimCall(b *testing.B) {
	b.Run("raw", func(b *testing.B) { benchShim(b, nil) })
	b.Run("http.Client", func(b *testing.B) { benchShim(b, LoopbackClient()) })
}

func benchShim(b *testing.B, hc *http.Client) {
	u := &stdioUpstream{}
	p, err := New(Options{Name: "up", Stdio: u.open(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Shim(ctx, ShimOptions{Name: "up", URL: srv.URL, Client: hc}, inR, outW); outW.Close() }()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "b", Version: "1"}, nil).Connect(ctx, &mcp.IOTransport{Reader: outR, Writer: inW}, nil)
	if err != nil {
		b.Fatal(err)
	}
	params := &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := cs.CallTool(ctx, params); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cs.Close()
	<-done
}
