package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// gitRepo is a local repository the test commits policies into (go-git).
type gitRepo struct {
	t   *testing.T
	dir string
	r   *git.Repository
}

func newGitRepo(t *testing.T) *gitRepo {
	dir := t.TempDir()
	r, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	return &gitRepo{t: t, dir: dir, r: r}
}

// commit writes files (path -> content) under policies/ and commits them.
func (g *gitRepo) commit(msg string, files map[string]string) string {
	g.t.Helper()
	w, err := g.r.Worktree()
	if err != nil {
		g.t.Fatal(err)
	}
	for p, c := range files {
		full := filepath.Join(g.dir, "policies", p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			g.t.Fatal(err)
		}
		if _, err := w.Add(filepath.Join("policies", p)); err != nil {
			g.t.Fatal(err)
		}
	}
	h, err := w.Commit(msg, &git.CommitOptions{Author: &object.Signature{Name: "t", Email: "t@example.invalid", When: time.Now()}})
	if err != nil {
		g.t.Fatal(err)
	}
	return h.String()
}

const gitopsMapping = `version: 1
sandboxes:
  - policy: web.yaml
    names: [g1]
`

func webPolicy(port int) string {
	return fmt.Sprintf(`version: 1
network_policies:
  web:
    endpoints:
      - { host: allowed.test, port: %d }
    binaries:
      - { path: /usr/bin/curl }
`, port)
}

type passOut struct {
	Commit    string   `json:"commit"`
	Status    string   `json:"status"`
	Error     string   `json:"error"`
	LastGood  string   `json:"last_good"`
	Applied   []string `json:"applied"`
	Corrected []string `json:"corrected"`
	Would     []string `json:"would_apply"`
}

// TestLocalPolicyGitOps: a local git repository with a series of commits
// (valid, another valid change, invalid, a revert of the invalid one, a
// revert of the change, drift by hand) drives a running sandbox's network
// policy exactly as the commits say, checked with `policy test` and real
// connections through the egress proxy; every apply is an event naming the
// commit.
func TestLocalPolicyGitOps(t *testing.T) {
	e := newLocalEnv(t)
	newEgressNet(t)
	e.createLocal("g1")
	repo := newGitRepo(t)
	sync := func(wantCode int, extra ...string) passOut {
		t.Helper()
		out, errOut, code := e.ds(append([]string{"-o", "json", "policy", "sync", "--repo", repo.dir, "--path", "policies", "--once"}, extra...)...)
		var p passOut
		if err := json.Unmarshal([]byte(out), &p); err != nil || code != wantCode {
			t.Fatalf("policy sync: exit %d (want %d), %v\nstdout: %s\nstderr: %s", code, wantCode, err, out, errOut)
		}
		return p
	}
	reach := func(port int) bool {
		out, _, _ := e.bash("g1", fmt.Sprintf("curl -sS --max-time 5 http://allowed.test:%d/x", port))
		return strings.Contains(out, "saw GET /x")
	}
	decide := func(port int) bool {
		out, _, code := e.ds("policy", "test", "g1", "--host", "allowed.test", "--port", fmt.Sprint(port), "--binary", "/usr/bin/curl")
		return code == 0 && strings.Contains(out, "ALLOW")
	}
	expect := func(when string, p8080, p9090 bool) {
		t.Helper()
		if decide(8080) != p8080 || decide(9090) != p9090 {
			t.Fatalf("%s: policy test 8080=%v 9090=%v, want %v %v", when, decide(8080), decide(9090), p8080, p9090)
		}
		if reach(8080) != p8080 || reach(9090) != p9090 {
			t.Fatalf("%s: connections 8080=%v 9090=%v, want %v %v", when, reach(8080), reach(9090), p8080, p9090)
		}
	}
	expect("before any sync", false, false)

	c1 := repo.commit("allow 8080", map[string]string{"darkshell-policies.yaml": gitopsMapping, "web.yaml": webPolicy(8080)})
	if p := sync(0, "--dry-run"); p.Status != "would-apply" || len(p.Would) != 1 {
		t.Fatalf("dry run: %+v", p)
	}
	expect("after a dry run", false, false)
	if p := sync(0); p.Commit != c1 || p.Status != "applied" || len(p.Applied) != 1 || p.Applied[0] != "g1" {
		t.Fatalf("c1: %+v", p)
	}
	expect("c1", true, false)
	if p := sync(0); p.Status != "unchanged" {
		t.Fatalf("c1 again: %+v", p)
	}

	c2 := repo.commit("allow 9090 instead", map[string]string{"web.yaml": webPolicy(9090)})
	if p := sync(0); p.Commit != c2 || p.Status != "applied" {
		t.Fatalf("c2: %+v", p)
	}
	expect("c2", false, true)

	c3 := repo.commit("broken", map[string]string{"web.yaml": webPolicy(8080) + "surprise: 1\n"})
	p := sync(1)
	if p.Commit != c3 || p.Status != "invalid" || !strings.Contains(p.Error, "web.yaml") || p.LastGood != c2 {
		t.Fatalf("c3 (invalid): %+v", p)
	}
	expect("c3 refused, c2 stays", false, true)

	c4 := repo.commit("Revert \"broken\"", map[string]string{"web.yaml": webPolicy(9090)})
	if p := sync(0); p.Commit != c4 || p.Status != "unchanged" || p.LastGood != c4 {
		t.Fatalf("c4 (revert of the invalid commit): %+v", p)
	}
	expect("c4", false, true)

	c5 := repo.commit("Revert \"allow 9090 instead\"", map[string]string{"web.yaml": webPolicy(8080)})
	if p := sync(0); p.Commit != c5 || p.Status != "applied" {
		t.Fatalf("c5 (revert of c2): %+v", p)
	}
	expect("c5", true, false)

	// Drift: changed by hand; the next pass reports and corrects it.
	hand := filepath.Join(t.TempDir(), "hand.yaml")
	os.WriteFile(hand, []byte(webPolicy(9090)), 0o600)
	e.mustDS("policy", "set", "g1", "--policy", hand)
	expect("changed by hand", false, true)
	if p := sync(0); p.Status != "applied" || len(p.Corrected) != 1 || p.Corrected[0] != "g1" {
		t.Fatalf("drift: %+v", p)
	}
	expect("drift corrected", true, false)

	// Every apply is an event naming the commit.
	out := e.mustDS("sandbox", "logs", "g1")
	for _, c := range []string{c1, c2, c5} {
		if !strings.Contains(out, "@"+c[:12]+":policies/web.yaml") {
			t.Errorf("no policy-applied event naming commit %s in the sandbox's log:\n%s", c[:12], out)
		}
	}
	if strings.Contains(out, "@"+c3[:12]) {
		t.Errorf("the invalid commit %s was applied:\n%s", c3[:12], out)
	}
}
