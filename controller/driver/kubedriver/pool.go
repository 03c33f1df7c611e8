package kubedriver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/state"
)

// LabelPool marks a warm-pool member's Pod (its value: the pool's name);
// Adopt removes it.
const LabelPool = "darkshell.pool"

var _ driver.Pooler = Driver{}

// Adopt implements driver.Pooler: the member's Pod (made in the pool's
// state dir, so named and labelled for it) is relabelled for sb in h by
// the helper's adopt (kubeapi.Adopt); sb's record then names that Pod. The
// Pod's hostname stays the member's (it cannot change on a running Pod);
// HOSTNAME in every exec's env is sb's name.
func (d Driver) Adopt(ctx context.Context, ph *state.Home, m *state.Sandbox, h *state.Home, sb *state.Sandbox) ([]string, error) {
	x, err := ReadExtra(m)
	if err != nil {
		return nil, err
	}
	claim, err := ReadExtra(sb)
	if err != nil {
		return nil, err
	}
	if len(claim.Providers) > 0 {
		return nil, errors.New("--provider is not supported by the kubernetes driver yet (no egress proxy in the cluster)")
	}
	if x.Pod == "" {
		return nil, fmt.Errorf("pool member %s has no Pod", m.Name)
	}
	next := *sb
	if next.Extra, err = json.Marshal(x); err != nil {
		return nil, err
	}
	if err := call(ctx, "adopt", Request{HomeDir: h.Dir, Sandbox: next}, nil); err != nil {
		return nil, err
	}
	sb.Extra = next.Extra
	primeRunning(x)
	d.log().Info("adopted a pool member", "sandbox", sb.Name, "pod", x.Namespace+"/"+x.Pod)
	return []string{"HOSTNAME=" + sb.Name}, nil
}

// PoolRequest is the helper's pool operation (kubeapi/warmpool.go): set
// (Size), status or delete the cluster-kept pool Pool of installation
// HomeDir, or claim a member of it as Sandbox.
type PoolRequest struct {
	Op      string        `json:"op"` // set, status, delete, claim
	HomeDir string        `json:"home_dir"`
	Pool    string        `json:"pool"`
	Size    int           `json:"size"`
	Extra   Extra         `json:"extra"`
	Sandbox state.Sandbox `json:"sandbox"`
}

// PoolAnswer is the helper's answer: ready members, or the claimed
// sandbox's driver data.
type PoolAnswer struct {
	Ready int    `json:"ready"`
	Extra *Extra `json:"extra,omitempty"`
}

var _ driver.ClusterPooler = Driver{}

// ClusterPool implements driver.ClusterPooler: with --driver-opt
// api=agent-sandbox the cluster keeps the pool (SandboxTemplate +
// SandboxWarmPool) and a claim is a SandboxClaim.
func (Driver) ClusterPool(opts driver.CreateOptions) bool {
	return opts.DriverOpts[OptAPI] == APIAgentSandbox
}

func poolExtra(opts driver.CreateOptions) (Extra, error) {
	x := Extra{CreateOptions: opts, API: APIAgentSandbox}
	if err := CheckOptions(opts); err != nil {
		return x, err
	}
	var err error
	if x.Kubeconfig, err = ResolveKubeconfig(opts.DriverOpts[OptKubeconfig]); err != nil {
		return x, err
	}
	x.Context, x.Namespace = opts.DriverOpts[OptContext], opts.DriverOpts[OptNamespace]
	if x.Namespace == "" {
		x.Namespace = "default"
	}
	return x, nil
}

func (Driver) poolCall(ctx context.Context, h *state.Home, op, pool string, size int, opts driver.CreateOptions, sb *state.Sandbox) (PoolAnswer, error) {
	var ans PoolAnswer
	x, err := poolExtra(opts)
	if err != nil {
		return ans, err
	}
	req := PoolRequest{Op: op, HomeDir: h.Dir, Pool: pool, Size: size, Extra: x}
	if sb != nil {
		req.Sandbox = *sb
	}
	return ans, call(ctx, "pool", req, &ans)
}

// SetClusterPool implements driver.ClusterPooler.
func (d Driver) SetClusterPool(ctx context.Context, h *state.Home, pool string, size int, opts driver.CreateOptions) error {
	_, err := d.poolCall(ctx, h, "set", pool, size, opts, nil)
	return err
}

// DeleteClusterPool implements driver.ClusterPooler.
func (d Driver) DeleteClusterPool(ctx context.Context, h *state.Home, pool string, opts driver.CreateOptions) error {
	_, err := d.poolCall(ctx, h, "delete", pool, 0, opts, nil)
	return err
}

// ClusterPoolReady implements driver.ClusterPooler.
func (d Driver) ClusterPoolReady(ctx context.Context, h *state.Home, pool string, opts driver.CreateOptions) (int, error) {
	a, err := d.poolCall(ctx, h, "status", pool, 0, opts, nil)
	return a.Ready, err
}

// ClaimFromCluster implements driver.ClusterPooler: a SandboxClaim of the
// pool, bound by the cluster to a warm Sandbox, relabelled for sb.
func (d Driver) ClaimFromCluster(ctx context.Context, h *state.Home, pool string, opts driver.CreateOptions, sb *state.Sandbox) ([]string, error) {
	claim, err := ReadExtra(sb)
	if err != nil {
		return nil, err
	}
	if len(claim.Providers) > 0 {
		return nil, errors.New("--provider is not supported by the kubernetes driver yet (no egress proxy in the cluster)")
	}
	a, err := d.poolCall(ctx, h, "claim", pool, 0, opts, sb)
	if err != nil {
		return nil, err
	}
	if a.Extra == nil {
		return nil, errors.New("the helper's claim answered no sandbox")
	}
	if sb.Extra, err = json.Marshal(a.Extra); err != nil {
		return nil, err
	}
	primeRunning(*a.Extra)
	d.log().Info("claimed from the cluster's warm pool", "sandbox", sb.Name, "sandbox_object", a.Extra.Namespace+"/"+a.Extra.Pod, "claim", a.Extra.Claim)
	return []string{"HOSTNAME=" + sb.Name}, nil
}
