package kubeapi

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bohica-labs/darkshell/controller/driver"
	kd "github.com/bohica-labs/darkshell/controller/driver/kubedriver"
	"github.com/bohica-labs/darkshell/controller/state"
)

func TestPodSpec(t *testing.T) {
	sb := &state.Sandbox{Name: "box", Labels: map[string]string{"team": "a", kd.LabelSandbox: "spoof"}, Env: []string{"A=b=c"}}
	x := kd.Extra{Namespace: "ns", Pod: "ds-box-1"}
	x.Image, x.CPULimit, x.MemoryLimit = "img", "1.5", "64M"
	p, limits, err := PodSpec("/h", sb, x)
	if err != nil {
		t.Fatal(err)
	}
	c := p.Spec.Containers[0]
	switch {
	case p.Labels[kd.LabelSandbox] != "box" || p.Labels["team"] != "a" || p.Labels[kd.LabelHome] != kd.HomeHash("/h"):
		t.Errorf("labels %v", p.Labels)
	case *p.Spec.SecurityContext.RunAsUser != kd.UID || !*p.Spec.SecurityContext.RunAsNonRoot ||
		p.Spec.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("pod security context %+v", p.Spec.SecurityContext)
	case *c.SecurityContext.AllowPrivilegeEscalation || !*c.SecurityContext.ReadOnlyRootFilesystem || c.SecurityContext.Capabilities.Drop[0] != "ALL":
		t.Errorf("container security context %+v", c.SecurityContext)
	case *p.Spec.AutomountServiceAccountToken || *p.Spec.EnableServiceLinks:
		t.Error("service account token or links mounted")
	case c.ImagePullPolicy != corev1.PullIfNotPresent || c.Env[1].Name != "A" || c.Env[1].Value != "b=c":
		t.Errorf("pull %s env %v", c.ImagePullPolicy, c.Env)
	case len(limits) != 2 || limits[0] != "cpu=1500m" || limits[1] != "memory=64Mi":
		t.Errorf("limits %v", limits)
	}
	x.DriverOpts = map[string]string{kd.OptWritableRoot: "true", kd.OptPullPolicy: "Never"}
	x.CPULimit, x.MemoryLimit = "-1", ""
	if _, _, err := PodSpec("/h", sb, x); err == nil {
		t.Error("negative cpu accepted")
	}
	x.CPULimit = ""
	p, _, _ = PodSpec("/h", sb, x)
	if *p.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem || p.Spec.Containers[0].ImagePullPolicy != corev1.PullNever {
		t.Error("driver opts ignored")
	}
}

func TestPodStatus(t *testing.T) {
	cs := func(s corev1.ContainerState) []corev1.ContainerStatus {
		return []corev1.ContainerStatus{{Name: kd.Container, State: s}}
	}
	now := metav1.Now()
	tests := []struct {
		name  string
		pod   corev1.Pod
		phase string
	}{
		{"running", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: cs(corev1.ContainerState{Running: &corev1.ContainerStateRunning{}})}}, driver.PhaseRunning},
		{"pulling", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: cs(corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}})}}, driver.PhasePending},
		{"no image", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: cs(corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull"}})}}, driver.PhaseFailed},
		{"exited", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: cs(corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}})}}, driver.PhaseFailed},
		{"deleting", corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}, driver.PhaseFailed},
		{"unscheduled", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending}}, driver.PhasePending},
	}
	for _, tt := range tests {
		if got := PodStatus(&tt.pod); got.Phase != tt.phase {
			t.Errorf("%s: %+v, want %s", tt.name, got, tt.phase)
		}
	}
	st := PodStatus(&tests[3].pod)
	if st.Reason != "Pod Failed: container exited 137 (OOMKilled)" {
		t.Errorf("reason %q", st.Reason)
	}
}
