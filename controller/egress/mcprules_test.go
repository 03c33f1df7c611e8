package egress

import (
	"slices"
	"testing"

	"github.com/bohica-labs/darkshell/controller/policy"
)

func TestMCPEndpointRules(t *testing.T) {
	p, err := policy.Parse("p.yaml", []byte(`version: 1
network_policies:
  a:
    endpoints:
      - host: "*.example.com"
        port: 443
        path: /mcp
        protocol: mcp
        rules: [{ allow: { method: tools/call, tool: "read_*" } }]
        deny_rules: [{ method: tools/call, tool: read_secret }]
      - { host: api.example.com, port: 443, protocol: rest, access: read-only }
  b:
    endpoints:
      - host: mcp.example.com
        ports: [443, 8443]
        protocol: mcp
        rules: [{ allow: { method: tools/list } }]
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		url         string
		allow, deny int
		matched     []string
	}{
		{"https://mcp.example.com/mcp", 2, 1, []string{"a", "b"}},
		{"https://mcp.example.com:8443/mcp", 1, 0, []string{"b"}},
		{"https://mcp.example.com/other", 1, 0, []string{"b"}},
		{"https://api.example.com/mcp", 1, 1, []string{"a"}},
		{"http://mcp.example.com/mcp", 0, 0, nil},
		{"https://example.org/mcp", 0, 0, nil},
	} {
		a, d, m, err := MCPEndpointRules(p, c.url)
		if err != nil || len(a) != c.allow || len(d) != c.deny || !slices.Equal(m, c.matched) {
			t.Errorf("%s: %d allow, %d deny, %v, %v; want %d, %d, %v", c.url, len(a), len(d), m, err, c.allow, c.deny, c.matched)
		}
	}
	if a, d, m, err := MCPEndpointRules(nil, "https://x/"); a != nil || d != nil || m != nil || err != nil {
		t.Error("no policy must mean no rules")
	}
}
