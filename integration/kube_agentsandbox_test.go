package integration

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/bohica-labs/darkshell/controller/api"
)

// The agent-sandbox API path. agent-sandbox's controller is not served by
// the Go module proxy, so it cannot run here: the test installs a CRD for
// agents.x-k8s.io/v1alpha1 Sandbox (written for this test after agent-sandbox's
// API reference: spec.podTemplate, spec.replicas 0..1, a status subresource)
// and runs a STAND-IN reconciler (standinSandboxReconciler below) that does
// what the controller does for a Sandbox: a Pod named as the Sandbox from
// its podTemplate, owned by it (so the cluster's real garbage collector
// deletes it with the Sandbox), removed at replicas 0, and a Ready
// condition. Not exercised: the real controller, services, PVCs, shutdown
// times. SandboxTemplate, SandboxClaim and SandboxWarmPool: see
// kube_warmpool_test.go (a second stand-in).

const sandboxCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: sandboxes.agents.x-k8s.io
spec:
  group: agents.x-k8s.io
  names: {kind: Sandbox, listKind: SandboxList, plural: sandboxes, singular: sandbox}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [podTemplate]
            properties:
              podTemplate: {type: object, x-kubernetes-preserve-unknown-fields: true}
              replicas: {type: integer, minimum: 0, maximum: 1, default: 1}
              shutdownTime: {type: string, format: date-time}
              shutdownPolicy: {type: string, enum: [Delete, Retain]}
              service: {type: boolean}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
`

// standinSandboxReconciler is a STAND-IN for agent-sandbox's controller.
type standinSandboxReconciler struct {
	hc   *http.Client
	base string
	stop chan struct{}
	done chan struct{}
}

func startSandboxReconciler(t testing.TB, kubeconfig string) *standinSandboxReconciler {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &standinSandboxReconciler{hc: hc, base: cfg.Host, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			select {
			case <-r.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			r.pass()
		}
	}()
	t.Cleanup(func() { close(r.stop); <-r.done })
	return r
}

func (r *standinSandboxReconciler) call(method, path, ct string, in any, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, r.base+path, body)
	req.Header.Set("Content-Type", ct)
	resp, err := r.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		json.Unmarshal(b, out)
	}
	return resp.StatusCode, nil
}

func (r *standinSandboxReconciler) pass() {
	var l struct {
		Items []map[string]any `json:"items"`
	}
	if code, err := r.call("GET", "/apis/agents.x-k8s.io/v1alpha1/sandboxes", "", nil, &l); err != nil || code != 200 {
		return
	}
	for _, s := range l.Items {
		md := s["metadata"].(map[string]any)
		if md["deletionTimestamp"] != nil {
			continue
		}
		ns, name, uid := md["namespace"].(string), md["name"].(string), md["uid"].(string)
		spec := s["spec"].(map[string]any)
		replicas := 1.0
		if v, ok := spec["replicas"].(float64); ok {
			replicas = v
		}
		podPath := "/api/v1/namespaces/" + ns + "/pods/" + name
		var pod map[string]any
		code, _ := r.call("GET", podPath, "", nil, &pod)
		switch {
		case replicas == 1 && code == 404:
			tpl := spec["podTemplate"].(map[string]any)
			pmd, _ := tpl["metadata"].(map[string]any)
			if pmd == nil {
				pmd = map[string]any{}
			}
			pmd["name"], pmd["namespace"] = name, ns
			pmd["ownerReferences"] = []any{map[string]any{"apiVersion": "agents.x-k8s.io/v1alpha1", "kind": "Sandbox",
				"name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}}
			r.call("POST", "/api/v1/namespaces/"+ns+"/pods", "application/json", map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": pmd, "spec": tpl["spec"]}, nil)
		case replicas == 0 && code == 200:
			r.call("DELETE", podPath+"?gracePeriodSeconds=0", "", nil, nil)
		}
		ready, reason, actual := "False", "PodNotReady", 0
		if code == 200 {
			actual = 1
			if st, _ := pod["status"].(map[string]any); st != nil && st["phase"] == "Running" {
				ready, reason = "True", "PodRunning"
			}
		}
		if replicas == 0 {
			ready, reason = "False", "Suspended"
		}
		st, _ := s["status"].(map[string]any)
		if st != nil {
			if cs, _ := st["conditions"].([]any); len(cs) == 1 {
				c := cs[0].(map[string]any)
				if c["status"] == ready && c["reason"] == reason && st["replicas"] == float64(actual) {
					continue
				}
			}
		}
		s["status"] = map[string]any{"replicas": actual, "selector": "agents.x-k8s.io/sandbox=" + name,
			"conditions": []any{map[string]any{"type": "Ready", "status": ready, "reason": reason,
				"message": "stand-in reconciler", "lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}}}
		r.call("PUT", "/apis/agents.x-k8s.io/v1alpha1/namespaces/"+ns+"/sandboxes/"+name+"/status", "application/json", s, nil)
	}
}

// TestKubeAgentSandbox: --driver-opt api=agent-sandbox makes a Sandbox
// object (a clear error where the cluster lacks the API), stop/start map to
// replicas, delete removes the Sandbox and, through the garbage collector,
// its Pod.
func TestKubeAgentSandbox(t *testing.T) {
	e, k := newKubeEnv(t)
	args := kubeArgs(k, "--driver-opt", "api=agent-sandbox")
	if _, errOut, code := e.ds(append([]string{"sandbox", "create", "as0"}, args...)...); code == 0 || !strings.Contains(errOut, "does not serve agents.x-k8s.io/v1alpha1") {
		t.Fatalf("without the API: exit %d %q", code, errOut)
	}
	crd := filepath.Join(t.TempDir(), "crd.yaml")
	os.WriteFile(crd, []byte(sandboxCRD), 0o644)
	if out, err := k.kubectlOut("apply", "-f", crd); err != nil {
		t.Fatal(err, out)
	}
	t.Cleanup(func() { k.kubectlOut("delete", "-f", crd, "--wait=true") })
	if out, err := k.kubectlOut("wait", "--for=condition=Established", "crd/sandboxes.agents.x-k8s.io", "--timeout=60s"); err != nil {
		t.Fatal(err, out)
	}
	startSandboxReconciler(t, k.kubeconfig)

	if out, errOut, code := e.ds(append([]string{"sandbox", "create", "as1", "--label", "team=as"}, args...)...); code != 0 {
		t.Fatalf("create: %d %s %s", code, out, errOut)
	}
	r := kubeRec(t, e, "as1")
	out, err := k.kubectlOut("-n", r.Extra.Namespace, "get", "sandbox", r.Extra.Pod, "-o", "jsonpath={.spec.podTemplate.spec.securityContext.runAsUser} {.metadata.labels.team} {.status.conditions[0].status}")
	if err != nil || out != "65000 as True" {
		t.Fatalf("the Sandbox object: %v %q", err, out)
	}
	out, _ = k.kubectlOut("-n", r.Extra.Namespace, "get", "pod", r.Extra.Pod, "-o", "jsonpath={.metadata.ownerReferences[0].kind}")
	if out != "Sandbox" {
		t.Fatalf("the Pod is not the Sandbox's: %q", out)
	}
	if got := e.mustBash("as1", "echo hi > /sandbox/f; id -u; cat /sandbox/f"); got != "65000\nhi\n" {
		t.Fatalf("exec: %q", got)
	}
	phase := func() string {
		var sb api.Sandbox
		js, _, _ := e.ds("-o", "json", "sandbox", "get", "as1")
		json.Unmarshal([]byte(js), &sb)
		return sb.Phase
	}
	if p := phase(); p != "Running" {
		t.Fatalf("phase %q", p)
	}
	if _, errOut, code := e.ds("sandbox", "stop", "as1"); code != 0 {
		t.Fatalf("stop: %s", errOut)
	}
	if out, _ := k.kubectlOut("-n", r.Extra.Namespace, "get", "pod", r.Extra.Pod, "-o", "name"); strings.Contains(out, "pod/") {
		t.Fatalf("the Pod outlived stop: %q", out)
	}
	if p := phase(); p != "Stopped" {
		t.Fatalf("after stop: phase %q", p)
	}
	if _, errOut, code := e.ds("exec", "as1", "--", "true"); code != 125 || !strings.Contains(errOut, "Stopped") {
		t.Fatalf("exec when stopped: %d %q", code, errOut)
	}
	if _, errOut, code := e.ds("sandbox", "start", "as1"); code != 0 {
		t.Fatalf("start: %s", errOut)
	}
	if got := e.mustBash("as1", "echo back"); got != "back\n" || phase() != "Running" {
		t.Fatalf("after start: %q", got)
	}
	if _, errOut, code := e.ds("sandbox", "delete", "as1"); code != 0 {
		t.Fatalf("delete: %s", errOut)
	}
	for _, what := range []string{"sandbox", "pod"} {
		if out, _ := k.kubectlOut("-n", r.Extra.Namespace, "get", what, r.Extra.Pod, "-o", "name"); strings.Contains(out, "/"+r.Extra.Pod) {
			t.Errorf("the %s outlived delete: %q", what, out)
		}
	}
	// A bare-Pod sandbox cannot stop.
	if _, errOut, code := e.ds(append([]string{"sandbox", "create", "bare"}, kubeArgs(k)...)...); code != 0 {
		t.Fatal(errOut)
	}
	if _, errOut, code := e.ds("sandbox", "stop", "bare"); code == 0 || !strings.Contains(errOut, "bare Pod cannot be stopped") {
		t.Fatalf("stop of a bare Pod: %d %q", code, errOut)
	}
}
