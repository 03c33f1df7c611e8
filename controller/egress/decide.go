// Package egress is the host side of a sandbox's network policy: one
// evaluator of OpenShell's network_policies (hosts, ports, binaries, REST
// method/path rules, access presets) shared by the egress proxy and
// `darkshell policy test`, and the proxy itself (CONNECT and plain HTTP,
// SSRF checks after resolution, dialing exactly the checked address).
package egress

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/bohica-labs/darkshell/controller/policy"
)

// Request is what the proxy knows about one outbound request. Method and
// Path are empty for a connection decided at L4 (CONNECT before any
// inspection).
type Request struct {
	Host string `json:"host"`
	Port int    `json:"port"`
	// Binary is the calling process's real executable (/proc/PID/exe),
	// Ancestors its parents' executables, nearest first. Never argv.
	Binary    string   `json:"binary,omitempty"`
	Ancestors []string `json:"ancestors,omitempty"`
	Method    string   `json:"method,omitempty"`
	Path      string   `json:"path,omitempty"`
	Query     string   `json:"query,omitempty"`
}

// Decision is the evaluator's answer.
type Decision struct {
	Allow bool `json:"allow"`
	// Policy is the network_policies key that matched (the smallest name
	// when several do); Endpoint its endpoint index; Rule the allow or deny
	// rule that decided at L7.
	Policy   string `json:"policy,omitempty"`
	Endpoint int    `json:"endpoint"`
	Rule     string `json:"rule,omitempty"`
	Reason   string `json:"reason"`
	// Audit: the endpoint's enforcement is audit, so a deny is logged and
	// the request still allowed.
	Audit bool `json:"audit,omitempty"`
	// Inspect: the endpoint has L7 rules, so each request must be decided
	// again with its method and path.
	Inspect bool `json:"inspect,omitempty"`
	// Provider is the credential_binding provider of the endpoint.
	Provider string `json:"provider,omitempty"`
	// AllowedIPs are the endpoint's SSRF overrides.
	AllowedIPs []netip.Prefix `json:"-"`
}

// Engine evaluates one policy's network part. It is immutable: a reload
// swaps engines.
type Engine struct {
	pol   *policy.Policy
	names []string
}

// Compile checks the policy's network part and returns its engine. A nil
// policy (or one without network_policies) denies everything.
func Compile(p *policy.Policy) (*Engine, error) {
	e := &Engine{pol: p}
	if p == nil {
		return e, nil
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	for name := range p.NetworkPolicies {
		e.names = append(e.names, name)
	}
	slices.Sort(e.names)
	return e, nil
}

// Rules is the number of network policies.
func (e *Engine) Rules() int { return len(e.names) }

func (e *Engine) displayName(key string) string {
	if n := e.pol.NetworkPolicies[key].Name; n != "" && n != key {
		return key + " (" + n + ")"
	}
	return key
}

// Decide evaluates r. Deny reasons say what would have to change.
func (e *Engine) Decide(r Request) Decision {
	if len(e.names) == 0 {
		return Decision{Reason: "the sandbox's policy has no network_policies: all egress is denied"}
	}
	host := strings.ToLower(strings.TrimSuffix(r.Host, "."))
	var hostMatched, portMatched []string
	var allowedPorts []string
	for _, name := range e.names {
		rule := e.pol.NetworkPolicies[name]
		for i, ep := range rule.Endpoints {
			if !MatchHost(ep.Host, host) {
				continue
			}
			hostMatched = append(hostMatched, name)
			if !portAllowed(ep, r.Port) {
				allowedPorts = append(allowedPorts, portsOf(ep)...)
				continue
			}
			if ep.Path != "" && r.Path != "" && !MatchPath(ep.Path, r.Path) {
				continue
			}
			portMatched = append(portMatched, name)
			if !binaryAllowed(rule.Binaries, r) {
				continue
			}
			return e.decideEndpoint(name, i, ep, r)
		}
	}
	switch {
	case len(portMatched) > 0:
		var bins []string
		for _, name := range slices.Compact(portMatched) {
			for _, b := range e.pol.NetworkPolicies[name].Binaries {
				bins = append(bins, b.Path)
			}
		}
		who := r.Binary
		if who == "" {
			who = "an unidentified process"
		}
		return Decision{Policy: portMatched[0], Reason: fmt.Sprintf("binary %s is not allowed to reach %s:%d by policy %s (allowed binaries: %s; the real executable and its ancestors are checked, never argv)",
			who, host, r.Port, e.displayName(portMatched[0]), strings.Join(bins, ", "))}
	case len(hostMatched) > 0:
		slices.Sort(allowedPorts)
		return Decision{Policy: hostMatched[0], Reason: fmt.Sprintf("port %d is not allowed for %s by policy %s (allowed ports: %s)",
			r.Port, host, e.displayName(hostMatched[0]), strings.Join(slices.Compact(allowedPorts), ", "))}
	}
	return Decision{Reason: fmt.Sprintf("no network policy allows %s:%d (deny by default: add an endpoint for this host to the policy)", host, r.Port)}
}

func (e *Engine) decideEndpoint(name string, i int, ep policy.Endpoint, r Request) Decision {
	d := Decision{Allow: true, Policy: name, Endpoint: i, Audit: ep.Enforcement == "audit"}
	if ep.CredentialBinding != nil {
		d.Provider = ep.CredentialBinding.Provider
	}
	for _, c := range ep.AllowedIPs {
		if p, err := netip.ParsePrefix(c); err == nil {
			d.AllowedIPs = append(d.AllowedIPs, p)
		} else if a, err := netip.ParseAddr(c); err == nil {
			d.AllowedIPs = append(d.AllowedIPs, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	l7 := len(ep.Rules) > 0 || len(ep.DenyRules) > 0 || (ep.Access != "" && ep.Access != "full")
	switch ep.Protocol {
	case "mcp", "json-rpc", "graphql", "websocket", "sql":
		if l7 {
			d.Allow, d.Reason = false, fmt.Sprintf("policy %s endpoint %d needs %s inspection, which the local egress proxy does not do: use protocol rest, or no rules (L4)", e.displayName(name), i, ep.Protocol)
			return d.audit()
		}
	}
	if !l7 {
		d.Reason = fmt.Sprintf("allowed by policy %s", e.displayName(name))
		return d
	}
	d.Inspect = true
	if r.Method == "" {
		d.Reason = fmt.Sprintf("allowed at L4 by policy %s; each request is checked against its rules", e.displayName(name))
		return d
	}
	q, _ := url.ParseQuery(r.Query)
	for j, m := range ep.DenyRules {
		if matchRule(m, r, q) {
			d.Allow, d.Rule = false, fmt.Sprintf("deny_rules[%d]", j)
			d.Reason = fmt.Sprintf("%s %s is denied by policy %s deny_rules[%d]", r.Method, r.Path, e.displayName(name), j)
			return d.audit()
		}
	}
	if ep.Access != "" {
		if accessAllows(ep.Access, r.Method) {
			d.Rule, d.Reason = "access: "+ep.Access, fmt.Sprintf("allowed by policy %s (access %s)", e.displayName(name), ep.Access)
			return d
		}
		d.Allow, d.Rule = false, "access: "+ep.Access
		d.Reason = fmt.Sprintf("%s is not allowed by access %s of policy %s", r.Method, ep.Access, e.displayName(name))
		return d.audit()
	}
	for j, rule := range ep.Rules {
		if matchRule(rule.Allow, r, q) {
			d.Rule, d.Reason = fmt.Sprintf("rules[%d]", j), fmt.Sprintf("allowed by policy %s rules[%d]", e.displayName(name), j)
			return d
		}
	}
	d.Allow = false
	d.Reason = fmt.Sprintf("%s %s matches no allow rule of policy %s", r.Method, r.Path, e.displayName(name))
	return d.audit()
}

// audit turns a deny into an allowed, logged would-deny for audit endpoints.
func (d Decision) audit() Decision {
	if d.Audit && !d.Allow {
		d.Allow = true
		d.Reason = "audit only, would deny: " + d.Reason
	}
	return d
}

func portAllowed(ep policy.Endpoint, port int) bool {
	return ep.Port == port || slices.Contains(ep.Ports, port)
}

func portsOf(ep policy.Endpoint) []string {
	var out []string
	for _, p := range append([]int{ep.Port}, ep.Ports...) {
		if p != 0 {
			out = append(out, strconv.Itoa(p))
		}
	}
	return out
}

// binaryAllowed: the process or one of its ancestors matches a listed
// binary; a rule that lists no binaries allows any process.
func binaryAllowed(bins []policy.Binary, r Request) bool {
	if len(bins) == 0 {
		return true
	}
	for _, b := range bins {
		for _, exe := range append([]string{r.Binary}, r.Ancestors...) {
			if exe != "" && MatchPath(b.Path, exe) {
				return true
			}
		}
	}
	return false
}

func accessAllows(access, method string) bool {
	switch strings.ToUpper(method) {
	case "GET", "HEAD", "OPTIONS":
		return true
	case "POST", "PUT", "PATCH":
		return access == "read-write" || access == "full"
	}
	return access == "full"
}

func matchRule(m policy.Match, r Request, q url.Values) bool {
	if m.Method != "" && m.Method != "*" && !strings.EqualFold(m.Method, r.Method) {
		return false
	}
	if m.Path != "" && !MatchPath(m.Path, r.Path) {
		return false
	}
	if m.Query != nil {
		qm, ok := m.Query.(map[string]any)
		if !ok {
			return false
		}
		for k, want := range qm {
			if !queryMatches(want, q[k]) {
				return false
			}
		}
	}
	return true
}

func queryMatches(want any, got []string) bool {
	var globs []string
	switch w := want.(type) {
	case string:
		globs = []string{w}
	case map[string]any:
		list, _ := w["any"].([]any)
		for _, g := range list {
			if s, ok := g.(string); ok {
				globs = append(globs, s)
			}
		}
	default:
		globs = []string{fmt.Sprint(w)}
	}
	for _, v := range got {
		for _, g := range globs {
			if MatchWild(g, v) {
				return true
			}
		}
	}
	return false
}
