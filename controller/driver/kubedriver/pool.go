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
	d.log().Info("adopted a pool member", "sandbox", sb.Name, "pod", x.Namespace+"/"+x.Pod)
	return []string{"HOSTNAME=" + sb.Name}, nil
}
