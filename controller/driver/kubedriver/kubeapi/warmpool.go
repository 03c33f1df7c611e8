package kubeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kd "github.com/bohica-labs/darkshell/controller/driver/kubedriver"
	"github.com/bohica-labs/darkshell/controller/state"
)

// agent-sandbox's extensions (group extensions.agents.x-k8s.io): a warm
// pool of a kubernetes pool with --driver-opt api=agent-sandbox is kept by
// the cluster, not by the DarkShell daemon. The pool is a SandboxTemplate
// (the Pod a member would be, with nothing of a user's) and a
// SandboxWarmPool of that template (spec.replicas = the pool's size); a
// claim is a SandboxClaim naming both, and the controller binds it to a
// warm Sandbox (status.sandbox.name), which the driver then relabels for
// the new sandbox as Adopt does.

// ExtGV is agent-sandbox's extensions API group and version.
const ExtGV = "extensions.agents.x-k8s.io/v1alpha1"

func extPath(ns, resource string) string {
	return "/apis/" + ExtGV + "/namespaces/" + url.PathEscape(ns) + "/" + resource
}

// PoolObject names the SandboxTemplate and SandboxWarmPool of pool in
// installation homeDir.
func PoolObject(homeDir, pool string) string { return "ds-pool-" + pool + "-" + kd.HomeHash(homeDir) }

// extObject is the part of an extensions object the driver writes and reads.
type extObject struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       map[string]any    `json:"spec"`
	Status     map[string]any    `json:"status,omitempty"`
}

func (c *cluster) hasExtAPI(ctx context.Context) error {
	var rl metav1.APIResourceList
	err := c.do(ctx, "GET", "/apis/"+ExtGV, nil, nil, &rl)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("unable to look for agent-sandbox's extensions API: %w", err)
	}
	have := map[string]bool{}
	for _, r := range rl.APIResources {
		have[r.Name] = true
	}
	for _, r := range []string{"sandboxtemplates", "sandboxwarmpools", "sandboxclaims"} {
		if !have[r] {
			return fmt.Errorf("a warm pool with --driver-opt api=agent-sandbox needs agent-sandbox's extensions: the cluster does not serve %s %s (install its extension CRDs and controller, or leave api unset for a pool of bare Pods kept by the daemon)", ExtGV, r)
		}
	}
	return nil
}

// apply creates obj or, when it exists, replaces its spec.
func (c *cluster) apply(ctx context.Context, resource string, obj *extObject) error {
	p := extPath(obj.Metadata.Namespace, resource)
	err := c.do(ctx, "POST", p, nil, obj, nil)
	if !isConflict(err) {
		return err
	}
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": obj.Metadata.Labels}, "spec": obj.Spec})
	return c.doRaw(ctx, "PATCH", p+"/"+url.PathEscape(obj.Metadata.Name), "application/merge-patch+json", b)
}

// Pool runs one pool operation.
func Pool(ctx context.Context, req kd.PoolRequest) (kd.PoolAnswer, error) {
	x := req.Extra
	c, err := connectCluster(x.Kubeconfig, x.Context)
	if err != nil {
		return kd.PoolAnswer{}, err
	}
	name := PoolObject(req.HomeDir, req.Pool)
	switch req.Op {
	case "set":
		return setPool(ctx, c, req, name)
	case "status":
		var wp extObject
		if err := c.do(ctx, "GET", extPath(x.Namespace, "sandboxwarmpools")+"/"+url.PathEscape(name), nil, nil, &wp); err != nil {
			return kd.PoolAnswer{}, fmt.Errorf("unable to read SandboxWarmPool %s/%s: %w", x.Namespace, name, err)
		}
		n, _ := wp.Status["readyReplicas"].(float64)
		return kd.PoolAnswer{Ready: int(n)}, nil
	case "delete":
		return kd.PoolAnswer{}, deletePool(ctx, c, x.Namespace, name)
	case "claim":
		nx, err := claim(ctx, c, req, name)
		return kd.PoolAnswer{Extra: &nx}, err
	}
	return kd.PoolAnswer{}, fmt.Errorf("unknown pool operation %q", req.Op)
}

func setPool(ctx context.Context, c *cluster, req kd.PoolRequest, name string) (kd.PoolAnswer, error) {
	x := req.Extra
	if err := c.hasExtAPI(ctx); err != nil {
		return kd.PoolAnswer{}, err
	}
	if ok, err := c.hasSandboxAPI(ctx); err != nil || !ok {
		return kd.PoolAnswer{}, fmt.Errorf("a warm pool with --driver-opt api=agent-sandbox needs the %s Sandbox API, which the cluster does not serve (%v)", SandboxGV, err)
	}
	member := &state.Sandbox{Name: "pool-" + req.Pool, Labels: map[string]string{kd.LabelPool: req.Pool}}
	pod, _, err := PodSpec(req.HomeDir, member, x)
	if err != nil {
		return kd.PoolAnswer{}, err
	}
	pod.Spec.Hostname = "" // each Sandbox gets its own name
	delete(pod.Labels, kd.LabelSandbox)
	labels := map[string]string{kd.LabelHome: kd.HomeHash(req.HomeDir), kd.LabelPool: req.Pool}
	tpl := &extObject{APIVersion: ExtGV, Kind: "SandboxTemplate",
		Metadata: metav1.ObjectMeta{Name: name, Namespace: x.Namespace, Labels: labels},
		Spec: map[string]any{"podTemplate": map[string]any{
			"metadata": map[string]any{"labels": pod.Labels, "annotations": pod.Annotations},
			"spec":     pod.Spec,
		}}}
	if err := c.apply(ctx, "sandboxtemplates", tpl); err != nil {
		return kd.PoolAnswer{}, fmt.Errorf("unable to write SandboxTemplate %s/%s: %w", x.Namespace, name, err)
	}
	wp := &extObject{APIVersion: ExtGV, Kind: "SandboxWarmPool",
		Metadata: metav1.ObjectMeta{Name: name, Namespace: x.Namespace, Labels: labels},
		Spec:     map[string]any{"replicas": req.Size, "sandboxTemplateRef": map[string]any{"name": name}}}
	if err := c.apply(ctx, "sandboxwarmpools", wp); err != nil {
		return kd.PoolAnswer{}, fmt.Errorf("unable to write SandboxWarmPool %s/%s: %w", x.Namespace, name, err)
	}
	return kd.PoolAnswer{}, nil
}

// deletePool deletes the SandboxWarmPool (its unclaimed Sandboxes go with
// it by owner reference) and the SandboxTemplate, and waits until the
// pool's Sandboxes are gone.
func deletePool(ctx context.Context, c *cluster, ns, name string) error {
	fg := url.Values{"propagationPolicy": {"Foreground"}}
	for _, r := range []string{"sandboxwarmpools", "sandboxtemplates"} {
		if err := c.do(ctx, "DELETE", extPath(ns, r)+"/"+url.PathEscape(name), fg, nil, nil); err != nil && !isNotFound(err) {
			return fmt.Errorf("unable to delete %s %s/%s: %w", r, ns, name, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, GoneTimeout)
	defer cancel()
	for {
		err := c.do(ctx, "GET", extPath(ns, "sandboxwarmpools")+"/"+url.PathEscape(name), nil, nil, nil)
		if isNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("SandboxWarmPool %s/%s is still there %s after delete", ns, name, GoneTimeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// claim makes a SandboxClaim of the pool for req.Sandbox, waits until the
// controller binds it to a Sandbox whose Pod runs, and relabels both for
// the sandbox. It returns the sandbox's driver data (Pod = the Sandbox's
// name, Claim = the claim's). On failure the claim is deleted.
func claim(ctx context.Context, c *cluster, req kd.PoolRequest, pool string) (kd.Extra, error) {
	x, sb := req.Extra, &req.Sandbox
	x.API, x.Claim = kd.APIAgentSandbox, kd.PodName(req.HomeDir, sb.Name)
	obj := &extObject{APIVersion: ExtGV, Kind: "SandboxClaim",
		Metadata: metav1.ObjectMeta{Name: x.Claim, Namespace: x.Namespace,
			Labels: map[string]string{kd.LabelSandbox: sb.Name, kd.LabelHome: kd.HomeHash(req.HomeDir)}},
		Spec: map[string]any{"sandboxTemplateRef": map[string]any{"name": pool}, "warmpool": pool}}
	claimPath := extPath(x.Namespace, "sandboxclaims") + "/" + url.PathEscape(x.Claim)
	if err := c.do(ctx, "POST", extPath(x.Namespace, "sandboxclaims"), nil, obj, nil); err != nil {
		if isConflict(err) {
			return x, fmt.Errorf("a SandboxClaim %s/%s already exists (left by an earlier sandbox %s?): delete it with `kubectl -n %s delete sandboxclaim %s`", x.Namespace, x.Claim, sb.Name, x.Namespace, x.Claim)
		}
		return x, fmt.Errorf("unable to create SandboxClaim %s/%s: %w", x.Namespace, x.Claim, err)
	}
	fail := func(err error) (kd.Extra, error) {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), GoneTimeout)
		defer cancel()
		c.do(dctx, "DELETE", claimPath, nil, nil, nil)
		return x, err
	}
	wctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	for x.Pod == "" {
		var cl extObject
		if err := c.do(wctx, "GET", claimPath, nil, nil, &cl); err == nil {
			if s, _ := cl.Status["sandbox"].(map[string]any); s != nil {
				x.Pod, _ = s["name"].(string)
			}
		}
		if x.Pod != "" {
			break
		}
		select {
		case <-wctx.Done():
			return fail(fmt.Errorf("SandboxClaim %s/%s was not bound to a Sandbox within %s: is agent-sandbox's extensions controller running?", x.Namespace, x.Claim, ReadyTimeout))
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := waitSandboxRunning(ctx, c, x); err != nil {
		return fail(err)
	}
	s, err := c.getSandbox(ctx, x.Namespace, x.Pod)
	if err != nil {
		return fail(err)
	}
	p, err := c.getPod(ctx, x.Namespace, x.Pod)
	if err != nil {
		return fail(err)
	}
	x.SandboxUID, x.PodUID = string(s.Metadata.UID), string(p.UID)
	if err := Adopt(ctx, req.HomeDir, sb, x); err != nil {
		return fail(err)
	}
	return x, nil
}

// deleteClaim deletes a claimed sandbox's SandboxClaim.
func deleteClaim(ctx context.Context, c *cluster, x kd.Extra) error {
	if x.Claim == "" {
		return nil
	}
	err := c.do(ctx, "DELETE", extPath(x.Namespace, "sandboxclaims")+"/"+url.PathEscape(x.Claim), nil, nil, nil)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("unable to delete SandboxClaim %s/%s: %w", x.Namespace, x.Claim, err)
	}
	return nil
}
