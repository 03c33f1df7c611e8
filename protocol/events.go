package protocol

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Events stream kind and in-stream frames (spec.md section 7.5). On-wire
// constants like those of const.go; events_test.go pins them.
const (
	// Request: FrameEvents opens an events stream (EventsRequest).
	FrameEvents FrameType = 0x30

	// In-stream frames of an events stream (range 0xA0-0xAF), all from sandboxd.
	FrameEventsHello FrameType = 0xA0 // EventsHello, first reply
	FrameEventsBatch FrameType = 0xA1 // EventsBatch
	FrameEventsEnd   FrameType = 0xA2 // EventsEnd: history sent; last frame unless Follow
)

// Events limits.
const (
	// MaxEventBatch bounds the events of one FrameEventsBatch.
	MaxEventBatch = 512
	// MaxEventArgv bounds an exec event's argv.
	MaxEventArgv = 256
	// MaxEventString bounds every string field of an event, in bytes.
	MaxEventString = 4096
	// MaxEventArgvBytes bounds the sum of an event's argv strings, so one
	// event always fits a frame (JSON escapes at most 6x).
	MaxEventArgvBytes = 16 << 10
	// MaxEventsPayload is the frame limit readers apply to events frames.
	MaxEventsPayload = 1 << 20
)

// Event kinds (DESIGN.md "Events").
const (
	KindExec         = "exec"
	KindFork         = "fork"
	KindExit         = "exit"
	KindFileOpen     = "file_open"  // opened for reading only
	KindFileWrite    = "file_write" // opened with write, create or truncate intent, or changed
	KindFileUnlink   = "file_unlink"
	KindFileRename   = "file_rename"
	KindFileMkdir    = "file_mkdir"
	KindFileRmdir    = "file_rmdir"
	KindFileChmod    = "file_chmod"
	KindNetConnect   = "net_connect"
	KindPolicy       = "policy_decision"
	KindMCPCall      = "mcp_call"
	KindSandboxState = "sandbox_state"
	KindAlert        = "alert"
	// Host-side kinds (source daemon): a control-API exec call (State
	// "started", then "ended" with ExitCode/Signal and DurationNs; PID is
	// the started process's, CallID the call's id) and a sync run (State
	// "ended", Bytes and Files moved, DurationNs).
	KindExecCall = "exec_call"
	KindSync     = "sync"
	// KindInference: one request to the sandbox's inference endpoint
	// (inference.local), relayed by the host (Inference holds what it
	// said, redacted; DurationNs its latency; Result ok or error).
	KindInference = "inference"
)

// Event sources.
const (
	SourceEBPF    = "ebpf"
	SourceProcfs  = "procfs"
	SourceInotify = "inotify"
	SourceBridge  = "bridge"
	SourceDaemon  = "daemon"
)

// Fidelity levels, from best to worst. An event carries the fidelity of its
// source; a stream announces the fidelity of everything it may carry.
const (
	// FidelityComplete: seen in the kernel at the moment it happened; every
	// exec, fork, exit and file syscall of the sandbox, with the exact pid,
	// parent, argv and result. Only a full ring buffer loses events, and
	// those are counted.
	FidelityComplete = "complete"
	// FidelityPolled: /proc sampled at an interval. Processes that live
	// shorter than the interval are missed; exit codes are unknown;
	// exit times are late by up to the interval.
	FidelityPolled = "polled"
	// FidelityChanges: inotify on writable paths. File changes only (no
	// reads, no pid, no denied attempts), and only under watched paths.
	FidelityChanges = "changes"
)

// Kernel hooks of the eBPF file audit (EventsHello.FileProbe).
const (
	// FileProbeSyscallTracepoints: the sys_exit_* tracepoints of the
	// watched syscalls; the probe runs for those syscalls only.
	FileProbeSyscallTracepoints = "tracepoint/syscalls"
	// FileProbeRawSysExit: tp_btf/sys_exit, the fallback where tracefs
	// cannot be had; the probe runs for every syscall of the host and
	// filters in the kernel.
	FileProbeRawSysExit = "tp_btf/sys_exit"
)

// Results of a file event.
const (
	ResultOK     = "ok"
	ResultDenied = "denied" // EACCES or EPERM: Landlock, seccomp or permissions
	ResultError  = "error"  // any other failure (errno in Errno)
)

// ValidKinds lists every event kind.
var ValidKinds = []string{
	KindExec, KindFork, KindExit, KindFileOpen, KindFileWrite, KindFileUnlink, KindFileRename,
	KindFileMkdir, KindFileRmdir, KindFileChmod, KindNetConnect, KindPolicy, KindMCPCall,
	KindSandboxState, KindAlert, KindExecCall, KindSync, KindInference,
}

// EventsRequest opens an events stream.
type EventsRequest struct {
	// History asks for the retained events first (those after SinceSeq and
	// not older than SinceUnixMs).
	History bool `json:"history,omitempty"`
	// Follow keeps the stream open with live events after the history.
	Follow bool `json:"follow,omitempty"`
	// Files includes file events (process events are always sent).
	Files bool `json:"files,omitempty"`
	// SinceSeq skips events with a sequence number at or below it.
	SinceSeq uint64 `json:"since_seq,omitempty"`
	// SinceUnixMs skips history events older than this (Unix milliseconds).
	SinceUnixMs int64 `json:"since_unix_ms,omitempty"`
}

func (m *EventsRequest) Validate() error {
	if m == nil {
		return errors.New("nil events request")
	}
	if !m.History && !m.Follow {
		return errors.New("an events request asks for history, follow or both")
	}
	if m.SinceUnixMs < 0 {
		return errors.New("negative since")
	}
	return nil
}

// EventsHello is the first reply on an events stream: what the sandbox's
// sources can see.
type EventsHello struct {
	// Sources that feed the stream (SourceEBPF, or SourceProcfs+SourceInotify).
	Sources []string `json:"sources"`
	// Fidelity of process events (FidelityComplete or FidelityPolled).
	Fidelity string `json:"fidelity"`
	// FileFidelity of file events (FidelityComplete, FidelityChanges or "" for none).
	FileFidelity string `json:"file_fidelity,omitempty"`
	// FileProbe names the kernel hook of an eBPF file audit:
	// FileProbeSyscallTracepoints or FileProbeRawSysExit ("" without eBPF).
	// Both see the same events; they differ in what they cost the host.
	FileProbe string `json:"file_probe,omitempty"`
	// Lost counts events the sources dropped so far (a full ring buffer).
	Lost uint64 `json:"lost"`
	// Evicted counts events pushed out of the bounded history so far.
	Evicted uint64 `json:"evicted"`
	// HistoryCap is how many events the history keeps.
	HistoryCap int `json:"history_cap"`
	// Note explains a degraded source (why eBPF is not in use).
	Note string `json:"note,omitempty"`
	// Epoch identifies the history (Unix ns of its start): sequence
	// numbers of two epochs are unrelated (sandboxd restarted).
	Epoch int64 `json:"epoch,omitempty"`
}

func (m *EventsHello) Validate() error {
	if m == nil {
		return errors.New("nil events hello")
	}
	if len(m.Sources) == 0 || len(m.Sources) > 8 {
		return errors.New("events hello without sources")
	}
	switch m.Fidelity {
	case FidelityComplete, FidelityPolled:
	default:
		return fmt.Errorf("unknown fidelity %q", truncate(m.Fidelity, 20))
	}
	if len(m.Note) > MaxEventString {
		return errors.New("events hello note too long")
	}
	switch m.FileProbe {
	case "", FileProbeSyscallTracepoints, FileProbeRawSysExit:
	default:
		return fmt.Errorf("unknown file probe %q", truncate(m.FileProbe, 20))
	}
	return nil
}

// EventsBatch carries events in sequence order.
type EventsBatch struct {
	Events []Event `json:"events"`
	// Lost is the source's loss counter when the batch was sent; a reader
	// that sees it grow knows events are missing between two batches.
	Lost uint64 `json:"lost"`
	// Skipped counts events this subscriber missed because it read too
	// slowly (its bounded queue overflowed); cumulative.
	Skipped uint64 `json:"skipped,omitempty"`
}

func (m *EventsBatch) Validate() error {
	if m == nil {
		return errors.New("nil events batch")
	}
	if len(m.Events) > MaxEventBatch {
		return fmt.Errorf("%d events in a batch, limit %d", len(m.Events), MaxEventBatch)
	}
	for i := range m.Events {
		if err := m.Events[i].Validate(); err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
	}
	return nil
}

// EventsEnd marks the end of the history.
type EventsEnd struct {
	Lost    uint64 `json:"lost"`
	Evicted uint64 `json:"evicted"`
	// LastSeq is the newest sequence number sent (0: none).
	LastSeq uint64 `json:"last_seq"`
}

func (m *EventsEnd) Validate() error {
	if m == nil {
		return errors.New("nil events end")
	}
	return nil
}

// Event is the one schema of every event (DESIGN.md "Events"), sent on the
// wire and written as JSON lines by trace, watch and the host log.
type Event struct {
	// Seq numbers the events of one sandboxd source, from 1, increasing.
	Seq  uint64    `json:"seq,omitempty"`
	Time time.Time `json:"time"`
	// Sandbox is set by the controller.
	Sandbox string `json:"sandbox,omitempty"`
	Kind    string `json:"kind"`
	// PID and PPID are pids in the sandbox's pid namespace when the source
	// runs there (the local driver), else in sandboxd's.
	PID  int `json:"pid,omitempty"`
	PPID int `json:"ppid,omitempty"`
	// ExecID names one program run: "<pid>.<n>" for the n-th exec of pid.
	// Events of a process before its first exec carry its parent's.
	ExecID       string `json:"exec_id,omitempty"`
	ParentExecID string `json:"parent_exec_id,omitempty"`
	// UID is absent when the source cannot know it (inotify, polled exits).
	UID    *int     `json:"uid,omitempty"`
	Comm   string   `json:"comm,omitempty"`
	Binary string   `json:"binary,omitempty"`
	Argv   []string `json:"argv,omitempty"`
	Cwd    string   `json:"cwd,omitempty"`
	// ExitCode of a normal exit; Signal of a death by signal (then no ExitCode).
	ExitCode *int `json:"exit_code,omitempty"`
	Signal   int  `json:"signal,omitempty"`
	// DurationNs: exit events, time since the exec (or fork).
	DurationNs int64 `json:"duration_ns,omitempty"`
	// Path (absolute when the source could resolve it) and, for renames, NewPath.
	Path    string `json:"path,omitempty"`
	NewPath string `json:"new_path,omitempty"`
	// Intent of an open: "read", "write", "create", "truncate", comma separated.
	Intent string `json:"intent,omitempty"`
	// Result of a file event: ResultOK, ResultDenied or ResultError (Errno names it).
	Result string `json:"result,omitempty"`
	Errno  string `json:"errno,omitempty"`
	// State of a sandbox_state event; Message of an alert.
	State   string `json:"state,omitempty"`
	Message string `json:"message,omitempty"`
	// Lost: alert events about lost events, the loss counter's total.
	Lost uint64 `json:"lost,omitempty"`
	// Policy decisions (egress proxy, MCP tool policy) and net_connect:
	// the destination, the matched policy and rule (Result: allow/deny).
	Host   string `json:"host,omitempty"`
	Port   int    `json:"port,omitempty"`
	Policy string `json:"policy,omitempty"`
	Rule   string `json:"rule,omitempty"`
	// MCP calls: server, tool, and the call's duration in DurationNs.
	Server string `json:"server,omitempty"`
	Tool   string `json:"tool,omitempty"`
	// CallID names a host-side call (exec_call: the exec's id; sync: push
	// or pull); Bytes and Files are a sync run's totals.
	CallID   string `json:"call_id,omitempty"`
	Bytes    int64  `json:"bytes,omitempty"`
	Files    int64  `json:"files,omitempty"`
	Source   string `json:"source"`
	Fidelity string `json:"fidelity"`
	// Inference: an inference event's exchange (host-side only).
	Inference *Inference `json:"inference,omitempty"`
}

// Inference is what an inference event logs of one request/response pair,
// after the relay's redaction (texts capped; Truncated names the cut ones).
type Inference struct {
	API          string   `json:"api"` // openai | anthropic
	Provider     string   `json:"provider,omitempty"`
	Model        string   `json:"model,omitempty"`
	Status       int      `json:"status,omitempty"` // upstream HTTP status
	Stream       bool     `json:"stream,omitempty"`
	InputTokens  int64    `json:"input_tokens,omitempty"`
	OutputTokens int64    `json:"output_tokens,omitempty"`
	FirstByteNs  int64    `json:"first_byte_ns,omitempty"`
	StopReason   string   `json:"stop_reason,omitempty"`
	System       string   `json:"system,omitempty"`
	Prompt       string   `json:"prompt,omitempty"`
	Response     string   `json:"response,omitempty"`
	User         string   `json:"user,omitempty"`
	Tools        string   `json:"tools,omitempty"`
	Redactions   int      `json:"redactions,omitempty"`
	Truncated    []string `json:"truncated,omitempty"`
}

// ClampArgv returns argv cut to the event limits (count, per-string and
// total bytes; cut strings stay valid UTF-8).
func ClampArgv(argv []string) []string {
	out := make([]string, 0, min(len(argv), MaxEventArgv))
	total := 0
	for _, a := range argv {
		if len(out) == MaxEventArgv || total >= MaxEventArgvBytes {
			break
		}
		a = strings.ToValidUTF8(a, "\uFFFD")
		if n := min(MaxEventString, MaxEventArgvBytes-total); len(a) > n {
			a = strings.ToValidUTF8(a[:n], "")
		}
		out = append(out, a)
		total += len(a)
	}
	return out
}

// IsFile reports whether the event is a file event.
func (e *Event) IsFile() bool { return strings.HasPrefix(e.Kind, "file_") }

// Validate checks an event decoded from an untrusted peer: known kind and
// source, bounded and UTF-8 strings.
func (e *Event) Validate() error {
	if e == nil {
		return errors.New("nil event")
	}
	known := false
	for _, k := range ValidKinds {
		if e.Kind == k {
			known = true
			break
		}
	}
	if !known {
		return fmt.Errorf("unknown event kind %q", truncate(e.Kind, 20))
	}
	switch e.Source {
	case SourceEBPF, SourceProcfs, SourceInotify, SourceBridge, SourceDaemon:
	default:
		return fmt.Errorf("unknown event source %q", truncate(e.Source, 20))
	}
	switch e.Fidelity {
	case FidelityComplete, FidelityPolled, FidelityChanges:
	default:
		return fmt.Errorf("unknown event fidelity %q", truncate(e.Fidelity, 20))
	}
	if e.Kind == KindInference || e.Inference != nil {
		return errors.New("inference events are made by the host, never by a sandbox")
	}
	if e.PID < 0 || e.PPID < 0 || e.DurationNs < 0 || e.Signal < 0 || e.Signal > 128 {
		return errors.New("negative pid, duration or bad signal")
	}
	if len(e.Argv) > MaxEventArgv {
		return fmt.Errorf("argv of %d, limit %d", len(e.Argv), MaxEventArgv)
	}
	total := 0
	for _, s := range e.Argv {
		if err := eventString(s); err != nil {
			return fmt.Errorf("argv: %w", err)
		}
		total += len(s)
	}
	if total > MaxEventArgvBytes {
		return fmt.Errorf("argv of %d bytes, limit %d", total, MaxEventArgvBytes)
	}
	for _, s := range []string{e.Sandbox, e.ExecID, e.ParentExecID, e.Comm, e.Binary, e.Cwd, e.Path,
		e.NewPath, e.Intent, e.Result, e.Errno, e.State, e.Message} {
		if err := eventString(s); err != nil {
			return err
		}
	}
	switch e.Result {
	case "", ResultOK, ResultDenied, ResultError:
	default:
		return fmt.Errorf("unknown result %q", truncate(e.Result, 20))
	}
	return nil
}

func eventString(s string) error {
	if len(s) > MaxEventString {
		return fmt.Errorf("string of %d bytes, limit %d", len(s), MaxEventString)
	}
	if !utf8.ValidString(s) {
		return errors.New("string is not UTF-8")
	}
	return nil
}

// DecodeEventsFrame decodes any frame of an events stream after the request
// (hello, batch, end, error) into its message, validated.
func DecodeEventsFrame(f Frame) (any, error) {
	switch f.Type {
	case FrameEventsHello:
		var m EventsHello
		return &m, DecodeMsg(f, f.Type, &m)
	case FrameEventsBatch:
		var m EventsBatch
		return &m, DecodeMsg(f, f.Type, &m)
	case FrameEventsEnd:
		var m EventsEnd
		return &m, DecodeMsg(f, f.Type, &m)
	case FrameError:
		return nil, ErrorFromFrame(f)
	}
	return nil, fmt.Errorf("%w: unexpected %s frame on an events stream", ErrBadFrame, f.Type)
}

func eventsFrameName(t FrameType) string {
	switch t {
	case FrameEvents:
		return "events"
	case FrameEventsHello:
		return "events-hello"
	case FrameEventsBatch:
		return "events-batch"
	case FrameEventsEnd:
		return "events-end"
	}
	return ""
}
