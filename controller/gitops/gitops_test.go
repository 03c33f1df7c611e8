package gitops

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/bohica-labs/darkshell/controller/state"
)

const pol = "version: 1\nnetwork_policies:\n  w:\n    endpoints:\n      - { host: a.test, port: 80 }\n    binaries:\n      - { path: /usr/bin/curl }\n"

func commit(t *testing.T, dir string, r *git.Repository, files map[string]string) string {
	t.Helper()
	w, _ := r.Worktree()
	for p, c := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644)
		if _, err := w.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	h, err := w.Commit("c", &git.CommitOptions{Author: &object.Signature{Name: "t", Email: "t@x.invalid", When: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	r, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	good := commit(t, dir, r, map[string]string{
		"p/" + MappingFile: "version: 1\nsandboxes:\n  - policy: w.yaml\n    names: [a]\n  - policy: w.yaml\n    match: [\"ci-*\"]\n  - policy: w.yaml\n    selector: {team: infra}\n",
		"p/w.yaml":         pol,
	})
	// Uncommitted changes in the work tree are never read.
	os.WriteFile(filepath.Join(dir, "p", "w.yaml"), []byte("garbage: ["), 0o644)
	g, err := Open(dir, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if h, err := g.Head(""); err != nil || h != good {
		t.Fatalf("head %s %v", h, err)
	}
	d, err := g.Load(good, "p")
	if err != nil {
		t.Fatal(err)
	}
	sbs := []*state.Sandbox{{Name: "a"}, {Name: "ci-7"}, {Name: "x", Labels: map[string]string{"team": "infra"}}, {Name: "y"}}
	tg := d.Targets(sbs)
	if len(tg) != 3 || tg[0].Sandbox != "a" || tg[1].Sandbox != "ci-7" || tg[2].Sandbox != "x" || tg[0].Content != pol {
		t.Fatalf("targets %+v", tg)
	}
	bad := []struct{ name, mapping, policy, want string }{
		{"unknown key in mapping", "version: 1\nsurprise: 1\nsandboxes: []\n", pol, "surprise"},
		{"bad version", "version: 2\nsandboxes: []\n", pol, "version must be 1"},
		{"missing policy file", "version: 1\nsandboxes:\n  - policy: nope.yaml\n    names: [a]\n", pol, "nope.yaml: not in commit"},
		{"escaping path", "version: 1\nsandboxes:\n  - policy: ../w.yaml\n    names: [a]\n", pol, "must be a file name"},
		{"selects nothing", "version: 1\nsandboxes:\n  - policy: w.yaml\n", pol, "selects no sandbox"},
		{"invalid policy", "version: 1\nsandboxes:\n  - policy: w.yaml\n    names: [a]\n", pol + "bogus: 1\n", "bogus"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			c := commit(t, dir, r, map[string]string{"p/" + MappingFile: tc.mapping, "p/w.yaml": tc.policy})
			if _, err := g.Load(c, "p"); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	tg := []Target{{Sandbox: "new", Content: "A"}, {Sandbox: "same", Content: "A"}, {Sandbox: "changed", Content: "B"}, {Sandbox: "drift", Content: "A"}}
	cur := map[string]string{"same": "A", "changed": "A", "drift": "HAND"}
	applied := map[string]string{"same": Hash("A"), "changed": Hash("A"), "drift": Hash("A")}
	want := map[string]string{"new": "apply", "same": "none", "changed": "apply", "drift": "correct"}
	for _, a := range Plan(tg, cur, applied) {
		if want[a.Sandbox] != a.Do {
			t.Errorf("%s: %s, want %s", a.Sandbox, a.Do, want[a.Sandbox])
		}
	}
}
