package api

import (
	"time"

	"github.com/bohica-labs/darkshell/controller/driver"
)

// PoolSpec is the body of PUT /v1/pools/{name}: keep Size generic sandboxes
// of the blueprint Name ready on Driver, made with Options (the
// blueprint's generic create options: image or rootfs, policy, limits,
// driver options; never providers, env, uploads or a workspace dir). A
// create whose blueprint label is Name, on Driver, with the same generic
// options claims one of them.
type PoolSpec struct {
	Name    string               `json:"name"`
	Driver  string               `json:"driver"`
	Size    int                  `json:"size"`
	Options driver.CreateOptions `json:"options"`
	Updated time.Time            `json:"updated,omitempty"`
}

// PoolMember is one sandbox of a warm pool.
type PoolMember struct {
	Name    string    `json:"name"`
	Phase   string    `json:"phase"` // Ready, Starting
	Created time.Time `json:"created,omitempty"`
}

// PoolStatus answers GET /v1/pools and PUT/GET /v1/pools/{name}.
type PoolStatus struct {
	PoolSpec
	Ready    int          `json:"ready"`
	Starting int          `json:"starting"`
	Members  []PoolMember `json:"members"`
	// Claimed counts sandboxes handed out, Replaced members found dead
	// and replaced, since the daemon started.
	Claimed  int `json:"claimed"`
	Replaced int `json:"replaced"`
	// Cluster is true when the driver's backend keeps the pool
	// (kubernetes with agent-sandbox's SandboxWarmPool): Ready is its
	// count and Members is empty.
	Cluster bool `json:"cluster,omitempty"`
	// LastError is the last failure to make a member (cleared by a success).
	LastError string `json:"last_error,omitempty"`
}
