package exporter

import (
	"crypto/rand"
	"encoding/hex"
	"path"
	"slices"
	"strconv"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// Span is one finished span as the trace exporter spools and sends it: a
// plain record, so a batch survives the on-disk spool and a daemon restart.
type Span struct {
	TraceID  string    `json:"trace_id"`
	SpanID   string    `json:"span_id"`
	ParentID string    `json:"parent_id,omitempty"`
	Name     string    `json:"name"`
	Kind     string    `json:"kind"` // internal, server, client
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Attrs    []Attr    `json:"attrs,omitempty"`
	Events   []SpanEvt `json:"events,omitempty"`
	// Error marks a failed span (Message says why).
	Error   bool   `json:"error,omitempty"`
	Message string `json:"message,omitempty"`
	// Sandbox names the resource (with its driver and blueprint).
	Sandbox string `json:"sandbox"`
}

// Attr is one attribute: exactly one of S, I, SS is set.
type Attr struct {
	K  string   `json:"k"`
	S  *string  `json:"s,omitempty"`
	I  *int64   `json:"i,omitempty"`
	SS []string `json:"ss,omitempty"`
	B  *bool    `json:"b,omitempty"`
}

// SpanEvt is a span event.
type SpanEvt struct {
	Name  string    `json:"name"`
	Time  time.Time `json:"time"`
	Attrs []Attr    `json:"attrs,omitempty"`
}

func aS(k, v string) Attr       { return Attr{K: k, S: &v} }
func aI(k string, v int64) Attr { return Attr{K: k, I: &v} }
func aSS(k string, v []string) Attr {
	return Attr{K: k, SS: slices.Clone(v)}
}
func aB(k string, v bool) Attr { return Attr{K: k, B: &v} }

// Limits of the span builder.
const (
	maxOpenSpans    = 65536 // open process spans kept; beyond, the oldest ends incomplete
	maxSpanEvents   = 128   // span events per span (OTel's default limit)
	maxPendingCalls = 256   // exec calls per sandbox waiting for their process
)

// spanBuilder turns the event stream into spans: each process (exec id) a
// span from its exec to its exit (or its next exec), parented to its
// parent process; each control-API exec call a server span that parents
// the process it started; sync runs, MCP tool calls and policy decisions
// spans of their own, children of the sandbox's exec call in progress when
// exactly one is. It is used by one goroutine.
type spanBuilder struct {
	procs map[procKey]*openSpan
	order []procKey // insertion order, for eviction
	calls map[string][]*openSpan
	// recent keeps ended exec calls a while: a sandbox's events may come
	// after the call's end (the event pump replays its history late).
	recent map[string][]*openSpan
	byPID  map[procKey]procKey // sandbox+pid -> open exec id of that pid
	// ended keeps the ids of recently ended process spans: a child may
	// exec after its parent exited or exec'd another program.
	ended map[procKey][2]string
}

// maxEnded bounds spanBuilder.ended (cleared when full).
const maxEnded = 16384

func (b *spanBuilder) remember(k procKey, sp *openSpan) {
	if len(b.ended) >= maxEnded {
		clear(b.ended)
	}
	b.ended[k] = [2]string{sp.TraceID, sp.SpanID}
}

type procKey struct{ sandbox, id string }

type openSpan struct {
	Span
	argv   []string // exec calls: the requested argv, to find their process
	linked bool
	callID string
}

func newSpanBuilder() *spanBuilder {
	return &spanBuilder{procs: map[procKey]*openSpan{}, calls: map[string][]*openSpan{}, recent: map[string][]*openSpan{}, byPID: map[procKey]procKey{},
		ended: map[procKey][2]string{}}
}

func newID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// sandboxdExecID is the exec id of sandboxd itself (PID 1 of the sandbox).
const sandboxdExecID = "1-0"

// add takes one event and returns the spans it finished.
func (b *spanBuilder) add(e *protocol.Event) []Span {
	switch e.Kind {
	case protocol.KindExecCall:
		return b.execCall(e)
	case protocol.KindExec:
		return b.exec(e)
	case protocol.KindExit:
		return b.exit(e)
	case protocol.KindSync:
		return []Span{b.leaf(e, "sync "+e.CallID, "internal", []Attr{
			aS("darkshell.sync.direction", e.CallID), aS("darkshell.sync.path", e.Path),
			aI("darkshell.sync.bytes", e.Bytes), aI("darkshell.sync.files", e.Files)})}
	case protocol.KindMCPCall:
		name := "tools/call " + e.Tool
		attrs := []Attr{aS("mcp.method.name", "tools/call"), aS("gen_ai.operation.name", "execute_tool"),
			aS("gen_ai.tool.name", e.Tool), aS("rpc.system", "jsonrpc"), aS("server.address", e.Server),
			aS("darkshell.mcp.server", e.Server), aS("darkshell.result", e.Result)}
		if e.Rule != "" {
			attrs = append(attrs, aS("darkshell.policy.rule", e.Rule))
		}
		return []Span{b.leaf(e, name, "client", attrs)}
	case protocol.KindInference:
		if in := e.Inference; in != nil {
			// GenAI semantic conventions; the texts stay in the event (logs).
			attrs := []Attr{aS("gen_ai.operation.name", "chat"), aS("gen_ai.system", in.API), aS("gen_ai.response.model", in.Model),
				aI("gen_ai.usage.input_tokens", in.InputTokens), aI("gen_ai.usage.output_tokens", in.OutputTokens),
				aS("server.address", e.Host), aS("url.path", e.Path), aI("http.response.status_code", int64(in.Status)),
				aS("darkshell.inference.provider", in.Provider), aS("darkshell.result", e.Result)}
			if in.StopReason != "" {
				attrs = append(attrs, aS("gen_ai.response.finish_reasons", in.StopReason))
			}
			return []Span{b.leaf(e, "chat "+in.Model, "client", attrs)}
		}
	case protocol.KindPolicy:
		if sp := b.procOf(e); sp != nil {
			b.event(sp, e, "policy_decision", policyAttrs(e))
			return nil
		}
		return []Span{b.leaf(e, "policy "+e.Result+" "+e.Host, "internal", policyAttrs(e))}
	case protocol.KindNetConnect:
		if sp := b.procOf(e); sp != nil {
			b.event(sp, e, "net_connect", []Attr{aS("server.address", e.Host), aI("server.port", int64(e.Port)), aS("darkshell.result", e.Result)})
		}
	case protocol.KindSandboxState:
		if e.State == "untraced" {
			return b.endSandbox(e.Sandbox, e.Time)
		}
	default:
		if e.IsFile() && (e.Kind != protocol.KindFileOpen || e.Result != protocol.ResultOK) {
			if sp := b.procOf(e); sp != nil {
				attrs := []Attr{aS("file.path", e.Path), aS("darkshell.result", e.Result)}
				if e.NewPath != "" {
					attrs = append(attrs, aS("darkshell.file.new_path", e.NewPath))
				}
				if e.Errno != "" {
					attrs = append(attrs, aS("error.type", e.Errno))
				}
				b.event(sp, e, e.Kind, attrs)
			}
		}
	}
	return nil
}

func policyAttrs(e *protocol.Event) []Attr {
	a := []Attr{aS("darkshell.policy.result", e.Result), aS("darkshell.policy.name", e.Policy), aS("darkshell.policy.rule", e.Rule)}
	if e.Host != "" {
		a = append(a, aS("server.address", e.Host), aI("server.port", int64(e.Port)))
	}
	if e.Binary != "" {
		a = append(a, aS("process.executable.path", e.Binary))
	}
	if e.Path != "" {
		a = append(a, aS("url.path", e.Path))
	}
	return a
}

func (b *spanBuilder) event(sp *openSpan, e *protocol.Event, name string, attrs []Attr) {
	if len(sp.Events) < maxSpanEvents {
		sp.Events = append(sp.Events, SpanEvt{Name: name, Time: e.Time, Attrs: attrs})
	}
}

// procOf is the open span of the event's process, if any.
func (b *spanBuilder) procOf(e *protocol.Event) *openSpan {
	if e.ExecID != "" {
		if sp := b.procs[procKey{e.Sandbox, e.ExecID}]; sp != nil {
			return sp
		}
	}
	return nil
}

// activeCall is the sandbox's exec call in progress, if exactly one is.
func (b *spanBuilder) activeCall(sandbox string) *openSpan {
	if l := b.calls[sandbox]; len(l) == 1 {
		return l[0]
	}
	return nil
}

// leaf is a span of its own: a child of the sandbox's exec call in
// progress, else the root of a new trace. DurationNs (if any) ends it.
func (b *spanBuilder) leaf(e *protocol.Event, name, kind string, attrs []Attr) Span {
	sp := Span{TraceID: newID(16), SpanID: newID(8), Name: name, Kind: kind, Start: e.Time, End: e.Time,
		Attrs: attrs, Sandbox: e.Sandbox}
	if e.DurationNs > 0 {
		// Host-side events are stamped when they end.
		sp.Start = e.Time.Add(-time.Duration(e.DurationNs))
	}
	if c := b.activeCall(e.Sandbox); c != nil {
		sp.TraceID, sp.ParentID = c.TraceID, c.SpanID
	}
	switch e.Result {
	case protocol.ResultError, "deny":
		sp.Error, sp.Message = true, e.Message
	}
	return sp
}

func (b *spanBuilder) execCall(e *protocol.Event) []Span {
	switch e.State {
	case "started":
		l := b.calls[e.Sandbox]
		if len(l) >= maxPendingCalls {
			return nil
		}
		sp := &openSpan{Span: Span{TraceID: newID(16), SpanID: newID(8), Name: "exec " + argv0(e.Argv), Kind: "server",
			Start: e.Time, Sandbox: e.Sandbox, Attrs: []Attr{aS("rpc.system", "darkshell"), aS("rpc.service", "darkshell.v1.Sandboxes"),
				aS("rpc.method", "Exec"), aS("darkshell.exec.id", e.CallID), aSS("process.command_args", e.Argv)}},
			argv: e.Argv, callID: e.CallID}
		if e.Cwd != "" {
			sp.Attrs = append(sp.Attrs, aS("process.working_directory", e.Cwd))
		}
		b.calls[e.Sandbox] = append(l, sp)
	case "ended":
		l := b.calls[e.Sandbox]
		for i, sp := range l {
			if sp.callID != e.CallID {
				continue
			}
			b.calls[e.Sandbox] = slices.Delete(l, i, i+1)
			sp.End = e.Time
			if !sp.linked {
				r := append(b.recent[e.Sandbox], sp)
				if len(r) > maxRecentCalls {
					r = r[len(r)-maxRecentCalls:]
				}
				b.recent[e.Sandbox] = r
			}
			if e.ExitCode != nil {
				sp.Attrs = append(sp.Attrs, aI("process.exit.code", int64(*e.ExitCode)))
				if *e.ExitCode != 0 {
					sp.Error = true
				}
			}
			if e.Signal != 0 {
				sp.Attrs = append(sp.Attrs, aI("darkshell.signal", int64(e.Signal)))
				sp.Error = true
			}
			if e.Result == protocol.ResultError {
				sp.Error, sp.Message = true, e.Message
			}
			return []Span{sp.Span}
		}
	}
	return nil
}

func argv0(argv []string) string {
	if len(argv) == 0 {
		return ""
	}
	return path.Base(argv[0])
}

// matches reports whether the process argv is what the exec call asked for.
func (c *openSpan) matches(argv []string) bool {
	if slices.Equal(c.argv, argv) {
		return true
	}
	// sh -c CMD for a shell call; an exec through a wrapper ends with the argv.
	return len(argv) > len(c.argv) && len(c.argv) > 0 && slices.Equal(argv[len(argv)-len(c.argv):], c.argv)
}

func (b *spanBuilder) exec(e *protocol.Event) []Span {
	sp := &openSpan{Span: Span{SpanID: newID(8), Name: processName(e), Kind: "internal", Start: e.Time, Sandbox: e.Sandbox,
		Attrs: []Attr{aI("process.pid", int64(e.PID)), aI("process.parent_pid", int64(e.PPID)),
			aS("process.executable.path", e.Binary), aS("process.executable.name", path.Base(e.Binary)),
			aSS("process.command_args", e.Argv), aS("darkshell.exec_id", e.ExecID), aS("darkshell.fidelity", e.Fidelity)}}}
	if e.Cwd != "" {
		sp.Attrs = append(sp.Attrs, aS("process.working_directory", e.Cwd))
	}
	if e.UID != nil {
		sp.Attrs = append(sp.Attrs, aI("process.user.id", int64(*e.UID)))
	}
	pkey := procKey{e.Sandbox, e.ParentExecID}
	if parent := b.procs[pkey]; parent != nil && e.ParentExecID != "" {
		sp.TraceID, sp.ParentID = parent.TraceID, parent.SpanID
	} else if ids, ok := b.ended[pkey]; ok && e.ParentExecID != "" {
		sp.TraceID, sp.ParentID = ids[0], ids[1]
	} else if call := b.callFor(e); call != nil {
		sp.TraceID, sp.ParentID = call.TraceID, call.SpanID
	} else {
		sp.TraceID = newID(16)
	}
	var done []Span
	// The pid ran another program before: that program's span ends here.
	pk := procKey{e.Sandbox, pidKey(e.PID)}
	if prev, ok := b.byPID[pk]; ok {
		if sp := b.procs[prev]; sp != nil {
			sp.End = e.Time
			sp.Attrs = append(sp.Attrs, aB("darkshell.replaced_by_exec", true))
			done = append(done, sp.Span)
			delete(b.procs, prev)
			b.remember(prev, sp)
		}
	}
	key := procKey{e.Sandbox, e.ExecID}
	if e.ExecID == "" {
		return done // nothing would end it
	}
	if len(b.order) >= maxOpenSpans {
		done = append(done, b.evict(e.Time)...)
	}
	b.procs[key] = sp
	b.order = append(b.order, key)
	b.byPID[pk] = key
	return done
}

// callFor finds the exec call that started the process of e: a child of
// sandboxd (or of nobody known) whose argv is what a pending call asked for.
func (b *spanBuilder) callFor(e *protocol.Event) *openSpan {
	if e.ParentExecID != sandboxdExecID && e.ParentExecID != "" && e.PPID != 1 {
		return nil
	}
	for _, c := range b.calls[e.Sandbox] {
		if !c.linked && c.matches(e.Argv) {
			c.linked = true
			return c
		}
	}
	// A call that ended before its process's events came: the process
	// started between the call's start and end.
	r := b.recent[e.Sandbox]
	for i, c := range r {
		if c.matches(e.Argv) && !e.Time.Before(c.Start.Add(-recentSlack)) && !e.Time.After(c.End.Add(recentSlack)) {
			b.recent[e.Sandbox] = slices.Delete(r, i, i+1)
			return c
		}
	}
	return nil
}

// Ended exec calls kept for late events, and the clock slack allowed
// between the daemon's and the sandbox's timestamps.
const (
	maxRecentCalls = 64
	recentSlack    = time.Second
)

func pidKey(pid int) string { return "pid:" + itoa(int64(pid)) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func processName(e *protocol.Event) string {
	if len(e.Argv) > 0 {
		return path.Base(e.Argv[0])
	}
	if e.Binary != "" {
		return path.Base(e.Binary)
	}
	return e.Comm
}

func (b *spanBuilder) exit(e *protocol.Event) []Span {
	key := procKey{e.Sandbox, e.ExecID}
	sp := b.procs[key]
	if sp == nil || e.ExecID == "" {
		return nil
	}
	delete(b.procs, key)
	b.remember(key, sp)
	if pk := (procKey{e.Sandbox, pidKey(e.PID)}); b.byPID[pk] == key {
		delete(b.byPID, pk)
	}
	sp.End = e.Time
	if e.ExitCode != nil {
		sp.Attrs = append(sp.Attrs, aI("process.exit.code", int64(*e.ExitCode)))
		if *e.ExitCode != 0 {
			sp.Error = true
			sp.Message = "exit code " + itoa(int64(*e.ExitCode))
		}
	}
	if e.Signal != 0 {
		sp.Attrs = append(sp.Attrs, aI("darkshell.signal", int64(e.Signal)))
		sp.Error, sp.Message = true, "killed by signal "+itoa(int64(e.Signal))
	}
	b.compact()
	return []Span{sp.Span}
}

// compact drops ended keys from the eviction order now and then.
func (b *spanBuilder) compact() {
	if len(b.order) < 1024 || len(b.order) < 2*len(b.procs) {
		return
	}
	out := b.order[:0]
	for _, k := range b.order {
		if _, ok := b.procs[k]; ok {
			out = append(out, k)
		}
	}
	b.order = out
}

// evict ends the oldest open span incomplete, to stay within the bound.
func (b *spanBuilder) evict(now time.Time) []Span {
	b.compact()
	for len(b.order) > 0 {
		k := b.order[0]
		b.order = b.order[1:]
		if sp := b.procs[k]; sp != nil {
			return []Span{b.incomplete(k, sp, now)}
		}
	}
	return nil
}

func (b *spanBuilder) incomplete(k procKey, sp *openSpan, now time.Time) Span {
	delete(b.procs, k)
	sp.End = now
	sp.Attrs = append(sp.Attrs, aB("darkshell.incomplete", true))
	return sp.Span
}

// endSandbox ends the open spans of a sandbox whose event stream ended.
func (b *spanBuilder) endSandbox(sandbox string, now time.Time) []Span {
	var out []Span
	for k, sp := range b.procs {
		if k.sandbox == sandbox {
			out = append(out, b.incomplete(k, sp, now))
		}
	}
	for k := range b.byPID {
		if k.sandbox == sandbox {
			delete(b.byPID, k)
		}
	}
	return out
}
