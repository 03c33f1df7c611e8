package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/syncer"
	"github.com/bohica-labs/darkshell/internal/treesync"
	"github.com/bohica-labs/darkshell/protocol"
)

// sync runs one push or pull and answers with the summary.
func (d *Daemon) sync(w http.ResponseWriter, r *http.Request) {
	var req api.SyncRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeErr(w, fmt.Errorf("%w: sync body: %v", errBadRequest, err))
		return
	}
	if req.Direction != api.SyncPush && req.Direction != api.SyncPull {
		writeErr(w, fmt.Errorf("%w: direction must be push or pull, not %q", errBadRequest, req.Direction))
		return
	}
	if !filepath.IsAbs(req.Local) {
		writeErr(w, fmt.Errorf("%w: local path %q is not absolute", errBadRequest, req.Local))
		return
	}
	name := r.PathValue("name")
	sb, err := d.opts.Home.Get(name)
	if err != nil {
		writeErr(w, err)
		return
	}
	if req.Remote == "" {
		req.Remote = "sandbox"
		if sb.Driver == "local" || sb.Driver == "" {
			req.Remote = "/sandbox"
		}
	}
	opt := syncer.Options{Delete: req.Delete, DryRun: req.DryRun, Checksum: req.Checksum,
		Exclude: req.Exclude, Include: req.Include, GitIgnore: req.GitIgnore}
	if err := opt.Request(req.Remote).Validate(); err != nil {
		writeErr(w, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	s, err := d.session(r.Context(), name)
	if err != nil {
		writeErr(w, err)
		return
	}
	if !slices.Contains(s.Remote().Caps, protocol.CapSync) {
		writeErr(w, &protocol.RemoteError{Code: protocol.CodeUnsupported, Message: syncer.ErrNoSync.Error()})
		return
	}
	run := func() (*api.SyncResult, error) {
		var sum *protocol.SyncSummary
		var err error
		if req.Direction == api.SyncPush {
			sum, err = syncer.Push(r.Context(), s, req.Local, req.Remote, opt)
		} else {
			sum, err = syncer.Pull(r.Context(), s, req.Remote, req.Local, opt)
		}
		if err != nil {
			return nil, err
		}
		return &api.SyncResult{SyncSummary: *sum, Direction: req.Direction, Local: req.Local, Remote: req.Remote}, nil
	}
	if !req.Progress {
		res, err := run()
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, 200, res)
		return
	}
	// NDJSON: progress snapshots every progressEvery, then the result.
	opt.Meter = &treesync.Meter{}
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
		res, err = run()
	}()
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	var last api.SyncProgress
	for {
		select {
		case <-tick.C:
			m := opt.Meter
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
