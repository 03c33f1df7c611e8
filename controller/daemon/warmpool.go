package daemon

// Warm pools (docs/pools.md): per blueprint, keep N generic sandboxes
// booted, confined and connected, so a create is a claim and a
// personalisation, not a boot.
//
// On disk, under $DARKSHELL_HOME/pools/NAME/: pool.json (the api.PoolSpec)
// and sandboxes/MEMBER/ (each member is an ordinary sandbox of the driver,
// made by its Create in that directory as if it were an installation of
// its own). A member carries nothing of a user's: it is made from the
// pool's generic options only (no name a user chose, no env, no providers,
// no uploads, no MCP servers, no forwards), so nothing of one user can
// reach another through a pool. The daemon is a cache of those files: it
// reloads the pools at start, keeps members it finds running, deletes
// those that are not, and refills.
//
// A claim takes a member out of the in-memory ready list under the pools'
// lock (two creates never get the same one) after checking it is alive (a
// dead one is deleted and replaced, never handed out), then the driver's
// Adopt makes it the new sandbox (driver.Pooler). What a cold create would
// have put in the sandbox's environment (the create's env, provider
// placeholders, HOSTNAME) is added by the daemon to every exec of the
// claimed sandbox (claim.json in its dir). The member's warm session moves
// to the new name, so the first exec is a stream open.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/export"
	"github.com/bohica-labs/darkshell/controller/session"
	"github.com/bohica-labs/darkshell/controller/state"
)

const (
	poolsDir      = "pools"
	poolSpecFile  = "pool.json"
	claimFile     = "claim.json"
	poolTick      = 2 * time.Second
	fillParallel  = 2 // member creations at once, over every pool
	memberTimeout = 5 * time.Minute
	// MaxPoolSize bounds a pool's size.
	MaxPoolSize = 64
	// LabelPool marks a pool member (its value: the pool's name).
	LabelPool = "darkshell.pool"
)

type warmPools struct {
	d   *Daemon
	log *slog.Logger
	dir string

	mu     sync.Mutex
	pools  map[string]*warmPool
	claims map[string]*claimInfo // sandbox name → its claim (nil: not claimed)

	kick   chan struct{}
	stop   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	sem    chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

type warmPool struct {
	spec     api.PoolSpec
	home     *state.Home
	ready    []*poolMember
	starting map[string]*state.Sandbox
	fills    sync.WaitGroup
	deleted  bool
	claimed  int
	replaced int
	failures int
	nextTry  time.Time
	lastErr  string
	// cluster: the driver's backend keeps this pool (agent-sandbox's
	// SandboxWarmPool); the daemon makes no members. clusterReady is the
	// backend's last count.
	cluster      bool
	clusterReady int
}

// clusterPooler is spec's driver when the backend keeps pools of spec's options.
func clusterPooler(spec api.PoolSpec) driver.ClusterPooler {
	drv, err := driver.Get(spec.Driver)
	if err != nil {
		return nil
	}
	if cp, ok := drv.(driver.ClusterPooler); ok && cp.ClusterPool(spec.Options) {
		return cp
	}
	return nil
}

type poolMember struct {
	sb   *state.Sandbox
	sess *session.Session
}

// claimInfo is claim.json in a claimed sandbox's dir.
type claimInfo struct {
	Pool    string    `json:"pool"`
	Member  string    `json:"member"`
	Env     []string  `json:"env,omitempty"`
	Claimed time.Time `json:"claimed"`
}

func newWarmPools(d *Daemon) *warmPools {
	ctx, cancel := context.WithCancel(context.Background())
	return &warmPools{
		d: d, log: d.log.With("component", "pools"), dir: filepath.Join(d.opts.Home.Dir, poolsDir),
		pools: map[string]*warmPool{}, claims: map[string]*claimInfo{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), ctx: ctx, cancel: cancel,
		sem: make(chan struct{}, fillParallel),
	}
}

// start loads the pools on disk and runs the refill loop.
func (w *warmPools) start() {
	ents, _ := os.ReadDir(w.dir)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(w.dir, e.Name(), poolSpecFile))
		if err != nil {
			continue
		}
		var spec api.PoolSpec
		if err := json.Unmarshal(b, &spec); err != nil || spec.Name != e.Name() {
			w.log.Warn("ignoring a corrupt pool record", "pool", e.Name(), "err", err)
			continue
		}
		pl := &warmPool{spec: spec, home: &state.Home{Dir: filepath.Join(w.dir, spec.Name)}, starting: map[string]*state.Sandbox{}}
		w.pools[spec.Name] = pl
		if pl.cluster = clusterPooler(spec) != nil; !pl.cluster {
			w.adoptExisting(pl)
		}
	}
	w.wg.Add(1)
	go w.run()
}

// adoptExisting takes the members a previous daemon left: running ones are
// ready (their sessions are dialled by the loop), others are deleted.
func (w *warmPools) adoptExisting(pl *warmPool) {
	os.MkdirAll(filepath.Join(pl.home.Dir, "sandboxes"), 0o700)
	members, err := pl.home.List()
	if err != nil {
		return
	}
	drv, _ := driver.Get(pl.spec.Driver)
	for _, m := range members {
		ok := drv != nil && m.Driver == pl.spec.Driver && reflect.DeepEqual(memberOptions(m), genericOptions(pl.spec.Options))
		if ok {
			if sd, isSD := drv.(driver.StatusDriver); isSD {
				ok = sd.Status(w.ctx, pl.home, m).Phase == driver.PhaseRunning
			}
		}
		if ok {
			pl.ready = append(pl.ready, &poolMember{sb: m})
			continue
		}
		w.log.Info("deleting a pool member left not running or stale", "pool", pl.spec.Name, "member", m.Name)
		w.deleteMember(pl, m)
	}
}

func memberOptions(m *state.Sandbox) driver.CreateOptions {
	var o driver.CreateOptions
	json.Unmarshal(m.Extra, &o)
	return genericOptions(o)
}

// optionsMatch reports whether a create with options req may claim a
// member of a pool made with pool: their generic options are equal.
func optionsMatch(req, pool driver.CreateOptions) bool {
	return reflect.DeepEqual(genericOptions(req), genericOptions(pool))
}

// genericOptions are the options that make a member: what a claim must match.
func genericOptions(o driver.CreateOptions) driver.CreateOptions {
	o.Providers = nil
	if len(o.DriverOpts) == 0 {
		o.DriverOpts = nil
	}
	return o
}

func (w *warmPools) close() {
	w.once.Do(func() {
		close(w.stop)
		w.cancel()
	})
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, pl := range w.pools {
		for _, m := range pl.ready {
			if m.sess != nil {
				m.sess.Close()
				m.sess = nil
			}
		}
	}
}

func (w *warmPools) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *warmPools) run() {
	defer w.wg.Done()
	t := time.NewTicker(poolTick)
	defer t.Stop()
	for {
		w.reconcile()
		select {
		case <-w.stop:
			return
		case <-t.C:
		case <-w.kick:
		}
	}
}

// reconcile checks every pool's ready members, replaces dead ones, dials
// undialled ones, trims excess and starts the creations that bring each
// pool back to its size.
func (w *warmPools) reconcile() {
	w.mu.Lock()
	pools := make([]*warmPool, 0, len(w.pools))
	for _, pl := range w.pools {
		pools = append(pools, pl)
	}
	w.mu.Unlock()
	for _, pl := range pools {
		if pl.cluster {
			continue // the backend keeps it
		}
		w.check(pl)
		w.mu.Lock()
		if pl.deleted {
			w.mu.Unlock()
			continue
		}
		for len(pl.ready) > 0 && len(pl.ready)+len(pl.starting) > pl.spec.Size {
			m := pl.ready[len(pl.ready)-1]
			pl.ready = pl.ready[:len(pl.ready)-1]
			w.deleteMemberAsync(pl, m)
		}
		deficit := pl.spec.Size - len(pl.ready) - len(pl.starting)
		if time.Now().Before(pl.nextTry) {
			deficit = 0
		}
		for range max(deficit, 0) {
			m := &state.Sandbox{Name: memberName(), Driver: pl.spec.Driver, Created: time.Now().UTC(), Labels: map[string]string{LabelPool: pl.spec.Name}}
			m.Extra, _ = json.Marshal(pl.spec.Options)
			pl.starting[m.Name] = m
			pl.fills.Add(1)
			w.wg.Add(1)
			go w.fill(pl, m)
		}
		w.mu.Unlock()
	}
}

// check drops the pool's dead ready members (deleting them) and dials
// members that have no session yet (a previous daemon's).
func (w *warmPools) check(pl *warmPool) {
	w.mu.Lock()
	members := slices.Clone(pl.ready)
	w.mu.Unlock()
	for _, m := range members {
		alive := w.alive(pl, m)
		if alive && m.sess == nil {
			ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
			s, err := w.connect(ctx, pl, m.sb)
			cancel()
			if err == nil {
				w.mu.Lock()
				if m.sess == nil && slices.Contains(pl.ready, m) {
					m.sess, s = s, nil
				}
				w.mu.Unlock()
				if s != nil {
					s.Close()
				}
			} else {
				alive = false
			}
		}
		if alive {
			continue
		}
		w.mu.Lock()
		i := slices.Index(pl.ready, m)
		if i >= 0 {
			pl.ready = slices.Delete(pl.ready, i, i+1)
			pl.replaced++
		}
		w.mu.Unlock()
		if i >= 0 {
			w.log.Warn("pool member died; replacing it", "pool", pl.spec.Name, "member", m.sb.Name)
			w.deleteMemberAsync(pl, m)
		}
	}
}

// alive reports whether m can be handed out: its session (if dialled) is
// up and, for drivers that tell cheaply, its sandbox runs.
func (w *warmPools) alive(pl *warmPool, m *poolMember) bool {
	if m.sess != nil && !m.sess.Alive() {
		return false
	}
	drv, err := driver.Get(m.sb.Driver)
	if err != nil {
		return false
	}
	// The local driver's Status is a /proc read; others' (kubernetes: a
	// helper process and an API call) are left to the session, which ends
	// when the sandbox does.
	if sd, ok := drv.(driver.StatusDriver); ok && (m.sess == nil || m.sb.Driver == "local") {
		ctx, cancel := context.WithTimeout(w.ctx, 20*time.Second)
		defer cancel()
		return sd.Status(ctx, pl.home, m.sb).Phase == driver.PhaseRunning
	}
	return true
}

func (w *warmPools) connect(ctx context.Context, pl *warmPool, m *state.Sandbox) (*session.Session, error) {
	drv, err := driver.Get(m.Driver)
	if err != nil {
		return nil, err
	}
	return drv.Connect(ctx, pl.home, m)
}

func memberName() string {
	var b [5]byte
	rand.Read(b[:])
	return "w-" + hex.EncodeToString(b[:])
}

// fill makes one member of pl and adds it to the ready list.
func (w *warmPools) fill(pl *warmPool, m *state.Sandbox) {
	defer w.wg.Done()
	defer pl.fills.Done()
	done := w.d.track() // the daemon does not idle out mid-fill
	defer done()
	select {
	case w.sem <- struct{}{}:
		defer func() { <-w.sem }()
	case <-w.stop:
		w.mu.Lock()
		delete(pl.starting, m.Name)
		w.mu.Unlock()
		return
	}
	t0 := time.Now()
	err := w.make(pl, m)
	var s *session.Session
	if err == nil {
		ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
		s, err = w.connect(ctx, pl, m)
		cancel()
		if err != nil {
			w.deleteMember(pl, m)
		}
	}
	w.mu.Lock()
	delete(pl.starting, m.Name)
	if err != nil {
		pl.failures++
		pl.nextTry = time.Now().Add(backoff(pl.failures))
		pl.lastErr = err.Error()
		w.mu.Unlock()
		if w.ctx.Err() == nil {
			w.log.Warn("unable to make a pool member", "pool", pl.spec.Name, "err", err)
		}
		return
	}
	if pl.deleted || m.Driver != pl.spec.Driver || !reflect.DeepEqual(memberOptions(m), genericOptions(pl.spec.Options)) {
		w.mu.Unlock() // the pool went, or changed while m was made
		s.Close()
		w.deleteMember(pl, m)
		return
	}
	pl.failures, pl.lastErr = 0, ""
	pl.ready = append(pl.ready, &poolMember{sb: m, sess: s})
	w.mu.Unlock()
	w.log.Info("pool member ready", "pool", pl.spec.Name, "member", m.Name, "took", time.Since(t0))
}

// make creates m in the pool's home; on failure nothing is left.
func (w *warmPools) make(pl *warmPool, m *state.Sandbox) error {
	drv, err := driver.Get(m.Driver)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(w.ctx, memberTimeout)
	defer cancel()
	if err := pl.home.Create(m); err != nil {
		return err
	}
	if err := drv.Create(ctx, pl.home, m); err != nil {
		pl.home.Delete(m.Name)
		return fmt.Errorf("create pool member: %w", err)
	}
	if err := pl.home.Save(m); err != nil {
		w.deleteMember(pl, m)
		return err
	}
	return nil
}

func (w *warmPools) deleteMember(pl *warmPool, m *state.Sandbox) {
	if drv, err := driver.Get(m.Driver); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		if err := drv.Delete(ctx, pl.home, m); err != nil {
			w.log.Warn("unable to delete a pool member", "pool", pl.spec.Name, "member", m.Name, "err", err)
		}
		cancel()
	}
	pl.home.Delete(m.Name)
}

func (w *warmPools) deleteMemberAsync(pl *warmPool, m *poolMember) {
	if m.sess != nil {
		m.sess.Close()
	}
	pl.fills.Add(1)
	go func() {
		defer pl.fills.Done()
		done := w.d.track()
		defer done()
		w.deleteMember(pl, m.sb)
	}()
}

// take removes a live ready member of the pool req's blueprint names, if
// req matches the pool's generic options. Dead members met on the way are
// deleted and replaced.
func (w *warmPools) take(req *api.CreateRequest) (*warmPool, *poolMember) {
	name := req.Labels[export.LabelBlueprint]
	if name == "" || req.Workspace != "" || req.SSH != nil {
		return nil, nil
	}
	for {
		w.mu.Lock()
		pl := w.pools[name]
		if pl == nil || pl.deleted || pl.spec.Driver != req.Driver || len(pl.ready) == 0 ||
			!optionsMatch(req.CreateOptions, pl.spec.Options) {
			w.mu.Unlock()
			return nil, nil
		}
		m := pl.ready[0]
		pl.ready = pl.ready[1:]
		w.mu.Unlock()
		if w.alive(pl, m) {
			return pl, m
		}
		w.mu.Lock()
		pl.replaced++
		w.mu.Unlock()
		w.log.Warn("pool member died; not handing it out", "pool", pl.spec.Name, "member", m.sb.Name)
		w.deleteMemberAsync(pl, m)
		w.poke()
	}
}

// createOrClaim makes sb (reserved in the installation's home) by claiming
// a member of a matching pool, else by the driver's Create. It returns the
// pool's name when it claimed.
func (w *warmPools) createOrClaim(ctx context.Context, drv driver.Driver, req *api.CreateRequest, sb *state.Sandbox) (string, error) {
	w.setClaim(sb.Name, nil)
	if pl, cp := w.clusterMatch(req); cp != nil {
		t0 := time.Now()
		extra := sb.Extra
		env, err := cp.ClaimFromCluster(ctx, w.d.opts.Home, pl.spec.Name, pl.spec.Options, sb)
		if err == nil {
			w.recordClaim(pl, sb, "", env)
			w.log.Info("claimed from the cluster's warm pool", "pool", pl.spec.Name, "sandbox", sb.Name, "took", time.Since(t0))
			return pl.spec.Name, nil
		}
		sb.Extra = extra
		w.log.Warn("unable to claim from the cluster's warm pool; creating from scratch", "pool", pl.spec.Name, "err", err)
	}
	if pr, ok := drv.(driver.Pooler); ok {
		if pl, m := w.take(req); m != nil {
			defer w.poke()
			t0 := time.Now()
			extra := sb.Extra
			env, err := pr.Adopt(ctx, pl.home, m.sb, w.d.opts.Home, sb)
			adopted := time.Since(t0)
			if err == nil {
				os.RemoveAll(pl.home.SandboxDir(m.sb.Name)) // the member's record (local: already moved)
				w.recordClaim(pl, sb, m.sb.Name, env)
				if m.sess != nil && m.sess.Alive() {
					w.d.pool.adopt(sb, m.sess)
					w.d.startEventPump(sb.Name, m.sess)
				}
				w.log.Info("claimed a pool member", "pool", pl.spec.Name, "member", m.sb.Name, "sandbox", sb.Name, "adopt", adopted, "took", time.Since(t0))
				return pl.spec.Name, nil
			}
			sb.Extra, sb.SSH = extra, req.SSH
			w.log.Warn("unable to adopt a pool member; replacing it and creating from scratch", "pool", pl.spec.Name, "member", m.sb.Name, "err", err)
			w.mu.Lock()
			pl.replaced++ // found unusable at the claim (kubernetes: its Pod went)
			w.mu.Unlock()
			w.deleteMemberAsync(pl, m)
		}
	}
	return "", drv.Create(ctx, w.d.opts.Home, sb)
}

// clusterMatch is the backend-kept pool req would claim from.
func (w *warmPools) clusterMatch(req *api.CreateRequest) (*warmPool, driver.ClusterPooler) {
	name := req.Labels[export.LabelBlueprint]
	if name == "" || req.Workspace != "" || req.SSH != nil {
		return nil, nil
	}
	w.mu.Lock()
	pl := w.pools[name]
	ok := pl != nil && pl.cluster && !pl.deleted && pl.spec.Size > 0 && pl.spec.Driver == req.Driver &&
		optionsMatch(req.CreateOptions, pl.spec.Options)
	w.mu.Unlock()
	if !ok {
		return nil, nil
	}
	return pl, clusterPooler(pl.spec)
}

// recordClaim writes sb's claim.json (the env its execs get) and counts the claim.
func (w *warmPools) recordClaim(pl *warmPool, sb *state.Sandbox, member string, env []string) {
	ci := &claimInfo{Pool: pl.spec.Name, Member: member, Env: append(env, sb.Env...), Claimed: time.Now().UTC()}
	b, _ := json.Marshal(ci)
	if err := state.WriteFileAtomic(filepath.Join(w.d.opts.Home.SandboxDir(sb.Name), claimFile), b, 0o600); err != nil {
		w.log.Warn("unable to record a claim; the sandbox's env applies to this daemon's execs only", "sandbox", sb.Name, "err", err)
	}
	w.setClaim(sb.Name, ci)
	w.mu.Lock()
	pl.claimed++
	w.mu.Unlock()
}

func (w *warmPools) setClaim(name string, ci *claimInfo) {
	w.mu.Lock()
	w.claims[name] = ci
	w.mu.Unlock()
}

// forget drops a deleted sandbox's claim.
func (w *warmPools) forget(name string) {
	w.mu.Lock()
	delete(w.claims, name)
	w.mu.Unlock()
}

// claim is the sandbox's claim (nil: it was not claimed), read from its
// dir once.
func (w *warmPools) claim(name string) *claimInfo {
	w.mu.Lock()
	ci, known := w.claims[name]
	w.mu.Unlock()
	if known {
		return ci
	}
	ci = nil
	if b, err := os.ReadFile(filepath.Join(w.d.opts.Home.SandboxDir(name), claimFile)); err == nil {
		var c claimInfo
		if json.Unmarshal(b, &c) == nil {
			ci = &c
		}
	}
	w.setClaim(name, ci)
	return ci
}

// execEnv is env with what a claimed sandbox's cold create would have put
// in its base environment in front (so env's entries win).
func (w *warmPools) execEnv(name string, env []string) []string {
	ci := w.claim(name)
	if ci == nil || len(ci.Env) == 0 {
		return env
	}
	return append(slices.Clip(ci.Env), env...)
}

func (w *warmPools) poolOf(name string) string {
	if ci := w.claim(name); ci != nil {
		return ci.Pool
	}
	return ""
}

func (w *warmPools) status(pl *warmPool) api.PoolStatus {
	st := api.PoolStatus{PoolSpec: pl.spec, Ready: len(pl.ready), Starting: len(pl.starting), Claimed: pl.claimed, Replaced: pl.replaced, LastError: pl.lastErr, Members: []api.PoolMember{}}
	if pl.cluster {
		st.Ready, st.Cluster = pl.clusterReady, true
	}
	for _, m := range pl.ready {
		st.Members = append(st.Members, api.PoolMember{Name: m.sb.Name, Phase: "Ready", Created: m.sb.Created})
	}
	for _, m := range pl.starting {
		st.Members = append(st.Members, api.PoolMember{Name: m.Name, Phase: "Starting", Created: m.Created})
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].Name < st.Members[j].Name })
	return st
}

// Control API.

func (d *Daemon) poolRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/pools", d.poolList)
	mux.HandleFunc("GET /v1/pools/{name}", d.poolGet)
	mux.HandleFunc("PUT /v1/pools/{name}", d.poolSet)
	mux.HandleFunc("DELETE /v1/pools/{name}", d.poolDelete)
}

// refreshCluster asks the backends of cluster-kept pools how many members are ready.
func (w *warmPools) refreshCluster(ctx context.Context, only string) {
	w.mu.Lock()
	var pls []*warmPool
	for _, pl := range w.pools {
		if pl.cluster && (only == "" || pl.spec.Name == only) {
			pls = append(pls, pl)
		}
	}
	w.mu.Unlock()
	for _, pl := range pls {
		cp := clusterPooler(pl.spec)
		if cp == nil {
			continue
		}
		n, err := cp.ClusterPoolReady(ctx, w.d.opts.Home, pl.spec.Name, pl.spec.Options)
		w.mu.Lock()
		if err != nil {
			pl.lastErr = err.Error()
		} else {
			pl.clusterReady, pl.lastErr = n, ""
		}
		w.mu.Unlock()
	}
}

func (d *Daemon) poolList(w http.ResponseWriter, r *http.Request) {
	wp := d.warm
	wp.refreshCluster(r.Context(), "")
	wp.mu.Lock()
	out := []api.PoolStatus{}
	for _, pl := range wp.pools {
		out = append(out, wp.status(pl))
	}
	wp.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, 200, out)
}

var errNoPool = errors.New("no such pool")

func (d *Daemon) poolGet(w http.ResponseWriter, r *http.Request) {
	wp := d.warm
	wp.refreshCluster(r.Context(), r.PathValue("name"))
	wp.mu.Lock()
	pl := wp.pools[r.PathValue("name")]
	var st api.PoolStatus
	if pl != nil {
		st = wp.status(pl)
	}
	wp.mu.Unlock()
	if pl == nil {
		writeJSON(w, http.StatusNotFound, api.ErrorBody{Error: api.Error{Code: api.CodeNotFound, Message: fmt.Sprintf("%v: %s (see `darkshell pool list`)", errNoPool, r.PathValue("name"))}})
		return
	}
	writeJSON(w, 200, st)
}

// checkPoolSpec refuses a spec no pool can be made of, saying what to do.
func checkPoolSpec(spec *api.PoolSpec) error {
	if err := state.ValidName(spec.Name); err != nil {
		return fmt.Errorf("pool name (the blueprint's name): %v", err)
	}
	drv, err := driver.Get(spec.Driver)
	if err != nil {
		return err
	}
	if _, ok := drv.(driver.Pooler); !ok {
		return fmt.Errorf("the %s driver cannot hold warm pools (local and kubernetes can)", spec.Driver)
	}
	switch {
	case spec.Size < 0 || spec.Size > MaxPoolSize:
		return fmt.Errorf("--size %d: want 0 to %d", spec.Size, MaxPoolSize)
	case len(spec.Options.Providers) > 0:
		return errors.New("a pool holds no providers (pool members carry no credentials): they are added when a create claims a member")
	case spec.Options.Workspace != "":
		return errors.New("a pool cannot share one --workspace directory between its members")
	}
	return nil
}

func (d *Daemon) poolSet(w http.ResponseWriter, r *http.Request) {
	var spec api.PoolSpec
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&spec); err != nil {
		writeErr(w, fmt.Errorf("%w: pool body: %v", errBadRequest, err))
		return
	}
	spec.Name = r.PathValue("name")
	if err := checkPoolSpec(&spec); err != nil {
		writeErr(w, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	spec.Options = genericOptions(spec.Options)
	spec.Updated = time.Now().UTC()
	wp := d.warm
	cp := clusterPooler(spec)
	if cp != nil {
		if err := cp.SetClusterPool(r.Context(), d.opts.Home, spec.Name, spec.Size, spec.Options); err != nil {
			writeErr(w, unavailable{fmt.Errorf("pool %s: %w", spec.Name, err)})
			return
		}
	}
	dir := filepath.Join(wp.dir, spec.Name)
	if err := os.MkdirAll(filepath.Join(dir, "sandboxes"), 0o700); err != nil {
		writeErr(w, err)
		return
	}
	b, _ := json.MarshalIndent(spec, "", "  ")
	wp.mu.Lock()
	if err := state.WriteFileAtomic(filepath.Join(dir, poolSpecFile), append(b, '\n'), 0o600); err != nil {
		wp.mu.Unlock()
		writeErr(w, err)
		return
	}
	pl := wp.pools[spec.Name]
	if pl == nil {
		pl = &warmPool{home: &state.Home{Dir: dir}, starting: map[string]*state.Sandbox{}}
		wp.pools[spec.Name] = pl
	}
	if pl.spec.Driver != spec.Driver || !reflect.DeepEqual(pl.spec.Options, spec.Options) {
		// Other members now: the old ones go (starting ones are dropped
		// when they finish: their options no longer match).
		for _, m := range pl.ready {
			wp.deleteMemberAsync(pl, m)
		}
		pl.ready = nil
	}
	pl.spec, pl.failures, pl.nextTry, pl.cluster = spec, 0, time.Time{}, cp != nil
	st := wp.status(pl)
	wp.mu.Unlock()
	wp.poke()
	d.log.Info("pool set", "pool", spec.Name, "driver", spec.Driver, "size", spec.Size)
	writeJSON(w, 200, st)
}

func (d *Daemon) poolDelete(w http.ResponseWriter, r *http.Request) {
	wp := d.warm
	name := r.PathValue("name")
	wp.mu.Lock()
	pl := wp.pools[name]
	if pl == nil {
		wp.mu.Unlock()
		writeJSON(w, http.StatusNotFound, api.ErrorBody{Error: api.Error{Code: api.CodeNotFound, Message: fmt.Sprintf("%v: %s (see `darkshell pool list`)", errNoPool, name)}})
		return
	}
	pl.deleted = true
	delete(wp.pools, name)
	ready := pl.ready
	pl.ready = nil
	wp.mu.Unlock()
	for _, m := range ready {
		wp.deleteMemberAsync(pl, m)
	}
	pl.fills.Wait() // members being made are deleted when they are done
	if cp := clusterPooler(pl.spec); cp != nil && pl.cluster {
		if err := cp.DeleteClusterPool(r.Context(), d.opts.Home, name, pl.spec.Options); err != nil {
			writeErr(w, fmt.Errorf("delete pool %s: %w", name, err))
			return
		}
	}
	if err := os.RemoveAll(pl.home.Dir); err != nil {
		writeErr(w, fmt.Errorf("delete pool %s: %w", name, err))
		return
	}
	d.log.Info("pool deleted", "pool", name, "members", len(ready))
	w.WriteHeader(http.StatusNoContent)
}
