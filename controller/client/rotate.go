package client

import (
	"context"
	"net/url"

	"github.com/bohica-labs/darkshell/controller/api"
)

// ProviderRotate updates a provider's credentials (and their expiry) and
// reports what the rotation reached.
func (c *Client) ProviderRotate(ctx context.Context, name string, req *api.ProviderRequest) (*api.ProviderUpdated, error) {
	var u api.ProviderUpdated
	return &u, c.do(ctx, "PATCH", "/v1/providers/"+url.PathEscape(name), req, &u)
}
