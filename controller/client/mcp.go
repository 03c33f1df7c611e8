package client

import (
	"context"
	"net/url"
	"strconv"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/mcp"
	"github.com/bohica-labs/darkshell/controller/provider"
	"github.com/bohica-labs/darkshell/mcpproxy"
)

// MCPAdd adds (and starts) an MCP server for a sandbox.
func (c *Client) MCPAdd(ctx context.Context, sandbox string, req *api.MCPAddRequest) (*mcp.Info, error) {
	var info mcp.Info
	return &info, c.do(ctx, "POST", "/v1/sandboxes/"+url.PathEscape(sandbox)+"/mcp", req, &info)
}

// MCPList lists a sandbox's MCP servers with their state.
func (c *Client) MCPList(ctx context.Context, sandbox string) ([]mcp.Info, error) {
	var l []mcp.Info
	return l, c.do(ctx, "GET", "/v1/sandboxes/"+url.PathEscape(sandbox)+"/mcp", nil, &l)
}

// MCPRemove stops and removes an MCP server.
func (c *Client) MCPRemove(ctx context.Context, sandbox, server string) error {
	return c.do(ctx, "DELETE", "/v1/sandboxes/"+url.PathEscape(sandbox)+"/mcp/"+url.PathEscape(server), nil, nil)
}

// MCPLogs returns the last n tool-call events of a sandbox (server "" for all; n 0 for all).
func (c *Client) MCPLogs(ctx context.Context, sandbox, server string, n int) ([]mcpproxy.Event, error) {
	q := url.Values{}
	if server != "" {
		q.Set("server", server)
	}
	if n > 0 {
		q.Set("n", strconv.Itoa(n))
	}
	var evs []mcpproxy.Event
	return evs, c.do(ctx, "GET", "/v1/sandboxes/"+url.PathEscape(sandbox)+"/mcp/logs?"+q.Encode(), nil, &evs)
}

// ProviderCreate stores a provider.
func (c *Client) ProviderCreate(ctx context.Context, req *api.ProviderRequest) (*provider.Summary, error) {
	var s provider.Summary
	return &s, c.do(ctx, "POST", "/v1/providers", req, &s)
}

// ProviderUpdate merges credentials into a provider (rotation).
func (c *Client) ProviderUpdate(ctx context.Context, name string, creds map[string]string) (*api.ProviderUpdated, error) {
	var u api.ProviderUpdated
	return &u, c.do(ctx, "PATCH", "/v1/providers/"+url.PathEscape(name), &api.ProviderRequest{Credentials: creds}, &u)
}

// ProviderList lists providers (never their values).
func (c *Client) ProviderList(ctx context.Context) ([]provider.Summary, error) {
	var l []provider.Summary
	return l, c.do(ctx, "GET", "/v1/providers", nil, &l)
}

// ProviderDelete deletes a provider.
func (c *Client) ProviderDelete(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/v1/providers/"+url.PathEscape(name), nil, nil)
}
