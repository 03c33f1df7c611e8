package mcpproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Limits.
const (
	// MaxBody bounds one HTTP request body (one JSON-RPC message or batch).
	MaxBody = 4 << 20
	// StartTimeout bounds starting and initializing an upstream.
	StartTimeout = 60 * time.Second
	backoffMin   = 100 * time.Millisecond
	backoffMax   = 10 * time.Second
	// stableAfter: an upstream that lived this long resets the backoff.
	stableAfter = 10 * time.Second
)

// States reported in Status.State.
const (
	StateStarting = "starting"
	StateRunning  = "running"
	StateBackoff  = "backoff"
	StateStopped  = "stopped"
)

// Options configure a Proxy.
type Options struct {
	// Name is the server's name (in errors, events and logs).
	Name string
	// Argv, Env and Dir describe a stdio upstream. Env is called at every
	// start, so a rotated credential is used by the next process.
	Argv []string
	Env  func() []string
	Dir  string
	// URL names a Streamable HTTP upstream instead of Argv; Header (if set)
	// is called for every request to it.
	URL    string
	Header func() http.Header
	// Transport, if set, replaces Argv and URL (tests; SDK path only).
	Transport func(ctx context.Context) (mcp.Transport, error)
	// Stdio, if set, replaces Argv with the two ends of a newline-delimited
	// stdio upstream (tests of the relay: reads from r, writes to w).
	Stdio func(ctx context.Context) (r io.Reader, w io.WriteCloser, err error)
	// Stderr receives the upstream process's stderr (default: discard).
	Stderr io.Writer
	// Policy filters tools/list and refuses calls.
	Policy Policy
	// Redactor is applied to logged arguments and errors (nil: none).
	Redactor *Redactor
	// OnEvent receives every tool call and policy decision. It must not block.
	OnEvent func(Event)
	Logger  *slog.Logger
}

// Event is one tool call or policy decision.
type Event struct {
	Time       time.Time       `json:"time"`
	Kind       string          `json:"kind"` // KindCall or KindPolicy
	Server     string          `json:"server"`
	Tool       string          `json:"tool"`
	Method     string          `json:"method,omitempty"` // set on a denied method other than tools/call
	Session    string          `json:"session,omitempty"`
	Args       json.RawMessage `json:"args,omitempty"` // redacted
	Decision   string          `json:"decision"`       // "allow" or "deny"
	Rule       string          `json:"rule,omitempty"`
	ResultSize int             `json:"result_bytes,omitempty"`
	IsError    bool            `json:"is_error,omitempty"`
	Error      string          `json:"error,omitempty"`
	DurationMs float64         `json:"duration_ms"`
}

// Event kinds.
const (
	KindCall   = "mcp_call"
	KindPolicy = "policy_decision"
)

// Status is a snapshot of the proxy and its upstream.
type Status struct {
	State     string    `json:"state"`
	PID       int       `json:"pid,omitempty"`
	Restarts  int       `json:"restarts"`
	Tools     int       `json:"tools"`
	Calls     int64     `json:"calls"`
	Denied    int64     `json:"denied"`
	LastError string    `json:"last_error,omitempty"`
	Since     time.Time `json:"since,omitzero"`
}

// Proxy serves one upstream MCP server over Streamable HTTP.
type Proxy struct {
	opts     Options
	log      *slog.Logger
	handler  http.Handler
	sdk      http.Handler // the SDK's Streamable HTTP handler (fast.go: what the relay leaves)
	sessions sessions

	mu       sync.Mutex
	gen      *generation
	starting chan struct{}
	state    string
	restarts int
	failures int
	nextTry  time.Time
	lastErr  string
	tools    int
	closed   bool
	stale    bool // rotate: the next acquire starts a new generation

	calls, denied atomic.Int64
	tokSeq        atomic.Uint64
	routes        sync.Map // rewritten progress token (string) -> progressRoute
}

type generation struct {
	cs      *mcp.ClientSession
	cmd     *exec.Cmd
	link    *link // stdio upstreams: the raw relay's side (fast.go)
	pid     int
	started time.Time
	inUse   sync.WaitGroup
	done    chan struct{} // closed when the upstream session ended
}

type progressRoute struct {
	ctx  context.Context
	ss   *mcp.ServerSession
	orig any
	seen *atomic.Int64 // notifications relayed
}

// New returns a proxy; the upstream starts on Start or on first use.
func New(opts Options) (*Proxy, error) {
	if opts.Transport == nil && opts.Stdio == nil && len(opts.Argv) == 0 && opts.URL == "" {
		return nil, errors.New("mcp proxy: no command or URL")
	}
	if err := opts.Policy.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Stderr == nil {
		opts.Stderr = io.Discard
	}
	p := &Proxy{opts: opts, log: log.With("mcp_server", opts.Name), state: StateStopped}
	p.sdk = mcp.NewStreamableHTTPHandler(p.serverFor, &mcp.StreamableHTTPOptions{
		EventStore: mcp.NewMemoryEventStore(nil),
		Logger:     p.log,
		// The endpoint is reached through a relayed loopback listener; the
		// Host header is the sandbox's loopback, which is what we serve.
		DisableLocalhostProtection: true,
	})
	p.handler = http.MaxBytesHandler(p, MaxBody)
	return p, nil
}

// Handler is the Streamable HTTP endpoint (serve it at any path).
func (p *Proxy) Handler() http.Handler { return p.handler }

// Start starts the upstream now, so that a broken command fails early.
func (p *Proxy) Start(ctx context.Context) error {
	_, release, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	release()
	return nil
}

// Rotate makes the next request start a new upstream (with a fresh Env);
// the current one finishes its calls in flight, then stops.
func (p *Proxy) Rotate() {
	p.mu.Lock()
	p.stale = true
	p.mu.Unlock()
}

// Close stops the upstream; the proxy refuses further requests.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	g := p.gen
	p.gen = nil
	p.state = StateStopped
	p.mu.Unlock()
	if g != nil {
		g.stop()
	}
	return nil
}

// Status reports the proxy's state.
func (p *Proxy) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Status{State: p.state, Restarts: p.restarts, Tools: p.tools, LastError: p.lastErr,
		Calls: p.calls.Load(), Denied: p.denied.Load()}
	if p.gen != nil {
		st.PID = p.gen.pid
		st.Since = p.gen.started
	}
	return st
}

func (g *generation) stop() {
	_ = g.cs.Close()
	if g.cmd != nil && g.cmd.Process != nil {
		// The server may have children (npx, shells): end its group.
		_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// acquire returns a running upstream, starting one if needed (respecting
// backoff). release must be called when the caller's request is done.
func (p *Proxy) acquire(ctx context.Context) (*generation, func(), error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, nil, fmt.Errorf("MCP server %q is stopped", p.opts.Name)
		}
		if p.stale && p.gen != nil {
			old := p.gen
			p.gen = nil
			go func() { old.inUse.Wait(); old.stop() }()
		}
		p.stale = false
		if g := p.gen; g != nil {
			g.inUse.Add(1)
			p.mu.Unlock()
			return g, g.inUse.Done, nil
		}
		if ch := p.starting; ch != nil {
			p.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
		}
		wait := time.Until(p.nextTry)
		ch := make(chan struct{})
		p.starting = ch
		p.state = StateStarting
		p.mu.Unlock()

		var g *generation
		var err error
		if wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		if err == nil {
			g, err = p.start(ctx)
		}
		p.mu.Lock()
		p.starting = nil
		close(ch)
		if err != nil {
			p.failures++
			p.nextTry = time.Now().Add(backoff(p.failures))
			p.lastErr = p.redact(err.Error())
			p.state = StateBackoff
			p.mu.Unlock()
			return nil, nil, fmt.Errorf("unable to start MCP server %q: %w", p.opts.Name, err)
		}
		if p.closed {
			p.mu.Unlock()
			g.stop()
			continue
		}
		p.gen = g
		p.state = StateRunning
		p.mu.Unlock()
		go p.watch(g)
		go p.countTools(g)
	}
}

func (p *Proxy) redact(s string) string { return p.opts.Redactor.String(s) }

// start connects a new upstream session.
func (p *Proxy) start(ctx context.Context) (*generation, error) {
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	g := &generation{done: make(chan struct{}), started: time.Now()}
	var t mcp.Transport
	switch {
	case p.opts.Transport != nil:
		var err error
		if t, err = p.opts.Transport(ctx); err != nil {
			return nil, err
		}
	case p.opts.Stdio != nil:
		r, w, err := p.opts.Stdio(ctx)
		if err != nil {
			return nil, err
		}
		g.link = newLink(r, w, nil)
		t = g.link
	case p.opts.URL != "":
		hc := &http.Client{Transport: headerTransport{base: http.DefaultTransport, header: p.opts.Header}}
		t = &mcp.StreamableClientTransport{Endpoint: p.opts.URL, HTTPClient: hc}
	default:
		cmd := exec.Command(p.opts.Argv[0], p.opts.Argv[1:]...)
		if p.opts.Env != nil {
			cmd.Env = p.opts.Env()
		}
		cmd.Dir = p.opts.Dir
		cmd.Stderr = p.opts.Stderr
		cmd.SysProcAttr = sysProcAttr()
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		g.cmd = cmd
		g.link = newLink(stdout, stdin, cmd.Wait)
		t = g.link
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "darkshell-mcp-proxy", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: p.progress,
	})
	// The session outlives ctx (which only bounds the handshake).
	cs, err := client.Connect(withoutCancel(ctx), t, nil)
	if err != nil {
		if g.cmd != nil && g.cmd.Process != nil {
			_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
		}
		return nil, err
	}
	g.cs = cs
	if g.cmd != nil && g.cmd.Process != nil {
		g.pid = g.cmd.Process.Pid
	}
	p.log.Info("MCP server started", "pid", g.pid)
	return g, nil
}

func withoutCancel(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// watch restarts an upstream that ended on its own.
func (p *Proxy) watch(g *generation) {
	err := g.cs.Wait()
	if g.cmd != nil && g.cmd.Process != nil {
		_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
	}
	close(g.done)
	p.mu.Lock()
	if p.gen != g || p.closed {
		p.mu.Unlock()
		return // stopped on purpose
	}
	p.gen = nil
	p.restarts++
	msg := "server process exited"
	if err != nil && !errors.Is(err, mcp.ErrConnectionClosed) {
		msg += ": " + err.Error()
	}
	p.lastErr = p.redact(msg)
	if time.Since(g.started) > stableAfter {
		p.failures = 0
	}
	p.failures++
	p.nextTry = time.Now().Add(backoff(p.failures))
	p.state = StateBackoff
	p.mu.Unlock()
	p.log.Warn("MCP server exited; restarting", "pid", g.pid, "err", err)
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout+backoffMax)
	defer cancel()
	if _, release, err := p.acquire(ctx); err == nil {
		release()
	}
}

func (p *Proxy) countTools(g *generation) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := 0
	for t, err := range g.cs.Tools(ctx, nil) {
		if err != nil {
			return
		}
		if ok, _ := p.opts.Policy.Decide(t.Name); ok {
			n++
		}
	}
	p.mu.Lock()
	p.tools = n
	p.mu.Unlock()
}

func backoff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	return min(backoffMin<<min(n-1, 10), backoffMax)
}

type headerTransport struct {
	base   http.RoundTripper
	header func() http.Header
}

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.header != nil {
		r = r.Clone(r.Context())
		for k, vs := range t.header() {
			r.Header[k] = vs
		}
	}
	return t.base.RoundTrip(r)
}

// serverFor builds the SDK server of one downstream session, advertising
// the upstream's capabilities.
func (p *Proxy) serverFor(r *http.Request) *mcp.Server {
	impl := &mcp.Implementation{Name: p.opts.Name, Version: "darkshell"}
	opts := &mcp.ServerOptions{Capabilities: &mcp.ServerCapabilities{Tools: &mcp.ToolCapabilities{}}}
	if g, release, err := p.acquire(r.Context()); err == nil {
		if ir := g.cs.InitializeResult(); ir != nil {
			if ir.ServerInfo != nil {
				impl = ir.ServerInfo
			}
			if ir.Capabilities != nil {
				caps := *ir.Capabilities
				opts.Capabilities = &caps
			}
			opts.Instructions = ir.Instructions
		}
		release()
	}
	s := mcp.NewServer(impl, opts)
	s.AddReceivingMiddleware(p.middleware)
	return s
}

// local methods are answered by the SDK server itself.
var local = map[string]bool{
	"initialize": true, "notifications/initialized": true, "ping": true,
	"notifications/cancelled": true, "notifications/progress": true,
	"notifications/roots/list_changed": true, "logging/setLevel": true,
}

// relayed methods are forwarded to the upstream (tools/call aside, which
// callTool checks itself); others are refused as not relayed.
var relayed = map[string]bool{
	"tools/list": true, "resources/list": true, "resources/templates/list": true, "resources/read": true,
	"prompts/list": true, "prompts/get": true, "completion/complete": true,
}

func (p *Proxy) middleware(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		if local[method] {
			return next(ctx, method, req)
		}
		if method != "tools/call" && relayed[method] && p.opts.Policy.HasRules() {
			if ok, rule := p.opts.Policy.DecideRequest(method, "", p.paramsJSON(req)); !ok {
				return nil, p.refuse(req, method, "", nil, rule)
			}
		}
		g, release, err := p.acquire(ctx)
		if err != nil {
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: p.redact(err.Error())}
		}
		defer release()
		cs := g.cs
		var res mcp.Result
		switch method {
		case "tools/call":
			return p.callTool(ctx, g, req)
		case "tools/list":
			params, _ := req.GetParams().(*mcp.ListToolsParams)
			var r *mcp.ListToolsResult
			if r, err = cs.ListTools(ctx, params); err == nil {
				kept := r.Tools[:0]
				for _, t := range r.Tools {
					if ok, _ := p.opts.Policy.Decide(t.Name); ok {
						kept = append(kept, t)
					}
				}
				r.Tools = kept
				res = r
			}
		case "resources/list":
			params, _ := req.GetParams().(*mcp.ListResourcesParams)
			res, err = nilIfErr(cs.ListResources(ctx, params))
		case "resources/templates/list":
			params, _ := req.GetParams().(*mcp.ListResourceTemplatesParams)
			res, err = nilIfErr(cs.ListResourceTemplates(ctx, params))
		case "resources/read":
			params, _ := req.GetParams().(*mcp.ReadResourceParams)
			res, err = nilIfErr(cs.ReadResource(ctx, params))
		case "prompts/list":
			params, _ := req.GetParams().(*mcp.ListPromptsParams)
			res, err = nilIfErr(cs.ListPrompts(ctx, params))
		case "prompts/get":
			params, _ := req.GetParams().(*mcp.GetPromptParams)
			res, err = nilIfErr(cs.GetPrompt(ctx, params))
		case "completion/complete":
			params, _ := req.GetParams().(*mcp.CompleteParams)
			res, err = nilIfErr(cs.Complete(ctx, params))
		default:
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeMethodNotFound, Message: fmt.Sprintf("method %q is not relayed by darkshell", method)}
		}
		if err != nil {
			return nil, p.upstreamErr(g, method, "", err)
		}
		return res, nil
	}
}

func nilIfErr[T mcp.Result](r T, err error) (mcp.Result, error) {
	if err != nil {
		return nil, err
	}
	return r, nil
}

// upstreamErr turns an upstream failure into the JSON-RPC error the client gets.
func (p *Proxy) upstreamErr(g *generation, method, tool string, err error) error {
	var we *jsonrpc.Error
	if errors.As(err, &we) {
		return &jsonrpc.Error{Code: we.Code, Message: p.redact(we.Message), Data: we.Data}
	}
	crashed := false
	select {
	case <-g.done:
		crashed = true
	case <-time.After(500 * time.Millisecond):
	}
	what := method
	if tool != "" {
		what = fmt.Sprintf("%s %q", method, tool)
	}
	if crashed || errors.Is(err, mcp.ErrConnectionClosed) {
		return &jsonrpc.Error{Code: jsonrpc.CodeInternalError,
			Message: fmt.Sprintf("MCP server %q exited during %s; darkshell restarts it, retry the call (%s)", p.opts.Name, what, p.redact(err.Error()))}
	}
	return &jsonrpc.Error{Code: jsonrpc.CodeInternalError,
		Message: fmt.Sprintf("MCP server %q failed %s: %s", p.opts.Name, what, p.redact(err.Error()))}
}

func (p *Proxy) emit(ev Event) {
	if p.opts.OnEvent != nil {
		p.opts.OnEvent(ev)
	}
}

// paramsJSON is a request's params as JSON, when a rule needs them.
func (p *Proxy) paramsJSON(req mcp.Request) json.RawMessage {
	if !p.opts.Policy.hasParams() {
		return nil
	}
	b, err := json.Marshal(req.GetParams())
	if err != nil {
		return nil
	}
	return b
}

// refuse counts and reports a policy denial and returns the error the
// client gets, naming the rule.
func (p *Proxy) refuse(req mcp.Request, method, tool string, args json.RawMessage, rule string) error {
	sid := ""
	if s := req.GetSession(); s != nil {
		sid = s.ID()
	}
	return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: p.refusal(sid, method, tool, args, rule)}
}

// refusal counts and reports a policy denial and returns the message the
// client gets, naming the rule.
func (p *Proxy) refusal(sid, method, tool string, args json.RawMessage, rule string) string {
	p.denied.Add(1)
	ev := Event{Time: time.Now().UTC(), Kind: KindPolicy, Server: p.opts.Name, Tool: tool, Args: args, Decision: "deny", Rule: rule, Session: sid}
	var msg string
	if tool != "" {
		msg = fmt.Sprintf("tool %q is denied by the darkshell tool policy of MCP server %q (%s)", tool, p.opts.Name, rule)
	} else {
		ev.Method = method
		msg = fmt.Sprintf("method %s is denied by the darkshell tool policy of MCP server %q (%s)", method, p.opts.Name, rule)
	}
	ev.Error = msg
	p.emit(ev)
	return msg
}

func (p *Proxy) callTool(ctx context.Context, g *generation, req mcp.Request) (mcp.Result, error) {
	raw, ok := req.GetParams().(*mcp.CallToolParamsRaw)
	if !ok || raw == nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "tools/call without params"}
	}
	ev := Event{Time: time.Now().UTC(), Kind: KindCall, Server: p.opts.Name, Tool: raw.Name,
		Args: p.opts.Redactor.JSON(raw.Arguments), Decision: "allow"}
	if s := req.GetSession(); s != nil {
		ev.Session = s.ID()
	}
	if ok, rule := p.opts.Policy.DecideRequest("tools/call", raw.Name, p.paramsJSON(req)); !ok {
		return nil, p.refuse(req, "tools/call", raw.Name, ev.Args, rule)
	}
	p.calls.Add(1)
	params := &mcp.CallToolParams{Name: raw.Name}
	if len(raw.Arguments) > 0 {
		params.Arguments = raw.Arguments
	}
	if len(raw.Meta) > 0 {
		params.Meta = make(mcp.Meta, len(raw.Meta))
		for k, v := range raw.Meta {
			params.Meta[k] = v
		}
	}
	var seen *atomic.Int64
	if tok := raw.GetProgressToken(); tok != nil {
		if ss, ok := req.GetSession().(*mcp.ServerSession); ok {
			nt := fmt.Sprintf("ds-%d", p.tokSeq.Add(1))
			params.SetProgressToken(nt)
			seen = new(atomic.Int64)
			p.routes.Store(nt, progressRoute{ctx: ctx, ss: ss, orig: tok, seen: seen})
			defer p.routes.Delete(nt)
		}
	}
	start := time.Now()
	res, err := g.cs.CallTool(ctx, params)
	if seen != nil {
		drainProgress(seen)
	}
	ev.DurationMs = float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		err = p.upstreamErr(g, "tools/call", raw.Name, err)
		ev.Error = err.Error()
		ev.IsError = true
		p.emit(ev)
		return nil, err
	}
	ev.IsError = res.IsError
	if b, err := json.Marshal(res); err == nil {
		ev.ResultSize = len(b)
	}
	p.emit(ev)
	return res, nil
}

// progress relays an upstream progress notification to the session and
// request stream of the call it belongs to.
func (p *Proxy) progress(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
	if r == nil || r.Params == nil {
		return
	}
	v, ok := p.routes.Load(fmt.Sprint(r.Params.ProgressToken))
	if !ok {
		return
	}
	rt := v.(progressRoute)
	defer rt.seen.Add(1)
	_ = rt.ss.NotifyProgress(rt.ctx, &mcp.ProgressNotificationParams{
		ProgressToken: rt.orig, Progress: r.Params.Progress, Total: r.Params.Total, Message: r.Params.Message,
	})
}

// drainProgress waits until progress notifications for a finished call stop
// arriving. The SDK client delivers a response as soon as it is read but
// runs notification handlers one by one, so the last notifications of a
// call can still be queued when the call returns; relaying them after the
// response would lose them. It waits for 20 ms without a new one, at most
// 250 ms, and only for calls that asked for progress.
func drainProgress(seen *atomic.Int64) {
	deadline := time.Now().Add(250 * time.Millisecond)
	last := seen.Load()
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		n := seen.Load()
		if n == last {
			return
		}
		last = n
	}
}

// ServeTransport serves one downstream session on t (for example stdio)
// until it ends.
func (p *Proxy) ServeTransport(ctx context.Context, t mcp.Transport) error {
	r, _ := http.NewRequestWithContext(ctx, http.MethodPost, "/", nil)
	return p.serverFor(r).Run(ctx, t)
}
