package daemon

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strconv"

	"github.com/bohica-labs/darkshell/controller/alerts"
	"github.com/bohica-labs/darkshell/controller/events"
	"github.com/bohica-labs/darkshell/protocol"
)

// alertRoutes registers the alerts API (docs/api.md).
func (d *Daemon) alertRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/sandboxes/{name}/alerts", d.alertList)
}

// startAlerts runs the baseline engine on the bus: its alerts go back on
// the bus (watch, host log, exporters see them).
func (d *Daemon) startAlerts() {
	cfg, err := alerts.LoadConfig(d.opts.Home.Dir)
	if err != nil {
		d.log.Warn("alerts config ignored: using the defaults", "err", err)
		cfg = alerts.Config{}
	}
	en := alerts.New(cfg)
	sub := d.bus.SubscribeAll(events.DefaultQueue)
	go func() {
		defer sub.Close()
		for {
			select {
			case <-d.stop:
				return
			case e := <-sub.C:
				for _, a := range en.Add(&e) {
					d.bus.Publish(a)
				}
			}
		}
	}()
}

// alertList reads the sandbox's alerts from its host event log, oldest
// first; ?limit=N keeps the newest N (default 1000).
func (d *Daemon) alertList(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := d.opts.Home.Get(name); err != nil {
		writeErr(w, err)
		return
	}
	limit := 1000
	if v, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && v > 0 {
		limit = v
	}
	files := events.LogFiles(d.bus.LogDir(name))
	slices.Reverse(files) // oldest first
	out := []protocol.Event{}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if !bytes.Contains(sc.Bytes(), alertKind) {
				continue
			}
			var e protocol.Event
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Kind == protocol.KindAlert {
				out = append(out, e)
			}
		}
		fh.Close()
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	writeJSON(w, 200, out)
}

var alertKind = []byte(`"kind":"alert"`)
