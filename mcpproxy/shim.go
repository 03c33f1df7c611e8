package mcpproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// The stdio shim (`sandboxd mcp connect SERVER`).
//
// Shim relays newline-delimited JSON-RPC between an agent's stdin/stdout and
// a Streamable HTTP endpoint, as raw bytes: each stdin line is scanned once
// (scanFrame, for its kind and id) and POSTed as it is; each message of the
// answer (an application/json body, or every `data:` of a text/event-stream
// body: progress notifications, then the response) is written to stdout as
// one line, through one serialised writer. Requests are concurrent POSTs, so
// an agent may have several outstanding. The endpoint is DarkShell's own
// loopback URL (an in-sandbox server or a bridge), which already applies the
// tool policy, redaction and the call log: the shim applies none of them
// again and decodes no message beyond what the relay needs.

// ShimOptions configure Shim.
type ShimOptions struct {
	// Name is the server's name (in errors).
	Name string
	// URL is the server's Streamable HTTP endpoint.
	URL string
	// Client, if set, replaces the keep-alive loopback client.
	Client *http.Client
	// MaxLine bounds one stdin message (default MaxBody, what the endpoint accepts).
	MaxLine int
	Logger  *slog.Logger
}

// Error codes of the shim's own JSON-RPC errors, beside the standard ones.
const (
	// CodeUnreachable: the HTTP request failed or the server refused it.
	CodeUnreachable = -32000
	// CodeSessionExpired: the server no longer knows the session (HTTP 404);
	// the client must initialize a new one.
	CodeSessionExpired = -32001
)

const (
	// sseRetries bounds reconnections of an SSE stream without progress.
	sseRetries = 5
	// sseRetryDelay is the wait before a reconnection unless the server
	// sent a retry field.
	sseRetryDelay = 100 * time.Millisecond
	// deleteTimeout bounds the DELETE of the session at the end.
	deleteTimeout = 2 * time.Second
)

type shim struct {
	opts ShimOptions
	log  *slog.Logger
	hc   *http.Client
	raw  *rawHTTP // instead of hc for a plain http URL
	ctx  context.Context
	out  *lineWriter

	// hdr is the headers of every POST (read-only once published): those
	// of base, then the session id and protocol version once initialize
	// has answered.
	hdr  atomic.Pointer[http.Header]
	base http.Header

	lmu       sync.Mutex
	listening string // the session the GET stream listens to

	cmu       sync.Mutex
	cancelled map[string]bool // raw ids of requests the client cancelled
	inflight  sync.WaitGroup
	bg        sync.WaitGroup
}

// Shim serves one agent on in/out until in ends (or ctx does): see above.
// At the end of in it waits for the requests in flight, then ends the
// session (DELETE).
func Shim(ctx context.Context, opts ShimOptions, in io.Reader, out io.Writer) error {
	if opts.URL == "" {
		return errors.New("mcp shim: no URL")
	}
	if opts.MaxLine <= 0 {
		opts.MaxLine = MaxBody
	}
	s := &shim{opts: opts, log: opts.Logger, hc: opts.Client, out: &lineWriter{w: out}, cancelled: map[string]bool{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.hc == nil {
		if r, err := newRawHTTP(opts.URL); err == nil {
			s.raw = r
		} else {
			s.hc = LoopbackClient()
		}
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	s.ctx = ctx
	s.base = http.Header{
		"Accept":       {"application/json, text/event-stream"},
		"Content-Type": {"application/json"},
	}
	s.hdr.Store(&s.base)
	// A blocked read of stdin ends with ctx, and so do the reads of HTTP
	// answers (the requests in flight fail, saying so) and of the GET
	// stream.
	if c, ok := in.(io.Closer); ok {
		defer context.AfterFunc(ctx, func() { _ = c.Close() })()
	}
	if s.raw != nil {
		// (Closed for good: a connection opened after this could hang the
		// GET stream's end. The DELETE at the end opens its own.)
		defer context.AfterFunc(ctx, s.raw.close)()
	}

	br := bufio.NewReaderSize(in, 64<<10)
	var err error
	for n := 1; ; n++ {
		var line []byte
		line, err = readLineMax(br, opts.MaxLine, true)
		if errors.Is(err, errFrameTooLong) {
			s.reply(idInPrefix(line), jsonrpc.CodeInvalidRequest, fmt.Sprintf(
				"sandboxd mcp connect: stdin message %d is longer than %d bytes (the limit of MCP server %q's endpoint); it was dropped", n, opts.MaxLine, opts.Name))
			continue
		}
		if err != nil {
			break
		}
		if len(bytes.TrimSpace(line)) == 0 {
			n--
			continue
		}
		s.handle(n, line)
		if ctx.Err() != nil {
			break
		}
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	s.inflight.Wait()
	cancel()
	s.bg.Wait()
	s.end()
	if parent.Err() != nil {
		return parent.Err()
	}
	if err != nil {
		return fmt.Errorf("unable to read stdin: %w", err)
	}
	return nil
}

// handle relays one stdin message.
func (s *shim) handle(n int, line []byte) {
	f, err := scanFrame(line)
	if err != nil {
		if t := bytes.TrimSpace(line); errors.Is(err, errNotObject) && t[0] == '[' {
			s.refuseBatch(line)
			return
		}
		s.reply(nil, jsonrpc.CodeParseError, fmt.Sprintf("sandboxd mcp connect: stdin message %d is not one JSON-RPC object: %v; send one JSON object per line", n, err))
		return
	}
	id := f.id(line)
	switch {
	case !f.jsonrpc20 || f.hasMethod && f.method == "" || !f.hasMethod && (id == nil || f.resultEnd == 0 && !f.hasError):
		s.reply(id, jsonrpc.CodeInvalidRequest, fmt.Sprintf(`sandboxd mcp connect: stdin message %d is not a JSON-RPC 2.0 request, notification or response (it needs "jsonrpc":"2.0" and a method, or an id with a result or error)`, n))
	case f.hasMethod && id != nil && f.method == "initialize":
		// Synchronous: everything after it needs the session it opens.
		s.inflight.Add(1)
		s.request(line, &f, true)
	case f.hasMethod && id != nil:
		s.inflight.Add(1)
		go s.request(line, &f, false)
	default:
		// A notification, or the client's response to a server request:
		// sent in order, answered with 202 and nothing to relay.
		if f.method == "notifications/cancelled" {
			s.noteCancel(f.params(line))
		}
		what := "notification " + f.method
		if !f.hasMethod {
			what = "response " + string(id)
		}
		s.notify(line, &f, what)
		if f.method == "notifications/initialized" {
			s.startListening()
		}
	}
}

// request POSTs one request and relays its answer; it never leaves the
// client without one.
func (s *shim) request(line []byte, f *frame, initialize bool) {
	defer s.inflight.Done()
	id := f.id(line)
	h := s.hdr.Load()
	if initialize {
		// A new session (also after the server forgot the last one).
		h = &s.base
	}
	resp, err := s.post(line, f, h)
	if err != nil {
		s.replyErr(id, err)
		return
	}
	defer resp.Body.Close()
	if !ok(resp) {
		// The answer may be the response itself (from 2026-07-28 a
		// JSON-RPC error comes with an HTTP status too): relayed as it is.
		b, _ := readBody(resp.Body, MaxFrame)
		if rf, err := scanFrame(b); err == nil && !rf.hasMethod && rf.hasError && sameID(rf.id(b), id) {
			s.out.write(b)
			return
		}
		s.replyErr(id, s.statusErr(resp, b))
		return
	}
	if resp.StatusCode == http.StatusAccepted {
		s.replyErr(id, fmt.Errorf("%w: MCP server %q accepted the request without answering it", errShim, s.opts.Name))
		return
	}
	var onResponse func([]byte)
	if initialize {
		sid := resp.Header.Get(sessionHeader)
		onResponse = func(msg []byte) { s.session(sid, msg) }
	}
	switch ct := mediaType(resp.Header.Get("Content-Type")); ct {
	case "application/json":
		b, err := readBody(resp.Body, MaxFrame)
		if err != nil {
			s.replyErr(id, fmt.Errorf("%w: unable to read MCP server %q's answer: %v", errShim, s.opts.Name, err))
			return
		}
		if len(bytes.TrimSpace(b)) == 0 {
			s.replyErr(id, fmt.Errorf("%w: MCP server %q sent an empty answer", errShim, s.opts.Name))
			return
		}
		if onResponse != nil {
			onResponse(b)
		}
		s.out.write(b)
	case "text/event-stream":
		if err := s.follow(resp, id, onResponse); err != nil {
			s.replyErr(id, err)
		}
	default:
		s.replyErr(id, fmt.Errorf("%w: MCP server %q answered with Content-Type %q (want application/json or text/event-stream)", errShim, s.opts.Name, ct))
	}
}

// session records what initialize's answer negotiated: the session id and
// the protocol version, sent with every later request.
func (s *shim) session(sid string, msg []byte) {
	var m struct {
		Result struct {
			ProtocolVersion string `json:"protocolVersion"`
		} `json:"result"`
	}
	_ = json.Unmarshal(msg, &m)
	h := s.base.Clone()
	if sid != "" {
		h[sessionHeader] = []string{sid}
	}
	if v := m.Result.ProtocolVersion; v != "" {
		h[versionHeader] = []string{v}
	}
	s.hdr.Store(&h)
}

// notify POSTs a notification or response; the server's 202 needs no relay.
func (s *shim) notify(line []byte, f *frame, what string) {
	resp, err := s.post(line, f, s.hdr.Load())
	if err == nil {
		err = s.status(resp)
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}
	if err != nil {
		// Nothing to answer: a notification has no id.
		s.log.Warn("unable to relay a message to the MCP server", "server", s.opts.Name, "message", what, "err", err)
	}
}

var errShim = errors.New("mcp shim")

// minVersionMethodHeaders is the protocol version from which a POST of a
// request or notification carries its method (Mcp-Method) and, for
// tools/call, prompts/get and resources/read, the name it acts on
// (Mcp-Name), and servers check them.
const minVersionMethodHeaders = "2026-07-28"

// methodHeaders returns h with the Mcp-Method and Mcp-Name of message b.
// (Mcp-Param-* headers, for tools whose input schema asks for them, are not
// sent: the shim does not keep tool schemas.)
func methodHeaders(h http.Header, b []byte, f *frame) http.Header {
	out := make(http.Header, len(h)+2)
	for k, v := range h {
		out[k] = v
	}
	out["Mcp-Method"] = []string{f.method}
	name := ""
	switch f.method {
	case "tools/call", "prompts/get":
		name = f.tool
	case "resources/read":
		name, _ = stringValue(rawMember(f.params(b), "uri"))
	}
	if name != "" {
		out["Mcp-Name"] = []string{name}
	}
	return out
}

// sid is the session's id ("" before initialize, or if the server keeps none).
func (s *shim) sid() string {
	if v := (*s.hdr.Load())[sessionHeader]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// do sends one HTTP request to the endpoint.
func (s *shim) do(ctx context.Context, method string, h http.Header, body []byte) (*http.Response, error) {
	if s.raw != nil {
		resp, err := s.raw.do(ctx, method, h, body)
		if err != nil {
			return nil, s.transportErr(err)
		}
		return resp, nil
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.opts.URL, rd)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errShim, err)
	}
	req.Header = h
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, s.transportErr(err)
	}
	return resp, nil
}

func (s *shim) post(body []byte, f *frame, h *http.Header) (*http.Response, error) {
	hh := *h
	if v := hh[versionHeader]; f.hasMethod && len(v) > 0 && v[0] >= minVersionMethodHeaders {
		hh = methodHeaders(hh, body, f)
	}
	return s.do(s.ctx, http.MethodPost, hh, body)
}

func (s *shim) transportErr(err error) error {
	if s.ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: sandboxd mcp connect is stopping", errShim)
	}
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			err = inner
		}
	}
	return fmt.Errorf("%w: unable to reach MCP server %q at %s: %v (is it running? see `darkshell mcp list`)", errShim, s.opts.Name, s.opts.URL, err)
}

func ok(resp *http.Response) bool { return resp.StatusCode >= 200 && resp.StatusCode < 300 }

// status turns an unsuccessful HTTP status into an error naming the cause
// (reading the body of one: what the server said).
func (s *shim) status(resp *http.Response) error {
	if ok(resp) {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return s.statusErr(resp, b)
}

func (s *shim) statusErr(resp *http.Response, b []byte) error {
	if len(b) > 4<<10 {
		b = b[:4<<10]
	}
	msg := strings.TrimSpace(string(b))
	var m struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &m) == nil && m.Error.Message != "" {
		msg = m.Error.Message
	}
	if sid := resp.Request.Header.Get(sessionHeader); resp.StatusCode == http.StatusNotFound && sid != "" {
		return &sessionErr{fmt.Sprintf("MCP server %q no longer knows session %s (the server restarted or ended it): the session must be initialized again (reconnect the client)", s.opts.Name, sid)}
	}
	return fmt.Errorf("%w: MCP server %q refused the message: HTTP %d %s: %s", errShim, s.opts.Name, resp.StatusCode, http.StatusText(resp.StatusCode), msg)
}

type sessionErr struct{ msg string }

func (e *sessionErr) Error() string { return e.msg }

// follow relays an SSE answer until the response to id; a stream that ends
// before it is resumed (GET with Last-Event-ID) when the server gave event
// ids.
func (s *shim) follow(resp *http.Response, id []byte, onResponse func([]byte)) error {
	got := false
	onData := func(data []byte) {
		if !got {
			if f, err := scanFrame(data); err == nil && !f.hasMethod && sameID(f.id(data), id) {
				got = true
				if onResponse != nil {
					onResponse(data)
				}
			}
		}
		s.out.write(data)
	}
	var last string
	for retries := 0; ; {
		next, delay, err := readSSE(resp.Body, MaxFrame, onData)
		resp.Body.Close()
		if got {
			return nil
		}
		if s.ctx.Err() != nil {
			return s.transportErr(s.ctx.Err())
		}
		if next == "" {
			next = last
		}
		if next == "" {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("%w: MCP server %q's answer stream ended before the response (%v), and it cannot be resumed (no event id)", errShim, s.opts.Name, err)
		}
		if next == last {
			if retries++; retries > sseRetries {
				return fmt.Errorf("%w: MCP server %q's answer stream ended before the response; %d resumptions made no progress", errShim, s.opts.Name, sseRetries)
			}
		} else {
			retries = 0
		}
		last = next
		if resp, err = s.resume(last, delay); err != nil {
			return err
		}
	}
}

// resume reopens an SSE stream after event last (a GET with Last-Event-ID).
func (s *shim) resume(last string, delay time.Duration) (*http.Response, error) {
	if delay <= 0 {
		delay = sseRetryDelay
	}
	select {
	case <-time.After(delay):
	case <-s.ctx.Done():
		return nil, s.transportErr(s.ctx.Err())
	}
	resp, err := s.get(last)
	if err != nil {
		return nil, err
	}
	if err := s.status(resp); err != nil {
		resp.Body.Close()
		return nil, err
	}
	if ct := mediaType(resp.Header.Get("Content-Type")); ct != "text/event-stream" {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: MCP server %q resumed a stream with Content-Type %q", errShim, s.opts.Name, ct)
	}
	return resp, nil
}

func (s *shim) get(last string) (*http.Response, error) {
	h := s.hdr.Load().Clone()
	h.Del("Content-Type")
	h.Set("Accept", "text/event-stream")
	if last != "" {
		h.Set("Last-Event-ID", last)
	}
	return s.do(s.ctx, http.MethodGet, h, nil)
}

// startListening opens the GET stream of the current session, once.
func (s *shim) startListening() {
	sid := s.sid()
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if sid == "" || s.listening == sid {
		return
	}
	s.listening = sid
	s.bg.Add(1)
	go s.listenGET(sid)
}

// listenGET relays the server-initiated messages of session sid's GET
// stream, if the server offers one (405: it does not), reconnecting with
// Last-Event-ID when it drops, until the shim or the session ends.
func (s *shim) listenGET(sid string) {
	defer s.bg.Done()
	last, retries := "", 0
	for s.ctx.Err() == nil && s.sid() == sid {
		resp, err := s.get(last)
		var delay time.Duration
		if err == nil {
			if resp.StatusCode == http.StatusMethodNotAllowed {
				resp.Body.Close()
				s.log.Debug("the MCP server offers no GET stream", "server", s.opts.Name)
				return
			}
			if err = s.status(resp); err == nil {
				if ct := mediaType(resp.Header.Get("Content-Type")); ct != "text/event-stream" {
					err = fmt.Errorf("%w: MCP server %q answered the GET stream with Content-Type %q", errShim, s.opts.Name, ct)
				}
			}
			if err != nil {
				resp.Body.Close()
				var se *sessionErr
				if errors.As(err, &se) || resp.StatusCode >= 400 && resp.StatusCode < 500 {
					s.log.Warn("no GET stream from the MCP server", "server", s.opts.Name, "err", err)
					return
				}
			} else {
				var next string
				next, delay, err = readSSE(resp.Body, MaxFrame, s.out.write)
				resp.Body.Close()
				if next != "" && next != last {
					last, retries = next, 0
				}
			}
		}
		if s.ctx.Err() != nil {
			return
		}
		if retries++; retries > sseRetries {
			s.log.Warn("the MCP server's GET stream dropped; giving up", "server", s.opts.Name, "err", err)
			return
		}
		if delay <= 0 {
			delay = sseRetryDelay << (retries - 1)
		}
		select {
		case <-time.After(delay):
		case <-s.ctx.Done():
			return
		}
	}
}

// end deletes the session.
func (s *shim) end() {
	if s.sid() == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), deleteTimeout)
	defer cancel()
	h := s.hdr.Load().Clone()
	h.Del("Content-Type")
	var resp *http.Response
	var err error
	if s.raw != nil {
		var r *rawHTTP
		if r, err = newRawHTTP(s.opts.URL); err != nil {
			return
		}
		defer r.close()
		resp, err = r.do(ctx, http.MethodDelete, h, nil)
	} else {
		resp, err = s.do(ctx, http.MethodDelete, h, nil)
	}
	if err != nil {
		s.log.Debug("unable to end the MCP session", "server", s.opts.Name, "err", err)
		return
	}
	resp.Body.Close()
}

// noteCancel remembers a request the client cancelled: it wants no answer,
// so a failure of it is not reported.
func (s *shim) noteCancel(params []byte) {
	id := rawMember(params, "requestId")
	if len(id) == 0 {
		return
	}
	s.cmu.Lock()
	if len(s.cancelled) < 4096 {
		s.cancelled[string(id)] = true
	}
	s.cmu.Unlock()
}

func (s *shim) replyErr(id []byte, err error) {
	code := int64(CodeUnreachable)
	var se *sessionErr
	if errors.As(err, &se) {
		code = CodeSessionExpired
	}
	msg := strings.TrimPrefix(err.Error(), errShim.Error()+": ")
	s.cmu.Lock()
	c := s.cancelled[string(id)]
	delete(s.cancelled, string(id))
	s.cmu.Unlock()
	if c {
		return
	}
	s.reply(id, code, msg)
}

// reply writes a JSON-RPC error for id (null if unknown).
func (s *shim) reply(id []byte, code int64, msg string) {
	if len(id) == 0 {
		id = []byte("null")
	}
	m, _ := json.Marshal(msg)
	b := make([]byte, 0, len(m)+len(id)+64)
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	b = append(b, id...)
	b = append(b, `,"error":{"code":`...)
	b = strconv.AppendInt(b, code, 10)
	b = append(b, `,"message":`...)
	b = append(b, m...)
	b = append(b, "}}"...)
	s.out.write(b)
}

// refuseBatch answers every request of a JSON-RPC batch with an error: MCP
// 2025-06-18 removed batches, and the shim relays one message per POST.
func (s *shim) refuseBatch(line []byte) {
	const msg = "sandboxd mcp connect: JSON-RPC batches are not supported (MCP removed them in 2025-06-18); send one message per line"
	i := skipWS(line, 0)
	if !json.Valid(line) {
		s.reply(nil, jsonrpc.CodeParseError, "sandboxd mcp connect: a stdin message is not valid JSON")
		return
	}
	answered := false
	for i = skipWS(line, i+1); i < len(line) && line[i] != ']'; {
		e, err := skipValue(line, i)
		if err != nil {
			break
		}
		if f, err := scanFrame(line[i:e]); err == nil && f.hasMethod && f.idEnd > 0 {
			s.reply(f.id(line[i:e]), jsonrpc.CodeInvalidRequest, msg)
			answered = true
		}
		i = skipWS(line, e)
		if i < len(line) && line[i] == ',' {
			i = skipWS(line, i+1)
		}
	}
	if !answered {
		s.reply(nil, jsonrpc.CodeInvalidRequest, msg)
	}
}

// idInPrefix finds the id of a message from its first bytes (an oversized
// line): the top-level members before the cut that are whole.
func idInPrefix(b []byte) []byte {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil
	}
	var id []byte
	_, _ = eachMember(b, i, func(key []byte, vs, ve int) {
		if keyIs(key, "id") && ve < len(b) {
			v := b[vs:ve]
			if v[0] == '"' && len(v) >= 2 && v[len(v)-1] == '"' || v[0] == '-' || v[0] >= '0' && v[0] <= '9' {
				id = v
			}
		}
	})
	return id
}

// sameID reports whether two raw JSON-RPC ids are the same id.
func sameID(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	var x, y any
	d := json.NewDecoder(bytes.NewReader(a))
	d.UseNumber()
	if d.Decode(&x) != nil {
		return false
	}
	d = json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if d.Decode(&y) != nil {
		return false
	}
	if nx, ok := x.(json.Number); ok {
		ny, ok := y.(json.Number)
		fx, ex := nx.Float64()
		fy, ey := ny.Float64()
		return ok && ex == nil && ey == nil && fx == fy
	}
	return x == y
}

func mediaType(ct string) string {
	t, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return strings.TrimSpace(strings.ToLower(ct))
	}
	return t
}

// readSSE reads a text/event-stream body, calling onData for the data of
// every event (one JSON-RPC message, made one line); it returns the last
// event id seen and the retry delay the server asked for.
func readSSE(r io.Reader, limit int, onData func([]byte)) (last string, retry time.Duration, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var data []byte
	has := false
	for {
		line, err := readLineMax(br, limit, false)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return last, retry, err
		}
		if len(line) == 0 { // dispatch
			if has && len(bytes.TrimSpace(data)) > 0 {
				onData(oneLine(data))
			}
			data, has = data[:0], false
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		if len(field) == 0 {
			continue // a comment
		}
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "data":
			if has {
				data = append(data, '\n')
			}
			data, has = append(data, value...), true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				last = string(value)
			}
		case "retry":
			if ms, err := strconv.Atoi(string(value)); err == nil && ms >= 0 {
				retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
}

// oneLine returns msg (JSON) without line breaks, as stdio framing needs.
func oneLine(msg []byte) []byte {
	msg = bytes.TrimRight(msg, " \t\r\n")
	if bytes.IndexByte(msg, '\n') < 0 && bytes.IndexByte(msg, '\r') < 0 {
		return msg
	}
	var b bytes.Buffer
	if json.Compact(&b, msg) != nil {
		return bytes.Map(func(r rune) rune {
			if r == '\n' || r == '\r' {
				return ' '
			}
			return r
		}, msg)
	}
	return b.Bytes()
}

// lineWriter writes whole lines, one message each, one at a time.
type lineWriter struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
	err error
}

func (l *lineWriter) write(msg []byte) {
	msg = oneLine(msg)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return
	}
	l.buf = append(append(l.buf[:0], msg...), '\n')
	_, l.err = l.w.Write(l.buf)
	if cap(l.buf) > 1<<20 {
		l.buf = nil
	}
}

// LoopbackClient is an HTTP client for a loopback MCP endpoint: kept-alive
// connections (enough idle ones for concurrent requests), no proxy from the
// environment, no compression, no redirects.
func LoopbackClient() *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:               nil,
		DialContext:         d.DialContext,
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		WriteBufferSize:     64 << 10,
		ReadBufferSize:      64 << 10,
	}
	return &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
