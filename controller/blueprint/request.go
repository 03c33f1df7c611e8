package blueprint

import (
	"maps"
	"strings"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/export"
)

// CreateRequest is the create that Apply sends for the sandbox name: the
// blueprint's driver, image or rootfs, policy, providers, limits, env and
// labels (its own name among them, export.LabelBlueprint).
func (bp *Blueprint) CreateRequest(name string) *api.CreateRequest {
	labels := maps.Clone(bp.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[export.LabelBlueprint] = bp.Name
	req := &api.CreateRequest{Name: name, Driver: bp.Driver, Env: bp.envList(), Labels: labels, CreateOptions: driver.CreateOptions{
		Image: bp.Path(bp.Image), Rootfs: bp.Path(bp.Rootfs), Policy: string(bp.PolicyData), PolicySource: bp.PolicySource,
		Providers: bp.Providers,
	}}
	if bp.Image != "" && !strings.HasPrefix(bp.Image, ".") && !strings.HasPrefix(bp.Image, "/") {
		req.Image = bp.Image // an engine reference, not a path
	}
	if r := bp.Resources; r != nil {
		req.CPULimit, req.MemoryLimit, req.PidsLimit = r.CPU, r.Memory, r.Pids
	}
	return req
}

// PoolSpec is the warm pool of size members of bp on drv (bp's driver
// when empty): the generic part of CreateRequest, which a create from bp
// must match to claim a member. Providers, env, labels, uploads, MCP
// servers and forwards are per sandbox and are not in it.
func (bp *Blueprint) PoolSpec(drv string, size int) *api.PoolSpec {
	req := bp.CreateRequest(bp.Name)
	if drv == "" {
		drv = req.Driver
	}
	opts := req.CreateOptions
	opts.Providers = nil
	return &api.PoolSpec{Name: bp.Name, Driver: drv, Size: size, Options: opts}
}
