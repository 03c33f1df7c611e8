package driver

import (
	"context"

	"github.com/bohica-labs/darkshell/controller/state"
)

// Pooler is a driver whose sandboxes can wait, generic and ready, in a warm
// pool and later become a named sandbox of an installation without a
// restart (controller/daemon's warm pools). Pool members are made by Create
// in the pool's own state dir (a [state.Home] of its own) from the pool's
// generic options only: no name of a user's, no env, no providers, no
// uploads.
type Pooler interface {
	Driver
	// Adopt hands the pool member m, made by Create in ph, over to sb: a
	// record the caller reserved in h (name, labels and env set; Extra the
	// claim's options). m's processes and storage become sb's and sb's
	// Extra and SSH are filled in as Create would have. It returns the env
	// every exec in the adopted sandbox needs on top of its base env (what
	// a cold create would have put there: provider placeholders, the
	// hostname). When Adopt returns nil m is gone from ph; when it fails, m
	// is left as it was (the caller deletes it) and h holds nothing of it.
	Adopt(ctx context.Context, ph *state.Home, m *state.Sandbox, h *state.Home, sb *state.Sandbox) (env []string, err error)
}

// ClusterPooler is a Pooler whose backend can keep a pool itself (the
// kubernetes driver with agent-sandbox's SandboxWarmPool): the daemon then
// makes no members; it writes the pool's objects and claims through them.
type ClusterPooler interface {
	Pooler
	// ClusterPool reports whether a pool made with opts is kept by the backend.
	ClusterPool(opts CreateOptions) bool
	// SetClusterPool creates or resizes the backend's pool objects of pool
	// in installation h; DeleteClusterPool removes them and their unclaimed
	// members; ClusterPoolReady counts the members ready to claim.
	SetClusterPool(ctx context.Context, h *state.Home, pool string, size int, opts CreateOptions) error
	DeleteClusterPool(ctx context.Context, h *state.Home, pool string, opts CreateOptions) error
	ClusterPoolReady(ctx context.Context, h *state.Home, pool string, opts CreateOptions) (int, error)
	// ClaimFromCluster makes sb (reserved in h) from a member of the
	// backend's pool, as Adopt does for a daemon-kept member.
	ClaimFromCluster(ctx context.Context, h *state.Home, pool string, opts CreateOptions, sb *state.Sandbox) (env []string, err error)
}
