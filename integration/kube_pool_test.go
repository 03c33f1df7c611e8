package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// kubeMemberPods maps a kubernetes pool's members to their Pods, from their records.
func kubeMemberPods(t testing.TB, home, pool string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, _ := os.ReadDir(filepath.Join(home, "pools", pool, "sandboxes"))
	for _, d := range ents {
		b, err := os.ReadFile(filepath.Join(home, "pools", pool, "sandboxes", d.Name(), "sandbox.json"))
		if err != nil {
			continue
		}
		var r kubeRecord
		if json.Unmarshal(b, &r) == nil && r.Extra.Pod != "" {
			out[d.Name()] = r.Extra.Pod
		}
	}
	return out
}

// TestKubePool: a warm pool of a kubernetes blueprint on the test cluster.
// Members are running Pods with nothing of a user's (no env); a create
// from the blueprint claims one (its Pod existed before the create, same
// uid) and relabels it for the new sandbox, whose execs see the
// blueprint's env; two concurrent creates get two Pods; a member whose Pod
// is deleted behind the pool's back is replaced, never handed out; `pool
// delete` deletes the unclaimed Pods.
func TestKubePool(t *testing.T) {
	e, k := newKubeEnv(t)
	t.Setenv("KUBECONFIG", k.kubeconfig) // blueprints name no kubeconfig: the daemon's env does
	dir := t.TempDir()
	bp := filepath.Join(dir, "kpool.yaml")
	os.WriteFile(bp, []byte(fmt.Sprintf(`version: 1
name: kpool
driver: kubernetes
image: %s
env: {MODE: kube-personal}
labels: {team: kp}
`, kubeImage)), 0o644)
	t.Cleanup(func() { e.ds("pool", "delete", "kpool") })
	e.mustDS("pool", "set", bp, "--size", "2", "--wait", "--timeout", "4m")
	st := e.waitPoolReady("kpool", 2)
	pods := kubeMemberPods(t, e.home, "kpool")
	if len(pods) != 2 {
		t.Fatalf("pool members' Pods: %v (status %+v)", pods, st)
	}
	podJSON := func(name string) (labels map[string]string, env []string, uid string) {
		t.Helper()
		out, err := k.kubectlOut("-n", "default", "get", "pod", name, "-o", "json")
		if err != nil {
			t.Fatal(err, out)
		}
		var p struct {
			Metadata struct {
				UID    string            `json:"uid"`
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
			Spec struct {
				Containers []struct {
					Env []struct{ Name, Value string } `json:"env"`
				} `json:"containers"`
			} `json:"spec"`
		}
		json.Unmarshal([]byte(out), &p)
		for _, c := range p.Spec.Containers {
			for _, v := range c.Env {
				env = append(env, v.Name+"="+v.Value)
			}
		}
		return p.Metadata.Labels, env, p.Metadata.UID
	}
	uids := map[string]string{}
	for m, pod := range pods {
		labels, env, uid := podJSON(pod)
		uids[pod] = uid
		if labels["darkshell.pool"] != "kpool" || labels["team"] != "" {
			t.Errorf("member %s: Pod labels %v, want the pool's label and no user's", m, labels)
		}
		if slices.ContainsFunc(env, func(s string) bool { return strings.HasPrefix(s, "MODE=") }) {
			t.Errorf("member %s: Pod env %v holds the blueprint's per-sandbox env before a claim", m, env)
		}
	}

	out := e.mustDS("-o", "json", "sandbox", "create", "--from", bp, "--name", "ka")
	if !strings.Contains(out, "claimed from warm pool kpool") {
		t.Fatalf("create --from did not claim:\n%s", out)
	}
	r := kubeRec(t, e, "ka")
	if uids[r.Extra.Pod] == "" || uids[r.Extra.Pod] != r.Extra.PodUID {
		t.Fatalf("sandbox ka runs in Pod %s (uid %s), none of the members that existed before the create (%v)", r.Extra.Pod, r.Extra.PodUID, uids)
	}
	labels, _, _ := podJSON(r.Extra.Pod)
	if labels["darkshell.sandbox"] != "ka" || labels["team"] != "kp" || labels["darkshell.pool"] != "" {
		t.Errorf("claimed Pod's labels: %v", labels)
	}
	if got := strings.TrimSpace(e.mustDS("exec", "ka", "--", "sh", "-c", `printf %s "$MODE/$HOSTNAME"`)); got != "kube-personal/ka" {
		t.Errorf("env in the claimed sandbox: %q, want kube-personal/ka", got)
	}
	var v struct {
		Phase string `json:"phase"`
		Pool  string `json:"pool"`
	}
	json.Unmarshal([]byte(e.mustDS("-o", "json", "sandbox", "get", "ka")), &v)
	if v.Phase != "Running" || v.Pool != "kpool" {
		t.Errorf("sandbox get ka: phase %q pool %q", v.Phase, v.Pool)
	}

	// Refill; two concurrent claims get two different Pods.
	e.waitPoolReady("kpool", 2)
	before := kubeMemberPods(t, e.home, "kpool")
	var wg sync.WaitGroup
	for _, n := range []string{"kb", "kc"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.mustDS("sandbox", "create", "--from", bp, "--name", n)
		}()
	}
	wg.Wait()
	pb, pc := kubeRec(t, e, "kb").Extra.Pod, kubeRec(t, e, "kc").Extra.Pod
	if pb == pc || !slices.Contains(mapStrings(before), pb) || !slices.Contains(mapStrings(before), pc) {
		t.Fatalf("concurrent claims: kb in %s, kc in %s; members were %v", pb, pc, before)
	}

	// A member whose Pod went is replaced, never handed out.
	e.waitPoolReady("kpool", 2)
	before = kubeMemberPods(t, e.home, "kpool")
	gone := mapStrings(before)[0]
	if out, err := k.kubectlOut("-n", "default", "delete", "pod", gone, "--grace-period=0", "--force", "--wait=true"); err != nil {
		t.Fatal(err, out)
	}
	e.mustDS("sandbox", "create", "--from", bp, "--name", "kd")
	if p := kubeRec(t, e, "kd").Extra.Pod; p == gone {
		t.Fatalf("sandbox kd was handed the deleted member Pod %s", gone)
	}
	if _, errOut, code := e.ds("exec", "kd", "--", "true"); code != 0 {
		t.Fatalf("exec in kd: %s", errOut)
	}
	waitFor(t, 3*time.Minute, "the pool to replace the member and refill", func() bool {
		st = e.poolGet("kpool")
		return st.Replaced >= 1 && st.Ready == 2
	})

	// Deleting the pool deletes its unclaimed Pods; claimed ones stay.
	left := mapStrings(kubeMemberPods(t, e.home, "kpool"))
	e.mustDS("pool", "delete", "kpool")
	for _, p := range left {
		if out, _ := k.kubectlOut("-n", "default", "get", "pod", p, "--ignore-not-found", "-o", "name"); strings.TrimSpace(out) != "" {
			t.Errorf("pool delete left Pod %s", p)
		}
	}
	if _, errOut, code := e.ds("exec", "ka", "--", "true"); code != 0 {
		t.Errorf("a claimed sandbox after its pool went: %s", errOut)
	}
}

func mapStrings(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}
