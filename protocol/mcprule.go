package protocol

import (
	"errors"
	"fmt"
	"strings"
)

// MCP tool rules in the shape of OpenShell's `protocol: mcp` endpoint rules
// (`rules: [{allow: {method, tool, params}}]`, `deny_rules: [{method, tool,
// params}]`), as blueprints and `mcp add` give them. A request matches a
// rule when its JSON-RPC method matches Method, its tool name (tools/call)
// matches one of Tool, and every Params key (dotted, e.g. `arguments.path`)
// names a string parameter matching one of its globs.
//
// Globs use `*` (any run of characters, `/` included, as OpenShell's
// delimiter-less glob.match) and `?` (one byte); nothing else is
// special, and `[`, `]`, `{`, `}` and `\` are refused so that no pattern
// means something else here than upstream.
type MCPRule struct {
	Method string              `json:"method"`
	Tool   []string            `json:"tool,omitempty"`
	Params map[string][]string `json:"params,omitempty"`
}

// MCP rule limits.
const (
	// MaxMCPRules bounds the allow plus deny rules of a server.
	MaxMCPRules = 256
	// MaxMCPRuleGlob bounds one glob of a rule.
	MaxMCPRuleGlob = 256
)

// ValidMCPGlob reports what is wrong with a rule glob, or nil.
func ValidMCPGlob(g string) error {
	if g == "" {
		return errors.New("empty glob")
	}
	if len(g) > MaxMCPRuleGlob {
		return fmt.Errorf("glob longer than %d bytes", MaxMCPRuleGlob)
	}
	if i := strings.IndexAny(g, "[]{}\\\x00"); i >= 0 {
		return fmt.Errorf("glob %q: %q is not supported (only * and ? are wildcards)", truncate(g, 60), g[i])
	}
	return nil
}

// Validate checks a rule: a method glob, well-formed tool and params globs,
// and a tool only where the method can be tools/call.
func (r *MCPRule) Validate() error {
	if r == nil {
		return errors.New("nil MCP rule")
	}
	if r.Method == "" {
		return errors.New("method is required (e.g. tools/call, tools/list, or * for any)")
	}
	if err := ValidMCPGlob(r.Method); err != nil {
		return fmt.Errorf("method: %w", err)
	}
	for _, g := range r.Tool {
		if err := ValidMCPGlob(g); err != nil {
			return fmt.Errorf("tool: %w", err)
		}
	}
	if len(r.Tool) > 0 && !MatchMCPGlob(r.Method, "tools/call") {
		return fmt.Errorf("tool applies to tools/call only, and method %q never matches it", truncate(r.Method, 60))
	}
	if len(r.Params) > 32 {
		return errors.New("more than 32 params")
	}
	for k, gs := range r.Params {
		if k == "" || strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") || strings.Contains(k, "..") || len(k) > MaxMCPRuleGlob {
			return fmt.Errorf("params key %q: want a dotted parameter name such as name or arguments.path", truncate(k, 60))
		}
		if len(gs) == 0 {
			return fmt.Errorf("params %s: no glob", truncate(k, 60))
		}
		for _, g := range gs {
			if err := ValidMCPGlob(g); err != nil {
				return fmt.Errorf("params %s: %w", truncate(k, 60), err)
			}
		}
	}
	return nil
}

// ValidMCPRules checks a server's allow and deny rules together.
func ValidMCPRules(allow, deny []MCPRule) error {
	if len(allow)+len(deny) > MaxMCPRules {
		return fmt.Errorf("%d MCP rules, limit %d", len(allow)+len(deny), MaxMCPRules)
	}
	for i := range allow {
		if err := allow[i].Validate(); err != nil {
			return fmt.Errorf("rules[%d]: %w", i, err)
		}
	}
	for i := range deny {
		if err := deny[i].Validate(); err != nil {
			return fmt.Errorf("deny_rules[%d]: %w", i, err)
		}
	}
	return nil
}

// MatchMCPGlob reports whether s matches the glob g (`*` any run, `?` one
// character, everything else literal).
func MatchMCPGlob(g, s string) bool {
	// Iterative wildcard matching with one backtrack point: linear in
	// practice, no recursion on hostile input.
	gi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case gi < len(g) && (g[gi] == '?' || g[gi] == s[si]):
			gi++
			si++
		case gi < len(g) && g[gi] == '*':
			star, mark = gi, si
			gi++
		case star >= 0:
			gi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for gi < len(g) && g[gi] == '*' {
		gi++
	}
	return gi == len(g)
}
