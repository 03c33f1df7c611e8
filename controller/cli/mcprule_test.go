package cli

import (
	"slices"
	"testing"
)

func TestParseMCPRule(t *testing.T) {
	for _, c := range []struct {
		in     string
		method string
		tool   []string
		ok     bool
	}{
		{"tools/list", "tools/list", nil, true},
		{"tools/call:read_*", "tools/call", []string{"read_*"}, true},
		{"*:x", "*", []string{"x"}, true},
		{"tools/list:x", "", nil, false},
		{"", "", nil, false},
		{"tools/call:[a]", "", nil, false},
	} {
		r, err := parseMCPRule(c.in)
		if (err == nil) != c.ok || c.ok && (r.Method != c.method || !slices.Equal(r.Tool, c.tool)) {
			t.Errorf("parseMCPRule(%q) = %+v, %v", c.in, r, err)
		}
	}
}
