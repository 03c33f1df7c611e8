package api

import (
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// MCPAddRequest is the body of POST /v1/sandboxes/{name}/mcp.
type MCPAddRequest struct {
	Server    string   `json:"server"`
	Transport string   `json:"transport"` // bridge, in-sandbox or http
	Command   []string `json:"command,omitempty"`
	URL       string   `json:"url,omitempty"`
	Dir       string   `json:"dir,omitempty"`
	Providers []string `json:"providers,omitempty"`
	// Env: KEY=VALUE (non-secret setting) or KEY (pick that provider credential).
	Env   []string `json:"env,omitempty"`
	Allow []string `json:"allow_tools,omitempty"`
	Deny  []string `json:"deny_tools,omitempty"`
	Port  int      `json:"port,omitempty"`
	// Rules and DenyRules are tool rules in OpenShell's `protocol: mcp`
	// shape (method, tool globs, params globs); both forms apply.
	Rules     []protocol.MCPRule `json:"rules,omitempty"`
	DenyRules []protocol.MCPRule `json:"deny_rules,omitempty"`
}

// ProviderRequest is the body of POST /v1/providers and PATCH /v1/providers/{name}.
type ProviderRequest struct {
	Name        string            `json:"name,omitempty"`
	Type        string            `json:"type,omitempty"`
	Credentials map[string]string `json:"credentials"`
	// Expires, on an update, is when the credentials given stop working:
	// health warns before and fails after (lifecycle.md).
	Expires *time.Time `json:"expires,omitempty"`
}

// ProviderUpdated answers PATCH /v1/providers/{name}.
type ProviderUpdated struct {
	Name string `json:"name"`
	// Rotated counts the running bridges that will use the new values.
	Rotated int `json:"rotated_bridges"`
	// Sandboxes whose egress proxy substitutes the new values from their
	// next request (created with --provider).
	Sandboxes []string `json:"sandboxes,omitempty"`
	// Keys rotated (never values).
	Keys    []string   `json:"keys,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`
}

// ForwardRequest is the body of POST /v1/sandboxes/{name}/forwards.
type ForwardRequest struct {
	Spec    string `json:"spec"` // [bind:]PORT
	Reverse bool   `json:"reverse,omitempty"`
}
