package mcpproxy

import (
	"fmt"
	"path"
)

// Policy is a server's tool policy: tool name globs (path.Match syntax).
// A tool is allowed when no Deny glob matches it and, if Allow is not empty,
// some Allow glob does.
type Policy struct {
	Allow []string `json:"allow,omitempty"`
	Deny  []string `json:"deny,omitempty"`
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
	return nil
}

// Decide reports whether tool may be listed and called; when it may not,
// rule names the policy rule that refused it (e.g. `deny-tool "echo*"`).
func (p Policy) Decide(tool string) (ok bool, rule string) {
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
