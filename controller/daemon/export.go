package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/export"
	"github.com/bohica-labs/darkshell/protocol"
)

// exportRoutes registers the exporters API (docs/api.md "Export").
func (d *Daemon) exportRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/exporters", d.exportList)
	mux.HandleFunc("POST /v1/exporters", d.exportAdd)
	mux.HandleFunc("DELETE /v1/exporters/{name}", d.exportRemove)
}

// startExport starts the exporter helper if exporters are configured.
func (d *Daemon) startExport() {
	d.exp = newExportProc(d.opts.Home, d.bus, d.usage, d.log.With("component", "export"))
	d.exp.sync()
}

// usage reads every sandbox's resource use from drivers that can tell.
func (d *Daemon) usage(ctx context.Context) []export.Usage {
	sbs, err := d.opts.Home.List()
	if err != nil {
		return nil
	}
	var out []export.Usage
	for _, sb := range sbs {
		drv, err := driver.Get(sb.Driver)
		if err != nil {
			continue
		}
		sd, ok := drv.(driver.StatusDriver)
		if !ok {
			continue
		}
		st := sd.Status(ctx, d.opts.Home, sb)
		if st.Resources == nil {
			continue
		}
		r := st.Resources
		out = append(out, export.Usage{Sandbox: sb.Name, MemoryBytes: r.MemoryBytes, MemoryLimitBytes: r.MemoryLimitBytes,
			Pids: r.Pids, PidsLimit: r.PidsLimit, CPUSeconds: r.CPUSeconds, CPULimit: r.CPULimit})
	}
	return out
}

func (d *Daemon) exportList(w http.ResponseWriter, r *http.Request) {
	l, err := d.exp.list()
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, l)
}

func (d *Daemon) exportAdd(w http.ResponseWriter, r *http.Request) {
	var sp export.Spec
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&sp); err != nil {
		writeErr(w, fmt.Errorf("%w: exporter body: %v", errBadRequest, err))
		return
	}
	if err := export.OpenStore(d.opts.Home).Add(&sp); err != nil {
		if errors.Is(err, export.ErrExists) {
			writeJSON(w, http.StatusConflict, api.ErrorBody{Error: api.Error{Code: api.CodeExists, Message: err.Error()}})
			return
		}
		writeErr(w, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	d.exp.sync()
	l, _ := d.exp.list()
	for _, st := range l {
		if st.Name == sp.Name {
			writeJSON(w, http.StatusCreated, st)
			return
		}
	}
	writeJSON(w, http.StatusCreated, export.Status{Spec: sp.Redacted()})
}

func (d *Daemon) exportRemove(w http.ResponseWriter, r *http.Request) {
	if err := export.OpenStore(d.opts.Home).Remove(r.PathValue("name")); err != nil {
		if errors.Is(err, export.ErrNotFound) {
			writeJSON(w, http.StatusNotFound, api.ErrorBody{Error: api.Error{Code: api.CodeNotFound, Message: err.Error()}})
			return
		}
		writeErr(w, err)
		return
	}
	d.exp.sync()
	w.WriteHeader(http.StatusNoContent)
}

// execCalls numbers exec calls that carry no id of their own (upgraded streams).
var execCalls atomic.Uint64

// exportExecStart publishes an exec call's start on the bus when some
// exporter listens (else it costs nothing); the returned function
// publishes its end.
func (d *Daemon) exportExecStart(sandbox string, m *protocol.ExecStart) func(pid int, exit *protocol.ExitMsg, err error) {
	if d.exp == nil || !d.exp.active() {
		return nil
	}
	start := time.Now()
	id := "call-" + strconv.FormatUint(execCalls.Add(1), 10)
	argv := m.Argv
	if m.Shell && len(argv) == 1 {
		argv = []string{"sh", "-c", argv[0]}
	}
	argv = protocol.ClampArgv(argv)
	d.bus.Publish(protocol.Event{Time: start, Sandbox: sandbox, Kind: protocol.KindExecCall, State: "started", CallID: id,
		Argv: argv, Cwd: m.Dir, Source: protocol.SourceDaemon, Fidelity: protocol.FidelityComplete})
	return func(pid int, exit *protocol.ExitMsg, err error) {
		e := protocol.Event{Time: time.Now(), Sandbox: sandbox, Kind: protocol.KindExecCall, State: "ended", CallID: id, PID: pid,
			Argv: argv, DurationNs: int64(time.Since(start)), Source: protocol.SourceDaemon, Fidelity: protocol.FidelityComplete}
		if err != nil {
			e.Result, e.Message = protocol.ResultError, err.Error()
		} else if exit != nil {
			if exit.Signal != 0 {
				e.Signal = exit.Signal
			} else {
				code := exit.Code
				e.ExitCode = &code
			}
		}
		d.bus.Publish(e)
	}
}

// exportSync publishes a finished sync run.
func (d *Daemon) exportSync(sandbox string, req *apiSyncView, start time.Time, sum *protocol.SyncSummary, err error) {
	if d.exp == nil || !d.exp.active() {
		return
	}
	e := protocol.Event{Time: time.Now(), Sandbox: sandbox, Kind: protocol.KindSync, CallID: req.direction, State: "ended",
		Path: req.local + ":" + req.remote, DurationNs: int64(time.Since(start)), Source: protocol.SourceDaemon, Fidelity: protocol.FidelityComplete}
	if err != nil {
		e.Result, e.Message = protocol.ResultError, err.Error()
	} else if sum != nil {
		e.Result = protocol.ResultOK
		e.Bytes = sum.SentBytes + sum.RecvBytes
		e.Files = int64(sum.Added + sum.Modified + sum.Deleted)
	}
	d.bus.Publish(e)
}

type apiSyncView struct{ direction, local, remote string }

// exitTap reads the frames sandboxd sends on an upgraded exec stream as
// they pass (io.Writer of a tee) and keeps the started pid and the exit. It
// stops at the stream's terminal frame (exit or error).
type exitTap struct {
	hdr   [protocol.HeaderSize]byte
	nh    int    // header bytes read
	left  uint32 // payload bytes still to come of the current frame
	typ   protocol.FrameType
	keep  []byte // payload of a frame we decode (started, exit)
	pid   int
	exit  *protocol.ExitMsg
	last  bool // the terminal frame has passed
	stray bool // lost track of the framing: stop looking
}

func (t *exitTap) Write(p []byte) (int, error) {
	t.scan(p)
	return len(p), nil
}

// scan follows the frames in p and returns how many of its bytes belong to
// the stream up to and including its terminal frame: all of p unless the
// terminal frame ends inside it.
func (t *exitTap) scan(p []byte) int {
	n := len(p)
	for len(p) > 0 && !t.stray && !t.last {
		if t.left == 0 && t.nh < len(t.hdr) {
			c := copy(t.hdr[t.nh:], p)
			t.nh += c
			p = p[c:]
			if t.nh < len(t.hdr) {
				break
			}
			t.typ = protocol.FrameType(t.hdr[0])
			t.left = uint32(t.hdr[1])<<24 | uint32(t.hdr[2])<<16 | uint32(t.hdr[3])<<8 | uint32(t.hdr[4])
			if t.left > protocol.MaxPayload {
				t.stray = true
				break
			}
			t.keep = t.keep[:0]
			if t.left == 0 {
				t.frame()
			}
			continue
		}
		c := min(uint32(len(p)), t.left)
		if t.typ == protocol.FrameExecStarted || t.typ == protocol.FrameExit {
			t.keep = append(t.keep, p[:c]...)
		}
		p = p[c:]
		t.left -= c
		if t.left == 0 {
			t.frame()
		}
	}
	if t.last {
		return n - len(p)
	}
	return n
}

func (t *exitTap) frame() {
	t.nh = 0
	switch t.typ {
	case protocol.FrameExecStarted:
		var m protocol.ExecStarted
		if json.Unmarshal(t.keep, &m) == nil {
			t.pid = m.PID
		}
	case protocol.FrameExit:
		t.last = true
		var m protocol.ExitMsg
		if json.Unmarshal(t.keep, &m) == nil {
			t.exit = &m
		}
	case protocol.FrameError:
		t.last = true
	}
}

// teeConn is a client connection whose writes (sandboxd's frames) also go
// to a tap.
type teeConn struct {
	net.Conn
	tap io.Writer
}

func (c teeConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.tap.Write(p[:n])
	return n, err
}

// exportForget removes the exporters that served only the deleted sandbox
// (a blueprint's).
func (d *Daemon) exportForget(name string) {
	st := export.OpenStore(d.opts.Home)
	specs, err := st.List()
	if err != nil {
		return
	}
	changed := false
	for _, sp := range specs {
		if len(sp.Sandboxes) == 1 && sp.Sandboxes[0] == name {
			if err := st.Remove(sp.Name); err == nil {
				changed = true
			}
		}
	}
	if changed {
		d.exp.sync()
	}
}
