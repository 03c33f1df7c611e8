package client

import (
	"context"
	"net/url"
	"strconv"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/forward"
)

// ForwardStart starts a forward ([bind:]PORT) for a sandbox.
func (c *Client) ForwardStart(ctx context.Context, sandbox, spec string, reverse bool) (*forward.Info, error) {
	var info forward.Info
	return &info, c.do(ctx, "POST", "/v1/sandboxes/"+url.PathEscape(sandbox)+"/forwards", &api.ForwardRequest{Spec: spec, Reverse: reverse}, &info)
}

// ForwardStop stops a forward.
func (c *Client) ForwardStop(ctx context.Context, sandbox string, port int, reverse bool) error {
	p := "/v1/sandboxes/" + url.PathEscape(sandbox) + "/forwards/" + strconv.Itoa(port)
	if reverse {
		p += "?reverse=1"
	}
	return c.do(ctx, "DELETE", p, nil, nil)
}

// ForwardList lists running forwards (sandbox "" for all).
func (c *Client) ForwardList(ctx context.Context, sandbox string) ([]forward.Info, error) {
	var l []forward.Info
	return l, c.do(ctx, "GET", "/v1/forwards?sandbox="+url.QueryEscape(sandbox), nil, &l)
}
