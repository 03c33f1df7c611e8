package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/bohica-labs/darkshell/controller/events"
	"github.com/bohica-labs/darkshell/controller/session"
	"github.com/bohica-labs/darkshell/protocol"
)

// Response headers of the events route: what the sandbox's sources can see.
const (
	HeaderEventSources      = "X-Darkshell-Event-Sources"
	HeaderEventFidelity     = "X-Darkshell-Event-Fidelity"
	HeaderEventFileFidelity = "X-Darkshell-Event-File-Fidelity"
	HeaderEventNote         = "X-Darkshell-Event-Note"
	HeaderEventFileProbe    = "X-Darkshell-Event-File-Probe"
	HeaderEventLost         = "X-Darkshell-Event-Lost"
)

// eventRoutes registers the events API (docs/api.md "Events").
func (d *Daemon) eventRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/sandboxes/{name}/events", d.events)
	mux.HandleFunc("GET /v1/sandboxes/{name}/logs", d.logs)
}

// stateEvent publishes a sandbox_state event of the sandbox's lifecycle
// (created, started, stopped, deleted) as the daemon carries it out.
func (d *Daemon) stateEvent(name, state, msg string) {
	d.bus.Publish(protocol.Event{Time: time.Now(), Sandbox: name, Kind: protocol.KindSandboxState, State: state,
		Message: msg, Source: protocol.SourceDaemon})
}

// startEventPump starts, in the background, the pump that feeds the bus
// (and so the host log) from a new session, if sandboxd has eBPF probes
// running anyway. Sandboxes with only the fallback sources (procfs
// polling, inotify) get a pump, and start those sources, when someone
// first asks for their events: polling is not free.
func (d *Daemon) startEventPump(name string, s *session.Session) {
	if !slices.Contains(s.Remote().Caps, protocol.CapEvents) || (s.Remote().EventFidelity != protocol.SourceEBPF && !d.exp.active()) {
		return // exporters want every sandbox's events (export.go)
	}
	go func() {
		// The pump lives as long as the session's stream; ctx bounds its start.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := d.bus.Pump(ctx, name, s); err != nil {
			d.log.Warn("no event pump", "sandbox", name, "err", err)
		}
	}()
}

// events streams a sandbox's events as JSON lines (one protocol.Event per
// line). Query: history=1 (retained events first), follow=1 (then live
// ones), files=1 (file events too), since_ms=UNIX_MS, since_seq=N.
func (d *Daemon) events(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	q := r.URL.Query()
	req := protocol.EventsRequest{
		History: q.Get("history") == "1",
		Follow:  q.Get("follow") == "1",
		Files:   q.Get("files") == "1",
	}
	var err error
	if v := q.Get("since_ms"); v != "" {
		if req.SinceUnixMs, err = strconv.ParseInt(v, 10, 64); err != nil {
			writeErr(w, fmt.Errorf("%w: since_ms: %v", errBadRequest, err))
			return
		}
	}
	if v := q.Get("since_seq"); v != "" {
		if req.SinceSeq, err = strconv.ParseUint(v, 10, 64); err != nil {
			writeErr(w, fmt.Errorf("%w: since_seq: %v", errBadRequest, err))
			return
		}
	}
	if err := req.Validate(); err != nil {
		writeErr(w, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	s, err := d.session(r.Context(), name)
	if err != nil {
		writeErr(w, err)
		return
	}
	if !slices.Contains(s.Remote().Caps, protocol.CapEvents) {
		writeErr(w, &protocol.RemoteError{Code: protocol.CodeUnsupported, Message: "this sandboxd offers no event stream"})
		return
	}
	ctx := r.Context()
	var sub *events.Sub
	if req.Follow {
		// Subscribe before reading the history: nothing falls in between,
		// and live events the history already had are skipped by seq.
		if err := d.bus.Pump(ctx, name, s); err != nil {
			writeErr(w, err)
			return
		}
		sub = d.bus.Subscribe(name, 0)
		defer sub.Close()
	}
	hreq := req
	hreq.Follow = false
	if !hreq.History {
		hreq.History, hreq.SinceSeq = true, ^uint64(0) // only the hello and the counters
	}
	st, err := events.Open(ctx, s, &hreq)
	if err != nil {
		writeErr(w, err)
		return
	}
	defer st.Close()
	h := w.Header()
	for _, src := range st.Hello.Sources {
		h.Add(HeaderEventSources, src)
	}
	h.Set(HeaderEventFidelity, st.Hello.Fidelity)
	h.Set(HeaderEventFileFidelity, st.Hello.FileFidelity)
	h.Set(HeaderEventNote, st.Hello.Note)
	h.Set(HeaderEventFileProbe, st.Hello.FileProbe)
	h.Set(HeaderEventLost, strconv.FormatUint(st.Hello.Lost, 10))
	h.Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(200)
	fl, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	emit := func(e *protocol.Event) error {
		e.Sandbox = name
		return enc.Encode(e)
	}
	lost := st.Hello.Lost
	var last uint64
	for st.End == nil {
		batch, err := st.Next()
		if err != nil {
			d.log.Debug("events history ended early", "sandbox", name, "err", err)
			return
		}
		for i := range batch.Events {
			if err := emit(&batch.Events[i]); err != nil {
				return
			}
			last = batch.Events[i].Seq
		}
		if batch.Lost > lost {
			lost = batch.Lost
		}
	}
	if lost > 0 {
		emit(&protocol.Event{Time: time.Now(), Kind: protocol.KindAlert, Source: protocol.SourceDaemon, Fidelity: st.Hello.Fidelity,
			Lost: lost, Message: fmt.Sprintf("%d events lost in the sandbox (ring buffer full)", lost)})
	}
	if fl != nil {
		fl.Flush()
	}
	st.Close()
	if sub == nil {
		return
	}
	var skipped uint64
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if n := sub.Skipped(); n > skipped {
				emit(&protocol.Event{Time: time.Now(), Kind: protocol.KindAlert, Source: protocol.SourceDaemon, Fidelity: st.Hello.Fidelity,
					Message: fmt.Sprintf("%d events skipped: this reader was too slow", n-skipped)})
				skipped = n
				if fl != nil {
					fl.Flush()
				}
			}
		case e := <-sub.C:
			for {
				if e.Seq == 0 || e.Seq > last {
					if req.Files || !e.IsFile() {
						if err := emit(&e); err != nil {
							return
						}
					}
				}
				select {
				case e = <-sub.C:
					continue
				default:
				}
				break
			}
			if fl != nil {
				fl.Flush()
			}
		}
	}
}

// logs lists a sandbox's host event log files, newest first.
func (d *Daemon) logs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := d.opts.Home.Get(name); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, map[string]any{"dir": d.bus.LogDir(name), "files": events.LogFiles(d.bus.LogDir(name))})
}
