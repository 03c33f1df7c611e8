package mcp

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/bohica-labs/darkshell/mcpproxy"
)

// Connect serves the named server on stdin/stdout (`sandboxd mcp connect
// SERVER`): a stdio shim for agents that only speak stdio, in front of the
// server's loopback URL from the generated config in workspace dir. It
// relays raw JSON-RPC (see mcpproxy.Shim) and ends at the end of stdin.
func Connect(ctx context.Context, dir, name string, log *slog.Logger) error {
	c, err := ReadConfig(dir)
	if err != nil {
		return err
	}
	s, ok := c.MCPServers[name]
	if !ok {
		names := make([]string, 0, len(c.MCPServers))
		for n := range c.MCPServers {
			names = append(names, n)
		}
		sort.Strings(names)
		return fmt.Errorf("%w: %q (configured: %s)", ErrNoServer, name, strings.Join(names, ", "))
	}
	// A raw relay (mcpproxy.Shim): the loopback endpoint applies the tool
	// policy, redaction and the call log, so the shim does not again.
	return mcpproxy.Shim(ctx, mcpproxy.ShimOptions{Name: name, URL: s.URL, Logger: log}, os.Stdin, os.Stdout)
}
