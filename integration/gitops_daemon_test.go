package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
)

// TestLocalPolicyGitOpsDaemon: `policy sync --daemon` registers a job that
// outlives the CLI; commits made over time (valid, another valid change,
// invalid, a revert of the invalid one, a revert of the change) drive a
// running sandbox's network policy exactly as they say (`policy test` and
// real connections through the egress proxy); a change by hand is put back
// (a policy-drift event); an invalid commit is refused (a
// policy-sync-invalid event naming it); the job starts again with a
// restarted daemon; `policy sync stop` ends it and its helper.
func TestLocalPolicyGitOpsDaemon(t *testing.T) {
	e := newLocalEnv(t)
	newEgressNet(t)
	const name = "gd"
	e.createLocal(name)
	repo := newGitRepo(t)
	reach := func(port int) bool {
		out, _, _ := e.bash(name, fmt.Sprintf("curl -sS --max-time 5 http://allowed.test:%d/x", port))
		return strings.Contains(out, "saw GET /x")
	}
	decide := func(port int) bool {
		out, _, code := e.ds("policy", "test", name, "--host", "allowed.test", "--port", fmt.Sprint(port), "--binary", "/usr/bin/curl")
		return code == 0 && strings.Contains(out, "ALLOW")
	}
	jobs := func() []api.PolicySyncJob {
		t.Helper()
		out, errOut, code := e.ds("-o", "json", "policy", "sync", "list")
		var l []api.PolicySyncJob
		if err := json.Unmarshal([]byte(out), &l); err != nil || code != 0 {
			t.Fatalf("policy sync list: exit %d %v\n%s\n%s", code, err, out, errOut)
		}
		return l
	}
	// until waits for the job's last pass to be of commit c with status st,
	// then for the policy to allow exactly what it should.
	until := func(when, c, st string, p8080, p9090 bool) {
		t.Helper()
		var last *api.PolicySyncPass
		waitFor(t, 30*time.Second, when+": a pass of commit "+c[:12]+" with status "+st, func() bool {
			l := jobs()
			if len(l) != 1 || l[0].Last == nil {
				return false
			}
			last = l[0].Last
			return last.Commit == c && last.Status == st
		})
		waitFor(t, 10*time.Second, when+": the policy in force", func() bool { return decide(8080) == p8080 && decide(9090) == p9090 })
		if reach(8080) != p8080 || reach(9090) != p9090 {
			t.Fatalf("%s: connections 8080=%v 9090=%v, want %v %v", when, reach(8080), reach(9090), p8080, p9090)
		}
	}
	if _, _, code := e.ds("policy", "sync", "--repo", repo.dir, "--daemon"); code != 2 {
		t.Fatalf("--daemon without --interval: exit %d, want 2", code)
	}

	c1 := repo.commit("allow 8080", map[string]string{"darkshell-policies.yaml": strings.ReplaceAll(gitopsMapping, "g1", name), "web.yaml": webPolicy(8080)})
	out := e.mustDS("-o", "json", "policy", "sync", "--repo", repo.dir, "--path", "policies", "--interval", "1s", "--daemon")
	var job api.PolicySyncJob
	if err := json.Unmarshal([]byte(out), &job); err != nil || job.ID == "" || job.State != "running" || job.PID <= 0 {
		t.Fatalf("policy sync --daemon: %v %s", err, out)
	}
	if _, _, code := e.ds("policy", "sync", "--repo", repo.dir, "--path", "policies", "--interval", "5s", "--daemon"); code == 0 {
		t.Fatal("a second job on the same repository and path was accepted")
	}
	// The CLI has exited: the job runs on in the daemon.
	until("c1", c1, "applied", true, false)

	c2 := repo.commit("allow 9090 instead", map[string]string{"web.yaml": webPolicy(9090)})
	until("c2", c2, "applied", false, true)

	c3 := repo.commit("broken", map[string]string{"web.yaml": webPolicy(8080) + "surprise: 1\n"})
	until("c3 refused, c2 stays", c3, "invalid", false, true)
	if l := jobs(); l[0].Last.LastGood != c2 || !strings.Contains(l[0].Last.Error, "web.yaml") {
		t.Fatalf("c3: %+v", l[0].Last)
	}

	c4 := repo.commit("Revert \"broken\"", map[string]string{"web.yaml": webPolicy(9090)})
	until("c4", c4, "unchanged", false, true)

	// Drift: changed by hand; a pass puts it back.
	hand := filepath.Join(t.TempDir(), "hand.yaml")
	os.WriteFile(hand, []byte(webPolicy(8080)), 0o600)
	e.mustDS("policy", "set", name, "--policy", hand)
	waitFor(t, 30*time.Second, "the drift to be corrected", func() bool { return !decide(8080) && decide(9090) })
	if reach(8080) || !reach(9090) {
		t.Fatal("after the drift correction: 9090 only should be reachable")
	}

	// The daemon restarts: the job starts again with it (new helper).
	e.mustDS("daemon", "stop")
	waitFor(t, 10*time.Second, "the job's helper to stop with the daemon", func() bool { return len(pgrep("darkshell-gitops", repo.dir)) == 0 })
	waitFor(t, 20*time.Second, "the job to run again in a new daemon", func() bool {
		l := jobs()
		return len(l) == 1 && l[0].ID == job.ID && l[0].State == "running" && l[0].Last != nil
	})
	c5 := repo.commit("Revert \"allow 9090 instead\"", map[string]string{"web.yaml": webPolicy(8080)})
	until("c5 (revert of c2), after the daemon restart", c5, "applied", true, false)

	logs := e.mustDS("sandbox", "logs", name)
	for _, c := range []string{c1, c2, c5} {
		if !strings.Contains(logs, "@"+c[:12]+":policies/web.yaml") {
			t.Errorf("no policy-applied event naming commit %s:\n%s", c[:12], logs)
		}
	}
	if !strings.Contains(logs, "commit "+c3[:12]) || !strings.Contains(logs, "is invalid") {
		t.Errorf("no event naming the invalid commit %s:\n%s", c3[:12], logs)
	}
	if !strings.Contains(logs, "changed by hand") {
		t.Errorf("no drift event:\n%s", logs)
	}
	if strings.Contains(logs, "@"+c3[:12]+":") {
		t.Errorf("the invalid commit %s was applied:\n%s", c3[:12], logs)
	}

	out = e.mustDS("policy", "sync", "stop", job.ID)
	if !strings.Contains(out, job.ID+" stopped") {
		t.Fatalf("stop: %s", out)
	}
	if l := jobs(); len(l) != 0 {
		t.Fatalf("jobs after stop: %+v", l)
	}
	waitFor(t, 10*time.Second, "the helper to exit", func() bool { return len(pgrep("darkshell-gitops", repo.dir)) == 0 })
	if _, _, code := e.ds("policy", "sync", "stop", job.ID); code == 0 {
		t.Fatal("stopping a stopped job succeeded")
	}
}
