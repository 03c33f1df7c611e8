package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"time"

	"github.com/bohica-labs/darkshell/controller/cgroupfs"
	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/driver/localdriver"
	"github.com/bohica-labs/darkshell/controller/egress"
	"github.com/bohica-labs/darkshell/controller/forward"
	"github.com/bohica-labs/darkshell/controller/health"
	"github.com/bohica-labs/darkshell/controller/provider"
	"github.com/bohica-labs/darkshell/controller/state"
)

// healthRoutes adds GET /v1/sandboxes/{name}/health (JSON, or Prometheus
// text with ?format=prometheus).
func (d *Daemon) healthRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/sandboxes/{name}/health", func(w http.ResponseWriter, r *http.Request) {
		sb, err := d.opts.Home.Get(r.PathValue("name"))
		if err != nil {
			writeErr(w, err)
			return
		}
		rep := d.health(r.Context(), sb, false)
		if r.URL.Query().Get("format") == "prometheus" {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			rep.WriteMetrics(w)
			return
		}
		writeJSON(w, 200, rep)
	})
}

// health gathers a sandbox's facts and evaluates them. quick leaves out
// what needs the sandbox itself (session round trip, proxy probe, DNS,
// disk use): `sandbox list` shows that.
func (d *Daemon) health(ctx context.Context, sb *state.Sandbox, quick bool) *health.Report {
	start := time.Now()
	f := health.Facts{Quick: quick}
	if drv, err := driver.Get(sb.Driver); err == nil {
		if sd, ok := drv.(driver.StatusDriver); ok {
			st := sd.Status(ctx, d.opts.Home, sb)
			f.Phase, f.Reason = st.Phase, st.Reason
			if st.Resources != nil {
				res := st.Resources
				f.HasCgroups = true
				f.MemoryBytes, f.MemoryLimit, f.OOMKills, f.Pids, f.PidsLimit = res.MemoryBytes, res.MemoryLimitBytes, res.OOMKills, res.Pids, res.PidsLimit
			}
		}
	}
	var ws string
	if sb.Driver == "local" {
		if hs, err := localdriver.HostOf(d.opts.Home, sb); err == nil {
			ws = hs.Workspace
			for _, dir := range hs.Cgroups {
				if n, ok := cgroupfs.ReadKey(filepath.Join(dir, "pids.events"), "max"); ok {
					f.ForkRefusals += n
				}
				if n, ok := cgroupfs.ReadKey(filepath.Join(dir, "cpu.stat"), "nr_throttled"); ok {
					f.CPUThrottled += n
				}
			}
			var x struct {
				Unconfined bool `json:"unconfined"`
			}
			json.Unmarshal(sb.Extra, &x)
			f.ConfinementExpected = !x.Unconfined
		}
		f.EgressExpected = egressDriver(sb)
		run := d.egressOf(sb.Name)
		f.EgressRunning = run != nil
		if run != nil {
			err := run.proxy.Listening()
			for i := 0; err != nil && !quick && i < 50; i++ {
				// Just started or re-listening: give it a second.
				time.Sleep(20 * time.Millisecond)
				err = run.proxy.Listening()
			}
			// Not listening in the sandbox: a dial there would fail, or
			// reach whatever else holds the port now. (A proxy starting
			// up is not a failure of the quick checks of `sandbox list`.)
			if err != nil && !(quick && errors.Is(err, egress.ErrNotYet)) {
				f.ProxyErr = "the daemon's proxy holds no listener in the sandbox: " + err.Error()
			}
		}
	}
	if l, err := d.tools().mcp.List(sb.Name); err == nil {
		for _, m := range l {
			f.MCP = append(f.MCP, health.MCPServer{Name: m.Name, State: m.State, LastError: m.LastError, Restarts: m.Restarts})
		}
	}
	_, f.EventsLost, _ = d.bus.Status(sb.Name)
	f.Credentials, f.CredentialWarning = d.credentialsOf(sb), provider.ExpiryWarning

	running := f.Phase == "" || f.Phase == driver.PhaseRunning
	if !quick && running {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		t0 := time.Now()
		s, err := d.session(cctx, sb.Name)
		if err == nil {
			_, err = s.Info(cctx)
		}
		if err != nil {
			f.ReachErr = err.Error()
		} else {
			f.Reachable, f.RTT = true, time.Since(t0)
			h := s.Remote()
			f.Confined, f.LandlockABI = h.Confined, h.LandlockABI
			if f.EgressExpected && f.EgressRunning && f.ProxyErr == "" {
				// Through the sandbox: sandboxd dials the proxy's listener
				// in its own network namespace, as a sandbox process would.
				if c, err := forward.Dial(cctx, s, egress.ProxyAddr); err != nil {
					f.ProxyErr = err.Error()
				} else {
					c.Close()
				}
			}
		}
		if f.EgressExpected {
			f.DNSChecked = true
			f.DNSErr = dnsProbe(cctx)
		}
		if ws != "" {
			f.WorkspaceBytes, f.WorkspaceKnown = duBytes(cctx, ws), true
		}
	}
	r := health.Evaluate(sb.Name, f)
	r.DurationMs = time.Since(start).Milliseconds()
	return r
}

// credentialsOf lists the expiring credentials of the providers sb uses
// (through its egress proxy or its bridge MCP servers).
func (d *Daemon) credentialsOf(sb *state.Sandbox) []health.Credential {
	var x struct {
		Providers []string `json:"providers"`
	}
	json.Unmarshal(sb.Extra, &x)
	names := slices.Clone(x.Providers)
	if l, err := d.tools().mcp.List(sb.Name); err == nil {
		for _, m := range l {
			names = append(names, m.Providers...)
		}
	}
	slices.Sort(names)
	var out []health.Credential
	for _, n := range slices.Compact(names) {
		p, err := d.tools().providers.Get(n)
		if err != nil {
			continue
		}
		for _, e := range p.Expiring() {
			out = append(out, health.Credential{Provider: e.Provider, Key: e.Key, Expires: e.Expires})
		}
	}
	return out
}

// dnsProbe asks the egress proxy's resolver for a name in the reserved
// .invalid domain: any answer ("no such host", or a refusal or server
// failure from a resolver without upstream) proves the server answers; a
// timeout or an unreachable server does not.
func dnsProbe(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := resolver().LookupNetIP(ctx, "ip4", "darkshell-health-probe.invalid")
	var de *net.DNSError
	if err == nil || (errors.As(err, &de) && (de.IsNotFound || de.Err == "server misbehaving")) {
		return ""
	}
	return err.Error()
}

// duBytes sums the apparent size of the regular files under dir.
func duBytes(ctx context.Context, dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if ctx.Err() != nil {
			return fs.SkipAll
		}
		if err == nil && e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
