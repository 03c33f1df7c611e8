package protocol

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// MCP stream kinds and in-stream frames (spec.md section 7.6). On-wire
// constants like those of const.go; mcp_test.go pins them.
//
// FrameMCPServe (controller -> sandboxd) starts an in-sandbox stdio MCP
// server under sandboxd's supervision and serves it as Streamable HTTP on a
// loopback address. sandboxd answers FrameMCPReady, then, for as long as the
// stream is open, FrameMCPStatus on every state change, FrameMCPEvent for
// every tool call and policy decision, and FrameMCPLog with the server's
// stderr. Closing the stream stops the server and its listener.
//
// Bridged servers (run on the host) use FrameForwardListen with an
// MCPEndpoint instead: sandboxd only relays their connections.
const (
	FrameMCPServe FrameType = 0x50 // MCPServe

	// In-stream frames (range 0xB4-0xBF).
	FrameMCPReady  FrameType = 0xB4 // MCPReady
	FrameMCPStatus FrameType = 0xB5 // MCPStatus
	FrameMCPEvent  FrameType = 0xB6 // raw JSON of one call event (mcpproxy.Event), at most MaxMCPEvent bytes
	FrameMCPLog    FrameType = 0xB7 // raw bytes of the server's stderr, at most DataChunk per frame
)

// MCP limits.
const (
	// MaxMCPName bounds a server name.
	MaxMCPName = 64
	// MaxMCPGlobs bounds the allow plus deny globs of a server.
	MaxMCPGlobs = 256
	// MaxMCPEvent bounds one event frame.
	MaxMCPEvent = 64 << 10
)

// MCP transports.
const (
	MCPBridge    = "bridge"
	MCPInSandbox = "in-sandbox"
	MCPHTTP      = "http"
)

// MCPEndpoint names an MCP server in the sandbox's generated client config.
type MCPEndpoint struct {
	Name      string `json:"name"`
	Transport string `json:"transport"` // MCPBridge, MCPInSandbox or MCPHTTP
	// Path is the HTTP path of the endpoint on its listener ("/mcp").
	Path string `json:"path"`
}

func (m *MCPEndpoint) Validate() error {
	if m == nil {
		return errors.New("nil MCP endpoint")
	}
	if err := ValidMCPName(m.Name); err != nil {
		return err
	}
	switch m.Transport {
	case MCPBridge, MCPInSandbox, MCPHTTP:
	default:
		return fmt.Errorf("unknown MCP transport %q", truncate(m.Transport, 20))
	}
	if !strings.HasPrefix(m.Path, "/") || len(m.Path) > 256 || strings.ContainsAny(m.Path, " \x00?#") {
		return fmt.Errorf("bad MCP endpoint path %q", truncate(m.Path, 40))
	}
	return nil
}

// ValidMCPName checks a server name: 1..MaxMCPName of [A-Za-z0-9._-],
// not starting with a dot or dash.
func ValidMCPName(n string) error {
	if n == "" || len(n) > MaxMCPName || n[0] == '.' || n[0] == '-' {
		return fmt.Errorf("MCP server name %q: 1..%d characters of A-Z a-z 0-9 . _ -, not starting with . or -", truncate(n, 70), MaxMCPName)
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("MCP server name %q: 1..%d characters of A-Z a-z 0-9 . _ -", truncate(n, 70), MaxMCPName)
		}
	}
	return nil
}

// MCPServe starts an in-sandbox MCP server.
type MCPServe struct {
	Name string   `json:"name"`
	Argv []string `json:"argv"`
	// Env entries (KEY=VALUE) added to sandboxd's environment. They are
	// visible inside the sandbox, so never credentials.
	Env []string `json:"env,omitempty"`
	Dir string   `json:"dir,omitempty"`
	// Addr is the loopback address to serve on (port 0: any free port).
	Addr  string   `json:"addr"`
	Allow []string `json:"allow,omitempty"`
	Deny  []string `json:"deny,omitempty"`
	// Rules and DenyRules are MCP rules in OpenShell's shape (MCPRule).
	Rules     []MCPRule `json:"rules,omitempty"`
	DenyRules []MCPRule `json:"deny_rules,omitempty"`
}

func (m *MCPServe) Validate() error {
	if m == nil {
		return errors.New("nil MCP serve request")
	}
	if err := ValidMCPName(m.Name); err != nil {
		return err
	}
	if len(m.Argv) == 0 || m.Argv[0] == "" || len(m.Argv) > MaxArgs {
		return errors.New("MCP server command is empty or too long")
	}
	if len(m.Env) > MaxEnv {
		return fmt.Errorf("%d environment entries, limit %d", len(m.Env), MaxEnv)
	}
	for _, s := range append(append([]string{m.Dir}, m.Argv...), m.Env...) {
		if strings.IndexByte(s, 0) >= 0 {
			return errors.New("MCP server command, environment or directory contains a NUL byte")
		}
	}
	for _, kv := range m.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("environment entry %q is not KEY=VALUE", truncate(kv, 40))
		}
	}
	if err := ValidLoopbackAddr(m.Addr); err != nil {
		return err
	}
	if len(m.Allow)+len(m.Deny) > MaxMCPGlobs {
		return fmt.Errorf("%d tool globs, limit %d", len(m.Allow)+len(m.Deny), MaxMCPGlobs)
	}
	for _, g := range append(append([]string(nil), m.Allow...), m.Deny...) {
		if g == "" || len(g) > 256 {
			return errors.New("empty or overlong tool glob")
		}
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("tool glob %q: %v", truncate(g, 40), err)
		}
	}
	return ValidMCPRules(m.Rules, m.DenyRules)
}

// MCPReady answers MCPServe: the server's URL inside the sandbox.
type MCPReady struct {
	Addr string `json:"addr"`
	URL  string `json:"url"`
}

func (m *MCPReady) Validate() error {
	if m == nil {
		return errors.New("nil MCP ready")
	}
	if err := ValidLoopbackAddr(m.Addr); err != nil {
		return err
	}
	if !strings.HasPrefix(m.URL, "http://") || len(m.URL) > 256 {
		return errors.New("MCP URL must be an http:// URL")
	}
	return nil
}

// MCPStatus reports an in-sandbox server's state.
type MCPStatus struct {
	State     string `json:"state"`
	PID       int    `json:"pid,omitempty"`
	Restarts  int    `json:"restarts"`
	Tools     int    `json:"tools"`
	Calls     int64  `json:"calls"`
	Denied    int64  `json:"denied"`
	LastError string `json:"last_error,omitempty"`
}

func (m *MCPStatus) Validate() error {
	if m == nil {
		return errors.New("nil MCP status")
	}
	if m.State == "" || len(m.State) > 32 || len(m.LastError) > 4096 {
		return errors.New("MCP status state missing or fields too long")
	}
	if m.PID < 0 || m.Restarts < 0 || m.Tools < 0 || m.Calls < 0 || m.Denied < 0 {
		return errors.New("MCP status counts out of range")
	}
	return nil
}

func mcpFrameName(t FrameType) string {
	switch t {
	case FrameMCPServe:
		return "mcp-serve"
	case FrameMCPReady:
		return "mcp-ready"
	case FrameMCPStatus:
		return "mcp-status"
	case FrameMCPEvent:
		return "mcp-event"
	case FrameMCPLog:
		return "mcp-log"
	}
	return ""
}
