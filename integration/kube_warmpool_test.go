package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/driver"
	kd "github.com/bohica-labs/darkshell/controller/driver/kubedriver"
)

// agent-sandbox's extensions (extensions.agents.x-k8s.io/v1alpha1:
// SandboxTemplate, SandboxWarmPool, SandboxClaim). Their controller is not
// served by the Go module proxy either, so, as for Sandbox, the test
// installs CRDs written after agent-sandbox's API reference and runs a
// STAND-IN reconciler (standinWarmPoolReconciler) that does what that
// controller does for the fields DarkShell uses: a SandboxWarmPool keeps
// spec.replicas unclaimed Sandboxes of its template (owned by the pool,
// labelled agents.x-k8s.io/warm-pool) and reports status.readyReplicas; a
// SandboxClaim is bound to a Ready member of the pool named by
// spec.warmpool (the member is relabelled and re-owned by the claim, so it
// leaves the pool, which makes a new one) or, with none ready, to a new
// Sandbox of the template; status.sandbox.name names it. Not exercised:
// the real controller, claim env injection, TTLs, network policies, PVCs.
const extensionCRDs = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: sandboxtemplates.extensions.agents.x-k8s.io
spec:
  group: extensions.agents.x-k8s.io
  names: {kind: SandboxTemplate, listKind: SandboxTemplateList, plural: sandboxtemplates, singular: sandboxtemplate}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [podTemplate]
            properties:
              podTemplate: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: sandboxwarmpools.extensions.agents.x-k8s.io
spec:
  group: extensions.agents.x-k8s.io
  names: {kind: SandboxWarmPool, listKind: SandboxWarmPoolList, plural: sandboxwarmpools, singular: sandboxwarmpool}
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
            required: [replicas, sandboxTemplateRef]
            properties:
              replicas: {type: integer, minimum: 0}
              sandboxTemplateRef: {type: object, required: [name], properties: {name: {type: string}}}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: sandboxclaims.extensions.agents.x-k8s.io
spec:
  group: extensions.agents.x-k8s.io
  names: {kind: SandboxClaim, listKind: SandboxClaimList, plural: sandboxclaims, singular: sandboxclaim}
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
            required: [sandboxTemplateRef]
            properties:
              sandboxTemplateRef: {type: object, required: [name], properties: {name: {type: string}}}
              warmpool: {type: string}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
`

const (
	extAPI        = "/apis/extensions.agents.x-k8s.io/v1alpha1"
	sbxAPI        = "/apis/agents.x-k8s.io/v1alpha1"
	labelWarmPool = "agents.x-k8s.io/warm-pool"
	labelClaim    = "agents.x-k8s.io/claim"
)

// standinWarmPoolReconciler is a STAND-IN for agent-sandbox's extensions controller.
type standinWarmPoolReconciler struct{ standinSandboxReconciler }

func startWarmPoolReconciler(t testing.TB, kubeconfig string) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &standinWarmPoolReconciler{standinSandboxReconciler{hc: hc, base: cfg.Host, stop: make(chan struct{}), done: make(chan struct{})}}
	go func() {
		defer close(r.done)
		for {
			select {
			case <-r.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			r.passPools()
			r.passClaims()
		}
	}()
	t.Cleanup(func() { close(r.stop); <-r.done })
}

type kobj = map[string]any

func meta(o kobj) kobj { m, _ := o["metadata"].(kobj); return m }
func str(o kobj, k string) string {
	s, _ := o[k].(string)
	return s
}

func ownerRef(kind, name, uid string) []any {
	return []any{kobj{"apiVersion": "extensions.agents.x-k8s.io/v1alpha1", "kind": kind, "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}}
}

func sandboxReady(s kobj) bool {
	st, _ := s["status"].(kobj)
	cs, _ := st["conditions"].([]any)
	for _, c := range cs {
		if c, _ := c.(kobj); c["type"] == "Ready" && c["status"] == "True" {
			return true
		}
	}
	return false
}

// newSandbox makes a Sandbox of template tpl named name with labels, owned by owner.
func (r *standinWarmPoolReconciler) newSandbox(ns, name, tpl string, labels map[string]any, owner []any) bool {
	var t kobj
	if code, _ := r.call("GET", extAPI+"/namespaces/"+ns+"/sandboxtemplates/"+tpl, "", nil, &t); code != 200 {
		return false
	}
	spec, _ := t["spec"].(kobj)
	pt, _ := spec["podTemplate"].(kobj)
	code, _ := r.call("POST", sbxAPI+"/namespaces/"+ns+"/sandboxes", "application/json", kobj{
		"apiVersion": "agents.x-k8s.io/v1alpha1", "kind": "Sandbox",
		"metadata": kobj{"name": name, "namespace": ns, "labels": labels, "ownerReferences": owner},
		"spec":     kobj{"podTemplate": pt, "replicas": 1},
	}, nil)
	return code == 201
}

func (r *standinWarmPoolReconciler) members(ns, pool string) []kobj {
	var l struct {
		Items []kobj `json:"items"`
	}
	r.call("GET", sbxAPI+"/namespaces/"+ns+"/sandboxes?labelSelector="+url.QueryEscape(labelWarmPool+"="+pool), "", nil, &l)
	var out []kobj
	for _, s := range l.Items {
		if meta(s)["deletionTimestamp"] == nil {
			out = append(out, s)
		}
	}
	return out
}

func (r *standinWarmPoolReconciler) passPools() {
	var l struct {
		Items []kobj `json:"items"`
	}
	if code, _ := r.call("GET", extAPI+"/sandboxwarmpools", "", nil, &l); code != 200 {
		return
	}
	for _, p := range l.Items {
		md := meta(p)
		if md["deletionTimestamp"] != nil {
			continue
		}
		ns, name, uid := str(md, "namespace"), str(md, "name"), str(md, "uid")
		spec, _ := p["spec"].(kobj)
		want, _ := spec["replicas"].(float64)
		tref, _ := spec["sandboxTemplateRef"].(kobj)
		ms := r.members(ns, name)
		for i := len(ms); i < int(want); i++ {
			var b [3]byte
			rand.Read(b[:])
			r.newSandbox(ns, name+"-"+hex.EncodeToString(b[:]), str(tref, "name"), kobj{labelWarmPool: name}, ownerRef("SandboxWarmPool", name, uid))
		}
		for i := int(want); i < len(ms); i++ {
			r.call("DELETE", sbxAPI+"/namespaces/"+ns+"/sandboxes/"+str(meta(ms[i]), "name"), "", nil, nil)
		}
		ready := 0
		for _, m := range ms {
			if sandboxReady(m) {
				ready++
			}
		}
		st, _ := p["status"].(kobj)
		if st != nil && st["readyReplicas"] == float64(ready) && st["replicas"] == float64(len(ms)) {
			continue
		}
		p["status"] = kobj{"readyReplicas": ready, "replicas": len(ms)}
		r.call("PUT", extAPI+"/namespaces/"+ns+"/sandboxwarmpools/"+name+"/status", "application/json", p, nil)
	}
}

func (r *standinWarmPoolReconciler) passClaims() {
	var l struct {
		Items []kobj `json:"items"`
	}
	if code, _ := r.call("GET", extAPI+"/sandboxclaims", "", nil, &l); code != 200 {
		return
	}
	for _, c := range l.Items {
		md := meta(c)
		if md["deletionTimestamp"] != nil {
			continue
		}
		if st, _ := c["status"].(kobj); st != nil {
			if s, _ := st["sandbox"].(kobj); s != nil && str(s, "name") != "" {
				continue // bound
			}
		}
		ns, name, uid := str(md, "namespace"), str(md, "name"), str(md, "uid")
		spec, _ := c["spec"].(kobj)
		tref, _ := spec["sandboxTemplateRef"].(kobj)
		bound := ""
		for _, m := range r.members(ns, str(spec, "warmpool")) {
			if !sandboxReady(m) {
				continue
			}
			// Take it out of the pool: the claim owns it now.
			mname := str(meta(m), "name")
			patch := kobj{"metadata": kobj{"labels": kobj{labelWarmPool: nil, labelClaim: name}, "ownerReferences": ownerRef("SandboxClaim", name, uid),
				"resourceVersion": str(meta(m), "resourceVersion")}}
			if code, _ := r.call("PATCH", sbxAPI+"/namespaces/"+ns+"/sandboxes/"+mname, "application/merge-patch+json", patch, nil); code == 200 {
				bound = mname
				break
			}
		}
		if bound == "" && r.newSandbox(ns, name, str(tref, "name"), kobj{labelClaim: name}, ownerRef("SandboxClaim", name, uid)) {
			bound = name
		}
		if bound == "" {
			continue
		}
		c["status"] = kobj{"sandbox": kobj{"name": bound}, "conditions": []any{kobj{"type": "Ready", "status": "True", "reason": "Bound",
			"message": "stand-in reconciler", "lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}}}
		r.call("PUT", extAPI+"/namespaces/"+ns+"/sandboxclaims/"+name+"/status", "application/json", c, nil)
	}
}

// TestKubeAgentSandboxPool: a pool with --driver-opt api=agent-sandbox is
// kept by the cluster (a SandboxTemplate and a SandboxWarmPool; the
// daemon makes no members); a create claims through a SandboxClaim, which
// the stand-in binds to a Sandbox that was warm before the create; the
// sandbox is relabelled and personalised (env); concurrent claims get
// different Sandboxes; deleting the sandbox deletes its Sandbox, Pod and
// claim; deleting the pool deletes the pool's objects and members.
func TestKubeAgentSandboxPool(t *testing.T) {
	e, k := newKubeEnv(t)
	ctx := context.Background()
	crd := filepath.Join(t.TempDir(), "crd.yaml")
	os.WriteFile(crd, []byte(sandboxCRD+"---\n"+extensionCRDs), 0o644)
	opts := driver.CreateOptions{Image: kubeImage, DriverOpts: map[string]string{"kubeconfig": k.kubeconfig, "pull-policy": "Never", "api": "agent-sandbox"}}
	spec := &api.PoolSpec{Name: "asp", Driver: "kubernetes", Size: 2, Options: opts}
	if _, err := e.c.PoolSet(ctx, spec); err == nil || !strings.Contains(err.Error(), "extensions.agents.x-k8s.io") {
		t.Fatalf("pool set without agent-sandbox's extensions: %v, want an error naming the API", err)
	}
	if out, err := k.kubectlOut("apply", "-f", crd); err != nil {
		t.Fatal(err, out)
	}
	t.Cleanup(func() { k.kubectlOut("delete", "-f", crd, "--wait=true") })
	for _, n := range []string{"sandboxes.agents.x-k8s.io", "sandboxtemplates.extensions.agents.x-k8s.io", "sandboxwarmpools.extensions.agents.x-k8s.io", "sandboxclaims.extensions.agents.x-k8s.io"} {
		if out, err := k.kubectlOut("wait", "--for=condition=Established", "crd/"+n, "--timeout=60s"); err != nil {
			t.Fatal(err, out)
		}
	}
	startSandboxReconciler(t, k.kubeconfig)
	startWarmPoolReconciler(t, k.kubeconfig)

	t.Cleanup(func() { e.c.PoolDelete(context.Background(), "asp") })
	if _, err := e.c.PoolSet(ctx, spec); err != nil {
		t.Fatal(err)
	}
	obj := "ds-pool-asp-" + kd.HomeHash(e.home)
	var st *api.PoolStatus
	waitFor(t, 3*time.Minute, "the cluster's warm pool to hold 2 ready Sandboxes", func() bool {
		var err error
		st, err = e.c.PoolGet(ctx, "asp")
		return err == nil && st.Cluster && st.Ready == 2
	})
	if len(st.Members) != 0 {
		t.Errorf("a cluster-kept pool lists daemon members: %+v", st.Members)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.home, "pools", "asp", "sandboxes")); len(ents) != 0 {
		t.Errorf("the daemon made members of a cluster-kept pool: %d", len(ents))
	}
	warm := func() []string {
		out, _ := k.kubectlOut("-n", "default", "get", "sandboxes", "-l", labelWarmPool+"="+obj, "-o", "jsonpath={.items[*].metadata.name}")
		return strings.Fields(out)
	}
	before := warm()
	if len(before) != 2 {
		t.Fatalf("warm Sandboxes of %s: %v", obj, before)
	}
	if out, _ := k.kubectlOut("-n", "default", "get", "sandboxtemplate", obj, "-o", "jsonpath={.spec.podTemplate.spec.containers[0].env}"); strings.Contains(out, "MODE") {
		t.Errorf("the SandboxTemplate holds per-sandbox env: %s", out)
	}

	create := func(name string) string {
		v, err := e.c.Create(ctx, &api.CreateRequest{Name: name, Driver: "kubernetes", Env: []string{"MODE=as-" + name},
			Labels: map[string]string{"darkshell.blueprint": "asp", "team": "as"}, CreateOptions: opts})
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		if v.Pool != "asp" {
			t.Fatalf("create %s did not claim from the cluster's pool (pool %q)", name, v.Pool)
		}
		return kubeRec(t, e, name).Extra.Pod
	}
	s1 := create("asc1")
	if !slices.Contains(before, s1) {
		t.Fatalf("asc1 got Sandbox %s, none of the warm ones %v", s1, before)
	}
	claim := "ds-asc1-" + kd.HomeHash(e.home)
	if out, _ := k.kubectlOut("-n", "default", "get", "sandboxclaim", claim, "-o", "jsonpath={.status.sandbox.name}"); out != s1 {
		t.Errorf("SandboxClaim %s is bound to %q, want %s", claim, out, s1)
	}
	if out, _ := k.kubectlOut("-n", "default", "get", "pod", s1, "-o", "jsonpath={.metadata.labels.darkshell\\.sandbox} {.metadata.labels.team}"); out != "asc1 as" {
		t.Errorf("the claimed Pod's labels: %q", out)
	}
	if got := e.mustBash("asc1", `printf %s "$MODE"`); got != "as-asc1" {
		t.Errorf("env in asc1: %q", got)
	}

	// The pool refills; two concurrent claims get two Sandboxes.
	waitFor(t, 3*time.Minute, "the warm pool to refill", func() bool { return len(warm()) == 2 })
	var wg sync.WaitGroup
	got := make([]string, 2)
	for i, n := range []string{"asc2", "asc3"} {
		wg.Add(1)
		go func() { defer wg.Done(); got[i] = create(n) }()
	}
	wg.Wait()
	if got[0] == got[1] || got[0] == s1 || got[1] == s1 {
		t.Fatalf("concurrent claims: %v (asc1 %s)", got, s1)
	}

	// Deleting a claimed sandbox deletes its Sandbox, Pod and claim.
	if err := e.c.Delete(ctx, "asc1"); err != nil {
		t.Fatal(err)
	}
	for _, what := range []string{"sandbox/" + s1, "pod/" + s1, "sandboxclaim/" + claim} {
		if out, _ := k.kubectlOut("-n", "default", "get", what, "--ignore-not-found", "-o", "name"); strings.TrimSpace(out) != "" {
			t.Errorf("%s outlived the sandbox's delete", what)
		}
	}
	// Deleting the pool deletes its objects and its unclaimed Sandboxes.
	if err := e.c.PoolDelete(ctx, "asp"); err != nil {
		t.Fatal(err)
	}
	for _, what := range []string{"sandboxwarmpool/" + obj, "sandboxtemplate/" + obj} {
		if out, _ := k.kubectlOut("-n", "default", "get", what, "--ignore-not-found", "-o", "name"); strings.TrimSpace(out) != "" {
			t.Errorf("%s outlived pool delete", what)
		}
	}
	waitFor(t, time.Minute, "the pool's warm Sandboxes to go", func() bool { return len(warm()) == 0 })
}
