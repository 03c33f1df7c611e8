package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/bohica-labs/darkshell/controller/yamldoc"
	"github.com/bohica-labs/darkshell/protocol"
)

// MCP rules: OpenShell's `protocol: mcp` endpoints take rules with
// `method`, `tool` (a glob or `{any: [globs]}`) and `params` (dotted name to
// a glob or `{any: [globs]}`). Blueprints use the same shape for DarkShell's
// own MCP tool rules; both are checked here and turned into
// protocol.MCPRule for the MCP proxy.

// knownMCPMethods are the methods a rule may name exactly (a glob may match
// any of them).
var knownMCPMethods = []string{
	"initialize", "notifications/initialized", "ping", "tools/list", "tools/call",
	"resources/list", "resources/templates/list", "resources/read", "resources/subscribe", "resources/unsubscribe",
	"prompts/list", "prompts/get", "completion/complete", "logging/setLevel",
	"notifications/cancelled", "notifications/progress", "notifications/roots/list_changed",
}

// CheckMCPRule checks one allow rule (`rules[].allow`) or deny rule
// (`deny_rules[]`) at the YAML path at and converts it. Every problem is
// reported through bad, at the field it concerns.
func CheckMCPRule(at string, m Match, bad func(at, format string, args ...any)) protocol.MCPRule {
	r := protocol.MCPRule{Method: m.Method}
	for field, set := range map[string]bool{
		"path": m.Path != "", "query": m.Query != nil, "operation_type": m.OperationType != "",
		"operation_name": m.OperationName != "", "fields": m.Fields != nil, "command": m.Command != "",
	} {
		if set {
			bad(at+"."+field, "%s is not an MCP rule field: MCP rules take method, tool and params", field)
		}
	}
	switch {
	case m.Method == "":
		bad(at, "method is required (e.g. method: tools/call, tool: \"read_*\")")
	case protocol.ValidMCPGlob(m.Method) != nil:
		bad(at+".method", "%v", protocol.ValidMCPGlob(m.Method))
	case !strings.ContainsAny(m.Method, "*?") && !slices.Contains(knownMCPMethods, m.Method):
		bad(at+".method", "%q is not an MCP method: use one of %s, or a glob", m.Method, strings.Join(knownMCPMethods, ", "))
	}
	if m.Tool != nil {
		r.Tool = globList(at+".tool", m.Tool, bad)
		if m.Method != "" && !protocol.MatchMCPGlob(m.Method, "tools/call") {
			bad(at+".tool", "tool applies to tools/call only, and method %q never matches it", m.Method)
		}
	}
	if m.Params != nil {
		ps, ok := m.Params.(map[string]any)
		if !ok {
			bad(at+".params", "params must be a map of parameter name to glob (e.g. params: {name: \"read_*\"})")
		} else {
			r.Params = map[string][]string{}
			for k, v := range ps {
				kat := at + ".params" + yamldoc.Key(k)
				if k == "" || strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") || strings.Contains(k, "..") {
					bad(kat, "%q is not a parameter name: write a dotted name such as name or arguments.path", k)
					continue
				}
				r.Params[k] = globList(kat, v, bad)
			}
		}
	}
	return r
}

// globList reads a glob or {any: [globs]}.
func globList(at string, v any, bad func(at, format string, args ...any)) []string {
	var gs []string
	switch x := v.(type) {
	case string:
		gs = []string{x}
	case map[string]any:
		l, ok := x["any"].([]any)
		if len(x) != 1 || !ok || len(l) == 0 {
			bad(at, "want a glob or {any: [glob, ...]}")
			return nil
		}
		for _, e := range l {
			s, ok := e.(string)
			if !ok {
				bad(at+".any", "%v is not a string glob", e)
				return nil
			}
			gs = append(gs, s)
		}
	default:
		bad(at, "want a glob or {any: [glob, ...]}, not %T", v)
		return nil
	}
	for _, g := range gs {
		if err := protocol.ValidMCPGlob(g); err != nil {
			bad(at, "%v", err)
			return nil
		}
	}
	return gs
}

// MCPRules converts an endpoint's (or a blueprint server's) allow and deny
// rules, reporting problems through bad under at ("$...").
func MCPRules(at string, rules []Rule, deny []Match, bad func(at, format string, args ...any)) (allow, denied []protocol.MCPRule) {
	for i, r := range rules {
		allow = append(allow, CheckMCPRule(fmt.Sprintf("%s.rules[%d].allow", at, i), r.Allow, bad))
	}
	for i, m := range deny {
		denied = append(denied, CheckMCPRule(fmt.Sprintf("%s.deny_rules[%d]", at, i), m, bad))
	}
	return allow, denied
}
