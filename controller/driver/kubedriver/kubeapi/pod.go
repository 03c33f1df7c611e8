// Package kubeapi is the kubernetes driver's client-go half: Pods, their
// status and the exec stream. Only the darkshell-kube helper links it, so
// client-go's package initialisation never runs in darkshell commands
// (controller/driver/kubedriver runs the helper).
package kubeapi

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/driver/enginedriver"
	kd "github.com/bohica-labs/darkshell/controller/driver/kubedriver"
	"github.com/bohica-labs/darkshell/controller/state"
)

// Timeouts.
const (
	// ReadyTimeout bounds waiting for a new Pod to run.
	ReadyTimeout = 3 * time.Minute
	// GoneTimeout bounds waiting for a deleted Pod to disappear.
	GoneTimeout = time.Minute
)

// PodSpec is the Pod of sandbox sb (driver data x) in installation homeDir.
func PodSpec(homeDir string, sb *state.Sandbox, x kd.Extra) (*corev1.Pod, []string, error) {
	labels := map[string]string{}
	for k, v := range sb.Labels {
		labels[k] = v
	}
	labels[kd.LabelSandbox], labels[kd.LabelHome] = sb.Name, kd.HomeHash(homeDir)
	pull := corev1.PullPolicy(x.DriverOpts[kd.OptPullPolicy])
	if pull == "" {
		pull = corev1.PullIfNotPresent
	}
	var limits []string
	res := corev1.ResourceList{}
	if x.CPULimit != "" {
		f, err := strconv.ParseFloat(x.CPULimit, 64)
		if err != nil || f <= 0 {
			return nil, nil, fmt.Errorf("--cpu-limit %q: want a positive number of CPUs, e.g. 1.5", x.CPULimit)
		}
		q := resource.NewMilliQuantity(int64(f*1000+0.5), resource.DecimalSI)
		res[corev1.ResourceCPU] = *q
		limits = append(limits, "cpu="+q.String())
	}
	if x.MemoryLimit != "" {
		b, err := enginedriver.MemoryBytes(x.MemoryLimit)
		if err != nil {
			return nil, nil, err
		}
		q := resource.NewQuantity(b, resource.BinarySI)
		res[corev1.ResourceMemory] = *q
		limits = append(limits, "memory="+q.String())
	}
	env := []corev1.EnvVar{{Name: "HOME", Value: kd.Home}}
	for _, e := range sb.Env {
		k, v, _ := strings.Cut(e, "=")
		env = append(env, corev1.EnvVar{Name: k, Value: v})
	}
	uid := int64(kd.UID)
	no, yes := false, true
	grace := int64(2)
	ro := x.DriverOpts[kd.OptWritableRoot] != "true"
	emptyDir := func(n string) corev1.Volume {
		return corev1.Volume{Name: n, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
	}
	p := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: x.Pod, Namespace: x.Namespace, Labels: labels,
			Annotations: map[string]string{kd.AnnotationHome: homeDir},
		},
		Spec: corev1.PodSpec{
			Hostname:                      sb.Name,
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &uid, FSGroup: &uid,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name: kd.Container, Image: x.Image, ImagePullPolicy: pull,
				// The shell reads the open, silent stdin: the container idles
				// until deleted, whatever the image's entrypoint would run.
				Command: []string{"/bin/sh"}, Stdin: true,
				WorkingDir: kd.Workspace, Env: env,
				Resources: corev1.ResourceRequirements{Limits: res},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: &no, Privileged: &no, ReadOnlyRootFilesystem: &ro,
					RunAsNonRoot: &yes,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "workspace", MountPath: kd.Workspace},
					{Name: "tmp", MountPath: "/tmp"},
					{Name: "home", MountPath: kd.Home},
				},
			}},
			Volumes: []corev1.Volume{emptyDir("workspace"), emptyDir("tmp"), emptyDir("home")},
		},
	}
	return p, limits, nil
}

// Create makes sb's Pod and waits until it runs; on failure the Pod is
// deleted again. It returns x with the Pod's uid and limits filled in.
func Create(ctx context.Context, homeDir string, sb *state.Sandbox, x kd.Extra) (kd.Extra, error) {
	c, err := connectCluster(x.Kubeconfig, x.Context)
	if err != nil {
		return x, err
	}
	if x.API == kd.APIAgentSandbox {
		return createSandboxObject(ctx, c, homeDir, sb, x)
	}
	spec, limits, err := PodSpec(homeDir, sb, x)
	if err != nil {
		return x, err
	}
	x.Limits = limits
	pod, err := c.createPod(ctx, spec)
	if isConflict(err) {
		return x, fmt.Errorf("a Pod %s/%s already exists (left by an earlier sandbox %s of this installation?): delete it with `kubectl -n %s delete pod %s`", x.Namespace, x.Pod, sb.Name, x.Namespace, x.Pod)
	}
	if err != nil {
		return x, fmt.Errorf("unable to create Pod %s/%s: %w", x.Namespace, x.Pod, err)
	}
	x.PodUID = string(pod.UID)
	if err := waitRunning(ctx, c, pod); err != nil {
		remove(c, x)
		return x, err
	}
	return x, nil
}

// waitRunning watches pod until its container runs, failing early on a
// state it will not leave by itself (image missing, bad config, exited).
func waitRunning(ctx context.Context, c *cluster, pod *corev1.Pod) error {
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	var last *corev1.Pod
	err := c.watchPod(ctx, pod.Namespace, pod.Name, pod.ResourceVersion, func(p *corev1.Pod) (bool, error) {
		last = p
		st := PodStatus(p)
		switch st.Phase {
		case driver.PhaseRunning:
			return true, nil
		case driver.PhaseFailed:
			return false, fmt.Errorf("pod %s/%s did not start: %s", p.Namespace, p.Name, st.Reason)
		}
		return false, nil
	})
	if err != nil && ctx.Err() != nil {
		why := "no status yet"
		if last != nil {
			why = PodStatus(last).Reason
		}
		return fmt.Errorf("pod %s/%s did not run within %s (%s)", pod.Namespace, pod.Name, ReadyTimeout, why)
	}
	return err
}

// fatalWaiting are container waiting reasons that do not resolve without a change.
var fatalWaiting = map[string]bool{
	"ErrImageNeverPull": true, "InvalidImageName": true, "CreateContainerConfigError": true,
	"CreateContainerError": true, "RunContainerError": true, "ImageInspectError": true,
	"ErrImagePull": true, "ImagePullBackOff": true, "CrashLoopBackOff": true,
}

// PodStatus maps a Pod's phase and container state to a sandbox status.
func PodStatus(p *corev1.Pod) driver.Status {
	var cs *corev1.ContainerStatus
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == kd.Container {
			cs = &p.Status.ContainerStatuses[i]
		}
	}
	if p.DeletionTimestamp != nil {
		return driver.Status{Phase: driver.PhaseFailed, Reason: "the Pod is being deleted"}
	}
	switch p.Status.Phase {
	case corev1.PodRunning:
		if cs != nil && cs.State.Running != nil {
			return driver.Status{Phase: driver.PhaseRunning}
		}
		if cs != nil && cs.State.Terminated != nil {
			return driver.Status{Phase: driver.PhaseFailed, Reason: terminated(cs.State.Terminated)}
		}
		return driver.Status{Phase: driver.PhasePending, Reason: "container not running yet"}
	case corev1.PodSucceeded, corev1.PodFailed:
		why := string(p.Status.Phase)
		if cs != nil && cs.State.Terminated != nil {
			why = terminated(cs.State.Terminated)
		} else if p.Status.Reason != "" {
			why = p.Status.Reason + ": " + p.Status.Message
		}
		return driver.Status{Phase: driver.PhaseFailed, Reason: "Pod " + string(p.Status.Phase) + ": " + why}
	}
	// Pending.
	if cs != nil && cs.State.Waiting != nil {
		w := cs.State.Waiting
		why := w.Reason
		if w.Message != "" {
			why += ": " + w.Message
		}
		if fatalWaiting[w.Reason] {
			return driver.Status{Phase: driver.PhaseFailed, Reason: why}
		}
		return driver.Status{Phase: driver.PhasePending, Reason: why}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return driver.Status{Phase: driver.PhasePending, Reason: "not scheduled: " + c.Message}
		}
	}
	return driver.Status{Phase: driver.PhasePending, Reason: "Pod " + string(p.Status.Phase)}
}

func terminated(t *corev1.ContainerStateTerminated) string {
	s := fmt.Sprintf("container exited %d", t.ExitCode)
	if t.Reason != "" {
		s += " (" + t.Reason + ")"
	}
	return s
}

// Status is sb's status from the installation's Pods, read by label.
func Status(ctx context.Context, homeDir string, x kd.Extra) driver.Status {
	c, err := connectCluster(x.Kubeconfig, x.Context)
	if err != nil {
		return driver.Status{Phase: driver.PhaseFailed, Reason: err.Error()}
	}
	if x.API == kd.APIAgentSandbox {
		return sandboxStatus(ctx, c, x)
	}
	l, err := c.listPods(ctx, x.Namespace, kd.LabelHome+"="+kd.HomeHash(homeDir))
	if err != nil {
		return driver.Status{Phase: driver.PhaseFailed, Reason: "unable to read the Pod: " + err.Error()}
	}
	for i := range l {
		p := &l[i]
		if p.Name != x.Pod {
			continue
		}
		if x.PodUID != "" && string(p.UID) != x.PodUID {
			return driver.Status{Phase: driver.PhaseFailed, Reason: fmt.Sprintf("Pod %s/%s was replaced behind darkshell's back", x.Namespace, x.Pod)}
		}
		return PodStatus(p)
	}
	return driver.Status{Phase: driver.PhaseFailed, Reason: fmt.Sprintf("Pod %s/%s is gone", x.Namespace, x.Pod)}
}

// Delete removes sb's Pod (its emptyDirs go with it) and waits until it is gone.
func Delete(ctx context.Context, x kd.Extra) error {
	c, err := connectCluster(x.Kubeconfig, x.Context)
	if err != nil {
		return err
	}
	if x.API == kd.APIAgentSandbox {
		if err := removeSandbox(c, x); err != nil {
			return err
		}
		return deleteClaim(ctx, c, x) // warmpool.go
	}
	return remove(c, x)
}

// Stop and Start set an agent-sandbox Sandbox's replicas (a bare Pod
// cannot be stopped and started).
func Stop(ctx context.Context, x kd.Extra) error  { return lifecycle(ctx, x, 0) }
func Start(ctx context.Context, x kd.Extra) error { return lifecycle(ctx, x, 1) }

func lifecycle(ctx context.Context, x kd.Extra, n int32) error {
	if x.API != kd.APIAgentSandbox {
		return fmt.Errorf("a bare Pod cannot be stopped and started: create the sandbox with --driver-opt api=agent-sandbox (a cluster with the agent-sandbox API) for stop/start")
	}
	return setReplicas(ctx, x, n)
}

// remove deletes the Pod and waits until it is gone.
func remove(c *cluster, x kd.Extra) error {
	ctx, cancel := context.WithTimeout(context.Background(), GoneTimeout)
	defer cancel()
	if err := c.deletePod(ctx, x.Namespace, x.Pod, 0); err != nil {
		return fmt.Errorf("unable to delete Pod %s/%s: %w", x.Namespace, x.Pod, err)
	}
	for {
		p, err := c.getPod(ctx, x.Namespace, x.Pod)
		if isNotFound(err) || (err == nil && x.PodUID != "" && string(p.UID) != x.PodUID) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pod %s/%s was deleted but is still there after %s", x.Namespace, x.Pod, GoneTimeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
