package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/snapshot"
)

// Progress receives the progress events of a long operation: the phase
// ("freeze", "pull", "capture", "restore", "push", "verify") and its counts.
type Progress func(phase string, p api.SyncProgress)

// long posts body to path and decodes the result into out; with progress
// set it asks for the NDJSON event stream and reports each progress event.
func (c *Client) long(ctx context.Context, path string, body any, progress Progress, out any) error {
	if progress == nil {
		return c.do(ctx, "POST", path, body, out)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	hr, err := http.NewRequestWithContext(ctx, "POST", "http://darkshell"+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(hr)
	if err != nil {
		if errors.Is(err, ErrDaemon) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrDaemon, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decode(resp, nil)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var ev api.LongEvent
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: event stream: %v", ErrDaemon, err)
		}
		switch {
		case ev.Type == "progress" && ev.Progress != nil:
			progress(ev.Phase, *ev.Progress)
		case ev.Type == "result":
			return json.Unmarshal(ev.Result, out)
		case ev.Type == "error" && ev.Error != nil:
			return &APIError{Status: http.StatusOK, Code: ev.Error.Code, Remote: ev.Error.Remote, Message: ev.Error.Message}
		}
	}
}

// Snapshot takes a snapshot of sandbox name's workspace.
func (c *Client) Snapshot(ctx context.Context, name string, req *api.SnapshotRequest, progress Progress) (*api.SnapshotResult, error) {
	r := *req
	r.Progress = progress != nil
	var res api.SnapshotResult
	return &res, c.long(ctx, "/v1/sandboxes/"+url.PathEscape(name)+"/snapshots", &r, progress, &res)
}

// Restore restores a snapshot into sandbox name's workspace.
func (c *Client) Restore(ctx context.Context, name string, req *api.RestoreRequest, progress Progress) (*api.RestoreResult, error) {
	r := *req
	r.Progress = progress != nil
	var res api.RestoreResult
	return &res, c.long(ctx, "/v1/sandboxes/"+url.PathEscape(name)+"/restore", &r, progress, &res)
}

// Snapshots lists snapshots (of sandbox, when not "").
func (c *Client) Snapshots(ctx context.Context, sandbox string) ([]*snapshot.Snapshot, error) {
	var l []*snapshot.Snapshot
	return l, c.do(ctx, "GET", "/v1/snapshots?sandbox="+url.QueryEscape(sandbox), nil, &l)
}

// DeleteSnapshot deletes a snapshot (an id, or a name of sandbox) and
// collects the chunks no other snapshot uses.
func (c *Client) DeleteSnapshot(ctx context.Context, sandbox, ref string) (*api.PruneResult, error) {
	var res api.PruneResult
	return &res, c.do(ctx, "DELETE", "/v1/snapshots/"+url.PathEscape(ref)+"?sandbox="+url.QueryEscape(sandbox), nil, &res)
}

// PruneSnapshots applies a retention policy to a sandbox's snapshots.
func (c *Client) PruneSnapshots(ctx context.Context, req *api.PruneRequest) (*api.PruneResult, error) {
	var res api.PruneResult
	return &res, c.do(ctx, "POST", "/v1/snapshots/prune", req, &res)
}

// VerifySnapshots checks every chunk of the selected snapshots.
func (c *Client) VerifySnapshots(ctx context.Context, req *api.VerifyRequest, progress Progress) (*snapshot.VerifyResult, error) {
	r := *req
	r.Progress = progress != nil
	var res snapshot.VerifyResult
	return &res, c.long(ctx, "/v1/snapshots/verify", &r, progress, &res)
}
