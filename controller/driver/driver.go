// Package driver defines where sandboxes come from: each driver creates,
// deletes and connects to sandboxes of one kind (ssh, local, podman, ...).
package driver

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/bohica-labs/darkshell/controller/session"
	"github.com/bohica-labs/darkshell/controller/state"
)

// Driver manages sandboxes of one kind.
type Driver interface {
	// Name is the --driver value.
	Name() string
	// Create makes (or registers) the sandbox described by sb and fills in
	// what it learned. The record is saved by the caller after Create succeeds.
	Create(ctx context.Context, h *state.Home, sb *state.Sandbox) error
	// Delete removes everything the driver made for sb. Deleting a sandbox
	// that is already gone is not an error.
	Delete(ctx context.Context, h *state.Home, sb *state.Sandbox) error
	// Connect returns a live session to sb's sandboxd.
	Connect(ctx context.Context, h *state.Home, sb *state.Sandbox) (*session.Session, error)
}

var (
	mu      sync.RWMutex
	drivers = map[string]Driver{}
)

// Register makes d available by name; drivers call it from init.
func Register(d Driver) {
	mu.Lock()
	defer mu.Unlock()
	drivers[d.Name()] = d
}

// Get returns the named driver.
func Get(name string) (Driver, error) {
	mu.RLock()
	defer mu.RUnlock()
	if d, ok := drivers[name]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("unknown driver %q (available: %s)", name, strings.Join(namesLocked(), ", "))
}

// Names lists the registered drivers.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	return namesLocked()
}

func namesLocked() []string {
	var n []string
	for k := range drivers {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// CreateOptions are the create settings a driver may support beyond the
// record's common fields. The daemon stores them as the record's Extra
// (JSON) before calling Create; a driver that does not implement
// [OptionsDriver] gets a request with any of them set refused.
type CreateOptions struct {
	// Workspace is an existing host directory used as the sandbox's workspace.
	Workspace string `json:"workspace,omitempty"`
	// PidsLimit, MemoryLimit (e.g. "512M") and CPULimit (CPUs, e.g. "1.5") are cgroup limits.
	PidsLimit   int64  `json:"pids_limit,omitempty"`
	MemoryLimit string `json:"memory_limit,omitempty"`
	CPULimit    string `json:"cpu_limit,omitempty"`
	// Unconfined disables Landlock and seccomp (development only).
	Unconfined bool `json:"unconfined,omitempty"`
	// Policy is a policy file's content (OpenShell format) and PolicySource
	// where it came from (for display); the static parts (filesystem,
	// landlock, process) are enforced at every start.
	Policy       string `json:"policy,omitempty"`
	PolicySource string `json:"policy_source,omitempty"`
	// Rootfs is a host directory used as the sandbox's root file system
	// instead of the host's system directories; Image an OCI image (a
	// docker/podman save archive, an OCI archive or an OCI layout dir)
	// unpacked once at create and used the same way.
	Rootfs string `json:"rootfs,omitempty"`
	Image  string `json:"image,omitempty"`
	// Providers are credential sets the sandbox may use through the egress
	// proxy: inside, each key holds a placeholder; the proxy puts the real
	// value in requests the policy binds to the provider.
	Providers []string `json:"providers,omitempty"`
	// DriverOpts are settings only one driver understands (--driver-opt
	// KEY=VALUE): openshell's gateway and workspace, kubernetes' namespace
	// and kubeconfig. Each driver refuses keys it does not know.
	DriverOpts map[string]string `json:"driver_opts,omitempty"`
}

// CheckDriverOpts refuses keys of opts not in known, naming the driver and
// what it accepts.
func CheckDriverOpts(drv string, opts map[string]string, known ...string) error {
	for k := range opts {
		if !slices.Contains(known, k) {
			return fmt.Errorf("--driver-opt %s is not known to the %s driver (it accepts: %s)", k, drv, strings.Join(known, ", "))
		}
	}
	return nil
}

// WorkspaceOf is a driver whose sandboxes each have their own workspace
// directory, learned at create (openshell: the sandbox's working
// directory): the default remote of sync, upload and download.
type WorkspaceOf interface {
	Driver
	WorkspaceOf(sb *state.Sandbox) string
}

// IsZero reports whether no option is set.
func (o CreateOptions) IsZero() bool { return reflect.ValueOf(o).IsZero() }

// OptionsDriver is a driver that reads CreateOptions from the record's Extra.
type OptionsDriver interface {
	Driver
	AcceptsCreateOptions()
}

// Workspacer is a driver whose sandboxes keep their workspace at a fixed
// absolute path: the default remote of sync, upload and download.
type Workspacer interface {
	Driver
	Workspace() string
}

// Layer is a sandbox's writable layer outside its workspace, readable on
// the host: the container's root file system mounted at Root, and the
// paths (absolute inside the container) that differ from the image.
type Layer struct {
	Root             string
	Changed, Deleted []string
	// Release unmounts Root.
	Release func() error
}

// Layerer is a driver whose sandboxes have a writable layer outside the
// workspace (a container's) that snapshots capture and restore.
type Layerer interface {
	Driver
	// ReadLayer mounts sb's layer for reading; nil when this sandbox's
	// layer cannot be read here (the engine or privileges lack it).
	ReadLayer(ctx context.Context, h *state.Home, sb *state.Sandbox) (*Layer, error)
	// ReplaceLayer makes sb's container anew from its image, lets apply
	// write the layer into its root file system before it first starts,
	// then swaps it for the old container and starts it. On error the old
	// container is kept as it was. It updates sb.Extra; the caller saves sb.
	ReplaceLayer(ctx context.Context, h *state.Home, sb *state.Sandbox, apply func(ctx context.Context, root string) error) error
}
