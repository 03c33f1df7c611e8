package client

import (
	"context"
	"net/url"

	"github.com/bohica-labs/darkshell/controller/api"
)

// Stop stops a sandbox's processes and keeps its state and workspace.
func (c *Client) Stop(ctx context.Context, name string) (*api.Sandbox, error) {
	var sb api.Sandbox
	return &sb, c.do(ctx, "POST", "/v1/sandboxes/"+url.PathEscape(name)+"/stop", nil, &sb)
}

// Start starts a stopped (or failed) sandbox again.
func (c *Client) Start(ctx context.Context, name string) (*api.Sandbox, error) {
	var sb api.Sandbox
	return &sb, c.do(ctx, "POST", "/v1/sandboxes/"+url.PathEscape(name)+"/start", nil, &sb)
}
