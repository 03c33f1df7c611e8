package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/bohica-labs/darkshell/controller/health"
)

// Health returns a sandbox's health report.
func (c *Client) Health(ctx context.Context, name string) (*health.Report, error) {
	var r health.Report
	return &r, c.do(ctx, "GET", "/v1/sandboxes/"+url.PathEscape(name)+"/health", nil, &r)
}

// HealthMetrics returns a sandbox's health as Prometheus text.
func (c *Client) HealthMetrics(ctx context.Context, name string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://darkshell/v1/sandboxes/"+url.PathEscape(name)+"/health?format=prometheus", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrDaemon, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return "", decode(resp, nil)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b), err
}
