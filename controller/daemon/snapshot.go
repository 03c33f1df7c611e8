package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/cgroupfs"
	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/driver/localdriver"
	"github.com/bohica-labs/darkshell/controller/snapshot"
	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/internal/treesync"
	"github.com/bohica-labs/darkshell/protocol"
)

// snapshotRoutes adds snapshots, restore, prune and verify (docs/lifecycle.md).
func (d *Daemon) snapshotRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/sandboxes/{name}/snapshots", d.snapshotCreate)
	mux.HandleFunc("POST /v1/sandboxes/{name}/restore", d.snapshotRestore)
	mux.HandleFunc("GET /v1/snapshots", d.snapshotList)
	mux.HandleFunc("DELETE /v1/snapshots/{ref}", d.snapshotDelete)
	mux.HandleFunc("POST /v1/snapshots/prune", d.snapshotPrune)
	mux.HandleFunc("POST /v1/snapshots/verify", d.snapshotVerify)
}

// sandboxLocks serialise snapshots and restores of one sandbox (they
// share its mirror and its workspace).
var sandboxLocks sync.Map // home dir + "\x00" + name -> *sync.Mutex

func (d *Daemon) lockSandbox(name string) func() {
	m, _ := sandboxLocks.LoadOrStore(d.opts.Home.Dir+"\x00"+name, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

func (d *Daemon) repo() (*snapshot.Repo, error) {
	return snapshot.Open(filepath.Join(d.opts.Home.Dir, "snapshots"))
}

// phaseMeter is the progress of a long operation's current phase.
type phaseMeter struct {
	cur atomic.Pointer[phaseNow]
}

type phaseNow struct {
	phase string
	read  func() api.SyncProgress
}

func (m *phaseMeter) set(phase string, read func() api.SyncProgress) {
	m.cur.Store(&phaseNow{phase, read})
}

func syncMeter(t *treesync.Meter) func() api.SyncProgress {
	return func() api.SyncProgress {
		return api.SyncProgress{FilesDone: t.FilesDone.Load(), FilesTotal: t.FilesTotal.Load(), BytesDone: t.BytesDone.Load(), BytesTotal: t.BytesTotal.Load()}
	}
}

func snapMeter(p *snapshot.Progress) func() api.SyncProgress {
	return func() api.SyncProgress {
		return api.SyncProgress{FilesDone: p.FilesDone.Load(), FilesTotal: p.FilesTotal.Load(), BytesDone: p.BytesDone.Load(), BytesTotal: p.BytesTotal.Load()}
	}
}

// long runs op and answers with its result, or, with progress, with an
// NDJSON stream of api.LongEvent: progress of each phase, then the result.
func (d *Daemon) long(w http.ResponseWriter, r *http.Request, progress bool, op func(ctx context.Context, m *phaseMeter) (any, error)) {
	m := &phaseMeter{}
	ctx := r.Context()
	if !progress {
		res, err := op(ctx, m)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, 200, res)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(200)
	enc, fl := json.NewEncoder(w), w.(http.Flusher)
	emit := func(ev api.LongEvent) {
		_ = enc.Encode(ev)
		fl.Flush()
	}
	start := time.Now()
	done := make(chan struct{})
	var res any
	var err error
	go func() {
		defer close(done)
		res, err = op(ctx, m)
	}()
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	var last api.SyncProgress
	lastPhase := ""
	for {
		select {
		case <-tick.C:
			cur := m.cur.Load()
			if cur == nil {
				continue
			}
			p := cur.read()
			if p == last && cur.phase == lastPhase {
				continue
			}
			last, lastPhase = p, cur.phase
			p.ElapsedMs = time.Since(start).Milliseconds()
			emit(api.LongEvent{Type: "progress", Phase: cur.phase, Progress: &p})
		case <-done:
			if err != nil {
				_, e := httpError(err)
				emit(api.LongEvent{Type: "error", Error: &e})
				return
			}
			b, _ := json.Marshal(res)
			emit(api.LongEvent{Type: "result", Result: b})
			return
		}
	}
}

// parseAge parses a retention age: a Go duration or a number of days ("7d").
func parseAge(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.ParseFloat(n, 64); err == nil && days > 0 {
			return time.Duration(days * 24 * float64(time.Hour)), nil
		}
	}
	dur, err := time.ParseDuration(s)
	if err != nil || dur <= 0 {
		return 0, fmt.Errorf("%w: max age %q: want a positive duration such as 36h or 7d", errBadRequest, s)
	}
	return dur, nil
}

func (d *Daemon) snapshotCreate(w http.ResponseWriter, r *http.Request) {
	var req api.SnapshotRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeErr(w, fmt.Errorf("%w: snapshot body: %v", errBadRequest, err))
		return
	}
	name := r.PathValue("name")
	sb, err := d.opts.Home.Get(name)
	if err != nil {
		writeErr(w, err)
		return
	}
	if req.Name != "" {
		if err := snapshot.ValidName(req.Name); err != nil {
			writeErr(w, fmt.Errorf("%w: %v", errBadRequest, err))
			return
		}
	}
	if req.Keep < 0 {
		writeErr(w, fmt.Errorf("%w: --keep %d: must be 0 (no limit) or more", errBadRequest, req.Keep))
		return
	}
	maxAge, err := parseAge(req.MaxAge)
	if err != nil {
		writeErr(w, err)
		return
	}
	d.long(w, r, req.Progress, func(ctx context.Context, m *phaseMeter) (any, error) {
		return d.takeSnapshot(ctx, sb, &req, maxAge, m)
	})
}

// workspaceRemote is the sandbox's workspace as sync names it.
func workspaceRemote(sb *state.Sandbox) string {
	if sb.Driver == "local" || sb.Driver == "" {
		return "/sandbox"
	}
	if drv, err := driver.Get(sb.Driver); err == nil {
		if ws, ok := drv.(driver.Workspacer); ok {
			return ws.Workspace()
		}
	}
	return "sandbox"
}

func (d *Daemon) takeSnapshot(ctx context.Context, sb *state.Sandbox, req *api.SnapshotRequest, maxAge time.Duration, m *phaseMeter) (*api.SnapshotResult, error) {
	unlock := d.lockSandbox(sb.Name)
	defer unlock()
	repo, err := d.repo()
	if err != nil {
		return nil, err
	}
	if req.Name != "" {
		if _, err := repo.Find(sb.Name, req.Name); err == nil {
			return nil, fmt.Errorf("%w: sandbox %s already has a snapshot named %s", state.ErrExists, sb.Name, req.Name)
		}
	}
	rec := &snapshot.Snapshot{ID: snapshot.NewID(), Sandbox: sb.Name, Name: req.Name, Labels: req.Labels, Created: time.Now().UTC()}
	if rec.Name == "" {
		rec.Name = rec.ID
	}
	res := &api.SnapshotResult{Snapshot: rec}
	src := repo.MirrorDir(sb.Name)
	if sb.Driver == "local" {
		hs, err := localdriver.HostOf(d.opts.Home, sb)
		if err != nil {
			return nil, err
		}
		if _, err := repo.Recover(hs.Workspace); err != nil {
			return nil, err
		}
		if hs.PID == 0 {
			// Stopped: nothing runs, the host dir is consistent as it is.
			src, rec.Frozen = hs.Workspace, true
		} else {
			if os.Geteuid() != 0 {
				return nil, errors.New("snapshots of a running local sandbox freeze its cgroup: that needs root")
			}
			m.set("freeze", func() api.SyncProgress { return api.SyncProgress{} })
			fz, err := cgroupfs.FreezePidns(ctx, hs.PID, "darkshell-snap-"+sb.Name)
			if err != nil {
				return nil, fmt.Errorf("snapshot %s: %w", sb.Name, err)
			}
			// The workspace is a host directory (bind-mounted at
			// /sandbox): read it in place while the processes are
			// frozen, no transfer through sandboxd.
			rec.Frozen = true
			err = d.capture(ctx, repo, sb, hs.Workspace, rec, m, nil)
			if terr := fz.Thaw(); terr != nil {
				d.log.Warn("thaw after snapshot", "sandbox", sb.Name, "err", terr)
			}
			if err != nil {
				return nil, err
			}
			return d.snapshotTaken(ctx, sb, repo, rec, req, maxAge, res)
		}
	} else {
		pulled, err := d.pullMirror(ctx, sb, src, m)
		if err != nil {
			return nil, err
		}
		res.Pulled = pulled
		layer, release, err := d.readLayer(ctx, sb)
		if err != nil {
			return nil, err
		}
		defer release()
		if err := d.capture(ctx, repo, sb, src, rec, m, layer); err != nil {
			return nil, err
		}
		return d.snapshotTaken(ctx, sb, repo, rec, req, maxAge, res)
	}
	if err := d.capture(ctx, repo, sb, src, rec, m, nil); err != nil {
		return nil, err
	}
	return d.snapshotTaken(ctx, sb, repo, rec, req, maxAge, res)
}

// capture chunks dir into the store as rec.
func (d *Daemon) capture(ctx context.Context, repo *snapshot.Repo, sb *state.Sandbox, dir string, rec *snapshot.Snapshot, m *phaseMeter, layer *snapshot.LayerSource) error {
	p := &snapshot.Progress{}
	m.set("capture", snapMeter(p))
	if err := repo.Capture(ctx, dir, rec, snapshot.CaptureOptions{Index: repo.IndexPath(sb.Name), Progress: p, Layer: layer}); err != nil {
		return fmt.Errorf("snapshot %s: %w", sb.Name, err)
	}
	return nil
}

// snapshotTaken announces a saved snapshot and applies the retention.
func (d *Daemon) snapshotTaken(ctx context.Context, sb *state.Sandbox, repo *snapshot.Repo, rec *snapshot.Snapshot, req *api.SnapshotRequest, maxAge time.Duration, res *api.SnapshotResult) (*api.SnapshotResult, error) {
	d.bus.Publish(protocol.Event{Time: time.Now().UTC(), Sandbox: sb.Name, Kind: protocol.KindSandboxState, State: "snapshot",
		Message: fmt.Sprintf("snapshot %s (%s): %d files, %d bytes, %d bytes added to the store", rec.Name, rec.ID, rec.Files, rec.Bytes, rec.AddedBytes),
		Source:  protocol.SourceDaemon, Fidelity: protocol.FidelityComplete})
	if req.Keep > 0 || maxAge > 0 {
		gone, err := repo.Prune(sb.Name, req.Keep, maxAge, time.Now())
		if err != nil {
			return res, err
		}
		for _, g := range gone {
			res.Pruned = append(res.Pruned, g.ID)
		}
		if len(gone) > 0 {
			if res.GC, err = repo.GC(ctx); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// pullMirror makes the daemon's mirror of the workspace current through
// the ordinary sync stream (a pull with --delete, nothing ignored).
func (d *Daemon) pullMirror(ctx context.Context, sb *state.Sandbox, mirror string, m *phaseMeter) (*api.SyncResult, error) {
	if err := os.MkdirAll(filepath.Dir(mirror), 0o700); err != nil {
		return nil, err
	}
	req := api.SyncRequest{Direction: api.SyncPull, Local: mirror, Remote: workspaceRemote(sb), Delete: true}
	run, err := d.prepareSync(ctx, sb.Name, &req)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: read the workspace: %w", sb.Name, err)
	}
	meter := &treesync.Meter{}
	m.set("pull", syncMeter(meter))
	res, err := run(ctx, meter)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: read the workspace: %w", sb.Name, err)
	}
	return res, nil
}

func (d *Daemon) snapshotRestore(w http.ResponseWriter, r *http.Request) {
	var req api.RestoreRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeErr(w, fmt.Errorf("%w: restore body: %v", errBadRequest, err))
		return
	}
	sb, err := d.opts.Home.Get(r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	repo, err := d.repo()
	if err != nil {
		writeErr(w, err)
		return
	}
	snap, err := repo.Find(sb.Name, req.Snapshot)
	if errors.Is(err, snapshot.ErrNotFound) {
		// Not this sandbox's: any sandbox's (restore --to, clones).
		snap, err = repo.Find("", req.Snapshot)
	}
	if err != nil {
		writeErr(w, notFound(err))
		return
	}
	d.long(w, r, req.Progress, func(ctx context.Context, m *phaseMeter) (any, error) {
		return d.restore(ctx, sb, repo, snap, m)
	})
}

func notFound(err error) error {
	if errors.Is(err, snapshot.ErrNotFound) {
		return fmt.Errorf("%w: %v", state.ErrNotFound, err)
	}
	return fmt.Errorf("%w: %v", errBadRequest, err)
}

func (d *Daemon) restore(ctx context.Context, sb *state.Sandbox, repo *snapshot.Repo, snap *snapshot.Snapshot, m *phaseMeter) (*api.RestoreResult, error) {
	unlock := d.lockSandbox(sb.Name)
	defer unlock()
	start := time.Now()
	res := &api.RestoreResult{Sandbox: sb.Name, Snapshot: snap}
	p := &snapshot.Progress{}
	if sb.Driver == "local" {
		// Stop, swap the workspace for the staged snapshot, start again.
		drv, err := driver.Get(sb.Driver)
		if err != nil {
			return nil, err
		}
		lc := drv.(driver.Lifecycle)
		hs, err := localdriver.HostOf(d.opts.Home, sb)
		if err != nil {
			return nil, err
		}
		wasRunning := hs.PID != 0
		if wasRunning {
			d.pool.drop(sb.Name)
			d.stopEgress(sb.Name)
			if err := lc.Stop(ctx, d.opts.Home, sb); err != nil {
				d.opts.Home.Save(sb)
				return nil, fmt.Errorf("restore %s: stop: %w", sb.Name, err)
			}
			if err := d.opts.Home.Save(sb); err != nil {
				return nil, err
			}
		}
		m.set("restore", snapMeter(p))
		rerr := repo.ReplaceDir(ctx, snap, hs.Workspace, snapshot.MaterializeOptions{Chown: os.Geteuid() == 0, UID: hs.UID, GID: hs.GID, Progress: p})
		res.Method = "swap"
		if wasRunning {
			// Start again whether or not the restore worked: a failed
			// restore left the old workspace.
			serr := lc.Start(context.WithoutCancel(ctx), d.opts.Home, sb)
			d.pool.drop(sb.Name)
			if err := d.opts.Home.Save(sb); err != nil && serr == nil {
				serr = err
			}
			if serr == nil {
				d.startEgress(sb)
				res.Restarted = true
			}
			if rerr == nil && serr != nil {
				return nil, fmt.Errorf("restore %s: restored, but the start failed: %w", sb.Name, serr)
			}
		}
		if rerr != nil {
			return nil, fmt.Errorf("restore %s (the workspace is unchanged): %w", sb.Name, rerr)
		}
	} else {
		// Stage on the host, then push with --delete through sandboxd.
		stage, err := os.MkdirTemp(repo.Dir(), "stage-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(stage)
		m.set("restore", snapMeter(p))
		tree := filepath.Join(stage, "tree")
		if err := repo.Materialize(ctx, snap, tree, snapshot.MaterializeOptions{Progress: p}); err != nil {
			return nil, fmt.Errorf("restore %s (the workspace is unchanged): %w", sb.Name, err)
		}
		if len(snap.Layer) > 0 {
			m.set("layer", func() api.SyncProgress { return api.SyncProgress{} })
			if err := d.restoreLayer(ctx, sb, repo, snap); err != nil {
				return nil, fmt.Errorf("restore %s (the container and the workspace are unchanged): %w", sb.Name, err)
			}
			res.Restarted = true
		}
		req := api.SyncRequest{Direction: api.SyncPush, Local: tree, Remote: workspaceRemote(sb), Delete: true}
		run, err := d.prepareSync(ctx, sb.Name, &req)
		if err != nil {
			return nil, err
		}
		meter := &treesync.Meter{}
		m.set("push", syncMeter(meter))
		if _, err := run(ctx, meter); err != nil {
			return nil, fmt.Errorf("restore %s: push (each file is old or new; run the restore again to complete it): %w", sb.Name, err)
		}
		res.Method = "sync"
	}
	res.DurationMs = time.Since(start).Milliseconds()
	d.bus.Publish(protocol.Event{Time: time.Now().UTC(), Sandbox: sb.Name, Kind: protocol.KindSandboxState, State: "restored",
		Message: fmt.Sprintf("restored snapshot %s (%s) of %s", snap.Name, snap.ID, snap.Sandbox), Source: protocol.SourceDaemon, Fidelity: protocol.FidelityComplete})
	return res, nil
}

// recoverRestore finishes an interrupted in-place restore of a local
// sandbox's workspace (called before it starts).
func (d *Daemon) recoverRestore(sb *state.Sandbox) error {
	if sb.Driver != "local" {
		return nil
	}
	hs, err := localdriver.HostOf(d.opts.Home, sb)
	if err != nil {
		return err
	}
	repo, err := d.repo()
	if err != nil {
		return err
	}
	_, err = repo.Recover(hs.Workspace)
	return err
}

func (d *Daemon) snapshotList(w http.ResponseWriter, r *http.Request) {
	repo, err := d.repo()
	if err != nil {
		writeErr(w, err)
		return
	}
	l, err := repo.List(r.URL.Query().Get("sandbox"))
	if err != nil {
		writeErr(w, err)
		return
	}
	if l == nil {
		l = []*snapshot.Snapshot{}
	}
	writeJSON(w, 200, l)
}

func (d *Daemon) snapshotDelete(w http.ResponseWriter, r *http.Request) {
	repo, err := d.repo()
	if err != nil {
		writeErr(w, err)
		return
	}
	s, err := repo.Find(r.URL.Query().Get("sandbox"), r.PathValue("ref"))
	if err != nil {
		writeErr(w, notFound(err))
		return
	}
	if err := repo.Delete(s.ID); err != nil {
		writeErr(w, notFound(err))
		return
	}
	res := &api.PruneResult{Deleted: []string{s.ID}}
	if res.GC, err = repo.GC(r.Context()); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, res)
}

func (d *Daemon) snapshotPrune(w http.ResponseWriter, r *http.Request) {
	var req api.PruneRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeErr(w, fmt.Errorf("%w: prune body: %v", errBadRequest, err))
		return
	}
	maxAge, err := parseAge(req.MaxAge)
	if err != nil {
		writeErr(w, err)
		return
	}
	if req.Sandbox == "" || (req.Keep <= 0 && maxAge == 0) {
		writeErr(w, fmt.Errorf("%w: prune needs a sandbox and --keep N or --max-age D", errBadRequest))
		return
	}
	repo, err := d.repo()
	if err != nil {
		writeErr(w, err)
		return
	}
	gone, err := repo.Prune(req.Sandbox, req.Keep, maxAge, time.Now())
	if err != nil {
		writeErr(w, err)
		return
	}
	res := &api.PruneResult{Deleted: []string{}}
	for _, g := range gone {
		res.Deleted = append(res.Deleted, g.ID)
	}
	if res.GC, err = repo.GC(r.Context()); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, res)
}

func (d *Daemon) snapshotVerify(w http.ResponseWriter, r *http.Request) {
	var req api.VerifyRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeErr(w, fmt.Errorf("%w: verify body: %v", errBadRequest, err))
		return
	}
	repo, err := d.repo()
	if err != nil {
		writeErr(w, err)
		return
	}
	var snaps []*snapshot.Snapshot
	if req.Snapshot != "" {
		s, err := repo.Find(req.Sandbox, req.Snapshot)
		if err != nil {
			writeErr(w, notFound(err))
			return
		}
		snaps = append(snaps, s)
	} else if snaps, err = repo.List(req.Sandbox); err != nil {
		writeErr(w, err)
		return
	}
	d.long(w, r, req.Progress, func(ctx context.Context, m *phaseMeter) (any, error) {
		p := &snapshot.Progress{}
		for _, s := range snaps {
			p.BytesTotal.Add(s.Bytes)
			p.FilesTotal.Add(int64(s.Files + s.Dirs + s.Symlinks))
		}
		m.set("verify", snapMeter(p))
		return repo.Verify(ctx, snaps, p)
	})
}
