package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/bohica-labs/darkshell/controller/api"
)

// PolicySyncStart registers a `policy sync` job in the daemon.
func (c *Client) PolicySyncStart(ctx context.Context, req *api.PolicySyncJobRequest) (*api.PolicySyncJob, error) {
	var out api.PolicySyncJob
	return &out, c.do(ctx, http.MethodPost, "/v1/policy-sync", req, &out)
}

// PolicySyncList lists the daemon's `policy sync` jobs.
func (c *Client) PolicySyncList(ctx context.Context) ([]api.PolicySyncJob, error) {
	var out []api.PolicySyncJob
	return out, c.do(ctx, http.MethodGet, "/v1/policy-sync", nil, &out)
}

// PolicySyncStop stops and removes a job (by id).
func (c *Client) PolicySyncStop(ctx context.Context, id string) (*api.PolicySyncJob, error) {
	var out api.PolicySyncJob
	return &out, c.do(ctx, http.MethodDelete, "/v1/policy-sync/"+url.PathEscape(id), nil, &out)
}
