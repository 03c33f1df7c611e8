package driver

import (
	"context"

	"github.com/bohica-labs/darkshell/controller/state"
)

// Phases of a sandbox as Status reports them.
const (
	PhasePending = "Pending" // being created
	PhaseRunning = "Running"
	PhaseStopped = "Stopped" // stopped on request; start brings it back
	PhaseFailed  = "Failed"  // ended without a stop (see Reason)
)

// Status is what a driver knows of a sandbox's state without connecting.
type Status struct {
	Phase     string     `json:"phase"`
	Reason    string     `json:"reason,omitempty"`
	Resources *Resources `json:"resources,omitempty"`
}

// Resources is a running sandbox's use against its limits (0: unknown or
// no limit).
type Resources struct {
	MemoryBytes      int64 `json:"memory_bytes,omitempty"`
	MemoryLimitBytes int64 `json:"memory_limit_bytes,omitempty"`
	// OOMKills counts processes the kernel's OOM killer ended at the
	// sandbox's memory limit.
	OOMKills  int64 `json:"oom_kills"`
	Pids      int64 `json:"pids,omitempty"`
	PidsLimit int64 `json:"pids_limit,omitempty"`
	// CPUSeconds is the CPU time the sandbox used; CPULimit its quota in
	// CPUs (0: none or unknown).
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	CPULimit   float64 `json:"cpu_limit,omitempty"`
}

// StatusDriver is a driver that can tell a sandbox's phase cheaply (no
// connection); the daemon calls it whenever it shows a sandbox.
type StatusDriver interface {
	Driver
	Status(ctx context.Context, h *state.Home, sb *state.Sandbox) Status
}

// Lifecycle is a driver whose sandboxes can be stopped and started again
// with their state kept. Both update sb (the caller saves it).
type Lifecycle interface {
	Driver
	// Stop ends the sandbox's processes and keeps its state and workspace.
	// Stopping a stopped sandbox is not an error.
	Stop(ctx context.Context, h *state.Home, sb *state.Sandbox) error
	// Start runs a stopped (or failed) sandbox again with the same
	// workspace, keys and limits. Starting a running sandbox is not an error.
	Start(ctx context.Context, h *state.Home, sb *state.Sandbox) error
}
