package egress

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"

	"github.com/bohica-labs/darkshell/controller/policy"
	"github.com/bohica-labs/darkshell/protocol"
)

// MCPEndpointRules returns the `protocol: mcp` rules a policy sets for an
// MCP server URL: those of every endpoint whose host, port and path match
// it (as OpenShell matches L7 endpoints). matched names the network
// policies they came from, empty when none applies. An endpoint without
// rules and deny_rules adds no constraint.
func MCPEndpointRules(p *policy.Policy, rawURL string) (allow, deny []protocol.MCPRule, matched []string, err error) {
	if p == nil {
		return nil, nil, nil, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("MCP server URL %q: %w", rawURL, err)
	}
	port := 443
	if u.Scheme == "http" {
		port = 80
	}
	if ps := u.Port(); ps != "" {
		if port, err = strconv.Atoi(ps); err != nil {
			return nil, nil, nil, fmt.Errorf("MCP server URL %q: bad port", rawURL)
		}
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	upath := u.EscapedPath()
	if upath == "" {
		upath = "/"
	}
	names := make([]string, 0, len(p.NetworkPolicies))
	for n := range p.NetworkPolicies {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		for _, e := range p.NetworkPolicies[n].Endpoints {
			if e.Protocol != "mcp" || !MatchHost(e.Host, host) || !(e.Port == port || slices.Contains(e.Ports, port)) {
				continue
			}
			if e.Path != "" && e.Path != "**" && !MatchPath(e.Path, upath) {
				continue
			}
			a, d := policy.MCPRules("", e.Rules, e.DenyRules, func(string, string, ...any) {})
			allow, deny = append(allow, a...), append(deny, d...)
			if !slices.Contains(matched, n) {
				matched = append(matched, n)
			}
		}
	}
	return allow, deny, matched, nil
}
