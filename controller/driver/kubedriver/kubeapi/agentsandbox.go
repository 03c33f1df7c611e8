package kubeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bohica-labs/darkshell/controller/driver"
	kd "github.com/bohica-labs/darkshell/controller/driver/kubedriver"
	"github.com/bohica-labs/darkshell/controller/state"
)

// The agent-sandbox API (kubernetes-sigs/agent-sandbox, group
// agents.x-k8s.io): with --driver-opt api=agent-sandbox the driver makes a
// Sandbox object whose podTemplate is the Pod the bare-Pod mode would make;
// the agent-sandbox controller makes the Pod (named as the Sandbox) and
// reports a Ready condition. Stop and start set spec.replicas to 0 and 1
// (v1alpha1's operating mode). Deleting the Sandbox deletes its Pod (owner
// references).

// SandboxGV is the agent-sandbox API group and version the driver speaks.
const SandboxGV = "agents.x-k8s.io/v1alpha1"

// Sandbox is the part of an agents.x-k8s.io Sandbox the driver reads and writes.
type Sandbox struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       SandboxSpec       `json:"spec"`
	Status     SandboxStatus     `json:"status,omitempty"`
}

// SandboxSpec is Sandbox.spec.
type SandboxSpec struct {
	PodTemplate PodTemplate `json:"podTemplate"`
	Replicas    *int32      `json:"replicas,omitempty"`
}

// PodTemplate is Sandbox.spec.podTemplate.
type PodTemplate struct {
	Metadata PodMetadata    `json:"metadata,omitempty"`
	Spec     corev1.PodSpec `json:"spec"`
}

// PodMetadata is the template's labels and annotations.
type PodMetadata struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// SandboxStatus is Sandbox.status.
type SandboxStatus struct {
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	Replicas   int32              `json:"replicas,omitempty"`
	Selector   string             `json:"selector,omitempty"`
}

func sandboxesPath(ns string) string {
	return "/apis/" + SandboxGV + "/namespaces/" + url.PathEscape(ns) + "/sandboxes"
}

// HasSandboxAPI reports whether the cluster serves agents.x-k8s.io/v1alpha1 sandboxes.
func (c *cluster) hasSandboxAPI(ctx context.Context) (bool, error) {
	var rl metav1.APIResourceList
	err := c.do(ctx, "GET", "/apis/"+SandboxGV, nil, nil, &rl)
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, r := range rl.APIResources {
		if r.Name == "sandboxes" {
			return true, nil
		}
	}
	return false, nil
}

func (c *cluster) getSandbox(ctx context.Context, ns, name string) (*Sandbox, error) {
	var s Sandbox
	return &s, c.do(ctx, "GET", sandboxesPath(ns)+"/"+url.PathEscape(name), nil, nil, &s)
}

// createSandboxObject makes the Sandbox object of sb, waits until its
// controller reports it Ready and its Pod runs; on failure it is deleted.
func createSandboxObject(ctx context.Context, c *cluster, homeDir string, sb *state.Sandbox, x kd.Extra) (kd.Extra, error) {
	ok, err := c.hasSandboxAPI(ctx)
	if err != nil {
		return x, fmt.Errorf("unable to look for the agent-sandbox API: %w", err)
	}
	if !ok {
		return x, fmt.Errorf("--driver-opt api=agent-sandbox: the cluster does not serve %s sandboxes (install agent-sandbox's CRDs and controller, or leave api unset for bare Pods)", SandboxGV)
	}
	pod, limits, err := PodSpec(homeDir, sb, x)
	if err != nil {
		return x, err
	}
	x.Limits = limits
	one := int32(1)
	obj := &Sandbox{APIVersion: SandboxGV, Kind: "Sandbox",
		Metadata: metav1.ObjectMeta{Name: x.Pod, Namespace: x.Namespace, Labels: pod.Labels, Annotations: pod.Annotations},
		Spec: SandboxSpec{Replicas: &one,
			PodTemplate: PodTemplate{Metadata: PodMetadata{Labels: pod.Labels, Annotations: pod.Annotations}, Spec: pod.Spec}},
	}
	var out Sandbox
	err = c.do(ctx, "POST", sandboxesPath(x.Namespace), nil, obj, &out)
	if isConflict(err) {
		return x, fmt.Errorf("a Sandbox %s/%s already exists: delete it with `kubectl -n %s delete sandbox %s`", x.Namespace, x.Pod, x.Namespace, x.Pod)
	}
	if err != nil {
		return x, fmt.Errorf("unable to create Sandbox %s/%s: %w", x.Namespace, x.Pod, err)
	}
	x.SandboxUID = string(out.Metadata.UID)
	if err := waitSandboxRunning(ctx, c, x); err != nil {
		removeSandbox(c, x)
		return x, err
	}
	return x, nil
}

// waitSandboxRunning waits for the Sandbox's Ready condition and its Pod
// running (the Pod's uid is recorded by the caller from the Sandbox's).
func waitSandboxRunning(ctx context.Context, c *cluster, x kd.Extra) error {
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	why := "the agent-sandbox controller has not reported yet"
	for {
		s, err := c.getSandbox(ctx, x.Namespace, x.Pod)
		if err == nil {
			if cond := readyCondition(s); cond != nil {
				why = "Ready=" + string(cond.Status) + " " + cond.Reason + ": " + cond.Message
				if cond.Status == metav1.ConditionTrue {
					p, err := c.getPod(ctx, x.Namespace, x.Pod)
					if err == nil {
						st := PodStatus(p)
						if st.Phase == driver.PhaseRunning {
							return nil
						}
						if st.Phase == driver.PhaseFailed {
							return fmt.Errorf("the Pod of Sandbox %s/%s did not start: %s", x.Namespace, x.Pod, st.Reason)
						}
						why = st.Reason
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sandbox object %s/%s did not become ready within %s (%s); is the agent-sandbox controller running?", x.Namespace, x.Pod, ReadyTimeout, why)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func readyCondition(s *Sandbox) *metav1.Condition {
	for i := range s.Status.Conditions {
		if s.Status.Conditions[i].Type == "Ready" {
			return &s.Status.Conditions[i]
		}
	}
	return nil
}

// sandboxStatus maps the Sandbox (and its Pod) to a sandbox status.
func sandboxStatus(ctx context.Context, c *cluster, x kd.Extra) driver.Status {
	s, err := c.getSandbox(ctx, x.Namespace, x.Pod)
	switch {
	case isNotFound(err):
		return driver.Status{Phase: driver.PhaseFailed, Reason: fmt.Sprintf("Sandbox %s/%s is gone", x.Namespace, x.Pod)}
	case err != nil:
		return driver.Status{Phase: driver.PhaseFailed, Reason: "unable to read the Sandbox: " + err.Error()}
	case s.Metadata.DeletionTimestamp != nil:
		return driver.Status{Phase: driver.PhaseFailed, Reason: "the Sandbox is being deleted"}
	case s.Spec.Replicas != nil && *s.Spec.Replicas == 0:
		return driver.Status{Phase: driver.PhaseStopped}
	}
	if cond := readyCondition(s); cond == nil || cond.Status != metav1.ConditionTrue {
		why := "not ready"
		if cond != nil {
			why = cond.Reason + ": " + cond.Message
		}
		return driver.Status{Phase: driver.PhasePending, Reason: "Sandbox " + why}
	}
	p, err := c.getPod(ctx, x.Namespace, x.Pod)
	if err != nil {
		return driver.Status{Phase: driver.PhasePending, Reason: "Sandbox Ready, Pod: " + err.Error()}
	}
	return PodStatus(p)
}

// setReplicas stops (0) or starts (1) the Sandbox and waits for its Pod
// to go or to run.
func setReplicas(ctx context.Context, x kd.Extra, n int32) error {
	c, err := connectCluster(x.Kubeconfig, x.Context)
	if err != nil {
		return err
	}
	patch := map[string]any{"spec": map[string]any{"replicas": n}}
	b, _ := json.Marshal(patch)
	if err := c.doRaw(ctx, "PATCH", sandboxesPath(x.Namespace)+"/"+url.PathEscape(x.Pod), "application/merge-patch+json", b); err != nil {
		return fmt.Errorf("unable to set Sandbox %s/%s replicas to %d: %w", x.Namespace, x.Pod, n, err)
	}
	if n == 1 {
		return waitSandboxRunning(ctx, c, x)
	}
	ctx, cancel := context.WithTimeout(ctx, GoneTimeout)
	defer cancel()
	for {
		if _, err := c.getPod(ctx, x.Namespace, x.Pod); isNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the Pod of Sandbox %s/%s is still there %s after replicas=0", x.Namespace, x.Pod, GoneTimeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// removeSandbox deletes the Sandbox (its Pod goes with it by owner
// reference) and waits until both are gone.
func removeSandbox(c *cluster, x kd.Extra) error {
	ctx, cancel := context.WithTimeout(context.Background(), GoneTimeout)
	defer cancel()
	err := c.do(ctx, "DELETE", sandboxesPath(x.Namespace)+"/"+url.PathEscape(x.Pod), url.Values{"propagationPolicy": {"Foreground"}}, nil, nil)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("unable to delete Sandbox %s/%s: %w", x.Namespace, x.Pod, err)
	}
	for {
		_, serr := c.getSandbox(ctx, x.Namespace, x.Pod)
		_, perr := c.getPod(ctx, x.Namespace, x.Pod)
		if isNotFound(serr) && isNotFound(perr) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sandbox object %s/%s or its Pod is still there %s after delete", x.Namespace, x.Pod, GoneTimeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
