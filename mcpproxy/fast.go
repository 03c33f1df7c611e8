package mcpproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// The hot path.
//
// Every request of an established session that the relay can forward as it
// is, a tools/call without a progress token above all, skips the SDK on
// both sides: the body is scanned once (scanFrame), policy is applied to
// what the scan found, and the original bytes go to the stdio upstream with
// only the id replaced; the reply comes back as bytes with the id put back
// and is sent as one application/json response. Everything else (the
// handshake, GET streams, DELETE, notifications, progress, tools/list
// filtering, batches, a remote upstream, and any request the relay is unsure
// of) goes to the SDK's Streamable HTTP handler as before, which also
// produces every HTTP-level error.

const (
	sessionHeader = "Mcp-Session-Id"
	versionHeader = "Mcp-Protocol-Version"
	// maxFastSessions bounds the sessions the relay remembers; later ones
	// are served by the SDK path only.
	maxFastSessions = 4096
)

// sessions remembers the sessions the SDK handler created and the protocol
// version header it accepted for each (set by the first request it served
// after initialize), so the relay serves only what the SDK would.
type sessions struct {
	mu sync.Mutex
	m  map[string]*sessionState
}

type sessionState struct {
	version    string
	versionSet bool
}

func (s *sessions) ok(id, version string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.m[id]
	return st != nil && st.versionSet && st.version == version
}

// observe learns from a request the SDK handler answered with status.
func (s *sessions) observe(r *http.Request, status int, newID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*sessionState{}
	}
	id := r.Header.Get(sessionHeader)
	switch {
	case r.Method == http.MethodDelete && id != "" && status < 300:
		delete(s.m, id)
	case id == "" && newID != "" && status < 300:
		if len(s.m) < maxFastSessions {
			s.m[newID] = &sessionState{}
		}
	case id != "" && status == http.StatusNotFound:
		delete(s.m, id)
	case id != "" && status < 300 && r.Method == http.MethodPost:
		if st := s.m[id]; st != nil && !st.versionSet {
			st.version, st.versionSet = r.Header.Get(versionHeader), true
		}
	}
}

// statusWriter records the status and the session id the SDK handler set;
// Flush and Unwrap keep its SSE streams working.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ServeHTTP is the endpoint: the relay first, the SDK handler otherwise.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && p.relay(w, r) {
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	p.sdk.ServeHTTP(sw, r)
	p.sessions.observe(r, sw.status, sw.Header().Get(sessionHeader))
}

// relayMethods are the requests the relay forwards (tools/list is left to
// the SDK path, which filters it).
var relayMethods = map[string]bool{
	"tools/call": true, "resources/list": true, "resources/templates/list": true, "resources/read": true,
	"prompts/list": true, "prompts/get": true, "completion/complete": true,
}

// relay serves r if it can; false means it left r (and its body, restored)
// to the SDK path. Only POSTs of known sessions with the headers the SDK
// requires get this far.
func (p *Proxy) relay(w http.ResponseWriter, r *http.Request) bool {
	sid := r.Header.Get(sessionHeader)
	if sid == "" || !p.sessions.ok(sid, r.Header.Get(versionHeader)) ||
		!strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") || !acceptsBoth(r.Header.Values("Accept")) {
		return false
	}
	p.mu.Lock()
	g := p.gen
	p.mu.Unlock()
	if g == nil || g.link == nil {
		return false // starting, backoff, or a remote upstream: the SDK path
	}
	body, err := readBody(r.Body, MaxBody)
	r.Body.Close()
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.Is(err, errTooLarge) || errors.As(err, &mbe) {
			http.Error(w, fmt.Sprintf("request body exceeds %d bytes", MaxBody), http.StatusRequestEntityTooLarge)
		} else {
			http.Error(w, "unable to read the request body: "+err.Error(), http.StatusBadRequest)
		}
		return true
	}
	f, err := scanFrame(body)
	// Invalid UTF-8 is left to the SDK path: a reader that replaces bad
	// bytes could see another tool name than the one policy judged.
	if err != nil || !utf8.Valid(body) || !f.jsonrpc20 || f.idEnd == 0 || !relayMethods[f.method] || f.progress || f.hasError || f.resultEnd > 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
		return false
	}
	p.relayRequest(w, r, g, sid, body, &f)
	return true
}

var errTooLarge = errors.New("body too large")

// readBody reads all of rc, at most max bytes, sized by Content-Length.
func readBody(rc io.Reader, max int) ([]byte, error) {
	buf := bytes.NewBuffer(make([]byte, 0, 1024))
	n, err := buf.ReadFrom(io.LimitReader(rc, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if n > int64(max) {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

func acceptsBoth(vs []string) bool {
	j, s := false, false
	for _, v := range vs {
		for raw := range strings.SplitSeq(v, ",") {
			base, _, _ := strings.Cut(raw, ";")
			switch strings.ToLower(strings.TrimSpace(base)) {
			case "application/json", "application/*":
				j = true
			case "text/event-stream", "text/*":
				s = true
			case "*/*":
				j, s = true, true
			}
		}
	}
	return j && s
}

func (p *Proxy) relayRequest(w http.ResponseWriter, r *http.Request, g *generation, sid string, body []byte, f *frame) {
	id := body[f.idStart:f.idEnd]
	method := f.method
	call := method == "tools/call"
	if call {
		if f.tool == "" {
			p.writeError(w, id, jsonrpc.CodeInvalidParams, "tools/call without a tool name")
			return
		}
		if ok, rule := p.opts.Policy.DecideRequest(method, f.tool, f.params(body)); !ok {
			args := p.opts.Redactor.JSON(rawMember(f.params(body), "arguments"))
			p.writeError(w, id, jsonrpc.CodeInvalidParams, p.refusal(sid, method, f.tool, args, rule))
			return
		}
		p.calls.Add(1)
	} else if p.opts.Policy.HasRules() {
		if ok, rule := p.opts.Policy.DecideRequest(method, "", f.params(body)); !ok {
			p.writeError(w, id, jsonrpc.CodeInvalidParams, p.refusal(sid, method, "", nil, rule))
			return
		}
	}
	g.inUse.Add(1)
	defer g.inUse.Done()
	start := time.Now()
	reply, err := g.link.call(r.Context(), body, f)
	dur := time.Since(start)
	// The event is built and reported after the client has its answer:
	// redaction and logging stay off the call's latency.
	var ev *Event
	if call {
		ev = &Event{Time: start.UTC(), Kind: KindCall, Server: p.opts.Name, Tool: f.tool, Decision: "allow", Session: sid,
			DurationMs: float64(dur.Microseconds()) / 1000}
		defer func() {
			ev.Args = p.opts.Redactor.JSON(rawMember(f.params(body), "arguments"))
			p.emit(*ev)
		}()
	}
	if err != nil {
		if r.Context().Err() != nil {
			if ev != nil {
				ev.Error, ev.IsError = "the client went away; the server was told to cancel the call", true
			}
			return
		}
		jerr := p.upstreamErr(g, method, f.tool, err).(*jsonrpc.Error)
		if ev != nil {
			ev.Error, ev.IsError = jerr.Message, true
		}
		p.writeError(w, id, jerr.Code, jerr.Message)
		return
	}
	rf, err := scanFrame(reply)
	if err != nil {
		msg := fmt.Sprintf("MCP server %q sent a malformed reply to %s", p.opts.Name, method)
		if ev != nil {
			ev.Error, ev.IsError = msg, true
		}
		p.writeError(w, id, jsonrpc.CodeInternalError, msg)
		return
	}
	if rf.hasError {
		// Upstream errors may carry a credential of the server: redact.
		reply = p.redactError(reply, &rf)
	}
	writeJSON(w, reply)
	if ev != nil {
		if rf.hasError {
			ev.Error, ev.IsError = p.errorMessage(reply), true
		}
		if rf.resultEnd > 0 {
			ev.ResultSize = rf.resultEnd - rf.resultStart
			ev.IsError = rf.isError
		}
	}
}

func writeJSON(w http.ResponseWriter, b []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	// Out now, in one write: what the handler does next is not the client's wait.
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

// writeError answers request id with a JSON-RPC error.
func (p *Proxy) writeError(w http.ResponseWriter, id []byte, code int64, msg string) {
	m, _ := json.Marshal(msg)
	b := make([]byte, 0, len(m)+len(id)+64)
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	b = append(b, id...)
	b = append(b, `,"error":{"code":`...)
	b = strconv.AppendInt(b, code, 10)
	b = append(b, `,"message":`...)
	b = append(b, m...)
	b = append(b, "}}"...)
	writeJSON(w, b)
}

// redactError returns reply with the error's message redacted (the
// upstream's own text may carry a credential it holds).
func (p *Proxy) redactError(reply []byte, rf *frame) []byte {
	if p.opts.Redactor == nil {
		return reply
	}
	var e struct {
		Code    int64           `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data,omitempty"`
	}
	if json.Unmarshal(reply[rf.errStart:rf.errEnd], &e) != nil {
		return reply
	}
	red := p.redact(e.Message)
	if red == e.Message {
		return reply
	}
	e.Message = red
	nb, err := json.Marshal(e)
	if err != nil {
		return reply
	}
	out := append([]byte(nil), reply[:rf.errStart]...)
	out = append(out, nb...)
	return append(out, reply[rf.errEnd:]...)
}

func (p *Proxy) errorMessage(reply []byte) string {
	var m struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(reply, &m)
	return m.Error.Message
}

// rawMember returns the raw value of key in the JSON object obj (nil if
// absent), with the scanner's rules (exact key, last wins).
func rawMember(obj []byte, key string) json.RawMessage {
	if len(obj) == 0 || obj[0] != '{' {
		return nil
	}
	var out json.RawMessage
	_, _ = eachMember(obj, 0, func(k []byte, vs, ve int) {
		if keyIs(k, key) {
			out = obj[vs:ve]
		}
	})
	return out
}
