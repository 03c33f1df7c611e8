package api

import (
	"encoding/json"

	"github.com/bohica-labs/darkshell/controller/snapshot"
)

// SnapshotRequest is the body of POST /v1/sandboxes/{name}/snapshots.
type SnapshotRequest struct {
	// Name of the snapshot (default: its id); unique per sandbox.
	Name   string            `json:"name,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Keep and MaxAge (a Go duration or Nd) prune the sandbox's older
	// snapshots after this one is taken.
	Keep     int    `json:"keep,omitempty"`
	MaxAge   string `json:"max_age,omitempty"`
	Progress bool   `json:"progress,omitempty"`
}

// SnapshotResult answers a snapshot: the record, what retention pruned
// and what the collection after it removed.
type SnapshotResult struct {
	Snapshot *snapshot.Snapshot `json:"snapshot"`
	// Pulled is the sync that refreshed the daemon's mirror of the
	// workspace (drivers other than local; a local workspace is read in place).
	Pulled *SyncResult        `json:"pulled,omitempty"`
	Pruned []string           `json:"pruned,omitempty"`
	GC     *snapshot.GCResult `json:"gc,omitempty"`
}

// RestoreRequest is the body of POST /v1/sandboxes/{name}/restore.
type RestoreRequest struct {
	// Snapshot is an id or a name (of this sandbox, else of any).
	Snapshot string `json:"snapshot"`
	Progress bool   `json:"progress,omitempty"`
}

// RestoreResult answers a restore.
type RestoreResult struct {
	Sandbox  string             `json:"sandbox"`
	Snapshot *snapshot.Snapshot `json:"snapshot"`
	// Method is "swap" (staged on the host, renamed into place while the
	// sandbox was stopped) or "sync" (staged on the host, pushed with
	// --delete through sandboxd: each file old or new).
	Method     string `json:"method"`
	Restarted  bool   `json:"restarted"`
	DurationMs int64  `json:"duration_ms"`
}

// PruneRequest is the body of POST /v1/snapshots/prune.
type PruneRequest struct {
	Sandbox string `json:"sandbox"`
	Keep    int    `json:"keep,omitempty"`
	MaxAge  string `json:"max_age,omitempty"`
}

// PruneResult answers a prune or a delete.
type PruneResult struct {
	Deleted []string           `json:"deleted"`
	GC      *snapshot.GCResult `json:"gc,omitempty"`
}

// VerifyRequest is the body of POST /v1/snapshots/verify: every snapshot
// (of Sandbox, when set; only Snapshot, when set).
type VerifyRequest struct {
	Sandbox  string `json:"sandbox,omitempty"`
	Snapshot string `json:"snapshot,omitempty"`
	Progress bool   `json:"progress,omitempty"`
}

// LongEvent is one NDJSON line of a long snapshot operation: progress of a
// phase ("pull", "freeze", "capture", "restore", "verify"), then a result
// (the operation's result type) or an error.
type LongEvent struct {
	Type     string          `json:"type"`
	Phase    string          `json:"phase,omitempty"`
	Progress *SyncProgress   `json:"progress,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    *Error          `json:"error,omitempty"`
}
