package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/syncer"
	"github.com/bohica-labs/darkshell/internal/treesync"
	"github.com/bohica-labs/darkshell/protocol"
)

// sync runs one push or pull and answers with the summary, or with
// Progress an NDJSON stream of progress events and the result.
func (d *Daemon) sync(w http.ResponseWriter, r *http.Request) {
	var req api.SyncRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeErr(w, fmt.Errorf("%w: sync body: %v", errBadRequest, err))
		return
	}
	run, err := d.prepareSync(r.Context(), r.PathValue("name"), &req)
	if err != nil {
		writeErr(w, err)
		return
	}
	ctx := r.Context()
	if !req.Progress {
		res, err := run(ctx, nil)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, 200, res)
		return
	}
	// NDJSON: progress snapshots every progressEvery, then the result.
	meter := &treesync.Meter{}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(200)
	enc, fl := json.NewEncoder(w), w.(http.Flusher)
	emit := func(ev api.SyncEvent) {
		_ = enc.Encode(ev)
		fl.Flush()
	}
	start := time.Now()
	done := make(chan struct{})
	var res *api.SyncResult
	go func() {
		defer close(done)
		res, err = run(ctx, meter)
	}()
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	var last api.SyncProgress
	for {
		select {
		case <-tick.C:
			m := meter
			p := api.SyncProgress{FilesDone: m.FilesDone.Load(), FilesTotal: m.FilesTotal.Load(),
				BytesDone: m.BytesDone.Load(), BytesTotal: m.BytesTotal.Load()}
			if p == last {
				continue
			}
			last = p
			p.ElapsedMs = time.Since(start).Milliseconds()
			emit(api.SyncEvent{Type: "progress", Progress: &p})
		case <-done:
			if err != nil {
				_, e := httpError(err)
				emit(api.SyncEvent{Type: "error", Error: &e})
				return
			}
			emit(api.SyncEvent{Type: "result", Result: res})
			return
		}
	}
}

// progressEvery is the interval of a sync's NDJSON progress events.
const progressEvery = 100 * time.Millisecond

// prepareSync checks a sync request, fills in the default remote and
// returns the function that runs it over the sandbox's warm session.
func (d *Daemon) prepareSync(ctx context.Context, name string, req *api.SyncRequest) (func(context.Context, *treesync.Meter) (*api.SyncResult, error), error) {
	if req.Direction != api.SyncPush && req.Direction != api.SyncPull {
		return nil, fmt.Errorf("%w: direction must be push or pull, not %q", errBadRequest, req.Direction)
	}
	if !filepath.IsAbs(req.Local) {
		return nil, fmt.Errorf("%w: local path %q is not absolute", errBadRequest, req.Local)
	}
	sb, err := d.opts.Home.Get(name)
	if err != nil {
		return nil, err
	}
	if req.Remote == "" {
		req.Remote = "sandbox"
		if sb.Driver == "local" || sb.Driver == "" {
			req.Remote = "/sandbox"
		} else if drv, err := driver.Get(sb.Driver); err == nil {
			if ws, ok := drv.(driver.Workspacer); ok {
				req.Remote = ws.Workspace()
			}
			if ws, ok := drv.(driver.WorkspaceOf); ok && ws.WorkspaceOf(sb) != "" {
				req.Remote = ws.WorkspaceOf(sb)
			}
		}
	}
	opt := syncer.Options{Delete: req.Delete, DryRun: req.DryRun, Checksum: req.Checksum,
		Exclude: req.Exclude, Include: req.Include, GitIgnore: req.GitIgnore, Raw: localLink(sb)}
	if err := opt.Request(req.Remote).Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	s, err := d.session(ctx, name)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(s.Remote().Caps, protocol.CapSync) {
		return nil, &protocol.RemoteError{Code: protocol.CodeUnsupported, Message: syncer.ErrNoSync.Error()}
	}
	// A sandboxd that speaks directory digests gets (push) or sends (pull)
	// them instead of whole entry lists.
	opt.DirSums = slices.Contains(s.Remote().Caps, protocol.CapSyncDirSums)
	return func(ctx context.Context, m *treesync.Meter) (*api.SyncResult, error) {
		opt := opt
		opt.Meter = m
		var sum *protocol.SyncSummary
		var err error
		start := time.Now()
		if req.Direction == api.SyncPush {
			sum, err = syncer.Push(ctx, s, req.Local, req.Remote, opt)
		} else {
			sum, err = syncer.Pull(ctx, s, req.Remote, req.Local, opt)
		}
		d.exportSync(name, &apiSyncView{req.Direction, req.Local, req.Remote}, start, sum, err)
		if err != nil {
			return nil, err
		}
		return &api.SyncResult{SyncSummary: *sum, Direction: req.Direction, Local: req.Local, Remote: req.Remote}, nil
	}, nil
}

// createUploads pushes the trees of `sandbox create --upload` into a new
// sandbox, in order; the first failure stops them.
func (d *Daemon) createUploads(ctx context.Context, name string, ups []api.SyncRequest) ([]api.SyncResult, error) {
	var out []api.SyncResult
	for i := range ups {
		up := ups[i]
		up.Direction, up.DryRun, up.Progress = api.SyncPush, false, false
		run, err := d.prepareSync(ctx, name, &up)
		if err != nil {
			return nil, fmt.Errorf("upload %s: %w", up.Local, err)
		}
		res, err := run(ctx, nil)
		if err != nil {
			return nil, fmt.Errorf("upload %s: %w", up.Local, err)
		}
		out = append(out, *res)
	}
	return out, nil
}
