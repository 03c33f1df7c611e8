package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bohica-labs/darkshell/controller/api"
)

// fleetDoc is the -o json document of a fleet operation.
type fleetDoc struct {
	Operation string `json:"operation"`
	Selector  string `json:"selector"`
	OK        int    `json:"ok"`
	Failed    int    `json:"failed"`
	Results   []struct {
		Sandbox string               `json:"sandbox"`
		Driver  string               `json:"driver"`
		OK      bool                 `json:"ok"`
		Status  *int                 `json:"status"`
		Stdout  string               `json:"stdout"`
		Error   string               `json:"error"`
		Sync    *api.SyncResult      `json:"sync"`
		Policy  *api.PolicySetResult `json:"policy"`
	} `json:"results"`
}

// TestFleet: labels at create, list --selector, and exec, sync and policy
// set over a selector, in parallel, on local sandboxes and an ssh one.
func TestFleet(t *testing.T) {
	e := newEnv(t)
	requireLocal(t)
	t.Cleanup(func() {
		for _, n := range []string{"a1", "a2", "b1", "s1"} {
			e.c.Delete(context.Background(), n)
		}
	})
	e.createLocal("a1", "--label", "team=a", "--label", "tier=web")
	e.createLocal("a2", "--label", "team=a")
	e.createLocal("b1", "--label", "team=b")
	if out, errOut, code := e.ds("sandbox", "create", "s1", "--driver", "ssh", "--label", "team=a",
		"--ssh", fmt.Sprintf("%s@127.0.0.1:%d", e.sshd.User, e.sshd.Port), "--identity", e.sshd.ClientKey); code != 0 {
		t.Fatalf("create s1: %d %s %s", code, out, errOut)
	}
	if _, errOut, code := e.ds("sandbox", "create", "bad", "--label", "Team A=x"); code != 2 || !strings.Contains(errOut, "label key") {
		t.Fatalf("bad label: exit %d %q", code, errOut)
	}

	names := func(args ...string) []string {
		t.Helper()
		out, errOut, code := e.ds(append([]string{"-o", "json", "sandbox", "list"}, args...)...)
		if code != 0 {
			t.Fatalf("list %v: %d %s", args, code, errOut)
		}
		var l []api.Sandbox
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatal(err)
		}
		var n []string
		for _, sb := range l {
			n = append(n, sb.Name)
		}
		return n
	}
	for _, tt := range []struct {
		sel  string
		want []string
	}{
		{"team=a", []string{"a1", "a2", "s1"}},
		{"team!=a", []string{"b1"}},
		{"team=a,tier=web", []string{"a1"}},
		{"tier", []string{"a1"}},
		{"!tier,team=a", []string{"a2", "s1"}},
		{"team=zzz", nil},
	} {
		if got := names("--selector", tt.sel); !slices.Equal(got, tt.want) {
			t.Errorf("list --selector %s: %v, want %v", tt.sel, got, tt.want)
		}
	}
	if out, _, _ := e.ds("sandbox", "list", "-l", "team=b"); !strings.Contains(out, "LABELS") || !strings.Contains(out, "team=b") || strings.Contains(out, "a1") {
		t.Errorf("list table: %q", out)
	}

	// exec: one row per sandbox, across drivers, run at the same time (each
	// command's start precedes every other's end), a failure on one only.
	e.mustBash("a2", "touch /sandbox/fail")
	out, errOut, code := e.ds("-o", "json", "exec", "--selector", "team=a", "--sh", "--",
		`s=$(date +%s%N); sleep 1; echo "$s $(date +%s%N) $(id -u)"; [ ! -e /sandbox/fail ] || exit 3`)
	if code != 1 {
		t.Fatalf("exec over team=a: exit %d, want 1 (one sandbox failed): %s %s", code, out, errOut)
	}
	var doc fleetDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if doc.Operation != "exec" || doc.Selector != "team=a" || doc.OK != 2 || doc.Failed != 1 || len(doc.Results) != 3 {
		t.Fatalf("exec report: %s", out)
	}
	var starts, ends []int64
	for i, want := range []struct {
		name, driver string
		status       int
	}{{"a1", "local", 0}, {"a2", "local", 3}, {"s1", "ssh", 0}} {
		r := doc.Results[i]
		if r.Sandbox != want.name || r.Driver != want.driver || r.Status == nil || *r.Status != want.status || r.OK != (want.status == 0) {
			t.Fatalf("result %d: %+v, want %+v", i, r, want)
		}
		f := strings.Fields(r.Stdout)
		if len(f) != 3 {
			t.Fatalf("%s: stdout %q", r.Sandbox, r.Stdout)
		}
		s, _ := strconv.ParseInt(f[0], 10, 64)
		en, _ := strconv.ParseInt(f[1], 10, 64)
		starts, ends = append(starts, s), append(ends, en)
	}
	if slices.Max(starts) >= slices.Min(ends) {
		t.Fatalf("the commands did not overlap (starts %v, ends %v): not run in parallel", starts, ends)
	}
	// --parallel 1 runs them one after the other.
	out, _, _ = e.ds("-o", "json", "exec", "-l", "team=a,!tier", "--parallel", "1", "--sh", "--", `s=$(date +%s%N); sleep 0.3; echo "$s $(date +%s%N)"`)
	json.Unmarshal([]byte(out), &doc)
	if len(doc.Results) != 2 {
		t.Fatalf("--parallel 1: %s", out)
	}
	f0, f1 := strings.Fields(doc.Results[0].Stdout), strings.Fields(doc.Results[1].Stdout)
	if len(f0) != 2 || len(f1) != 2 || !(f0[1] < f1[0] || f1[1] < f0[0]) {
		t.Fatalf("--parallel 1 overlapped: %q %q", doc.Results[0].Stdout, doc.Results[1].Stdout)
	}
	// The text table.
	out, errOut, code = e.ds("exec", "-l", "team=a", "--", "echo", "hello")
	if code != 0 || !strings.Contains(out, "NAME") || !strings.Contains(out, "RESULT") || strings.Count(out, "exit 0") != 3 || strings.Count(out, "hello") != 3 {
		t.Fatalf("exec table: %d %q %q", code, out, errOut)
	}
	// stdin goes to every sandbox.
	out, _, code = e.dsIn([]byte("from-stdin\n"), "-o", "json", "exec", "-l", "team=a", "-i", "--", "cat")
	json.Unmarshal([]byte(out), &doc)
	if code != 0 || len(doc.Results) != 3 || doc.Results[2].Stdout != "from-stdin\n" {
		t.Fatalf("exec -i over a selector: %d %s", code, out)
	}
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"exec", "-l", "team=zzz", "--", "true"}, 1, "no sandbox has labels matching"},
		{[]string{"exec", "-l", "a=b=c", "--", "true"}, 2, "bad term"},
		{[]string{"exec", "-l", "team=a", "-t", "--", "true"}, 2, "-t cannot be used"},
	} {
		if _, errOut, code := e.ds(c.args...); code != c.code || !strings.Contains(errOut, c.msg) {
			t.Errorf("%v: exit %d %q, want %d %q", c.args, code, errOut, c.code, c.msg)
		}
	}

	// sync: the same tree into each sandbox's default place.
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "fleet.txt"), []byte("synced to all\n"), 0o644)
	out, errOut, code = e.ds("-o", "json", "sync", "-l", "team=a", src)
	if err := json.Unmarshal([]byte(out), &doc); code != 0 || err != nil || doc.OK != 3 {
		t.Fatalf("sync over team=a: %d %v %s %s", code, err, out, errOut)
	}
	for _, r := range doc.Results {
		if r.Sync == nil || r.Sync.Added < 1 {
			t.Fatalf("sync %s: %+v", r.Sandbox, r)
		}
		if got := e.mustBash(r.Sandbox, "cat "+r.Sync.Remote+"/fleet.txt"); got != "synced to all\n" {
			t.Fatalf("%s: %q", r.Sandbox, got)
		}
	}

	// policy set: applied where there is an egress proxy (local), a clear
	// per-sandbox error where not (ssh).
	pol := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(pol, []byte("version: 1\nnetwork_policies:\n  web:\n    endpoints: [{host: example.test, port: 443}]\n"), 0o600)
	out, _, code = e.ds("-o", "json", "policy", "set", "-l", "team=a", "--policy", pol)
	json.Unmarshal([]byte(out), &doc)
	if code != 1 || doc.OK != 2 || doc.Failed != 1 || doc.Results[0].Policy == nil || doc.Results[0].Policy.NetworkRules != 1 ||
		!strings.Contains(doc.Results[2].Error, "no egress proxy") {
		t.Fatalf("policy set over team=a: exit %d %s", code, out)
	}
	out, _, code = e.ds("policy", "set", "-l", "team=b", "--policy", pol)
	if code != 0 || !strings.Contains(out, "b1") || !strings.Contains(out, "1 network rules") {
		t.Fatalf("policy set over team=b: %d %q", code, out)
	}
}
