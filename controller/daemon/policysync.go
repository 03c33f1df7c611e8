package daemon

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/protocol"
)

// Policy sync jobs (`darkshell policy sync --daemon`): each job is the
// darkshell-gitops helper run with --interval as a child of the daemon
// (go-git stays out of this binary), its passes read as JSON lines. A job
// is a record in $DARKSHELL_HOME/gitops/jobs, so it outlives the CLI that
// registered it and starts again with the daemon; while one runs the
// daemon does not exit when idle. A helper that exits is started again
// (backing off to 30 s).

// policySyncRoutes adds the job API (docs/lifecycle.md).
func (d *Daemon) policySyncRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/policy-sync", d.policySyncStart)
	mux.HandleFunc("GET /v1/policy-sync", d.policySyncList)
	mux.HandleFunc("DELETE /v1/policy-sync/{id}", d.policySyncStop)
	d.syncJobs() // resume the recorded jobs now, not at the first request
}

type syncJobs struct {
	d      *Daemon
	dir    string
	mu     sync.Mutex
	m      map[string]*syncJob
	closed bool
}

type syncJob struct {
	mu      sync.Mutex
	rec     api.PolicySyncJob
	cmd     *exec.Cmd
	stop    chan struct{}
	done    chan struct{}
	release func() // holds the daemon while the job runs
}

var (
	syncJobsMu sync.Mutex
	syncJobsOf = map[*Daemon]*syncJobs{}
)

// syncJobs returns the daemon's jobs, starting the recorded ones on first use.
func (d *Daemon) syncJobs() *syncJobs {
	syncJobsMu.Lock()
	defer syncJobsMu.Unlock()
	if js := syncJobsOf[d]; js != nil {
		return js
	}
	js := &syncJobs{d: d, dir: filepath.Join(d.opts.Home.Dir, "gitops", "jobs"), m: map[string]*syncJob{}}
	syncJobsOf[d] = js
	ents, _ := os.ReadDir(js.dir)
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !strings.HasPrefix(id, "ps-") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(js.dir, e.Name()))
		var rec api.PolicySyncJob
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err != nil || rec.ID != id {
			d.log.Warn("policy sync: unreadable job record; not started", "file", e.Name(), "err", err)
			continue
		}
		js.start(rec)
	}
	return js
}

// closeSyncJobs stops the helpers (the records stay: the jobs start again
// with the next daemon).
func (d *Daemon) closeSyncJobs() {
	syncJobsMu.Lock()
	js := syncJobsOf[d]
	delete(syncJobsOf, d)
	syncJobsMu.Unlock()
	if js == nil {
		return
	}
	js.mu.Lock()
	js.closed = true
	jobs := make([]*syncJob, 0, len(js.m))
	for _, j := range js.m {
		jobs = append(jobs, j)
	}
	js.mu.Unlock()
	for _, j := range jobs {
		j.halt()
	}
}

func (js *syncJobs) recPath(id string) string { return filepath.Join(js.dir, id+".json") }

func (js *syncJobs) save(j *syncJob) {
	j.mu.Lock()
	b, err := json.MarshalIndent(&j.rec, "", "  ")
	j.mu.Unlock()
	if err == nil {
		if err = os.MkdirAll(js.dir, 0o700); err == nil {
			err = state.WriteFileAtomic(js.recPath(j.rec.ID), b, 0o600)
		}
	}
	if err != nil {
		js.d.log.Warn("policy sync: unable to save the job record", "job", j.rec.ID, "err", err)
	}
}

// start runs rec's job (the caller saved or read its record).
func (js *syncJobs) start(rec api.PolicySyncJob) *syncJob {
	j := &syncJob{rec: rec, stop: make(chan struct{}), done: make(chan struct{}), release: js.d.track()}
	j.rec.State, j.rec.PID = "restarting", 0
	js.mu.Lock()
	js.m[rec.ID] = j
	js.mu.Unlock()
	go js.run(j)
	return j
}

// halt stops j's helper and waits for its loop to end.
func (j *syncJob) halt() {
	j.mu.Lock()
	select {
	case <-j.stop:
	default:
		close(j.stop)
	}
	if j.cmd != nil && j.cmd.Process != nil {
		j.cmd.Process.Signal(syscall.SIGTERM)
	}
	j.mu.Unlock()
	select {
	case <-j.done:
	case <-time.After(5 * time.Second):
		j.mu.Lock()
		if j.cmd != nil && j.cmd.Process != nil {
			j.cmd.Process.Kill()
		}
		j.mu.Unlock()
		<-j.done
	}
}

// gitopsHelperPath finds darkshell-gitops: $DARKSHELL_GITOPS_BIN, next to
// this executable, or on $PATH.
func gitopsHelperPath() (string, error) {
	if b := os.Getenv("DARKSHELL_GITOPS_BIN"); b != "" {
		return b, nil
	}
	if self, err := os.Executable(); err == nil {
		c := filepath.Join(filepath.Dir(self), "darkshell-gitops")
		if _, err := os.Stat(c); err == nil {
			return c, nil
		}
	}
	if c, err := exec.LookPath("darkshell-gitops"); err == nil {
		return c, nil
	}
	return "", errors.New("darkshell-gitops not found next to darkshell-core or on $PATH: build it with `make build` or set DARKSHELL_GITOPS_BIN")
}

func (js *syncJobs) run(j *syncJob) {
	defer close(j.done)
	defer j.release()
	backoff := time.Second
	for {
		started := time.Now()
		err := js.runOnce(j)
		j.mu.Lock()
		j.cmd, j.rec.PID = nil, 0
		stopped := false
		select {
		case <-j.stop:
			stopped = true
			j.rec.State = "stopped"
		default:
			j.rec.State = "restarting"
			j.rec.Exit = fmt.Sprint(err)
		}
		j.mu.Unlock()
		if stopped {
			return
		}
		js.d.log.Warn("policy sync: the helper exited; starting it again", "job", j.rec.ID, "err", err, "in", backoff)
		js.save(j)
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		select {
		case <-j.stop:
			j.mu.Lock()
			j.rec.State = "stopped"
			j.mu.Unlock()
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// runOnce runs the helper until it exits, recording each pass.
func (js *syncJobs) runOnce(j *syncJob) error {
	bin, err := gitopsHelperPath()
	if err != nil {
		return err
	}
	r := j.rec
	cmd := exec.Command(bin, "--repo", r.Repo, "--branch", r.Branch, "--path", r.Path, "--interval", r.Interval,
		fmt.Sprintf("--dry-run=%v", r.DryRun), "--json=true", "--no-autostart")
	cmd.Env = append(os.Environ(), "DARKSHELL_HOME="+js.d.opts.Home.Dir)
	// The helper must not outlive a daemon that dies without stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	logf, err := os.OpenFile(filepath.Join(js.dir, r.ID+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	j.mu.Lock()
	select {
	case <-j.stop:
		j.mu.Unlock()
		return errors.New("stopped")
	default:
	}
	if err := cmd.Start(); err != nil {
		j.mu.Unlock()
		return fmt.Errorf("unable to start %s: %w", bin, err)
	}
	j.cmd, j.rec.State, j.rec.PID = cmd, "running", cmd.Process.Pid
	j.mu.Unlock()
	js.d.log.Info("policy sync job running", "job", r.ID, "repo", r.Repo, "interval", r.Interval, "pid", cmd.Process.Pid)
	js.readPasses(j, out)
	return cmd.Wait()
}

func (js *syncJobs) readPasses(j *syncJob, out io.Reader) {
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var p api.PolicySyncPass
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			continue
		}
		j.mu.Lock()
		j.rec.Passes++
		j.rec.Last = &p
		if p.Status != "unchanged" {
			j.rec.LastChange = &p
		}
		for _, sb := range slices.Concat(p.Applied, p.Corrected) {
			if !slices.Contains(j.rec.Targets, sb) {
				j.rec.Targets = append(j.rec.Targets, sb)
			}
		}
		slices.Sort(j.rec.Targets)
		targets := slices.Clone(j.rec.Targets)
		id := j.rec.ID
		j.mu.Unlock()
		js.publishPass(id, &p, targets)
		if p.Status != "unchanged" {
			js.save(j)
		}
	}
}

// publishPass puts what a pass reports into the sandboxes' event logs
// (applies are events of their own, from the policy hot reload).
func (js *syncJobs) publishPass(id string, p *api.PolicySyncPass, targets []string) {
	ev := func(sb, st, msg string) {
		js.d.bus.Publish(protocol.Event{Time: time.Now().UTC(), Sandbox: sb, Kind: protocol.KindSandboxState, State: st,
			Message: msg, Source: protocol.SourceDaemon, Fidelity: protocol.FidelityComplete})
	}
	c := shortCommit(p.Commit)
	for _, sb := range p.Corrected {
		ev(sb, "policy-drift", fmt.Sprintf("policy sync %s: the policy was changed by hand; put back to %s@%s", id, p.Repo, c))
	}
	for sb, e := range p.Failed {
		ev(sb, "policy-sync-failed", fmt.Sprintf("policy sync %s: commit %s of %s not applied: %s", id, c, p.Repo, e))
	}
	if p.Status == "invalid" {
		for _, sb := range targets {
			ev(sb, "policy-sync-invalid", fmt.Sprintf("policy sync %s: commit %s of %s is invalid, nothing of it applied (last good: %s): %s", id, c, p.Repo, shortCommit(p.LastGood), p.Error))
		}
	}
	if p.Status != "unchanged" {
		js.d.log.Info("policy sync pass", "job", id, "commit", c, "status", p.Status, "applied", p.Applied, "corrected", p.Corrected, "error", p.Error)
	}
}

func shortCommit(c string) string {
	if c == "" {
		return "none"
	}
	return c[:min(12, len(c))]
}

// validSyncRequest checks a job request: a repository (an absolute local
// directory or a URL) and an interval of 1 s or more.
func validSyncRequest(req *api.PolicySyncJobRequest) error {
	if req.Repo == "" {
		return fmt.Errorf("%w: --repo PATH|URL is required", errBadRequest)
	}
	if !strings.Contains(req.Repo, "://") && !strings.HasPrefix(req.Repo, "git@") {
		if !filepath.IsAbs(req.Repo) {
			return fmt.Errorf("%w: --repo %q: a local repository must be an absolute path for a daemon job", errBadRequest, req.Repo)
		}
		if fi, err := os.Stat(req.Repo); err != nil || !fi.IsDir() {
			return fmt.Errorf("%w: --repo %s is not a directory", errBadRequest, req.Repo)
		}
	}
	iv, err := time.ParseDuration(req.Interval)
	if err != nil || iv < time.Second {
		return fmt.Errorf("%w: --interval %q: a daemon job needs an interval of 1s or more (e.g. 30s, 5m)", errBadRequest, req.Interval)
	}
	req.Interval = iv.String()
	if strings.HasPrefix(req.Path, "/") || strings.Contains("/"+req.Path+"/", "/../") {
		return fmt.Errorf("%w: --path %q must be a directory inside the repository", errBadRequest, req.Path)
	}
	return nil
}

func (d *Daemon) policySyncStart(w http.ResponseWriter, r *http.Request) {
	var req api.PolicySyncJobRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeErr(w, fmt.Errorf("%w: policy sync body: %v", errBadRequest, err))
		return
	}
	if err := validSyncRequest(&req); err != nil {
		writeErr(w, err)
		return
	}
	js := d.syncJobs()
	js.mu.Lock()
	if js.closed {
		js.mu.Unlock()
		writeErr(w, errors.New("the daemon is stopping"))
		return
	}
	for _, j := range js.m {
		// One job per repository, branch and directory: two would share
		// the last-good state.
		if o := j.rec; o.Repo == req.Repo && o.Branch == req.Branch && o.Path == req.Path {
			js.mu.Unlock()
			writeErr(w, fmt.Errorf("%w: policy sync job %s already follows %s (stop it first: `darkshell policy sync stop %s`)", state.ErrExists, o.ID, o.Repo, o.ID))
			return
		}
	}
	var b [4]byte
	rand.Read(b[:])
	rec := api.PolicySyncJob{ID: "ps-" + hex.EncodeToString(b[:]), PolicySyncJobRequest: req, Created: time.Now().UTC()}
	js.mu.Unlock()
	j := &syncJob{rec: rec}
	js.save(j)
	if _, err := os.Stat(js.recPath(rec.ID)); err != nil {
		writeErr(w, fmt.Errorf("unable to record the job: %w", err))
		return
	}
	j = js.start(rec)
	// Answer once the helper has started (or failed to).
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		j.mu.Lock()
		st, exit := j.rec.State, j.rec.Exit
		j.mu.Unlock()
		if st == "running" || exit != "" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	writeJSON(w, http.StatusCreated, j.snapshot())
}

func (j *syncJob) snapshot() api.PolicySyncJob {
	j.mu.Lock()
	defer j.mu.Unlock()
	r := j.rec
	r.Targets = slices.Clone(r.Targets)
	return r
}

func (d *Daemon) policySyncList(w http.ResponseWriter, r *http.Request) {
	js := d.syncJobs()
	js.mu.Lock()
	out := make([]api.PolicySyncJob, 0, len(js.m))
	for _, j := range js.m {
		out = append(out, j.snapshot())
	}
	js.mu.Unlock()
	slices.SortFunc(out, func(a, b api.PolicySyncJob) int { return a.Created.Compare(b.Created) })
	writeJSON(w, http.StatusOK, out)
}

func (d *Daemon) policySyncStop(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	js := d.syncJobs()
	js.mu.Lock()
	j := js.m[id]
	delete(js.m, id)
	js.mu.Unlock()
	if j == nil {
		writeErr(w, fmt.Errorf("%w: no policy sync job %q (see `darkshell policy sync list`)", state.ErrNotFound, id))
		return
	}
	j.halt()
	if err := os.Remove(js.recPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		writeErr(w, err)
		return
	}
	os.Remove(filepath.Join(js.dir, id+".log"))
	writeJSON(w, http.StatusOK, j.snapshot())
}
