// Package api holds the types of the controller daemon's control API
// (HTTP/1.1 + JSON on a unix socket), shared by the daemon and its Go client.
// docs/api.md documents the endpoints.
package api

import (
	"time"

	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/egress"
	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/protocol"
)

// Version headers and upgrade token.
const (
	// HeaderVersion is set on every response to the daemon's build version.
	HeaderVersion = "Darkshell-Version"
	// UpgradeStream is the Upgrade token for a raw exec stream: after
	// "101 Switching Protocols" the connection carries exec frames exactly as
	// protocol/spec.md describes, starting with the client's exec-start or
	// exec-attach frame.
	UpgradeStream = "darkshell-stream"
	// HeaderExecReuse "1" on an exec upgrade asks to run further execs on
	// the connection; the daemon's 101 carries it back when it agrees. Each
	// exec then ends with the client's exec-done frame (docs/api.md).
	HeaderExecReuse = "Darkshell-Exec-Reuse"
)

// Error codes in Error.Code.
const (
	CodeNotFound    = "not_found"    // no such sandbox
	CodeExists      = "exists"       // name taken
	CodeBadRequest  = "bad_request"  // malformed or invalid request
	CodeUnavailable = "unavailable"  // the sandbox cannot be reached now
	CodeInternal    = "internal"     // the daemon failed
	CodeUnsupported = "unsupported"  // the driver or sandboxd cannot do it
	CodeRemote      = "remote_error" // sandboxd refused (see Detail)
)

// Error is the body of every non-2xx response: {"error": {...}}.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Remote is the sandboxd error code when Code is remote_error (e.g. not_found for a missing command).
	Remote string `json:"remote,omitempty"`
}

// ErrorBody wraps Error on the wire.
type ErrorBody struct {
	Error Error `json:"error"`
}

// Version answers GET /v1/version.
type Version struct {
	Version  string `json:"version"`
	Protocol int    `json:"protocol"`
	PID      int    `json:"pid"`
	Started  time.Time
}

// CreateRequest is the body of POST /v1/sandboxes.
type CreateRequest struct {
	Name   string           `json:"name"`
	Driver string           `json:"driver"`
	SSH    *state.SSHTarget `json:"ssh,omitempty"`
	Env    []string         `json:"env,omitempty"`
	// Uploads are pushed into the new sandbox in order (--upload
	// LOCAL[:REMOTE]); Direction is push and may be left empty. If one
	// fails the sandbox is deleted again.
	Uploads []SyncRequest `json:"uploads,omitempty"`
	// Labels are key=value pairs on the sandbox (--label) that fleet
	// operations select by (--selector); a blueprint's name is one of them.
	Labels map[string]string `json:"labels,omitempty"`
	// Options for drivers that create sandboxes (local): workspace, limits, unconfined.
	driver.CreateOptions
}

// Sandbox is a sandbox as the API shows it.
type Sandbox struct {
	state.Sandbox
	// Connected is true while the daemon holds a live session.
	Connected bool `json:"connected"`
	// Remote is sandboxd's hello from the live session, when connected.
	Remote *protocol.Hello `json:"remote,omitempty"`
	// LastError is the last connection failure, if the last attempt failed.
	LastError string `json:"last_error,omitempty"`
	// Health is the quick health verdict ("healthy" or "unhealthy(checks)"),
	// without contacting the sandbox; `sandbox health` has the full report.
	Health string `json:"health,omitempty"`
	// Phase is Running, Stopped, Failed (see Reason) or Pending, for
	// drivers that can tell (driver.StatusDriver); empty otherwise.
	Phase  string `json:"phase,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Resources is the sandbox's use against its limits, where the driver
	// can tell (local: from its cgroups).
	Resources *driver.Resources `json:"resources,omitempty"`
	// Uploads are the results of CreateRequest.Uploads (create only).
	Uploads []SyncResult `json:"uploads,omitempty"`
	// Pool names the warm pool the sandbox was claimed from (empty: it
	// was booted by its create); see pool.go.
	Pool string `json:"pool,omitempty"`
}

// ExecRequest is the body of a non-upgraded POST /v1/sandboxes/{name}/exec.
// The response is NDJSON ExecEvents, or with ?wait=1 one ExecResult.
type ExecRequest struct {
	protocol.ExecStart
	// StdinData is sent to the process's stdin, then EOF (implies stdin).
	StdinData []byte `json:"stdin_data,omitempty"`
}

// ExecEvent is one NDJSON line of an exec response.
type ExecEvent struct {
	// Type is started, stdout, stderr, exit or error.
	Type  string            `json:"type"`
	ID    string            `json:"id,omitempty"`
	PID   int               `json:"pid,omitempty"`
	Data  []byte            `json:"data,omitempty"` // base64 in JSON
	Exit  *protocol.ExitMsg `json:"exit,omitempty"`
	Error *Error            `json:"error,omitempty"`
}

// ExecResult is the ?wait=1 response.
type ExecResult struct {
	ID     string            `json:"id"`
	PID    int               `json:"pid"`
	Stdout []byte            `json:"stdout"`
	Stderr []byte            `json:"stderr"`
	Exit   *protocol.ExitMsg `json:"exit,omitempty"`
	// Status is the shell-style status: code, or 128+signal.
	Status int    `json:"status"`
	Error  *Error `json:"error,omitempty"`
}

// DaemonStatus answers GET /v1/daemon.
type DaemonStatus struct {
	Version  string    `json:"version"`
	PID      int       `json:"pid"`
	Started  time.Time `json:"started"`
	Socket   string    `json:"socket"`
	Home     string    `json:"home"`
	Sessions []string  `json:"sessions"`
	Streams  int       `json:"streams"`
	// Execs counts the exec streams served on upgraded connections since
	// the daemon started; ExecsReused those of them that ran on a
	// connection an earlier exec had used (api.HeaderExecReuse).
	Execs       int64 `json:"execs"`
	ExecsReused int64 `json:"execs_reused"`
}

// SyncRequest is the body of POST /v1/sandboxes/{name}/sync.
type SyncRequest struct {
	// Direction is "push" (Local into the sandbox's Remote) or "pull"
	// (Remote into Local).
	Direction string `json:"direction"`
	// Local is an absolute directory on the daemon's host.
	Local string `json:"local"`
	// Remote is the directory in the sandbox; relative paths start at
	// sandboxd's default directory ($HOME). Empty: /sandbox for the local
	// driver, "sandbox" (that is $HOME/sandbox) for the others.
	Remote   string   `json:"remote,omitempty"`
	Delete   bool     `json:"delete,omitempty"`
	DryRun   bool     `json:"dry_run,omitempty"`
	Checksum bool     `json:"checksum,omitempty"`
	Exclude  []string `json:"exclude,omitempty"`
	// Include and Exclude are gitignore-style patterns (docs/sync.md).
	Include []string `json:"include,omitempty"`
	// GitIgnore: leave out what the source tree's .gitignore files ignore
	// (the CLI sets it for uploads unless --no-git-ignore).
	GitIgnore bool `json:"git_ignore,omitempty"`
	// Progress asks for an NDJSON answer: SyncEvent lines of type
	// "progress", then one "result" or "error" line.
	Progress bool `json:"progress,omitempty"`
}

// SyncProgress is a snapshot of a running sync: files and file bytes done
// out of the plan's totals (totals are 0 until the receiver has planned).
type SyncProgress struct {
	FilesDone  int64 `json:"files_done"`
	FilesTotal int64 `json:"files_total"`
	BytesDone  int64 `json:"bytes_done"`
	BytesTotal int64 `json:"bytes_total"`
	ElapsedMs  int64 `json:"elapsed_ms"`
}

// SyncEvent is one NDJSON line of a sync with Progress: Type "progress"
// (Progress set), "result" (Result set) or "error" (Error set).
type SyncEvent struct {
	Type     string        `json:"type"`
	Progress *SyncProgress `json:"progress,omitempty"`
	Result   *SyncResult   `json:"result,omitempty"`
	Error    *Error        `json:"error,omitempty"`
}

// Sync directions.
const (
	SyncPush = "push"
	SyncPull = "pull"
)

// SyncResult answers a sync: the receiver's summary plus where it went.
type SyncResult struct {
	protocol.SyncSummary
	Direction string `json:"direction"`
	Local     string `json:"local"`
	Remote    string `json:"remote"`
}

// PolicyTestResult answers POST /v1/sandboxes/{name}/policy/test (body: an
// egress.Request): the decision the egress proxy would make.
type PolicyTestResult struct {
	Request  egress.Request  `json:"request"`
	Decision egress.Decision `json:"decision"`
}

// PolicySetRequest is the body of PUT /v1/sandboxes/{name}/policy.
type PolicySetRequest struct {
	Policy string `json:"policy"` // the policy file's content
	Source string `json:"source,omitempty"`
}

// PolicySetResult answers PUT /v1/sandboxes/{name}/policy.
type PolicySetResult struct {
	Sandbox      string `json:"sandbox"`
	NetworkRules int    `json:"network_rules"`
}

// NetTestRequest is the body of POST /v1/sandboxes/{name}/net-test.
type NetTestRequest struct {
	egress.Request
	// TLS: handshake with the server (default: port 443); HTTP: send a
	// request and report the status (default true).
	TLS  *bool `json:"tls,omitempty"`
	HTTP *bool `json:"http,omitempty"`
}
