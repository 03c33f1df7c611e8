package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/session"
	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/protocol"
)

func (d *Daemon) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/version", d.version)
	mux.HandleFunc("GET /v1/daemon", d.status)
	mux.HandleFunc("POST /v1/daemon/stop", d.stopHandler)
	mux.HandleFunc("GET /v1/sandboxes", d.list)
	mux.HandleFunc("POST /v1/sandboxes", d.create)
	mux.HandleFunc("GET /v1/sandboxes/{name}", d.get)
	mux.HandleFunc("DELETE /v1/sandboxes/{name}", d.delete)
	mux.HandleFunc("GET /v1/sandboxes/{name}/info", d.info)
	mux.HandleFunc("GET /v1/sandboxes/{name}/processes", d.processes)
	mux.HandleFunc("POST /v1/sandboxes/{name}/exec", d.exec)
	mux.HandleFunc("POST /v1/sandboxes/{name}/sync", d.sync)
	d.eventRoutes(mux)
	d.lifecycleRoutes(mux)
	d.toolRoutes(mux)       // mcp.go, forward.go
	d.egressRoutes(mux)     // egress.go
	d.exportRoutes(mux)     // export.go
	d.alertRoutes(mux)      // alerts.go
	d.snapshotRoutes(mux)   // snapshot.go
	d.healthRoutes(mux)     // health.go
	d.poolRoutes(mux)       // warmpool.go
	d.policySyncRoutes(mux) // policysync.go
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		done := d.track()
		defer done()
		w.Header().Set(api.HeaderVersion, protocol.BuildVersion)
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	code, e := httpError(err)
	writeJSON(w, code, api.ErrorBody{Error: e})
}

// httpError classifies an error for the API.
func httpError(err error) (int, api.Error) {
	var re *protocol.RemoteError
	switch {
	case errors.Is(err, state.ErrNotFound):
		return http.StatusNotFound, api.Error{Code: api.CodeNotFound, Message: err.Error()}
	case errors.Is(err, state.ErrExists):
		return http.StatusConflict, api.Error{Code: api.CodeExists, Message: err.Error()}
	case errors.As(err, &re):
		return http.StatusUnprocessableEntity, api.Error{Code: api.CodeRemote, Remote: re.Code, Message: re.Message}
	case errors.Is(err, errBadRequest):
		return http.StatusBadRequest, api.Error{Code: api.CodeBadRequest, Message: err.Error()}
	case errors.Is(err, errConnect):
		return http.StatusBadGateway, api.Error{Code: api.CodeUnavailable, Message: err.Error()}
	}
	return http.StatusInternalServerError, api.Error{Code: api.CodeInternal, Message: err.Error()}
}

// unavailable is an errConnect-class failure whose message stands alone.
type unavailable struct{ error }

func (u unavailable) Is(target error) bool { return target == errConnect }
func (u unavailable) Unwrap() error        { return u.error }

var (
	errBadRequest = errors.New("bad request")
	errConnect    = errors.New("sandbox unreachable")
)

func (d *Daemon) version(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, api.Version{Version: protocol.BuildVersion, Protocol: protocol.ProtocolVersion, PID: os.Getpid(), Started: d.started})
}

func (d *Daemon) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, api.DaemonStatus{
		Version: protocol.BuildVersion, PID: os.Getpid(), Started: d.started,
		Socket: d.opts.Home.Socket(), Home: d.opts.Home.Dir, Sessions: d.pool.names(),
		Streams: int(d.active.Load()) - 1,
		Execs:   d.execs.Load(), ExecsReused: d.execsReused.Load(),
	})
}

func (d *Daemon) stopHandler(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, map[string]bool{"stopping": true})
	go func() {
		time.Sleep(10 * time.Millisecond)
		d.Stop()
	}()
}

func (d *Daemon) view(sb *state.Sandbox) api.Sandbox {
	v := api.Sandbox{Sandbox: *sb}
	connected, s, lastErr := d.pool.status(sb.Name)
	v.Connected = connected
	if s != nil {
		h := s.Remote()
		v.Remote = &h
	}
	if lastErr != nil {
		v.LastError = lastErr.Error()
	}
	d.phase(&v)
	v.Pool = d.warm.poolOf(sb.Name)
	v.Health = d.health(context.Background(), sb, true).Summary() // health.go
	return v
}

func (d *Daemon) list(w http.ResponseWriter, r *http.Request) {
	sbs, err := d.opts.Home.List()
	if err != nil {
		writeErr(w, err)
		return
	}
	out := make([]api.Sandbox, 0, len(sbs))
	for _, sb := range sbs {
		out = append(out, d.view(sb))
	}
	writeJSON(w, 200, out)
}

func (d *Daemon) get(w http.ResponseWriter, r *http.Request) {
	sb, err := d.opts.Home.Get(r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, d.view(sb))
}

func (d *Daemon) create(w http.ResponseWriter, r *http.Request) {
	var req api.CreateRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeErr(w, fmt.Errorf("%w: create body: %v", errBadRequest, err))
		return
	}
	if err := state.ValidName(req.Name); err != nil {
		writeErr(w, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	drv, err := driver.Get(req.Driver)
	if err != nil {
		writeErr(w, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	if _, err := d.opts.Home.Get(req.Name); err == nil {
		writeErr(w, fmt.Errorf("%w: %s", state.ErrExists, req.Name))
		return
	}
	if err := state.ValidLabels(req.Labels); err != nil {
		writeErr(w, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	sb := &state.Sandbox{Name: req.Name, Driver: req.Driver, Created: time.Now().UTC(), SSH: req.SSH, Env: req.Env, Labels: req.Labels}
	if !req.CreateOptions.IsZero() {
		if _, ok := drv.(driver.OptionsDriver); !ok {
			writeErr(w, fmt.Errorf("%w: driver %s does not support --workspace, limits or --unconfined", errBadRequest, req.Driver))
			return
		}
		sb.Extra, _ = json.Marshal(req.CreateOptions)
	}
	if err := d.opts.Home.Create(sb); err != nil {
		writeErr(w, err)
		return
	}
	if _, err := d.warm.createOrClaim(r.Context(), drv, &req, sb); err != nil { // warmpool.go
		d.opts.Home.Delete(sb.Name)
		writeErr(w, unavailable{fmt.Errorf("create sandbox %s: %w", sb.Name, err)})
		return
	}
	if err := d.opts.Home.Save(sb); err != nil {
		writeErr(w, err)
		return
	}
	d.startEgress(sb)
	d.stateEvent(sb.Name, "created", "driver "+sb.Driver)
	ups, err := d.createUploads(r.Context(), sb.Name, req.Uploads)
	if err != nil {
		d.stopEgress(sb.Name)
		d.pool.drop(sb.Name)
		_ = drv.Delete(context.WithoutCancel(r.Context()), d.opts.Home, sb)
		_ = d.opts.Home.Delete(sb.Name)
		d.stateEvent(sb.Name, "deleted", "an upload at create failed: "+err.Error())
		writeErr(w, fmt.Errorf("create sandbox %s (deleted again): %w", sb.Name, err))
		return
	}
	v := d.view(sb)
	v.Uploads = ups
	writeJSON(w, http.StatusCreated, v)
}

func (d *Daemon) delete(w http.ResponseWriter, r *http.Request) {
	sb, err := d.opts.Home.Get(r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	d.stopEgress(sb.Name)
	d.warm.forget(sb.Name)
	// Its MCP servers (bridges on the host) and forwards go with it.
	d.tools().mcp.RemoveSandbox(sb.Name)
	d.tools().fwd.RemoveSandbox(sb.Name)
	d.pool.drop(sb.Name)
	if drv, err := driver.Get(sb.Driver); err == nil {
		if err := drv.Delete(r.Context(), d.opts.Home, sb); err != nil {
			writeErr(w, fmt.Errorf("delete sandbox %s: %w", sb.Name, err))
			return
		}
	}
	if err := d.opts.Home.Delete(sb.Name); err != nil {
		writeErr(w, err)
		return
	}
	d.stateEvent(sb.Name, "deleted", "")
	d.exportForget(sb.Name)
	w.WriteHeader(http.StatusNoContent)
}

// session finds the sandbox and returns its warm session.
func (d *Daemon) session(ctx context.Context, name string) (*session.Session, error) {
	// Hot path: a warm session means the record exists (delete drops it first).
	if ok, s, _ := d.pool.status(name); ok {
		d.pool.touch(name)
		return s, nil
	}
	sb, err := d.opts.Home.Get(name)
	if err != nil {
		return nil, err
	}
	s, err := d.pool.get(ctx, sb)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errConnect, err)
	}
	d.startEventPump(name, s)
	return s, nil
}

func (d *Daemon) info(w http.ResponseWriter, r *http.Request) {
	s, err := d.session(r.Context(), r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	info, err := s.Info(r.Context())
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, info)
}

func (d *Daemon) processes(w http.ResponseWriter, r *http.Request) {
	s, err := d.session(r.Context(), r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	l, err := s.Processes(r.Context())
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, l)
}

func (d *Daemon) exec(w http.ResponseWriter, r *http.Request) {
	if strings.EqualFold(r.Header.Get("Upgrade"), api.UpgradeStream) {
		d.execUpgrade(w, r)
		return
	}
	var req api.ExecRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, protocol.MaxPayload+protocol.MaxPayload/2)).Decode(&req); err != nil {
		writeErr(w, fmt.Errorf("%w: exec body: %v", errBadRequest, err))
		return
	}
	if req.StdinData != nil {
		req.Stdin = true
	}
	if err := req.ExecStart.Validate(); err != nil {
		writeErr(w, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	req.Env = d.warm.execEnv(r.PathValue("name"), req.Env) // a claimed sandbox's env (warmpool.go)
	s, err := d.session(r.Context(), r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	ended := d.exportExecStart(r.PathValue("name"), &req.ExecStart)
	p, err := s.Exec(r.Context(), &req.ExecStart)
	if err != nil {
		if ended != nil {
			ended(0, nil, err)
		}
		writeErr(w, err)
		return
	}
	defer p.Close()
	stop := context.AfterFunc(r.Context(), func() { p.Close() })
	defer stop()
	if req.Stdin {
		go func() {
			if len(req.StdinData) > 0 {
				p.Write(req.StdinData)
			}
			p.CloseStdin()
		}()
	}
	if r.URL.Query().Get("wait") != "" {
		var out, errb limitedBuffer
		out.max, errb.max = 64<<20, 64<<20
		res := api.ExecResult{ID: p.Started.ID, PID: p.Started.PID}
		exit, err := p.Wait(&out, &errb)
		if ended != nil {
			go ended(p.Started.PID, exit, err) // off the caller's latency
		}
		res.Stdout, res.Stderr = out.b, errb.b
		if err != nil {
			_, e := httpError(err)
			res.Error = &e
			res.Status = 125
		} else {
			res.Exit, res.Status = exit, exit.Status()
		}
		writeJSON(w, 200, res)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(200)
	ew := &eventWriter{enc: json.NewEncoder(w), fl: w.(http.Flusher)}
	ew.emit(api.ExecEvent{Type: "started", ID: p.Started.ID, PID: p.Started.PID})
	exit, err := p.Wait(ew.data("stdout"), ew.data("stderr"))
	if ended != nil {
		go ended(p.Started.PID, exit, err) // off the caller's latency
	}
	if err != nil {
		_, e := httpError(err)
		ew.emit(api.ExecEvent{Type: "error", Error: &e})
		return
	}
	ew.emit(api.ExecEvent{Type: "exit", Exit: exit})
}

type eventWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
	fl  http.Flusher
}

func (e *eventWriter) emit(ev api.ExecEvent) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enc.Encode(ev); err != nil {
		return err
	}
	e.fl.Flush()
	return nil
}

type eventData struct {
	e   *eventWriter
	typ string
}

func (d eventData) Write(p []byte) (int, error) {
	if err := d.e.emit(api.ExecEvent{Type: d.typ, Data: p}); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (e *eventWriter) data(typ string) io.Writer { return eventData{e, typ} }

type limitedBuffer struct {
	b   []byte
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if len(l.b)+len(p) > l.max {
		return 0, fmt.Errorf("output over %d bytes: use the streaming API", l.max)
	}
	l.b = append(l.b, p...)
	return len(p), nil
}

// execUpgrade switches the connection to raw exec frames and splices it to a
// new stream on the sandbox's session. The daemon reads and validates only
// the opening request frame. A client that asked for reuse (api.HeaderExecReuse)
// runs one exec after another on the connection (execreuse.go).
func (d *Daemon) execUpgrade(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s, err := d.session(r.Context(), name)
	if err != nil {
		writeErr(w, err)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		writeErr(w, errors.New("connection cannot be upgraded"))
		return
	}
	raw, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	reuse := r.Header.Get(api.HeaderExecReuse) == "1"
	head := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + api.UpgradeStream +
		"\r\nConnection: Upgrade\r\n" + api.HeaderVersion + ": " + protocol.BuildVersion + "\r\n"
	if reuse {
		head += api.HeaderExecReuse + ": 1\r\n"
	}
	// A client that sent its first frame with the request (the Go client
	// does) gets the 101 with the first frame back (exec-started or an
	// error), and reads both in one wake-up.
	conn := &headConn{Conn: raw, head: []byte(head + "\r\n")}
	defer conn.Close()
	if brw.Reader.Buffered() == 0 {
		// A client that waits for the 101 before its first frame (a plain
		// HTTP upgrade) gets it now.
		if _, err := conn.Write(nil); err != nil {
			return
		}
	}
	if !d.execOne(r.Context(), name, s, conn, brw.Reader, reuse) || !reuse {
		return
	}
	d.execLoop(r.Context(), name, conn, brw.Reader)
}

// execOne runs the exec whose opening frame comes next on conn. With reuse
// it reports whether the connection is ready for the next exec; without, the
// connection is spent (false).
func (d *Daemon) execOne(ctx context.Context, name string, s *session.Session, conn net.Conn, br *bufio.Reader, reuse bool) bool {
	d.execs.Add(1)
	if s == nil {
		d.execsReused.Add(1)
	}
	fw := protocol.NewWriter(conn)
	f, err := protocol.ReadFrame(br, protocol.MaxPayload)
	if err != nil {
		code := protocol.CodeBadRequest
		if errors.Is(err, protocol.ErrFrameTooLarge) {
			code = protocol.CodeLimit
		}
		fw.Error(code, "exec stream: %v", err)
		return false
	}
	var ended func(int, *protocol.ExitMsg, error)
	switch f.Type {
	case protocol.FrameExecStart:
		var m protocol.ExecStart
		if err = protocol.DecodeMsg(f, f.Type, &m); err == nil {
			ended = d.exportExecStart(name, &m)
			if env := d.warm.execEnv(name, m.Env); len(env) != len(m.Env) {
				m.Env = env // a claimed sandbox's env (warmpool.go)
				f.Payload, err = json.Marshal(&m)
			}
		}
	case protocol.FrameExecAttach:
		var m protocol.ExecAttach
		err = protocol.DecodeMsg(f, f.Type, &m)
	default:
		err = fmt.Errorf("%w: %s cannot open an exec stream", protocol.ErrUnexpectedFrame, f.Type)
	}
	if err != nil {
		fw.Error(protocol.CodeBadRequest, "%v", err)
		return false
	}
	if s == nil {
		if s, err = d.session(ctx, name); err != nil {
			if ended != nil {
				ended(0, nil, err)
			}
			fw.Error(protocol.CodeInternal, "sandbox %s: %v", name, err)
			return false
		}
	}
	st, err := s.Open(ctx)
	if err != nil {
		if ended != nil {
			ended(0, nil, err)
		}
		fw.Error(protocol.CodeInternal, "sandbox %s: %v", name, err)
		return false
	}
	defer st.Close()
	if err := protocol.WriteFrame(st, f.Type, f.Payload); err != nil {
		if ended != nil {
			ended(0, nil, err)
		}
		fw.Error(protocol.CodeInternal, "sandbox %s: %v", name, err)
		return false
	}
	if reuse {
		tap := &exitTap{}
		again := spliceExec(conn, br, st, tap)
		if ended != nil {
			ended(tap.pid, tap.exit, tapErr(tap))
		}
		return again
	}
	if ended == nil {
		splice(conn, br, st)
		return false
	}
	tap := &exitTap{}
	splice(teeConn{conn, tap}, br, st)
	ended(tap.pid, tap.exit, tapErr(tap))
	return false
}

// tapErr is the export's error for an exec stream that ended without an exit.
func tapErr(tap *exitTap) error {
	if tap.exit == nil {
		return errors.New("the exec stream ended without an exit")
	}
	return nil
}

// headConn writes head before the first bytes written to it, in the same
// write, or on Close if nothing was written.
type headConn struct {
	net.Conn
	mu   sync.Mutex
	head []byte
}

func (c *headConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if h := c.head; h != nil {
		c.head = nil
		c.mu.Unlock()
		n, err := c.Conn.Write(append(h, p...))
		return max(n-len(h), 0), err
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *headConn) Close() error {
	c.mu.Lock()
	h := c.head
	c.head = nil
	c.mu.Unlock()
	if h != nil {
		_, _ = c.Conn.Write(h)
	}
	return c.Conn.Close()
}

// splice copies both ways until either side ends, then closes both.
func splice(client net.Conn, clientR *bufio.Reader, remote net.Conn) {
	done := make(chan struct{})
	go func() {
		buf := bufPool.Get().(*[]byte)
		io.CopyBuffer(remote, clientR, *buf)
		bufPool.Put(buf)
		remote.Close()
		client.Close()
		close(done)
	}()
	buf := bufPool.Get().(*[]byte)
	io.CopyBuffer(client, remote, *buf)
	bufPool.Put(buf)
	client.Close()
	remote.Close()
	<-done
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}
