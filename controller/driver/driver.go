// Package driver defines where sandboxes come from: each driver creates,
// deletes and connects to sandboxes of one kind (ssh, local, podman, ...).
package driver

import (
	"context"
	"fmt"
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
