package kubeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"

	kd "github.com/bohica-labs/darkshell/controller/driver/kubedriver"
	"github.com/bohica-labs/darkshell/controller/state"
)

// Adopt makes the warm-pool member whose Pod (or agent-sandbox Sandbox)
// x names sandbox sb of installation homeDir: one JSON merge patch of its
// labels (darkshell.sandbox, darkshell.home, the pool label removed, sb's
// own labels added) and of the home-dir annotation. Nothing restarts: the
// Pod's name, uid, hostname and emptyDirs stay.
func Adopt(ctx context.Context, homeDir string, sb *state.Sandbox, x kd.Extra) error {
	c, err := connectCluster(x.Kubeconfig, x.Context)
	if err != nil {
		return err
	}
	labels := map[string]any{kd.LabelPool: nil}
	for k, v := range sb.Labels {
		labels[k] = v
	}
	labels[kd.LabelSandbox], labels[kd.LabelHome] = sb.Name, kd.HomeHash(homeDir)
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"labels": labels, "annotations": map[string]any{kd.AnnotationHome: homeDir},
	}})
	if err != nil {
		return err
	}
	const mergePatch = "application/merge-patch+json"
	if x.API == kd.APIAgentSandbox {
		if err := c.doRaw(ctx, "PATCH", sandboxesPath(x.Namespace)+"/"+url.PathEscape(x.Pod), mergePatch, patch); err != nil {
			return fmt.Errorf("unable to relabel Sandbox %s/%s: %w", x.Namespace, x.Pod, err)
		}
	}
	if err := c.doRaw(ctx, "PATCH", podsPath(x.Namespace)+"/"+url.PathEscape(x.Pod), mergePatch, patch); err != nil {
		return fmt.Errorf("unable to relabel Pod %s/%s: %w", x.Namespace, x.Pod, err)
	}
	return nil
}
