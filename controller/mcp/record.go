// Package mcp is the controller's MCP side. It keeps one record per MCP
// server of a sandbox under $DARKSHELL_HOME/mcp and runs them:
//
//   - bridge: the stdio server runs on the host with its providers'
//     credentials in its environment, fronted by mcpproxy; sandboxd listens
//     on the sandbox's loopback and relays each connection over the yamux
//     session (controller/forward), so the sandbox gets a URL and never the
//     credentials;
//   - http: the same, fronting a remote Streamable HTTP server;
//   - in-sandbox: sandboxd supervises the stdio server inside the sandbox
//     (protocol FrameMCPServe) and reports status, call events and stderr.
//
// Every tool call and policy decision is appended, redacted, to the
// per-sandbox log $DARKSHELL_HOME/logs/mcp/SANDBOX.jsonl (`darkshell mcp
// logs`) and handed to the event sink (SetEventSink) the event bus can use.
package mcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/mcpproxy"
	"github.com/bohica-labs/darkshell/protocol"
)

// FirstPort is the first loopback port given to a sandbox's MCP servers.
const FirstPort = 7300

// ErrNotFound: no MCP server by that name in the sandbox.
var ErrNotFound = errors.New("no such MCP server")

// ErrExists: the sandbox already has an MCP server by that name.
var ErrExists = errors.New("MCP server already exists")

// Record is one MCP server of a sandbox.
type Record struct {
	Sandbox   string   `json:"sandbox"`
	Name      string   `json:"name"`
	Transport string   `json:"transport"` // protocol.MCPBridge, MCPInSandbox or MCPHTTP
	Argv      []string `json:"argv,omitempty"`
	URL       string   `json:"url,omitempty"` // http transport: the remote endpoint
	Dir       string   `json:"dir,omitempty"`
	// Providers give their credentials to a bridge server's environment
	// (or, for http, the Authorization header). EnvKeys, when set, selects
	// which credential keys are given.
	Providers []string `json:"providers,omitempty"`
	EnvKeys   []string `json:"env_keys,omitempty"`
	// Env holds non-secret KEY=VALUE settings.
	Env   []string `json:"env,omitempty"`
	Allow []string `json:"allow,omitempty"`
	Deny  []string `json:"deny,omitempty"`
	// Rules and DenyRules: tool rules in OpenShell's `protocol: mcp` shape.
	Rules     []protocol.MCPRule `json:"rules,omitempty"`
	DenyRules []protocol.MCPRule `json:"deny_rules,omitempty"`
	// EndpointRules and EndpointDenyRules (http transport) are the
	// `protocol: mcp` rules the sandbox's policy file sets for URL, taken
	// when the server is added, from the network policies named in
	// EndpointPolicies; a request must pass them as well.
	EndpointRules     []protocol.MCPRule `json:"endpoint_rules,omitempty"`
	EndpointDenyRules []protocol.MCPRule `json:"endpoint_deny_rules,omitempty"`
	EndpointPolicies  []string           `json:"endpoint_policies,omitempty"`
	Port              int                `json:"port"` // loopback port in the sandbox
	Created           time.Time          `json:"created"`
}

// Policy is the record's tool policy.
func (r *Record) Policy() mcpproxy.Policy {
	p := mcpproxy.Policy{Allow: r.Allow, Deny: r.Deny, Rules: r.Rules, DenyRules: r.DenyRules}
	if len(r.EndpointRules)+len(r.EndpointDenyRules) > 0 {
		p.Endpoint = &mcpproxy.Policy{Rules: r.EndpointRules, DenyRules: r.EndpointDenyRules}
	}
	return p
}

// Validate checks a record before it is stored.
func (r *Record) Validate() error {
	if err := state.ValidName(r.Sandbox); err != nil {
		return err
	}
	if err := protocol.ValidMCPName(r.Name); err != nil {
		return err
	}
	if err := r.Policy().Validate(); err != nil {
		return err
	}
	for _, kv := range r.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("--env %q: want KEY=VALUE (or KEY to pick a provider credential)", kv)
		}
	}
	switch r.Transport {
	case protocol.MCPBridge, protocol.MCPInSandbox:
		if len(r.Argv) == 0 {
			return fmt.Errorf("transport %s needs a command: darkshell mcp add SANDBOX SERVER --transport %s -- COMMAND [ARGS...]", r.Transport, r.Transport)
		}
		if r.URL != "" {
			return fmt.Errorf("--url is for --transport http only")
		}
	case protocol.MCPHTTP:
		if !strings.HasPrefix(r.URL, "http://") && !strings.HasPrefix(r.URL, "https://") {
			return fmt.Errorf("transport http needs --url with an http:// or https:// URL")
		}
		if len(r.Argv) > 0 {
			return fmt.Errorf("transport http takes --url, not a command")
		}
	default:
		return fmt.Errorf("unknown transport %q: use bridge, in-sandbox or http", r.Transport)
	}
	if r.Transport == protocol.MCPInSandbox && (len(r.Providers) > 0 || len(r.EnvKeys) > 0) {
		return fmt.Errorf("credentials never enter the sandbox: an in-sandbox server cannot take --provider; use --transport bridge")
	}
	if r.Port < 1 || r.Port > 65535 {
		return fmt.Errorf("port %d out of range", r.Port)
	}
	return nil
}

// Records stores MCP records: $DARKSHELL_HOME/mcp/SANDBOX/SERVER.json.
type Records struct{ dir string }

// OpenRecords returns the record store of h.
func OpenRecords(h *state.Home) *Records { return &Records{dir: filepath.Join(h.Dir, "mcp")} }

func (s *Records) path(sandbox, name string) string {
	return filepath.Join(s.dir, sandbox, name+".json")
}

// Save writes a record.
func (s *Records) Save(r *Record) error {
	if err := os.MkdirAll(filepath.Join(s.dir, r.Sandbox), 0o700); err != nil {
		return fmt.Errorf("unable to store MCP server %s: %w", r.Name, err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return state.WriteFileAtomic(s.path(r.Sandbox, r.Name), b, 0o600)
}

// Get reads a record.
func (s *Records) Get(sandbox, name string) (*Record, error) {
	if protocol.ValidMCPName(name) != nil || state.ValidName(sandbox) != nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	b, err := os.ReadFile(s.path(sandbox, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s in sandbox %s", ErrNotFound, name, sandbox)
	}
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("unable to parse MCP record %s: %w", name, err)
	}
	return &r, nil
}

// List returns a sandbox's records ("" for every sandbox).
func (s *Records) List(sandbox string) ([]*Record, error) {
	var dirs []string
	if sandbox != "" {
		dirs = []string{filepath.Join(s.dir, sandbox)}
	} else {
		ents, _ := os.ReadDir(s.dir)
		for _, e := range ents {
			if e.IsDir() {
				dirs = append(dirs, filepath.Join(s.dir, e.Name()))
			}
		}
	}
	var out []*Record
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			n, ok := strings.CutSuffix(e.Name(), ".json")
			if !ok || strings.HasPrefix(n, ".") {
				continue
			}
			if r, err := s.Get(filepath.Base(d), n); err == nil {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// Delete removes a record.
func (s *Records) Delete(sandbox, name string) error {
	err := os.Remove(s.path(sandbox, name))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s in sandbox %s", ErrNotFound, name, sandbox)
	}
	return err
}

// DeleteSandbox removes every record of a sandbox.
func (s *Records) DeleteSandbox(sandbox string) error {
	if state.ValidName(sandbox) != nil {
		return nil
	}
	return os.RemoveAll(filepath.Join(s.dir, sandbox))
}
