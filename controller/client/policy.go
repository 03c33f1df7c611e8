package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/egress"
)

// PolicyTest asks how the sandbox's egress proxy would decide req, without
// sending traffic.
func (c *Client) PolicyTest(ctx context.Context, name string, req *egress.Request) (*api.PolicyTestResult, error) {
	var out api.PolicyTestResult
	err := c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(name)+"/policy/test", req, &out)
	return &out, err
}

// PolicySet replaces the network part of a running sandbox's policy.
func (c *Client) PolicySet(ctx context.Context, name string, req *api.PolicySetRequest) (*api.PolicySetResult, error) {
	var out api.PolicySetResult
	err := c.do(ctx, http.MethodPut, "/v1/sandboxes/"+url.PathEscape(name)+"/policy", req, &out)
	return &out, err
}

// NetTest reports, hop by hop, where a request from the sandbox stops.
func (c *Client) NetTest(ctx context.Context, name string, req *api.NetTestRequest) (*egress.NetTest, error) {
	var out egress.NetTest
	err := c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(name)+"/net-test", req, &out)
	return &out, err
}
