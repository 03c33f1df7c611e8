package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/syncer"
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
		} else if drv, err := driver.Get(sb.Driver); err == nil {
			if ws, ok := drv.(driver.Workspacer); ok {
				req.Remote = ws.Workspace()
			}
		}
	}
	opt := syncer.Options{Delete: req.Delete, DryRun: req.DryRun, Checksum: req.Checksum, Exclude: req.Exclude}
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
	var sum *protocol.SyncSummary
	if req.Direction == api.SyncPush {
		sum, err = syncer.Push(r.Context(), s, req.Local, req.Remote, opt)
	} else {
		sum, err = syncer.Pull(r.Context(), s, req.Remote, req.Local, opt)
	}
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, api.SyncResult{SyncSummary: *sum, Direction: req.Direction, Local: req.Local, Remote: req.Remote})
}
