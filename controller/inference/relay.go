package inference

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// Limits of the relay.
const (
	// MaxRequestBody: larger requests are refused (413).
	MaxRequestBody = 8 << 20
	// captureLimit bounds the response bytes kept for logging; the client
	// gets every byte either way.
	captureLimit = 4 << 20
)

// Credentials returns a provider's credential values by key (read at each
// request, so a rotation applies at once), and every provider's values
// for redaction.
type Credentials interface {
	Credential(provider, key string) (string, error)
	AllValues() []string
}

// Relay serves one sandbox's inference endpoint.
type Relay struct {
	Sandbox string
	Creds   Credentials
	// OnEvent receives each exchange's event (it must not block).
	OnEvent func(protocol.Event)
	Logger  *slog.Logger
	// RootCAs verify https upstreams (nil: the system's).
	RootCAs *x509.CertPool

	cfg    atomic.Pointer[Config]
	client *http.Client
	once   sync.Once
}

// SetConfig installs the configuration the next requests use (nil: none).
func (r *Relay) SetConfig(c *Config) { r.cfg.Store(c) }

// Config returns the configuration in force (nil: none).
func (r *Relay) Config() *Config { return r.cfg.Load() }

func (r *Relay) init() {
	r.once.Do(func() {
		if r.Logger == nil {
			r.Logger = slog.New(slog.DiscardHandler)
		}
		tr := &http.Transport{
			Proxy:                 nil, // the upstream is dialed directly from the host
			TLSClientConfig:       &tls.Config{RootCAs: r.RootCAs},
			ForceAttemptHTTP2:     true,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: 10 * time.Minute,
		}
		r.client = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	})
}

// hopHeaders are not relayed; credential headers from the sandbox are
// dropped too (the host adds the real one).
var dropHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Authorization", "X-Api-Key", "Api-Key", "Cookie", "Accept-Encoding", "Host"}

// Handle relays one request read from a sandbox process and returns the
// response to write back. The response's body streams from the upstream;
// the exchange's event is published when it ends (or is closed).
func (r *Relay) Handle(ctx context.Context, req *http.Request) *http.Response {
	r.init()
	start := time.Now()
	cfg := r.cfg.Load()
	path := req.URL.EscapedPath()
	api, err := APIOf(path)
	if err != nil {
		return errorResponse(req, http.StatusNotFound, err.Error())
	}
	if cfg == nil {
		return errorResponse(req, http.StatusServiceUnavailable, "no inference route is configured for this sandbox: darkshell inference set "+r.Sandbox+" --api openai|anthropic --upstream URL --provider P")
	}
	route, ok := cfg.Route(api)
	if !ok {
		return errorResponse(req, http.StatusServiceUnavailable, fmt.Sprintf("%s is an %s API path and this sandbox has no %s route: darkshell inference set %s --api %s --upstream URL --provider P", path, api, api, r.Sandbox, api))
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, MaxRequestBody+1))
	req.Body.Close()
	if err != nil {
		return errorResponse(req, http.StatusBadRequest, "reading the request body: "+err.Error())
	}
	if len(body) > MaxRequestBody {
		return errorResponse(req, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", MaxRequestBody))
	}
	red := NewRedactor(cfg.Redact, r.Creds.AllValues())
	x := &Exchange{}
	ParseRequest(api, body, x)
	ev := &pending{r: r, red: red, route: route, start: start, x: x, path: path, method: req.Method}
	up, err := r.upstream(ctx, route, req, path, body)
	if err != nil {
		ev.status, ev.err = http.StatusBadGateway, err.Error()
		ev.finish(nil)
		return errorResponse(req, http.StatusBadGateway, err.Error())
	}
	resp, err := r.client.Do(up)
	if err != nil {
		msg := fmt.Sprintf("inference upstream %s: %v", route.Upstream, err)
		ev.status, ev.err = http.StatusBadGateway, msg
		ev.finish(nil)
		return errorResponse(req, http.StatusBadGateway, msg)
	}
	ev.status, ev.firstByte = resp.StatusCode, time.Since(start)
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/event-stream" {
		ev.x.Stream = true
	}
	out := &http.Response{
		StatusCode: resp.StatusCode, Status: resp.Status, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: resp.Header.Clone(), Request: req, ContentLength: resp.ContentLength,
	}
	for _, h := range []string{"Connection", "Keep-Alive", "Transfer-Encoding", "Trailer"} {
		out.Header.Del(h)
	}
	if out.ContentLength < 0 {
		out.TransferEncoding = []string{"chunked"}
	}
	out.Body = &tee{rc: resp.Body, done: ev.finish}
	return out
}

func (r *Relay) upstream(ctx context.Context, route Route, req *http.Request, path string, body []byte) (*http.Request, error) {
	p, err := r.Creds.Credential(route.Provider, route.Key)
	if err != nil {
		return nil, fmt.Errorf("inference route %s: %w", route.API, err)
	}
	u := strings.TrimSuffix(route.Upstream, "/") + path
	if req.URL.RawQuery != "" {
		u += "?" + req.URL.RawQuery
	}
	up, err := http.NewRequestWithContext(ctx, req.Method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, vs := range req.Header {
		up.Header[k] = append([]string(nil), vs...)
	}
	for _, h := range dropHeaders {
		up.Header.Del(h)
	}
	// Identity encoding: the relay reads what it logs.
	up.Header.Set("Accept-Encoding", "identity")
	switch route.API {
	case APIAnthropic:
		up.Header.Set("X-Api-Key", p)
		if up.Header.Get("Anthropic-Version") == "" {
			up.Header.Set("Anthropic-Version", "2023-06-01")
		}
	default:
		up.Header.Set("Authorization", "Bearer "+p)
	}
	return up, nil
}

// pending is one exchange whose response is still streaming.
type pending struct {
	r            *Relay
	red          *Redactor
	route        Route
	x            *Exchange
	path, method string
	start        time.Time
	firstByte    time.Duration
	status       int
	err          string
	once         sync.Once
}

// finish parses the captured response and publishes the event (once).
func (p *pending) finish(captured []byte) {
	p.once.Do(func() {
		dur := time.Since(p.start)
		if p.err == "" && len(captured) > 0 {
			if p.x.Stream {
				ParseStream(captured, p.x)
			} else {
				ParseResponse(captured, p.x)
			}
		}
		if p.err != "" {
			p.x.Response = p.err
		}
		info := &protocol.Inference{API: p.route.API, Provider: p.route.Provider, Status: p.status, Stream: p.x.Stream,
			InputTokens: p.x.InputTokens, OutputTokens: p.x.OutputTokens, FirstByteNs: int64(p.firstByte), StopReason: p.x.StopReason}
		set := func(name string, v string, dst *string) {
			out, n, cut, keep := p.red.Field(name, v)
			if !keep {
				return
			}
			*dst = out
			info.Redactions += n
			if cut {
				info.Truncated = append(info.Truncated, name)
			}
		}
		set("model", p.x.Model, &info.Model)
		set("system", p.x.System, &info.System)
		set("prompt", p.x.Prompt, &info.Prompt)
		set("response", p.x.Response, &info.Response)
		set("user", p.x.User, &info.User)
		set("tools", p.x.Tools, &info.Tools)
		stop, _ := p.red.Text(p.x.StopReason)
		info.StopReason = stop
		result := protocol.ResultOK
		if p.err != "" || p.status >= 400 {
			result = protocol.ResultError
		}
		msg := ""
		if p.status >= 400 || p.err != "" {
			msg = "upstream status " + strconv.Itoa(p.status)
		}
		ev := protocol.Event{Time: p.start.UTC(), Sandbox: p.r.Sandbox, Kind: protocol.KindInference, Host: Host,
			Path: p.method + " " + p.path, DurationNs: int64(dur), Result: result, Message: msg, Inference: info,
			Source: protocol.SourceDaemon, Fidelity: protocol.FidelityComplete}
		p.r.Logger.Debug("inference", "api", info.API, "model", info.Model, "status", p.status, "in", info.InputTokens, "out", info.OutputTokens, "ms", dur.Milliseconds())
		if p.r.OnEvent != nil {
			p.r.OnEvent(ev)
		}
	})
}

// tee passes a response body through, keeping up to captureLimit bytes,
// and calls done with them at EOF, on an error, or at Close.
type tee struct {
	rc   io.ReadCloser
	buf  []byte
	done func([]byte)
}

func (t *tee) Read(b []byte) (int, error) {
	n, err := t.rc.Read(b)
	if n > 0 && len(t.buf) < captureLimit {
		t.buf = append(t.buf, b[:min(n, captureLimit-len(t.buf))]...)
	}
	if err != nil {
		t.done(t.buf)
	}
	return n, err
}

func (t *tee) Close() error {
	err := t.rc.Close()
	t.done(t.buf)
	return err
}

// errorResponse is the relay's own answer, JSON in the shape both APIs use.
func errorResponse(req *http.Request, status int, msg string) *http.Response {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"type": "darkshell_inference", "message": "darkshell inference relay: " + msg}})
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	return &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), Proto: "HTTP/1.1",
		ProtoMajor: 1, ProtoMinor: 1, Header: h, Body: io.NopCloser(bytes.NewReader(b)), ContentLength: int64(len(b)), Request: req}
}
