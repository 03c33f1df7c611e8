package mcpproxy

import (
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/bohica-labs/darkshell/protocol"
)

// Policy is a server's tool policy. Two forms apply together:
//
//   - Allow and Deny: tool name globs (path.Match syntax). A tool is allowed
//     when no Deny glob matches it and, if Allow is not empty, some Allow
//     glob does.
//   - Rules and DenyRules: rules in the shape of OpenShell's `protocol: mcp`
//     rules (protocol.MCPRule: method, tool, params) over every relayed
//     method. A request passes when no deny rule matches it and, if Rules is
//     not empty, some rule does. Session housekeeping that never reaches the
//     upstream (initialize, ping, notifications) is always answered.
type Policy struct {
	Allow     []string           `json:"allow,omitempty"`
	Deny      []string           `json:"deny,omitempty"`
	Rules     []protocol.MCPRule `json:"rules,omitempty"`
	DenyRules []protocol.MCPRule `json:"deny_rules,omitempty"`
	// Endpoint, if set, is a second policy a request must pass as well:
	// the `protocol: mcp` rules a sandbox policy file sets for the
	// server's URL (http transport).
	Endpoint *Policy `json:"endpoint,omitempty"`
}

// Validate checks every glob's syntax.
func (p Policy) Validate() error {
	for _, g := range append(append([]string(nil), p.Allow...), p.Deny...) {
		if g == "" {
			return fmt.Errorf("empty tool glob")
		}
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("tool glob %q: %w", g, err)
		}
	}
	if p.Endpoint != nil {
		if err := p.Endpoint.Validate(); err != nil {
			return fmt.Errorf("endpoint rules: %w", err)
		}
	}
	return protocol.ValidMCPRules(p.Rules, p.DenyRules)
}

// Decide reports whether tool may be listed and called; when it may not,
// rule names the policy rule that refused it (e.g. `deny-tool "echo*"`).
// Rules with params conditions cannot be judged without a call's
// arguments: a tool some such rule may allow is listed, and a deny rule
// with params does not hide it (the call itself is then checked).
func (p Policy) Decide(tool string) (ok bool, rule string) {
	if ok, rule = p.decideGlobs(tool); !ok {
		return ok, rule
	}
	if len(p.Rules)+len(p.DenyRules) > 0 {
		if ok, rule = p.decideRules("tools/call", tool, nil, true); !ok {
			return ok, rule
		}
	}
	if p.Endpoint != nil {
		if eok, erule := p.Endpoint.Decide(tool); !eok {
			return false, "policy file " + erule
		}
	}
	return ok, rule
}

func (p Policy) decideGlobs(tool string) (bool, string) {
	for _, g := range p.Deny {
		if m, _ := path.Match(g, tool); m {
			return false, fmt.Sprintf("deny-tool %q", g)
		}
	}
	if len(p.Allow) == 0 {
		return true, ""
	}
	for _, g := range p.Allow {
		if m, _ := path.Match(g, tool); m {
			return true, fmt.Sprintf("allow-tool %q", g)
		}
	}
	return false, "not matched by any allow-tool"
}

// DecideRequest reports whether a relayed request may reach the upstream:
// method is its JSON-RPC method, tool the tool of a tools/call (else ""),
// params its params as JSON (only read when a rule has params).
func (p Policy) DecideRequest(method, tool string, params json.RawMessage) (ok bool, rule string) {
	if method == "tools/call" {
		if ok, rule = p.decideGlobs(tool); !ok {
			return ok, rule
		}
	}
	if len(p.Rules)+len(p.DenyRules) > 0 {
		var flat map[string]string
		if p.hasOwnParams() {
			flat = flatten(params)
		}
		if ok, rule = p.decideRules(method, tool, flat, false); !ok {
			return ok, rule
		}
	}
	if p.Endpoint != nil {
		if eok, erule := p.Endpoint.DecideRequest(method, tool, params); !eok {
			return false, "policy file " + erule
		}
	}
	return true, rule
}

// HasRules reports whether method-level rules are set.
func (p Policy) HasRules() bool {
	return len(p.Rules)+len(p.DenyRules) > 0 || p.Endpoint != nil && p.Endpoint.HasRules()
}

func (p Policy) hasParams() bool {
	return p.hasOwnParams() || p.Endpoint != nil && p.Endpoint.hasParams()
}

func (p Policy) hasOwnParams() bool {
	for _, rs := range [][]protocol.MCPRule{p.Rules, p.DenyRules} {
		for _, r := range rs {
			if len(r.Params) > 0 {
				return true
			}
		}
	}
	return false
}

// decideRules applies Rules and DenyRules. listing: params are unknown
// (tools/list), so params conditions count as met for allow rules and as
// unmet for deny rules.
func (p Policy) decideRules(method, tool string, params map[string]string, listing bool) (bool, string) {
	for _, r := range p.DenyRules {
		if (!listing || len(r.Params) == 0) && matchRule(r, method, tool, params, false) {
			return false, "deny_rules " + describe(r)
		}
	}
	if len(p.Rules) == 0 {
		return true, ""
	}
	for _, r := range p.Rules {
		if matchRule(r, method, tool, params, listing) {
			return true, "rules " + describe(r)
		}
	}
	return false, fmt.Sprintf("%s is not matched by any rule", what(method, tool))
}

func what(method, tool string) string {
	if tool != "" {
		return fmt.Sprintf("%s %q", method, tool)
	}
	return method
}

func matchRule(r protocol.MCPRule, method, tool string, params map[string]string, paramsUnknown bool) bool {
	if !protocol.MatchMCPGlob(r.Method, method) {
		return false
	}
	if len(r.Tool) > 0 && (method != "tools/call" || !anyGlob(r.Tool, tool)) {
		return false
	}
	if paramsUnknown {
		return true
	}
	for k, gs := range r.Params {
		v, ok := params[k]
		if !ok || !anyGlob(gs, v) {
			return false
		}
	}
	return true
}

func anyGlob(gs []string, s string) bool {
	for _, g := range gs {
		if protocol.MatchMCPGlob(g, s) {
			return true
		}
	}
	return false
}

// describe renders a rule the way a policy file writes it.
func describe(r protocol.MCPRule) string {
	var b strings.Builder
	b.WriteString("{method: ")
	b.WriteString(strconv.Quote(r.Method))
	if len(r.Tool) == 1 {
		fmt.Fprintf(&b, ", tool: %q", r.Tool[0])
	} else if len(r.Tool) > 1 {
		fmt.Fprintf(&b, ", tool: {any: %q}", r.Tool)
	}
	if len(r.Params) > 0 {
		b.WriteString(", params: {...}")
	}
	b.WriteString("}")
	return b.String()
}

// flatten turns JSON params into dotted keys with their string values
// (`{"arguments":{"path":"/x"}}` -> `arguments.path: /x`), as OpenShell
// flattens JSON-RPC params before matching. Only strings are kept; nesting
// stops at 16 levels.
func flatten(raw json.RawMessage) map[string]string {
	out := map[string]string{}
	var v any
	if len(raw) == 0 || json.Unmarshal(raw, &v) != nil {
		return out
	}
	var walk func(prefix string, v any, depth int)
	walk = func(prefix string, v any, depth int) {
		if depth > 16 {
			return
		}
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				key := k
				if prefix != "" {
					key = prefix + "." + k
				}
				walk(key, c, depth+1)
			}
		case string:
			if prefix != "" {
				out[prefix] = x
			}
		}
	}
	walk("", v, 0)
	return out
}
