package mcp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bohica-labs/darkshell/controller/forward"
	"github.com/bohica-labs/darkshell/controller/provider"
	"github.com/bohica-labs/darkshell/controller/session"
	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/mcpproxy"
	"github.com/bohica-labs/darkshell/protocol"
)

// EndpointPath is the HTTP path of every MCP endpoint in a sandbox.
const EndpointPath = "/mcp"

// SessionFunc returns a live session to a sandbox (the daemon's pool).
type SessionFunc func(ctx context.Context, sandbox string) (*session.Session, error)

// Sink receives every MCP call event. The daemon's event bus can register
// one with SetEventSink; the per-sandbox log is written either way.
type Sink func(sandbox string, ev mcpproxy.Event)

// Info is what `darkshell mcp list` shows of one server.
type Info struct {
	Name      string   `json:"name"`
	Transport string   `json:"transport"`
	State     string   `json:"state"`
	PID       int      `json:"pid,omitempty"`
	Restarts  int      `json:"restarts"`
	Tools     int      `json:"tools"`
	Calls     int64    `json:"calls"`
	Denied    int64    `json:"denied"`
	LastError string   `json:"last_error,omitempty"`
	URL       string   `json:"url,omitempty"` // inside the sandbox
	Command   []string `json:"command,omitempty"`
	Remote    string   `json:"remote_url,omitempty"`
	Providers []string `json:"providers,omitempty"`
	Allow     []string `json:"allow,omitempty"`
	Deny      []string `json:"deny,omitempty"`
	// Rules and DenyRules are the server's OpenShell-shaped tool rules.
	Rules     []protocol.MCPRule `json:"rules,omitempty"`
	DenyRules []protocol.MCPRule `json:"deny_rules,omitempty"`
	// EndpointPolicies name the policy file's network policies whose
	// `protocol: mcp` rules also apply (http transport).
	EndpointPolicies []string `json:"endpoint_policies,omitempty"`
}

// Options configure a Manager.
type Options struct {
	Home      *state.Home
	Providers *provider.Store
	Session   SessionFunc
	Logger    *slog.Logger
	// Hold is called when a server starts running and its result when it
	// stops (the daemon stays up while servers run).
	Hold func() (release func())
}

// Manager runs a daemon's MCP servers.
type Manager struct {
	opts    Options
	log     *slog.Logger
	records *Records
	red     *mcpproxy.Redactor // every provider value, for every log line

	mu      sync.Mutex
	running map[string]*runtime // by sandbox + "/" + name
	sink    Sink
	logOnce sync.Once
	logQ    chan logItem // eventlog.go
}

// NewManager returns a manager; Restore starts the stored servers.
func NewManager(opts Options) *Manager {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Hold == nil {
		opts.Hold = func() func() { return func() {} }
	}
	m := &Manager{opts: opts, log: log.With("component", "mcp"), records: OpenRecords(opts.Home),
		red: &mcpproxy.Redactor{}, running: map[string]*runtime{}}
	m.refreshRedactor()
	return m
}

// SetEventSink registers the event bus's sink for MCP call events.
func (m *Manager) SetEventSink(s Sink) {
	m.mu.Lock()
	m.sink = s
	m.mu.Unlock()
}

// refreshRedactor adds the current provider values to the log redactor
// (rotated-out values stay redacted).
func (m *Manager) refreshRedactor() {
	vals := m.red.Values()
	if l, err := m.opts.Providers.List(); err == nil {
		for _, s := range l {
			if p, err := m.opts.Providers.Get(s.Name); err == nil {
				vals = append(vals, p.Values()...)
			}
		}
	}
	m.red.SetValues(vals)
}

// live reports whether r belongs to a sandbox that exists and is not a
// newer sandbox of the same name; a stale record is deleted.
func (m *Manager) live(r *Record) bool {
	sb, err := m.opts.Home.Get(r.Sandbox)
	if err == nil && !r.Created.Before(sb.Created) {
		return true
	}
	m.records.Delete(r.Sandbox, r.Name)
	return false
}

// Restore starts every stored server (daemon start).
func (m *Manager) Restore() {
	recs, _ := m.records.List("")
	for _, r := range recs {
		if m.live(r) {
			m.start(r)
		}
	}
}

// Add validates, stores and starts a server; it returns when the server
// runs and its URL is up in the sandbox, or with the reason it does not
// (then nothing is left behind).
func (m *Manager) Add(ctx context.Context, r *Record) (*Info, error) {
	if _, err := m.opts.Home.Get(r.Sandbox); err != nil {
		return nil, err
	}
	if _, err := m.records.Get(r.Sandbox, r.Name); err == nil {
		return nil, fmt.Errorf("%w: %s in sandbox %s", ErrExists, r.Name, r.Sandbox)
	}
	for _, p := range r.Providers {
		if _, err := m.opts.Providers.Get(p); err != nil {
			return nil, err
		}
	}
	if r.Port == 0 {
		r.Port = m.freePort(r.Sandbox)
	}
	r.Created = time.Now().UTC()
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if err := m.records.Save(r); err != nil {
		return nil, err
	}
	rt := m.start(r)
	select {
	case <-rt.ready:
	case <-ctx.Done():
		err := ctx.Err()
		m.Remove(r.Sandbox, r.Name)
		return nil, err
	}
	if rt.readyErr != nil {
		m.Remove(r.Sandbox, r.Name)
		return nil, rt.readyErr
	}
	info := rt.info()
	return &info, nil
}

func (m *Manager) freePort(sandbox string) int {
	recs, _ := m.records.List(sandbox)
	p := FirstPort
	for slices.ContainsFunc(recs, func(r *Record) bool { return r.Port == p }) {
		p++
	}
	return p
}

// Remove stops a server and deletes its record.
func (m *Manager) Remove(sandbox, name string) error {
	m.mu.Lock()
	rt := m.running[sandbox+"/"+name]
	delete(m.running, sandbox+"/"+name)
	m.mu.Unlock()
	if rt != nil {
		rt.stop()
	}
	return m.records.Delete(sandbox, name)
}

// RemoveSandbox stops and forgets every server of a deleted sandbox.
func (m *Manager) RemoveSandbox(sandbox string) {
	m.mu.Lock()
	var rts []*runtime
	for k, rt := range m.running {
		if strings.HasPrefix(k, sandbox+"/") {
			rts = append(rts, rt)
			delete(m.running, k)
		}
	}
	m.mu.Unlock()
	for _, rt := range rts {
		rt.stop()
	}
	m.records.DeleteSandbox(sandbox)
}

// List returns a sandbox's servers with their live state.
func (m *Manager) List(sandbox string) ([]Info, error) {
	if _, err := m.opts.Home.Get(sandbox); err != nil {
		return nil, err
	}
	recs, err := m.records.List(sandbox)
	if err != nil {
		return nil, err
	}
	out := []Info{}
	for _, r := range recs {
		if !m.live(r) {
			continue
		}
		m.mu.Lock()
		rt := m.running[r.Sandbox+"/"+r.Name]
		m.mu.Unlock()
		if rt == nil {
			out = append(out, infoOf(r, "stopped"))
			continue
		}
		out = append(out, rt.info())
	}
	return out, nil
}

// Rotate makes every running bridge that uses provider restart its server
// with the new credentials when its current calls finish. The sandbox keeps
// its URL and sees nothing.
func (m *Manager) Rotate(providerName string) int {
	m.refreshRedactor()
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, rt := range m.running {
		if rt.proxy != nil && slices.Contains(rt.rec.Providers, providerName) {
			rt.refreshRedactor()
			rt.proxy.Rotate()
			n++
		}
	}
	return n
}

// Users returns the "sandbox/server" names that use a provider.
func (m *Manager) Users(providerName string) []string {
	recs, _ := m.records.List("")
	var out []string
	for _, r := range recs {
		if slices.Contains(r.Providers, providerName) {
			out = append(out, r.Sandbox+"/"+r.Name)
		}
	}
	return out
}

// Close stops every server (daemon shutdown); records stay.
func (m *Manager) Close() {
	m.mu.Lock()
	rts := m.running
	m.running = map[string]*runtime{}
	m.mu.Unlock()
	for _, rt := range rts {
		rt.stop()
	}
}

// LogPath is the per-sandbox MCP call log.
func (m *Manager) LogPath(sandbox string) string {
	return filepath.Join(m.opts.Home.LogDir(), "mcp", sandbox+".jsonl")
}

// stderrPath is a server's stderr log on the host.
func (m *Manager) stderrPath(sandbox, name string) string {
	return filepath.Join(m.opts.Home.LogDir(), "mcp", sandbox, name+".stderr.log")
}

// Logs returns the last n events of a sandbox's log, for one server or all.
func (m *Manager) Logs(sandbox, server string, n int) ([]mcpproxy.Event, error) {
	if _, err := m.opts.Home.Get(sandbox); err != nil {
		return nil, err
	}
	m.flushLog()
	f, err := os.Open(m.LogPath(sandbox))
	if errors.Is(err, os.ErrNotExist) {
		return []mcpproxy.Event{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := []mcpproxy.Event{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev mcpproxy.Event
		if json.Unmarshal(sc.Bytes(), &ev) != nil || (server != "" && ev.Server != server) {
			continue
		}
		out = append(out, ev)
		if n > 0 && len(out) > 2*n {
			out = append(out[:0], out[len(out)-n:]...)
		}
	}
	if n > 0 && len(out) > n {
		out = out[len(out)-n:]
	}
	return out, nil
}

// stderrLog is an append-only, redacting writer for a server's stderr.
type stderrLog struct {
	path string
	red  *mcpproxy.Redactor
	mu   sync.Mutex
}

func (l *stderrLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(l.path), 0o700); err != nil {
		return len(p), nil
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return len(p), nil
	}
	defer f.Close()
	f.WriteString(l.red.String(string(p)))
	return len(p), nil
}

func infoOf(r *Record, st string) Info {
	return Info{Name: r.Name, Transport: r.Transport, State: st, Command: r.Argv, Remote: r.URL,
		Providers: r.Providers, Allow: r.Allow, Deny: r.Deny, Rules: r.Rules, DenyRules: r.DenyRules,
		EndpointPolicies: r.EndpointPolicies}
}

// runtime runs one server.
type runtime struct {
	m      *Manager
	rec    *Record
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	proxy  *mcpproxy.Proxy // bridge, http
	// red holds the values of this server's credentials: errors and log
	// lines that go back to the sandbox or into logs are redacted with it.
	red *mcpproxy.Redactor

	ready     chan struct{} // closed once: first listener up (and server started) or failed
	readyOnce sync.Once
	readyErr  error

	mu       sync.Mutex
	url      string
	remote   protocol.MCPStatus // in-sandbox: last status from sandboxd
	linkErr  string             // why the sandbox side is down
	linkedUp bool
}

func (m *Manager) start(r *Record) *runtime {
	ctx, cancel := context.WithCancel(context.Background())
	rt := &runtime{m: m, rec: r, log: m.log.With("sandbox", r.Sandbox, "server", r.Name), ctx: ctx, cancel: cancel,
		done: make(chan struct{}), ready: make(chan struct{}), red: &mcpproxy.Redactor{}}
	m.mu.Lock()
	if old := m.running[r.Sandbox+"/"+r.Name]; old != nil {
		m.mu.Unlock()
		old.stop()
		m.mu.Lock()
	}
	m.running[r.Sandbox+"/"+r.Name] = rt
	m.mu.Unlock()
	release := m.opts.Hold()
	go func() {
		defer close(rt.done)
		defer release()
		rt.run()
	}()
	return rt
}

func (rt *runtime) stop() {
	rt.cancel()
	<-rt.done
}

func (rt *runtime) setReady(err error) {
	rt.readyOnce.Do(func() {
		rt.readyErr = err
		close(rt.ready)
	})
}

func (rt *runtime) info() Info {
	in := infoOf(rt.rec, "")
	rt.mu.Lock()
	defer rt.mu.Unlock()
	in.URL = rt.url
	if rt.proxy != nil {
		s := rt.proxy.Status()
		in.State, in.PID, in.Restarts, in.Tools, in.Calls, in.Denied, in.LastError = s.State, s.PID, s.Restarts, s.Tools, s.Calls, s.Denied, s.LastError
	} else {
		s := rt.remote
		in.State, in.PID, in.Restarts, in.Tools, in.Calls, in.Denied, in.LastError = s.State, s.PID, s.Restarts, s.Tools, s.Calls, s.Denied, s.LastError
	}
	if in.State == "" {
		in.State = mcpproxy.StateStarting
	}
	if !rt.linkedUp {
		in.State = "disconnected"
		if rt.linkErr != "" {
			in.LastError = rt.linkErr
		}
	}
	return in
}

// env is a bridge server's environment: the daemon's, the record's plain
// settings, then the providers' credentials (read at every start, so a
// rotation is picked up by the next process).
func (rt *runtime) env() []string {
	env := append(os.Environ(), rt.rec.Env...)
	for _, kv := range rt.creds() {
		env = append(env, kv[0]+"="+kv[1])
	}
	return env
}

func (rt *runtime) creds() [][2]string {
	var out [][2]string
	for _, name := range rt.rec.Providers {
		p, err := rt.m.opts.Providers.Get(name)
		if err != nil {
			rt.log.Warn("provider unavailable", "provider", name, "err", err)
			continue
		}
		for k, v := range p.Credentials {
			if len(rt.rec.EnvKeys) == 0 || slices.Contains(rt.rec.EnvKeys, k) {
				out = append(out, [2]string{k, v})
			}
		}
	}
	slices.SortFunc(out, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return out
}

func (rt *runtime) run() {
	defer func() {
		if rt.proxy != nil {
			rt.proxy.Close()
		}
		rt.setReady(errors.New("stopped"))
	}()
	if rt.rec.Transport != protocol.MCPInSandbox {
		mcpproxy.TuneGC()
		rt.refreshRedactor()
		opts := mcpproxy.Options{
			Name: rt.rec.Name, Policy: rt.rec.Policy(), Redactor: rt.red, Logger: rt.log,
			OnEvent: func(ev mcpproxy.Event) { rt.m.record(rt.rec.Sandbox, ev) },
		}
		if rt.rec.Transport == protocol.MCPHTTP {
			opts.URL = rt.rec.URL
			opts.Header = func() http.Header {
				h := http.Header{}
				if c := rt.creds(); len(c) > 0 {
					h.Set("Authorization", "Bearer "+c[0][1])
				}
				return h
			}
		} else {
			opts.Argv, opts.Dir, opts.Env = rt.rec.Argv, rt.rec.Dir, rt.env
			opts.Stderr = &stderrLog{path: rt.m.stderrPath(rt.rec.Sandbox, rt.rec.Name), red: rt.m.red}
		}
		p, err := mcpproxy.New(opts)
		if err != nil {
			rt.setReady(err)
			return
		}
		rt.mu.Lock()
		rt.proxy = p
		rt.mu.Unlock()
		sctx, cancel := context.WithTimeout(rt.ctx, mcpproxy.StartTimeout)
		err = p.Start(sctx)
		cancel()
		if err != nil {
			rt.setReady(err)
			// Keep trying in the background only for restored servers.
		}
	}
	for attempt := 0; ; attempt++ {
		err := rt.link()
		if rt.ctx.Err() != nil {
			return
		}
		if errors.Is(err, state.ErrNotFound) {
			rt.log.Info("sandbox gone: removing its MCP server")
			rt.setReady(err)
			rt.m.records.Delete(rt.rec.Sandbox, rt.rec.Name)
			rt.m.mu.Lock()
			if rt.m.running[rt.rec.Sandbox+"/"+rt.rec.Name] == rt {
				delete(rt.m.running, rt.rec.Sandbox+"/"+rt.rec.Name)
			}
			rt.m.mu.Unlock()
			return
		}
		rt.mu.Lock()
		rt.linkedUp = false
		if err != nil {
			rt.linkErr = rt.m.red.String(err.Error())
		}
		rt.mu.Unlock()
		select {
		case <-rt.ready:
		default:
			if attempt >= 2 && err != nil {
				rt.setReady(err)
			}
		}
		rt.log.Debug("sandbox side of the MCP server ended; relinking", "err", err)
		select {
		case <-rt.ctx.Done():
			return
		case <-time.After(min(time.Duration(100<<min(attempt, 6))*time.Millisecond, 5*time.Second)):
		}
	}
}

// link serves the sandbox side once: until the session, the listener or
// the in-sandbox server's stream ends.
func (rt *runtime) link() error {
	s, err := rt.m.opts.Session(rt.ctx, rt.rec.Sandbox)
	if err != nil {
		return err
	}
	if rt.rec.Transport == protocol.MCPInSandbox {
		return rt.linkInSandbox(s)
	}
	ep := &protocol.MCPEndpoint{Name: rt.rec.Name, Transport: rt.rec.Transport, Path: EndpointPath}
	l, err := forward.Listen(rt.ctx, s, fmt.Sprintf("127.0.0.1:%d", rt.rec.Port), "mcp:"+rt.rec.Name, ep)
	if err != nil {
		// The port may be taken (drivers that share the host's loopback).
		var lerr error
		if l, lerr = forward.Listen(rt.ctx, s, "127.0.0.1:0", "mcp:"+rt.rec.Name, ep); lerr != nil {
			return err
		}
	}
	defer l.Close()
	rt.keepPort(l.AddrString())
	rt.mu.Lock()
	rt.url = "http://" + l.AddrString() + EndpointPath
	rt.linkedUp, rt.linkErr = true, ""
	rt.mu.Unlock()
	rt.setReady(nil)
	mux := http.NewServeMux()
	mux.Handle(EndpointPath, rt.proxy.Handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(rt.log.Handler(), slog.LevelDebug)}
	stop := context.AfterFunc(rt.ctx, func() { hs.Close() })
	defer stop()
	go func() {
		select {
		case <-l.Done():
		case <-s.Done():
		}
		hs.Close()
	}()
	err = hs.Serve(l)
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return errors.New("sandbox listener closed")
	}
	return err
}

func (rt *runtime) linkInSandbox(s *session.Session) error {
	if h := s.Remote(); !h.Has(protocol.CapMCP) {
		return errors.New("this sandbox's sandboxd does not offer MCP (cap \"mcp\"); upgrade it")
	}
	if h := s.Remote(); rt.rec.Policy().HasRules() && !h.Has(protocol.CapMCPRules) {
		return errors.New("this sandbox's sandboxd cannot enforce MCP rules (cap \"mcp-rules\"): upgrade it, or rebuild its image with `darkshell image build`")
	}
	err := rt.serveInSandbox(s, fmt.Sprintf("127.0.0.1:%d", rt.rec.Port))
	if err != nil && strings.Contains(err.Error(), "address already in use") {
		// Drivers that share the host's loopback: take any free port.
		return rt.serveInSandbox(s, "127.0.0.1:0")
	}
	return err
}

func (rt *runtime) serveInSandbox(s *session.Session, addr string) error {
	st, err := s.Open(rt.ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	stop := context.AfterFunc(rt.ctx, func() { st.Close() })
	defer stop()
	req := protocol.MCPServe{Name: rt.rec.Name, Argv: rt.rec.Argv, Env: rt.rec.Env, Dir: rt.rec.Dir,
		Addr: addr, Allow: rt.rec.Allow, Deny: rt.rec.Deny, Rules: rt.rec.Rules, DenyRules: rt.rec.DenyRules}
	if err := protocol.WriteMsg(st, protocol.FrameMCPServe, &req); err != nil {
		return err
	}
	errlog := &stderrLog{path: rt.m.stderrPath(rt.rec.Sandbox, rt.rec.Name), red: rt.m.red}
	for {
		f, err := protocol.ReadFrame(st, protocol.MaxPayload)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("in-sandbox MCP server stream ended")
			}
			return err
		}
		switch f.Type {
		case protocol.FrameError:
			return protocol.ErrorFromFrame(f)
		case protocol.FrameMCPReady:
			var m protocol.MCPReady
			if err := protocol.DecodeMsg(f, f.Type, &m); err != nil {
				return err
			}
			rt.keepPort(m.Addr)
			rt.mu.Lock()
			rt.url, rt.linkedUp, rt.linkErr = m.URL, true, ""
			rt.mu.Unlock()
		case protocol.FrameMCPStatus:
			var m protocol.MCPStatus
			if err := protocol.DecodeMsg(f, f.Type, &m); err != nil {
				return err
			}
			rt.mu.Lock()
			rt.remote = m
			rt.mu.Unlock()
			switch m.State {
			case mcpproxy.StateRunning:
				rt.setReady(nil)
			case mcpproxy.StateBackoff:
				rt.setReady(fmt.Errorf("in-sandbox MCP server %q did not start: %s", rt.rec.Name, m.LastError))
			}
		case protocol.FrameMCPEvent:
			if len(f.Payload) > protocol.MaxMCPEvent {
				continue
			}
			var ev mcpproxy.Event
			if json.Unmarshal(f.Payload, &ev) == nil {
				ev.Server = rt.rec.Name // never trust the sandbox for names
				rt.m.record(rt.rec.Sandbox, ev)
			}
		case protocol.FrameMCPLog:
			errlog.Write(f.Payload)
		}
	}
}

// refreshRedactor loads the current values of the server's credentials
// (rotation keeps the old and the new ones: errors of calls in flight on the
// old process may still carry the old value).
func (rt *runtime) refreshRedactor() {
	vals := rt.red.Values()
	for _, kv := range rt.creds() {
		vals = append(vals, kv[1])
	}
	rt.red.SetValues(vals)
}

// keepPort records the port a server actually got (a fallback when its own
// was taken), so that relinks and daemon restarts keep its URL.
func (rt *runtime) keepPort(addr string) {
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p == rt.rec.Port {
		return
	}
	rt.mu.Lock()
	rt.rec.Port = p
	rec := *rt.rec
	rt.mu.Unlock()
	if err := rt.m.records.Save(&rec); err != nil {
		rt.log.Warn("unable to record the server's new port", "err", err)
	}
}
