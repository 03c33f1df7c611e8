package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/bohica-labs/darkshell/controller/inference"
	"github.com/bohica-labs/darkshell/controller/provider"
	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/protocol"
)

// relayCreds hands the inference relay credentials from the host's
// provider store (read at each request: a rotation applies at once).
type relayCreds struct {
	home *state.Home
	cfg  func() *inference.Config
}

// Credential is the value of the route's key (by default its API's).
func (c relayCreds) Credential(name, key string) (string, error) {
	p, err := provider.Open(c.home).Get(name)
	if err != nil {
		return "", err
	}
	r := inference.Route{Provider: name, Key: key}
	if cfg := c.cfg(); cfg != nil {
		for _, x := range cfg.Routes {
			if x.Provider == name && x.Key == key {
				r.API = x.API
				break
			}
		}
	}
	k, err := r.CredentialKey(p.Summary().Keys)
	if err != nil {
		return "", err
	}
	return p.Credentials[k], nil
}

// AllValues is every stored credential value (all redacted from logs).
func (c relayCreds) AllValues() []string {
	st := provider.Open(c.home)
	sums, _ := st.List()
	var out []string
	for _, s := range sums {
		if p, err := st.Get(s.Name); err == nil {
			out = append(out, p.Values()...)
		}
	}
	return out
}

// recordInference is the inference configuration stored with a sandbox.
func recordInference(sb *state.Sandbox) (*inference.Config, error) {
	var x struct {
		Inference *inference.Config `json:"inference"`
	}
	if len(sb.Extra) > 0 {
		if err := json.Unmarshal(sb.Extra, &x); err != nil {
			return nil, err
		}
	}
	return x.Inference, nil
}

// newRelay makes sb's inference relay: its events go on the bus.
func (d *Daemon) newRelay(sb *state.Sandbox) *inference.Relay {
	name := sb.Name
	r := &inference.Relay{Sandbox: name, Logger: d.log.With("sandbox", name, "component", "inference"),
		OnEvent: func(e protocol.Event) { d.bus.Publish(e) }, RootCAs: upstreamRoots(d.log)}
	r.Creds = relayCreds{d.opts.Home, r.Config}
	cfg, err := recordInference(sb)
	if err != nil {
		d.log.Warn("inference: the recorded configuration does not parse; no inference route", "sandbox", name, "err", err)
	} else if cfg != nil {
		r.SetConfig(cfg)
	}
	return r
}

// inferenceRoutes: the inference configuration API (docs/api.md "Inference").
func (d *Daemon) inferenceRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/sandboxes/{name}/inference", d.inferenceGet)
	mux.HandleFunc("PUT /v1/sandboxes/{name}/inference", d.inferenceSet)
}

func (d *Daemon) inferenceGet(w http.ResponseWriter, r *http.Request) {
	sb, err := d.opts.Home.Get(r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	cfg, err := recordInference(sb)
	if err != nil {
		writeErr(w, err)
		return
	}
	if cfg == nil {
		cfg = &inference.Config{Routes: []inference.Route{}}
	}
	writeJSON(w, http.StatusOK, cfg)
}

// inferenceSet replaces the sandbox's inference configuration (an empty
// one removes it); a running proxy uses it from the next request.
func (d *Daemon) inferenceSet(w http.ResponseWriter, r *http.Request) {
	sb, err := d.opts.Home.Get(r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	var cfg inference.Config
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		writeErr(w, fmt.Errorf("%w: inference body: %v", errBadRequest, err))
		return
	}
	if err := cfg.Validate(); err != nil {
		writeErr(w, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	for _, rt := range cfg.Routes {
		p, err := provider.Open(d.opts.Home).Get(rt.Provider)
		if errors.Is(err, provider.ErrNotFound) {
			writeErr(w, fmt.Errorf("%w: inference route %s: no provider %s (darkshell provider create --name %s --type %s --credential KEY=VALUE)", errBadRequest, rt.API, rt.Provider, rt.Provider, rt.API))
			return
		} else if err != nil {
			writeErr(w, err)
			return
		}
		if _, err := rt.CredentialKey(p.Summary().Keys); err != nil {
			writeErr(w, fmt.Errorf("%w: inference route %s: %v", errBadRequest, rt.API, err))
			return
		}
	}
	extra := map[string]any{}
	if len(sb.Extra) > 0 {
		if err := json.Unmarshal(sb.Extra, &extra); err != nil {
			writeErr(w, err)
			return
		}
	}
	var stored *inference.Config
	if len(cfg.Routes) > 0 {
		stored = &cfg
		extra["inference"] = cfg
	} else {
		delete(extra, "inference")
	}
	if sb.Extra, err = json.Marshal(extra); err != nil {
		writeErr(w, err)
		return
	}
	if err := d.opts.Home.Save(sb); err != nil {
		writeErr(w, err)
		return
	}
	if run := d.egressOf(sb.Name); run != nil && run.relay != nil {
		run.setInference(stored, d.track)
	}
	if stored == nil {
		stored = &inference.Config{Routes: []inference.Route{}}
	}
	writeJSON(w, http.StatusOK, stored)
}

// setInference installs cfg in the relay; the daemon stays up while the
// sandbox has inference routes (its processes depend on the relay).
func (r *egressRun) setInference(cfg *inference.Config, track func() func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.relay.SetConfig(cfg)
	on := cfg != nil && len(cfg.Routes) > 0
	switch {
	case on && r.hold == nil:
		r.hold = track()
	case !on && r.hold != nil:
		r.hold()
		r.hold = nil
	}
}
