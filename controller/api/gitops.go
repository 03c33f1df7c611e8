package api

import "time"

// PolicySyncJobRequest registers a `policy sync` job in the daemon
// (`darkshell policy sync --daemon`).
type PolicySyncJobRequest struct {
	Repo     string `json:"repo"` // an absolute local path or a URL
	Branch   string `json:"branch,omitempty"`
	Path     string `json:"path,omitempty"`
	Interval string `json:"interval"` // a Go duration, 1s or more
	DryRun   bool   `json:"dry_run,omitempty"`
}

// PolicySyncPass is one pass of a sync (the helper's -o json line).
type PolicySyncPass struct {
	Time      time.Time         `json:"time"`
	Repo      string            `json:"repo"`
	Commit    string            `json:"commit"`
	Status    string            `json:"status"` // applied, unchanged, invalid, error, would-apply
	Error     string            `json:"error,omitempty"`
	LastGood  string            `json:"last_good,omitempty"`
	Applied   []string          `json:"applied,omitempty"`
	Corrected []string          `json:"corrected,omitempty"`
	Would     []string          `json:"would_apply,omitempty"`
	Failed    map[string]string `json:"failed,omitempty"`
	DryRun    bool              `json:"dry_run,omitempty"`
}

// PolicySyncJob is a registered job and what it did last.
type PolicySyncJob struct {
	ID string `json:"id"`
	PolicySyncJobRequest
	Created time.Time `json:"created"`
	// State: "running" (the helper runs), "restarting" (it exited; it is
	// started again shortly), "stopped" (the daemon stops).
	State  string `json:"state"`
	PID    int    `json:"pid,omitempty"`
	Passes int    `json:"passes"`
	// Last is the last pass; LastChange the last that was not "unchanged".
	Last       *PolicySyncPass `json:"last,omitempty"`
	LastChange *PolicySyncPass `json:"last_change,omitempty"`
	// Targets are the sandboxes the job has applied policies to.
	Targets []string `json:"targets,omitempty"`
	// Exit says why the helper last exited, when it did.
	Exit string `json:"exit,omitempty"`
}
