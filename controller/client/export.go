package client

import (
	"context"
	"net/url"

	"github.com/bohica-labs/darkshell/controller/export"
)

// ExportList lists the configured exporters with their counters.
func (c *Client) ExportList(ctx context.Context) ([]export.Status, error) {
	var l []export.Status
	return l, c.do(ctx, "GET", "/v1/exporters", nil, &l)
}

// ExportAdd adds an exporter; the daemon starts it at once.
func (c *Client) ExportAdd(ctx context.Context, sp *export.Spec) (*export.Status, error) {
	var st export.Status
	return &st, c.do(ctx, "POST", "/v1/exporters", sp, &st)
}

// ExportRemove stops and removes an exporter (and its spool).
func (c *Client) ExportRemove(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/v1/exporters/"+url.PathEscape(name), nil, nil)
}
