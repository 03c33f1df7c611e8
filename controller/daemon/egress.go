package daemon

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/egress"
	"github.com/bohica-labs/darkshell/controller/forward"
	"github.com/bohica-labs/darkshell/controller/inference"
	"github.com/bohica-labs/darkshell/controller/policy"
	"github.com/bohica-labs/darkshell/controller/provider"
	"github.com/bohica-labs/darkshell/controller/session"
	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/protocol"
)

// egressRun is one sandbox's egress proxy while the daemon runs.
type egressRun struct {
	proxy   *egress.Proxy
	cancel  context.CancelFunc
	mu      sync.Mutex
	release func() // holds the daemon while the policy allows anything
	log     *os.File
	relay   *inference.Relay // inference.go
	hold    func()           // holds the daemon while inference routes exist
}

type egressSet struct {
	mu sync.Mutex
	m  map[string]*egressRun
}

var (
	egressMu sync.Mutex
	egressOf = map[*Daemon]*egressSet{}
)

// egresses returns the daemon's proxies, restoring one for every running
// local sandbox on first use.
func (d *Daemon) egresses() *egressSet {
	egressMu.Lock()
	defer egressMu.Unlock()
	if e := egressOf[d]; e != nil {
		return e
	}
	e := &egressSet{m: map[string]*egressRun{}}
	egressOf[d] = e
	go func() {
		sbs, _ := d.opts.Home.List()
		for _, sb := range sbs {
			if egressDriver(sb) && d.phaseOf(sb) == driver.PhaseRunning {
				d.startEgress(sb)
			}
		}
		<-d.stop
		e.mu.Lock()
		for name, r := range e.m {
			r.stop()
			delete(e.m, name)
		}
		e.mu.Unlock()
	}()
	return e
}

// egressDriver: sandboxes whose processes reach the network only through
// the egress proxy (the local driver's network namespace has no route).
func egressDriver(sb *state.Sandbox) bool { return sb.Driver == "local" }

func (d *Daemon) phaseOf(sb *state.Sandbox) string {
	drv, err := driver.Get(sb.Driver)
	if err != nil {
		return ""
	}
	if sd, ok := drv.(driver.StatusDriver); ok {
		return sd.Status(context.Background(), d.opts.Home, sb).Phase
	}
	return ""
}

// recordPolicy is the policy stored with a sandbox (nil: none).
func recordPolicy(sb *state.Sandbox) (*policy.Policy, error) {
	var x struct {
		Policy       string `json:"policy"`
		PolicySource string `json:"policy_source"`
	}
	if len(sb.Extra) > 0 {
		if err := json.Unmarshal(sb.Extra, &x); err != nil {
			return nil, err
		}
	}
	if x.Policy == "" {
		return nil, nil
	}
	return policy.Parse(x.PolicySource, []byte(x.Policy))
}

// startEgress runs sb's proxy (replacing a running one).
func (d *Daemon) startEgress(sb *state.Sandbox) {
	if !egressDriver(sb) {
		return
	}
	set := d.egresses()
	pol, err := recordPolicy(sb)
	if err != nil {
		d.log.Warn("egress: the recorded policy does not parse; denying all egress", "sandbox", sb.Name, "err", err)
		pol = nil
	}
	eng, err := egress.Compile(pol)
	if err != nil {
		eng, _ = egress.Compile(nil)
	}
	name := sb.Name
	logf, _ := os.OpenFile(filepath.Join(d.opts.Home.SandboxDir(name), "egress.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	run := &egressRun{log: logf}
	run.proxy = &egress.Proxy{
		Resolver: resolver(),
		Logger:   d.log.With("sandbox", name),
		OnDecision: func(o egress.Outcome) {
			run.record(o)
			d.bus.Publish(decisionEvent(name, o))
		},
		UpstreamRoots: upstreamRoots(d.log),
		Secrets:       d.secrets(sb),
	}
	run.relay = d.newRelay(sb) // inference.go
	run.proxy.Inference = run.relay.Handle
	run.setInference(run.relay.Config(), d.track)
	if ca, err := egress.LoadOrCreateCA(d.opts.Home.SandboxDir(name), name); err == nil {
		run.proxy.CA = ca
	} else {
		d.log.Warn("egress: no CA; HTTPS endpoints with rules or credentials are refused", "sandbox", name, "err", err)
	}
	run.setEngine(eng, d.track)
	ctx, cancel := context.WithCancel(context.Background())
	run.cancel = cancel
	set.mu.Lock()
	if old := set.m[name]; old != nil {
		old.stop()
	}
	set.m[name] = run
	set.mu.Unlock()
	get := func(ctx context.Context) (*session.Session, error) { return d.session(ctx, name) }
	go egress.Serve(ctx, get, run.proxy, d.log.With("sandbox", name))
}

func (d *Daemon) stopEgress(name string) {
	set := d.egresses()
	set.mu.Lock()
	defer set.mu.Unlock()
	if r := set.m[name]; r != nil {
		r.stop()
		delete(set.m, name)
	}
}

func (d *Daemon) egressOf(name string) *egressRun {
	set := d.egresses()
	set.mu.Lock()
	defer set.mu.Unlock()
	return set.m[name]
}

// setEngine installs eng; the daemon stays up while it allows anything.
func (r *egressRun) setEngine(eng *egress.Engine, track func() func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.proxy.SetEngine(eng)
	switch {
	case eng.Rules() > 0 && r.release == nil:
		r.release = track()
	case eng.Rules() == 0 && r.release != nil:
		r.release()
		r.release = nil
	}
}

func (r *egressRun) stop() {
	r.cancel()
	r.mu.Lock()
	if r.release != nil {
		r.release()
		r.release = nil
	}
	if r.hold != nil {
		r.hold()
		r.hold = nil
	}
	r.mu.Unlock()
	if r.log != nil {
		r.log.Close()
	}
}

// record appends a decision to the sandbox's egress log (JSON lines).
func (r *egressRun) record(o egress.Outcome) {
	if r.log == nil {
		return
	}
	b, _ := json.Marshal(struct {
		Kind string `json:"kind"`
		egress.Outcome
	}{"policy_decision", o})
	r.mu.Lock()
	r.log.Write(append(b, '\n'))
	r.mu.Unlock()
}

// egressRoutes: policy test and hot reload.
func (d *Daemon) egressRoutes(mux *http.ServeMux) {
	d.egresses()
	mux.HandleFunc("POST /v1/sandboxes/{name}/policy/test", d.policyTest)
	mux.HandleFunc("PUT /v1/sandboxes/{name}/policy", d.policySet)
	mux.HandleFunc("POST /v1/sandboxes/{name}/net-test", d.netTest)
	d.inferenceRoutes(mux) // inference.go
}

// netTest reports where a request from the sandbox would stop: the proxy
// listener reached from inside the sandbox, then the proxy's own hops.
func (d *Daemon) netTest(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req api.NetTestRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		writeErr(w, fmt.Errorf("%w: net-test body: %v", errBadRequest, err))
		return
	}
	if req.Host == "" || req.Port < 1 || req.Port > 65535 {
		writeErr(w, fmt.Errorf("%w: --host and a --port in 1-65535 are required", errBadRequest))
		return
	}
	run := d.egressOf(name)
	if run == nil {
		sb, err := d.opts.Home.Get(name)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeErr(w, fmt.Errorf("%w: sandbox %s (driver %s) has no egress proxy running: it is not a running local sandbox", errBadRequest, name, sb.Driver))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	t0 := time.Now()
	first := egress.Step{Step: "sandbox to egress proxy", OK: true, Detail: "connected to " + egress.ProxyAddr + " from inside the sandbox"}
	s, err := d.session(ctx, name)
	if err == nil {
		var c net.Conn
		if c, err = forward.Dial(ctx, s, egress.ProxyAddr); err == nil {
			c.Close()
		}
	}
	if err != nil {
		first.OK, first.Detail = false, fmt.Sprintf("%s is not reachable inside the sandbox: %v", egress.ProxyAddr, err)
	}
	first.Ms = time.Since(t0).Milliseconds()
	tlsOn, httpOn := req.Port == 443, true
	if req.TLS != nil {
		tlsOn = *req.TLS
	}
	if req.HTTP != nil {
		httpOn = *req.HTTP
	}
	writeJSON(w, http.StatusOK, run.proxy.Probe(ctx, req.Request, tlsOn, httpOn, []egress.Step{first}))
}

func (d *Daemon) policyTest(w http.ResponseWriter, r *http.Request) {
	sb, err := d.opts.Home.Get(r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	var req egress.Request
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		writeErr(w, fmt.Errorf("%w: policy test body: %v", errBadRequest, err))
		return
	}
	if req.Host == "" || req.Port < 1 || req.Port > 65535 {
		writeErr(w, fmt.Errorf("%w: --host and a --port in 1-65535 are required", errBadRequest))
		return
	}
	// The engine in force when the proxy runs, else the recorded policy.
	var eng *egress.Engine
	if run := d.egressOf(sb.Name); run != nil {
		eng = run.proxy.Engine()
	} else {
		pol, err := recordPolicy(sb)
		if err != nil {
			writeErr(w, err)
			return
		}
		if eng, err = egress.Compile(pol); err != nil {
			writeErr(w, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, api.PolicyTestResult{Request: req, Decision: eng.Decide(req)})
}

func (d *Daemon) policySet(w http.ResponseWriter, r *http.Request) {
	sb, err := d.opts.Home.Get(r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	if !egressDriver(sb) {
		writeErr(w, fmt.Errorf("%w: sandbox %s (driver %s) has no egress proxy to reload", errBadRequest, sb.Name, sb.Driver))
		return
	}
	var req api.PolicySetRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeErr(w, fmt.Errorf("%w: policy body: %v", errBadRequest, err))
		return
	}
	next, err := policy.Parse(req.Source, []byte(req.Policy))
	if err != nil {
		writeErr(w, fmt.Errorf("%w: the new policy is not valid (the old one stays in force):\n%v", errBadRequest, err))
		return
	}
	cur, err := recordPolicy(sb)
	if err != nil {
		writeErr(w, err)
		return
	}
	if cur == nil {
		cur = &policy.Policy{Version: 1}
	}
	for _, c := range []struct {
		name     string
		old, new any
	}{{"filesystem_policy", cur.FilesystemPolicy, next.FilesystemPolicy}, {"landlock", cur.Landlock, next.Landlock}, {"process", cur.Process, next.Process}} {
		if !reflect.DeepEqual(c.old, c.new) {
			writeErr(w, fmt.Errorf("%w: %s is fixed when the sandbox is created and cannot change on a running sandbox (only network_policies and network_middlewares reload); recreate the sandbox to change it", errBadRequest, c.name))
			return
		}
	}
	eng, err := egress.Compile(next)
	if err != nil {
		writeErr(w, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	// Record first: a daemon restart must come back with the new policy.
	extra := map[string]any{}
	if len(sb.Extra) > 0 {
		if err := json.Unmarshal(sb.Extra, &extra); err != nil {
			writeErr(w, err)
			return
		}
	}
	extra["policy"], extra["policy_source"] = req.Policy, req.Source
	if sb.Extra, err = json.Marshal(extra); err != nil {
		writeErr(w, err)
		return
	}
	if err := d.opts.Home.Save(sb); err != nil {
		writeErr(w, err)
		return
	}
	if run := d.egressOf(sb.Name); run != nil {
		run.setEngine(eng, d.track)
	} else if d.phaseOf(sb) == driver.PhaseRunning {
		d.startEgress(sb)
	}
	d.policyApplied(sb.Name, req.Source, eng.Rules()) // gitops.go
	writeJSON(w, http.StatusOK, api.PolicySetResult{Sandbox: sb.Name, NetworkRules: eng.Rules()})
}

// resolver is the egress proxy's resolver: the system's, or the DNS server
// at $DARKSHELL_EGRESS_DNS (host:port; tests point it at their own).
func resolver() egress.Resolver {
	addr := os.Getenv("DARKSHELL_EGRESS_DNS")
	if addr == "" {
		return net.DefaultResolver
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

// secrets returns the placeholder -> value pairs of a provider the sandbox
// was created with (read at each request: rotation applies at once).
func (d *Daemon) secrets(sb *state.Sandbox) func(string) map[string]string {
	var x struct {
		Providers []string `json:"providers"`
	}
	json.Unmarshal(sb.Extra, &x)
	return func(name string) map[string]string {
		if !slices.Contains(x.Providers, name) {
			return nil // bound by the policy, but not given to this sandbox
		}
		p, err := provider.Open(d.opts.Home).Get(name)
		if err != nil {
			return nil
		}
		out := make(map[string]string, len(p.Credentials))
		for k, v := range p.Credentials {
			out[egress.Placeholder(name, k)] = v
		}
		return out
	}
}

// upstreamRoots verifies real servers behind intercepted TLS: the system's
// roots, or $DARKSHELL_EGRESS_UPSTREAM_CA (a PEM file; tests use their own CA).
func upstreamRoots(log *slog.Logger) *x509.CertPool {
	f := os.Getenv("DARKSHELL_EGRESS_UPSTREAM_CA")
	if f == "" {
		return nil
	}
	b, err := os.ReadFile(f)
	if err != nil {
		log.Warn("egress: DARKSHELL_EGRESS_UPSTREAM_CA unreadable", "err", err)
		return nil
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return pool
}

// decisionEvent is an egress decision on the sandbox's event stream.
func decisionEvent(sandbox string, o egress.Outcome) protocol.Event {
	result := "allow"
	if !o.Decision.Allow {
		result = "deny"
	}
	msg := o.Decision.Reason
	if o.Err != "" {
		result, msg = "error", o.Err
	}
	path := o.Request.Path
	if o.Request.Method != "" {
		path = o.Request.Method + " " + path
	}
	return protocol.Event{Time: time.Now().UTC(), Sandbox: sandbox, Kind: protocol.KindPolicy, Binary: o.Request.Binary,
		Host: o.Request.Host, Port: o.Request.Port, Path: path, Policy: o.Decision.Policy, Rule: o.Decision.Rule,
		Result: result, Message: msg, Source: protocol.SourceDaemon, Fidelity: protocol.FidelityComplete}
}
