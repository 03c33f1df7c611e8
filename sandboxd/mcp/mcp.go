// Package mcp is sandboxd's MCP side: it supervises in-sandbox stdio MCP
// servers (restart with backoff, stderr relayed to the controller's log) and
// serves each as Streamable HTTP on the sandbox's loopback (mcpproxy), and it
// keeps the generated MCP client config in the workspace
// (.darkshell/mcp.json) listing every server's loopback URL, bridged ones
// included. Servers started here inherit the sandbox's confinement and never
// see provider credentials: those only exist on the host, in bridges.
package mcp

import (
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
	"sort"
	"sync"
	"time"

	"github.com/bohica-labs/darkshell/mcpproxy"
	"github.com/bohica-labs/darkshell/protocol"
)

// ConfigPath is the generated client config, relative to the workspace.
const ConfigPath = ".darkshell/mcp.json"

// EndpointPath is the HTTP path every MCP endpoint is served at.
const EndpointPath = "/mcp"

// Manager serves MCP streams and owns the generated config.
type Manager struct {
	dir     string
	baseEnv []string
	log     *slog.Logger

	mu        sync.Mutex
	endpoints map[string]endpoint // by server name
	running   map[string]bool     // in-sandbox servers by name
}

type endpoint struct {
	transport, url, addr string
}

// New returns a manager writing its config under dir (the workspace).
func New(dir string, baseEnv []string, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{dir: dir, baseEnv: baseEnv, log: log.With("component", "mcp"),
		endpoints: map[string]endpoint{}, running: map[string]bool{}}
}

// Register lists a server's endpoint in the generated config.
func (m *Manager) Register(ep *protocol.MCPEndpoint, addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.endpoints[ep.Name] = endpoint{transport: ep.Transport, url: "http://" + addr + ep.Path, addr: addr}
	m.writeConfigLocked()
}

// Unregister removes a server's endpoint if it is still the one at addr.
func (m *Manager) Unregister(name, addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.endpoints[name]; ok && e.addr == addr {
		delete(m.endpoints, name)
		m.writeConfigLocked()
	}
}

// Config is the generated client config's shape: the "mcpServers" map most
// MCP clients read, with the URL of each server.
type Config struct {
	MCPServers map[string]ConfigServer `json:"mcpServers"`
}

// ConfigServer is one server in Config.
type ConfigServer struct {
	Type      string `json:"type"` // always "http" (Streamable HTTP)
	URL       string `json:"url"`
	Transport string `json:"darkshellTransport"`
}

func (m *Manager) writeConfigLocked() {
	if m.dir == "" {
		return
	}
	c := Config{MCPServers: map[string]ConfigServer{}}
	names := make([]string, 0, len(m.endpoints))
	for n := range m.endpoints {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e := m.endpoints[n]
		c.MCPServers[n] = ConfigServer{Type: "http", URL: e.url, Transport: e.transport}
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	// The workspace belongs to the sandbox: a symlink planted at
	// .darkshell must not redirect the write, so stay inside an os.Root.
	root, err := os.OpenRoot(m.dir)
	if err != nil {
		m.log.Warn("unable to write the MCP client config", "err", err)
		return
	}
	defer root.Close()
	tmp := ConfigPath + ".tmp"
	err = root.MkdirAll(filepath.Dir(ConfigPath), 0o755)
	if err == nil {
		err = root.WriteFile(tmp, append(b, '\n'), 0o644)
	}
	if err == nil {
		err = root.Rename(tmp, ConfigPath)
	}
	if err != nil {
		m.log.Warn("unable to write the MCP client config", "err", err)
	}
}

// ReadConfig reads the generated config in workspace dir.
func ReadConfig(dir string) (*Config, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("unable to read the MCP client config: %w", err)
	}
	defer root.Close()
	b, err := root.ReadFile(ConfigPath)
	if err != nil {
		return nil, fmt.Errorf("unable to read the MCP client config: %w", err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("unable to parse %s: %w", ConfigPath, err)
	}
	return &c, nil
}

// Serve runs one in-sandbox server for as long as its stream is open.
func (m *Manager) Serve(ctx context.Context, st io.ReadWriteCloser, f protocol.Frame) error {
	var req protocol.MCPServe
	if err := protocol.DecodeMsg(f, protocol.FrameMCPServe, &req); err != nil {
		return err
	}
	m.mu.Lock()
	if m.running[req.Name] {
		m.mu.Unlock()
		return fmt.Errorf("MCP server %q is already running in this sandbox", req.Name)
	}
	m.running[req.Name] = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.running, req.Name)
		m.mu.Unlock()
	}()

	mcpproxy.TuneGC()
	w := protocol.NewWriter(st)
	events := make(chan []byte, 1024)
	env := append(append([]string(nil), m.baseEnv...), req.Env...)
	log := m.log.With("server", req.Name)
	p, err := mcpproxy.New(mcpproxy.Options{
		Name:   req.Name,
		Argv:   req.Argv,
		Env:    func() []string { return env },
		Dir:    req.Dir,
		Stderr: &logWriter{w: w},
		Policy: mcpproxy.Policy{Allow: req.Allow, Deny: req.Deny, Rules: req.Rules, DenyRules: req.DenyRules},
		OnEvent: func(ev mcpproxy.Event) {
			b, err := json.Marshal(ev)
			if err != nil || len(b) > protocol.MaxMCPEvent {
				return
			}
			select {
			case events <- b:
			default: // the controller is slow: drop rather than block a call
			}
		},
		Logger: log,
	})
	if err != nil {
		return err
	}
	defer p.Close()
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", req.Addr)
	if err != nil {
		return fmt.Errorf("unable to listen on %s in the sandbox: %w", req.Addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle(EndpointPath, p.Handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(l)
	defer hs.Close()
	addr := l.Addr().String()
	ready := protocol.MCPReady{Addr: addr, URL: "http://" + addr + EndpointPath}
	if err := w.Msg(protocol.FrameMCPReady, &ready); err != nil {
		return err
	}
	m.Register(&protocol.MCPEndpoint{Name: req.Name, Transport: protocol.MCPInSandbox, Path: EndpointPath}, addr)
	defer m.Unregister(req.Name, addr)
	log.Info("in-sandbox MCP server serving", "url", ready.URL)

	go func() {
		sctx, cancel := context.WithTimeout(ctx, mcpproxy.StartTimeout)
		defer cancel()
		if err := p.Start(sctx); err != nil {
			log.Warn("MCP server did not start", "err", err)
		}
	}()
	// The controller stops the server by closing the stream.
	gone := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, st)
		close(gone)
	}()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	var last protocol.MCPStatus
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-gone:
			return nil
		case b := <-events:
			if err := w.Frame(protocol.FrameMCPEvent, b); err != nil {
				return nil
			}
		case <-t.C:
			s := p.Status()
			cur := protocol.MCPStatus{State: s.State, PID: s.PID, Restarts: s.Restarts, Tools: s.Tools,
				Calls: s.Calls, Denied: s.Denied, LastError: truncate(s.LastError, 4096)}
			if cur != last {
				last = cur
				if err := w.Msg(protocol.FrameMCPStatus, &cur); err != nil {
					return nil
				}
			}
		}
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// logWriter relays a server's stderr as FrameMCPLog frames; once the stream
// fails it discards, so a gone controller never blocks the server.
type logWriter struct {
	w      *protocol.Writer
	mu     sync.Mutex
	broken bool
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.broken {
		if err := l.w.Data(protocol.FrameMCPLog, p); err != nil {
			l.broken = true
		}
	}
	return len(p), nil
}

// ErrNoServer is returned by Connect for a server the config does not list.
var ErrNoServer = errors.New("no such MCP server in the sandbox's MCP config")
