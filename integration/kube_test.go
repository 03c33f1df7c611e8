package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/client"
)

// newKubeEnv is an installation whose kubernetes sandboxes run on the test
// cluster. Sandboxes left at the end are deleted before the daemon stops.
func newKubeEnv(t testing.TB) (*env, *kubeCluster) {
	t.Helper()
	k := requireKube(t)
	e := &env{t: t, home: t.TempDir()}
	c, err := client.New(client.Options{Home: e.home, Darkshell: filepath.Join(binDir, "darkshell")})
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	t.Cleanup(e.cleanup)
	t.Cleanup(func() {
		ents, _ := os.ReadDir(filepath.Join(e.home, "sandboxes"))
		for _, d := range ents {
			e.c.Delete(context.Background(), d.Name())
		}
	})
	return e, k
}

// kubeArgs are the create arguments of a sandbox on the test cluster.
func kubeArgs(k *kubeCluster, extra ...string) []string {
	return append([]string{"--driver", "kubernetes", "--image", kubeImage,
		"--driver-opt", "kubeconfig=" + k.kubeconfig, "--driver-opt", "pull-policy=Never"}, extra...)
}

// kubeRecord is the part of a kubernetes sandbox's record the tests read.
type kubeRecord struct {
	Extra struct {
		Namespace string `json:"namespace"`
		Pod       string `json:"pod"`
		PodUID    string `json:"pod_uid"`
	} `json:"extra"`
}

func kubeRec(t testing.TB, e *env, name string) kubeRecord {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.home, "sandboxes", name, "sandbox.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r kubeRecord
	if err := json.Unmarshal(b, &r); err != nil || r.Extra.Pod == "" {
		t.Fatalf("record of %s: %v %s", name, err, b)
	}
	return r
}

// TestKubeConformance is the driver conformance suite on the kubernetes
// driver, against the test cluster.
func TestKubeConformance(t *testing.T) { runConformance(t, setupKubeTarget) }

func setupKubeTarget(t *testing.T) *confTarget {
	e, k := newKubeEnv(t)
	return &confTarget{env: e, driver: "kubernetes", phases: true, workspace: "/sandbox",
		createArgs: kubeArgs(k),
		residue: func(t *testing.T, name string) func() []string {
			r := kubeRec(t, e, name)
			podDir := filepath.Join(k.run, "kubelet", "pods", r.Extra.PodUID)
			if _, err := os.Stat(podDir); err != nil {
				t.Fatalf("no kubelet pod dir %s: %v", podDir, err)
			}
			if m, _ := filepath.Glob("/sys/fs/cgroup/pids/kubepods/*/pod" + r.Extra.PodUID); len(m) == 0 {
				if m, _ = filepath.Glob("/sys/fs/cgroup/pids/kubepods/pod" + r.Extra.PodUID); len(m) == 0 {
					t.Fatalf("no pod cgroup for %s under /sys/fs/cgroup/pids/kubepods", r.Extra.PodUID)
				}
			}
			return func() []string {
				var left []string
				if out, _ := k.kubectlOut("get", "pods", "-A", "-l", "darkshell.sandbox="+name, "-o", "name"); strings.TrimSpace(out) != "" {
					left = append(left, "pods "+strings.TrimSpace(out))
				}
				if _, err := os.Stat(podDir); err == nil {
					left = append(left, "kubelet pod dir (emptyDirs) "+podDir)
				}
				// kubelet's cgroupfs driver puts the Pod's processes in kubepods[/QOS]/pod<UID>.
				for _, pat := range []string{"/sys/fs/cgroup/*/kubepods/pod" + r.Extra.PodUID, "/sys/fs/cgroup/*/kubepods/*/pod" + r.Extra.PodUID} {
					if m, _ := filepath.Glob(pat); len(m) > 0 {
						left = append(left, "pod cgroups "+strings.Join(m, " "))
					}
				}
				return left
			}
		}}
}

// TestKubeDriver: the Pod's confinement as created and as seen from
// inside, labels, status from the Pod, a Pod deleted behind darkshell's
// back, refused options and a missing image (nothing left behind).
func TestKubeDriver(t *testing.T) {
	e, k := newKubeEnv(t)
	if out, errOut, code := e.ds(append([]string{"sandbox", "create", "k1", "--label", "team=k", "--cpu-limit", "0.5", "--memory-limit", "128M"}, kubeArgs(k)...)...); code != 0 {
		t.Fatalf("create: %d %s %s", code, out, errOut)
	}
	r := kubeRec(t, e, "k1")
	out, err := k.kubectlOut("-n", r.Extra.Namespace, "get", "pod", r.Extra.Pod, "-o", "json")
	if err != nil {
		t.Fatal(err, out)
	}
	var pod struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			AutomountServiceAccountToken *bool `json:"automountServiceAccountToken"`
			SecurityContext              struct {
				RunAsNonRoot   bool  `json:"runAsNonRoot"`
				RunAsUser      int64 `json:"runAsUser"`
				SeccompProfile struct {
					Type string `json:"type"`
				} `json:"seccompProfile"`
			} `json:"securityContext"`
			Containers []struct {
				Resources struct {
					Limits map[string]string `json:"limits"`
				} `json:"resources"`
				SecurityContext struct {
					AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation"`
					ReadOnlyRootFilesystem   *bool `json:"readOnlyRootFilesystem"`
					Capabilities             struct {
						Drop []string `json:"drop"`
					} `json:"capabilities"`
				} `json:"securityContext"`
			} `json:"containers"`
		} `json:"spec"`
	}
	if err := json.Unmarshal([]byte(out), &pod); err != nil {
		t.Fatal(err)
	}
	sc, c0 := pod.Spec.SecurityContext, pod.Spec.Containers[0]
	if !sc.RunAsNonRoot || sc.RunAsUser != 65000 || sc.SeccompProfile.Type != "RuntimeDefault" ||
		pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken ||
		c0.SecurityContext.AllowPrivilegeEscalation == nil || *c0.SecurityContext.AllowPrivilegeEscalation ||
		c0.SecurityContext.ReadOnlyRootFilesystem == nil || !*c0.SecurityContext.ReadOnlyRootFilesystem ||
		strings.Join(c0.SecurityContext.Capabilities.Drop, ",") != "ALL" ||
		c0.Resources.Limits["cpu"] != "500m" || c0.Resources.Limits["memory"] != "128Mi" ||
		pod.Metadata.Labels["team"] != "k" || pod.Metadata.Labels["darkshell.sandbox"] != "k1" {
		t.Fatalf("the Pod's spec lacks the confinement, limits or labels:\n%s", out)
	}
	// The same, seen from inside.
	got := e.mustBash("k1", `id -u; grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status | tr -s '\t ' ' '; `+
		`touch /usr/x 2>/dev/null && echo root-writable; touch /sandbox/x /tmp/x "$HOME/x" && echo scratch-ok; `+
		`ls /var/run/secrets/kubernetes.io 2>/dev/null || echo no-token; pwd`)
	for _, want := range []string{"65000\n", "Seccomp: 2", "NoNewPrivs: 1", "CapEff: 0000000000000000", "scratch-ok", "no-token", "/sandbox\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("inside the Pod: %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "root-writable") {
		t.Errorf("the root file system is writable: %q", got)
	}
	if out, _, _ := e.ds("sandbox", "list", "-l", "team=k"); !strings.Contains(out, "k1") || !strings.Contains(out, "Running") {
		t.Errorf("list -l team=k: %q", out)
	}

	// A Pod deleted behind darkshell's back: get says so.
	if out, err := k.kubectlOut("-n", r.Extra.Namespace, "delete", "pod", r.Extra.Pod, "--grace-period=0", "--wait=true"); err != nil {
		t.Fatal(err, out)
	}
	waitFor(t, 30*time.Second, "get to see the Pod gone", func() bool {
		var sb api.Sandbox
		js, _, _ := e.ds("-o", "json", "sandbox", "get", "k1")
		json.Unmarshal([]byte(js), &sb)
		return sb.Phase == "Failed" && strings.Contains(sb.Reason, "is gone")
	})
	if _, errOut, code := e.ds("sandbox", "delete", "k1"); code != 0 {
		t.Fatalf("delete of a sandbox whose Pod is gone: %s", errOut)
	}

	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--pids-limit", "10"}, "no per-Pod pids limit"},
		{[]string{"--driver-opt", "gateway=x"}, "not known to the kubernetes driver"},
		{[]string{"--driver-opt", "pull-policy=Sometimes"}, "want Always, IfNotPresent or Never"},
	} {
		if _, errOut, code := e.ds(append([]string{"sandbox", "create", "bad"}, kubeArgs(k, c.args...)...)...); code == 0 || !strings.Contains(errOut, c.msg) {
			t.Errorf("%v: exit %d %q, want %q", c.args, code, errOut, c.msg)
		}
	}
	_, errOut, code := e.ds("sandbox", "create", "noimg", "--driver", "kubernetes", "--image", "darkshell.test/missing:1",
		"--driver-opt", "kubeconfig="+k.kubeconfig, "--driver-opt", "pull-policy=Never")
	if code == 0 || !strings.Contains(errOut, "ErrImageNeverPull") {
		t.Fatalf("missing image: exit %d %q", code, errOut)
	}
	if out, _ := k.kubectlOut("get", "pods", "-A", "-l", "darkshell.sandbox=noimg", "-o", "name"); strings.TrimSpace(out) != "" {
		t.Fatalf("a failed create left %s", out)
	}
	if _, err := os.Stat(filepath.Join(e.home, "sandboxes", "noimg")); err == nil {
		t.Fatal("a failed create left a record")
	}
}
