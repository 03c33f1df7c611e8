package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/bohica-labs/darkshell/controller/inference"
)

// InferenceGet returns a sandbox's inference configuration.
func (c *Client) InferenceGet(ctx context.Context, name string) (*inference.Config, error) {
	var out inference.Config
	err := c.do(ctx, http.MethodGet, "/v1/sandboxes/"+url.PathEscape(name)+"/inference", nil, &out)
	return &out, err
}

// InferenceSet replaces a sandbox's inference configuration (no routes:
// removes it); a running sandbox uses it from its next request.
func (c *Client) InferenceSet(ctx context.Context, name string, cfg *inference.Config) (*inference.Config, error) {
	var out inference.Config
	err := c.do(ctx, http.MethodPut, "/v1/sandboxes/"+url.PathEscape(name)+"/inference", cfg, &out)
	return &out, err
}
