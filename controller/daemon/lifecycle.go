package daemon

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/driver"
)

// lifecycleRoutes adds stop and start (driver.Lifecycle).
func (d *Daemon) lifecycleRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/sandboxes/{name}/stop", func(w http.ResponseWriter, r *http.Request) { d.lifecycle(w, r, "stop") })
	mux.HandleFunc("POST /v1/sandboxes/{name}/start", func(w http.ResponseWriter, r *http.Request) { d.lifecycle(w, r, "start") })
}

// lifecycle stops or starts a sandbox and answers with its view. The warm
// session is dropped either way: after a stop it is dead, after a start
// the next request dials afresh (without the backoff of failed attempts).
func (d *Daemon) lifecycle(w http.ResponseWriter, r *http.Request, op string) {
	sb, err := d.opts.Home.Get(r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	drv, err := driver.Get(sb.Driver)
	if err != nil {
		writeErr(w, err)
		return
	}
	lc, ok := drv.(driver.Lifecycle)
	if !ok {
		writeJSON(w, http.StatusNotImplemented, api.ErrorBody{Error: api.Error{Code: api.CodeUnsupported,
			Message: fmt.Sprintf("sandbox %s: %s is not supported by the %s driver", sb.Name, op, sb.Driver)}})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	d.pool.drop(sb.Name)
	if op == "stop" {
		d.stopEgress(sb.Name)
		err = lc.Stop(ctx, d.opts.Home, sb)
	} else if err = d.recoverRestore(sb); err == nil { // snapshot.go
		err = lc.Start(ctx, d.opts.Home, sb)
	}
	if err != nil {
		// Save what the driver learned (a partial stop) before failing.
		d.opts.Home.Save(sb)
		writeErr(w, fmt.Errorf("%s sandbox %s: %w", op, sb.Name, err))
		return
	}
	d.pool.drop(sb.Name)
	if err := d.opts.Home.Save(sb); err != nil {
		writeErr(w, err)
		return
	}
	if op == "start" {
		d.startEgress(sb)
		d.stateEvent(sb.Name, "started", "")
	} else {
		d.stateEvent(sb.Name, "stopped", "")
	}
	writeJSON(w, http.StatusOK, d.view(sb))
}

// phase fills in the view's phase from drivers that can tell.
func (d *Daemon) phase(v *api.Sandbox) {
	drv, err := driver.Get(v.Driver)
	if err != nil {
		return
	}
	if sd, ok := drv.(driver.StatusDriver); ok {
		st := sd.Status(context.Background(), d.opts.Home, &v.Sandbox)
		v.Phase, v.Reason, v.Resources = st.Phase, st.Reason, st.Resources
	}
}
