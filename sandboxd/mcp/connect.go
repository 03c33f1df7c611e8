package mcp

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/bohica-labs/darkshell/mcpproxy"
)

// Connect serves the named server on stdin/stdout (`sandboxd mcp connect
// SERVER`): a stdio shim for agents that only speak stdio, in front of the
// server's loopback URL from the generated config in workspace dir.
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
	mcpproxy.TuneGC()
	p, err := mcpproxy.New(mcpproxy.Options{Name: name, URL: s.URL, Logger: log})
	if err != nil {
		return err
	}
	defer p.Close()
	return p.ServeTransport(ctx, &sdk.StdioTransport{})
}
