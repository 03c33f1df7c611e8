package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/egress"
	"github.com/bohica-labs/darkshell/controller/forward"
	"github.com/bohica-labs/darkshell/controller/mcp"
	"github.com/bohica-labs/darkshell/controller/provider"
	"github.com/bohica-labs/darkshell/controller/session"
	"github.com/bohica-labs/darkshell/mcpproxy"
	"github.com/bohica-labs/darkshell/protocol"
)

// tools holds the daemon's MCP servers, providers and forwards. The daemon
// stays up while any of them runs (each holds d.track()).
type tools struct {
	providers *provider.Store
	mcp       *mcp.Manager
	fwd       *forward.Manager
}

var (
	toolsMu sync.Mutex
	toolsOf = map[*Daemon]*tools{}
)

// tools returns the daemon's tool runtime, creating it (and restoring the
// stored MCP servers and forwards) on first use.
func (d *Daemon) tools() *tools {
	toolsMu.Lock()
	defer toolsMu.Unlock()
	if t := toolsOf[d]; t != nil {
		return t
	}
	sf := func(ctx context.Context, name string) (*session.Session, error) { return d.session(ctx, name) }
	t := &tools{providers: provider.Open(d.opts.Home)}
	t.mcp = mcp.NewManager(mcp.Options{Home: d.opts.Home, Providers: t.providers, Session: sf, Logger: d.log, Hold: d.track})
	t.fwd = forward.NewManager(d.opts.Home, sf, d.track, d.log)
	t.mcp.SetEventSink(func(sandbox string, ev mcpproxy.Event) { d.bus.Publish(mcpEvent(sandbox, ev)) })
	toolsOf[d] = t
	go func() {
		t.mcp.Restore()
		t.fwd.Restore()
		go func() {
			<-d.stop
			t.mcp.Close()
			t.fwd.Close()
		}()
	}()
	return t
}

// toolRoutes registers the MCP, provider and forward endpoints.
func (d *Daemon) toolRoutes(mux *http.ServeMux) {
	d.tools()
	mux.HandleFunc("GET /v1/sandboxes/{name}/mcp", d.mcpList)
	mux.HandleFunc("POST /v1/sandboxes/{name}/mcp", d.mcpAdd)
	mux.HandleFunc("DELETE /v1/sandboxes/{name}/mcp/{server}", d.mcpRemove)
	mux.HandleFunc("GET /v1/sandboxes/{name}/mcp/logs", d.mcpLogs)
	mux.HandleFunc("GET /v1/providers", d.providerList)
	mux.HandleFunc("POST /v1/providers", d.providerCreate)
	mux.HandleFunc("PATCH /v1/providers/{provider}", d.providerUpdate)
	mux.HandleFunc("DELETE /v1/providers/{provider}", d.providerDelete)
	d.forwardRoutes(mux)
}

// toolErr writes err with the status its kind calls for.
func toolErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, mcp.ErrNotFound), errors.Is(err, provider.ErrNotFound), errors.Is(err, forward.ErrNotFound):
		writeJSON(w, http.StatusNotFound, api.ErrorBody{Error: api.Error{Code: api.CodeNotFound, Message: err.Error()}})
	case errors.Is(err, mcp.ErrExists), errors.Is(err, provider.ErrExists), errors.Is(err, forward.ErrExists):
		writeJSON(w, http.StatusConflict, api.ErrorBody{Error: api.Error{Code: api.CodeExists, Message: err.Error()}})
	default:
		writeErr(w, err)
	}
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(v); err != nil {
		writeErr(w, fmt.Errorf("%w: body: %v", errBadRequest, err))
		return false
	}
	return true
}

func (d *Daemon) mcpList(w http.ResponseWriter, r *http.Request) {
	l, err := d.tools().mcp.List(r.PathValue("name"))
	if err != nil {
		toolErr(w, err)
		return
	}
	writeJSON(w, 200, l)
}

func (d *Daemon) mcpAdd(w http.ResponseWriter, r *http.Request) {
	var req api.MCPAddRequest
	if !decodeBody(w, r, &req) {
		return
	}
	rec := &mcp.Record{Sandbox: r.PathValue("name"), Name: req.Server, Transport: req.Transport, Argv: req.Command,
		URL: req.URL, Dir: req.Dir, Providers: req.Providers, Allow: req.Allow, Deny: req.Deny, Port: req.Port,
		Rules: req.Rules, DenyRules: req.DenyRules}
	if rec.Transport == protocol.MCPHTTP {
		// The sandbox's policy file may set protocol: mcp rules for the URL.
		sb, err := d.opts.Home.Get(rec.Sandbox)
		if err != nil {
			toolErr(w, err)
			return
		}
		pol, err := recordPolicy(sb)
		if err == nil {
			rec.EndpointRules, rec.EndpointDenyRules, rec.EndpointPolicies, err = egress.MCPEndpointRules(pol, rec.URL)
		}
		if err != nil {
			writeErr(w, fmt.Errorf("%w: %v", errBadRequest, err))
			return
		}
	}
	for _, e := range req.Env {
		if strings.Contains(e, "=") {
			rec.Env = append(rec.Env, e)
		} else {
			rec.EnvKeys = append(rec.EnvKeys, e)
		}
	}
	if rec.Port != 0 {
		if err := rec.Validate(); err != nil {
			writeErr(w, fmt.Errorf("%w: %v", errBadRequest, err))
			return
		}
	} else {
		probe := *rec
		probe.Port = mcp.FirstPort
		if err := probe.Validate(); err != nil {
			writeErr(w, fmt.Errorf("%w: %v", errBadRequest, err))
			return
		}
	}
	info, err := d.tools().mcp.Add(r.Context(), rec)
	if err != nil {
		toolErr(w, err)
		return
	}
	writeJSON(w, 201, info)
}

func (d *Daemon) mcpRemove(w http.ResponseWriter, r *http.Request) {
	if err := d.tools().mcp.Remove(r.PathValue("name"), r.PathValue("server")); err != nil {
		toolErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) mcpLogs(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	evs, err := d.tools().mcp.Logs(r.PathValue("name"), r.URL.Query().Get("server"), n)
	if err != nil {
		toolErr(w, err)
		return
	}
	writeJSON(w, 200, evs)
}

func (d *Daemon) providerList(w http.ResponseWriter, r *http.Request) {
	l, err := d.tools().providers.List()
	if err != nil {
		toolErr(w, err)
		return
	}
	writeJSON(w, 200, l)
}

func (d *Daemon) providerCreate(w http.ResponseWriter, r *http.Request) {
	var req api.ProviderRequest
	if !decodeBody(w, r, &req) {
		return
	}
	p := &provider.Provider{Name: req.Name, Type: req.Type, Credentials: req.Credentials}
	if err := p.Validate(); err != nil {
		writeErr(w, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	t := d.tools()
	if err := t.providers.Create(p); err != nil {
		toolErr(w, err)
		return
	}
	t.mcp.Rotate(p.Name) // refreshes the redactor; no bridge uses it yet
	writeJSON(w, 201, p.Summary())
}

func (d *Daemon) providerUpdate(w http.ResponseWriter, r *http.Request) {
	var req api.ProviderRequest
	if !decodeBody(w, r, &req) {
		return
	}
	t := d.tools()
	p, err := t.providers.Update(r.PathValue("provider"), req.Credentials)
	if err != nil {
		if errors.Is(err, provider.ErrNotFound) {
			toolErr(w, err)
		} else {
			writeErr(w, fmt.Errorf("%w: %v", errBadRequest, err))
		}
		return
	}
	res, err := d.rotated(p.Name, req.Credentials, req.Expires) // rotate.go
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, res)
}

func (d *Daemon) providerDelete(w http.ResponseWriter, r *http.Request) {
	t := d.tools()
	name := r.PathValue("provider")
	if users := t.mcp.Users(name); len(users) > 0 {
		writeErr(w, fmt.Errorf("%w: provider %s is used by MCP servers %s; remove them first", errBadRequest, name, strings.Join(users, ", ")))
		return
	}
	if err := t.providers.Delete(name); err != nil {
		toolErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// mcpEvent is an MCP call or tool-policy decision on the event stream.
func mcpEvent(sandbox string, ev mcpproxy.Event) protocol.Event {
	e := protocol.Event{Time: ev.Time.UTC(), Sandbox: sandbox, Kind: ev.Kind, Server: ev.Server, Tool: ev.Tool,
		Rule: ev.Rule, DurationNs: int64(ev.DurationMs * 1e6), Message: ev.Error,
		Source: protocol.SourceBridge, Fidelity: protocol.FidelityComplete, Result: ev.Decision}
	if ev.Kind == mcpproxy.KindCall && ev.Decision == "allow" {
		e.Result = protocol.ResultOK
		if ev.IsError || ev.Error != "" {
			e.Result = protocol.ResultError
		}
	}
	return e
}
