package daemon

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/forward"
)

func (d *Daemon) forwardRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/forwards", d.forwardList)
	mux.HandleFunc("POST /v1/sandboxes/{name}/forwards", d.forwardStart)
	mux.HandleFunc("DELETE /v1/sandboxes/{name}/forwards/{port}", d.forwardStop)
}

func (d *Daemon) forwardList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, d.tools().fwd.List(r.URL.Query().Get("sandbox")))
}

func (d *Daemon) forwardStart(w http.ResponseWriter, r *http.Request) {
	var req api.ForwardRequest
	if !decodeBody(w, r, &req) {
		return
	}
	bind, port, err := forward.ParseSpec(req.Spec)
	if err != nil {
		writeErr(w, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	info, err := d.tools().fwd.Start(r.Context(), &forward.Record{Sandbox: r.PathValue("name"), Port: port, Bind: bind, Reverse: req.Reverse})
	if err != nil {
		toolErr(w, err)
		return
	}
	writeJSON(w, 201, info)
}

func (d *Daemon) forwardStop(w http.ResponseWriter, r *http.Request) {
	port, err := strconv.Atoi(r.PathValue("port"))
	if err != nil {
		writeErr(w, fmt.Errorf("%w: port %q", errBadRequest, r.PathValue("port")))
		return
	}
	if err := d.tools().fwd.Stop(r.PathValue("name"), port, r.URL.Query().Get("reverse") == "1"); err != nil {
		toolErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
