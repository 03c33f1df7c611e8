package client

import (
	"context"
	"net/url"
	"strconv"

	"github.com/bohica-labs/darkshell/protocol"
)

// Alerts lists a sandbox's alerts (newest limit, oldest first; 0: 1000).
func (c *Client) Alerts(ctx context.Context, sandbox string, limit int) ([]protocol.Event, error) {
	var l []protocol.Event
	p := "/v1/sandboxes/" + url.PathEscape(sandbox) + "/alerts"
	if limit > 0 {
		p += "?limit=" + strconv.Itoa(limit)
	}
	return l, c.do(ctx, "GET", p, nil, &l)
}
