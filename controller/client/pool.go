package client

import (
	"context"
	"net/url"

	"github.com/bohica-labs/darkshell/controller/api"
)

// PoolSet creates or resizes the warm pool spec.Name (PUT /v1/pools/{name}).
func (c *Client) PoolSet(ctx context.Context, spec *api.PoolSpec) (*api.PoolStatus, error) {
	var st api.PoolStatus
	return &st, c.do(ctx, "PUT", "/v1/pools/"+url.PathEscape(spec.Name), spec, &st)
}

// PoolList lists the warm pools.
func (c *Client) PoolList(ctx context.Context) ([]api.PoolStatus, error) {
	var l []api.PoolStatus
	return l, c.do(ctx, "GET", "/v1/pools", nil, &l)
}

// PoolGet returns one warm pool.
func (c *Client) PoolGet(ctx context.Context, name string) (*api.PoolStatus, error) {
	var st api.PoolStatus
	return &st, c.do(ctx, "GET", "/v1/pools/"+url.PathEscape(name), nil, &st)
}

// PoolDelete deletes a warm pool and its unclaimed members.
func (c *Client) PoolDelete(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/v1/pools/"+url.PathEscape(name), nil, nil)
}
