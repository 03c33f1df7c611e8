package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// poolStatus is the part of `pool get -o json` the tests read.
type poolStatus struct {
	Name     string `json:"name"`
	Driver   string `json:"driver"`
	Size     int    `json:"size"`
	Ready    int    `json:"ready"`
	Starting int    `json:"starting"`
	Claimed  int    `json:"claimed"`
	Replaced int    `json:"replaced"`
	Members  []struct {
		Name  string `json:"name"`
		Phase string `json:"phase"`
	} `json:"members"`
	LastError string `json:"last_error"`
}

func (e *env) poolGet(name string) poolStatus {
	e.t.Helper()
	var st poolStatus
	if err := json.Unmarshal([]byte(e.mustDS("-o", "json", "pool", "get", name)), &st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

// waitPoolReady waits until the pool has n ready members.
func (e *env) waitPoolReady(name string, n int) poolStatus {
	e.t.Helper()
	var st poolStatus
	waitFor(e.t, 90*time.Second, fmt.Sprintf("pool %s to hold %d ready members", name, n), func() bool {
		st = e.poolGet(name)
		return st.Ready == n && st.Starting == 0
	})
	return st
}

// localMemberPID is a local pool member's init pid, read from its record.
func localMemberPID(t testing.TB, home, pool, member string) int {
	t.Helper()
	var rec struct {
		Extra struct {
			PID int `json:"pid"`
		} `json:"extra"`
	}
	b, err := os.ReadFile(filepath.Join(home, "pools", pool, "sandboxes", member, "sandbox.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.Extra.PID <= 0 {
		t.Fatalf("member %s: no pid in its record (%v): %s", member, err, b)
	}
	return rec.Extra.PID
}

func (e *env) sandboxPID(name string) int {
	e.t.Helper()
	var v struct {
		Pool  string `json:"pool"`
		Extra struct {
			PID int `json:"pid"`
		} `json:"extra"`
	}
	if err := json.Unmarshal([]byte(e.mustDS("-o", "json", "sandbox", "get", name)), &v); err != nil {
		e.t.Fatal(err)
	}
	return v.Extra.PID
}

// pidsInNamespaceOf lists the host pids in the pid namespace of pid (the
// sandbox's processes, init among them).
func pidsInNamespaceOf(pid int) []int {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		return nil
	}
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		var p int
		if _, err := fmt.Sscanf(d.Name(), "%d", &p); err != nil {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", p)); err == nil && l == ns {
			out = append(out, p)
		}
	}
	return out
}

// TestPoolLocal: a warm pool of a local-driver blueprint. Members are
// generic (no credential, env, provider key or upload of a user's in any
// of their processes or files); `sandbox create --from` claims one (the
// sandbox's init existed before the create) and personalises it (name,
// hostname, labels, env, provider placeholder, uploads, policy); two
// concurrent creates get two different members; the pool refills; a member
// that died is replaced and never handed out; the pool survives a daemon
// restart; `pool delete` leaves no process behind.
func TestPoolLocal(t *testing.T) {
	e := newLocalEnv(t)
	dir := t.TempDir()
	sec := secret(t)
	e.mustDS("provider", "create", "--name", "demo", "--type", "generic", "--credential", "DARKSHELL_POOL_SECRET="+sec)
	os.MkdirAll(filepath.Join(dir, "project"), 0o755)
	os.WriteFile(filepath.Join(dir, "project", "notes.txt"), []byte("per-user upload"), 0o644)
	policyFile, _ := filepath.Abs("../policies/default.yaml")
	bp := filepath.Join(dir, "bp.yaml")
	os.WriteFile(bp, []byte(fmt.Sprintf(`version: 1
name: pooled
driver: local
policy:
  file: %s
resources: {pids: 256}
env: {MODE: personal}
labels: {team: blue}
providers: [demo]
uploads:
  - from: project
    to: /sandbox/project
`, policyFile)), 0o644)
	t.Cleanup(func() { e.ds("pool", "delete", "pooled") }) // before the sandboxes and the daemon go

	if out, errOut, code := e.ds("pool", "set", bp, "--size", "2", "--driver", "podman"); code != 2 || !strings.Contains(errOut, "driver") {
		t.Fatalf("pool set with another driver than the blueprint's: exit %d, want 2 naming the driver\n%s%s", code, out, errOut)
	}
	e.mustDS("pool", "set", bp, "--size", "2", "--wait")
	st := e.waitPoolReady("pooled", 2)
	if st.Driver != "local" || st.Size != 2 {
		t.Fatalf("pool: %+v", st)
	}

	// Generic before the claim: nothing of a user's in any member.
	memberPIDs := map[string]int{}
	for _, m := range st.Members {
		pid := localMemberPID(t, e.home, "pooled", m.Name)
		memberPIDs[m.Name] = pid
		procs := pidsInNamespaceOf(pid)
		if len(procs) == 0 {
			t.Fatalf("member %s: init %d has no processes", m.Name, pid)
		}
		for _, p := range procs {
			for _, f := range []string{"environ", "cmdline"} {
				b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/%s", p, f))
				for _, bad := range []string{sec, "DARKSHELL_POOL_SECRET", "MODE=personal"} {
					if bytes.Contains(b, []byte(bad)) {
						t.Errorf("member %s: process %d's %s holds %q before any claim", m.Name, p, f, bad)
					}
				}
			}
		}
		filepath.WalkDir(filepath.Join(e.home, "pools", "pooled", "sandboxes", m.Name), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Type()&os.ModeSocket != 0 {
				return nil
			}
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(sec)) || bytes.Contains(b, []byte("per-user upload")) {
				t.Errorf("member %s: %s holds a user's data before any claim", m.Name, p)
			}
			return nil
		})
	}
	alive := func(pid int) bool { return syscall.Kill(pid, 0) == nil }

	// A claim: the sandbox is a member that ran before the create.
	var rep struct {
		Phases []struct {
			Phase, Detail string
		} `json:"phases"`
	}
	out := e.mustDS("-o", "json", "sandbox", "create", "--from", bp, "--name", "one")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Phases) == 0 || !strings.Contains(rep.Phases[0].Detail, "claimed from warm pool pooled") {
		t.Fatalf("create --from did not claim from the pool: %v\n%s", err, out)
	}
	pid := e.sandboxPID("one")
	if !slices.Contains(mapValues(memberPIDs), pid) {
		t.Fatalf("sandbox one's init %d is none of the members that existed before the create (%v)", pid, memberPIDs)
	}
	var get struct {
		Pool string `json:"pool"`
	}
	json.Unmarshal([]byte(e.mustDS("-o", "json", "sandbox", "get", "one")), &get)
	if get.Pool != "pooled" {
		t.Errorf("sandbox get one: pool %q, want pooled", get.Pool)
	}
	// Personalised: name, hostname, env, provider placeholder, upload, labels, policy.
	for cmd, want := range map[string]string{
		"hostname":                                      "one",
		"printf %s \"$HOSTNAME\"":                       "one",
		"printf %s \"$MODE\"":                           "personal",
		"cat /sandbox/project/notes.txt":                "per-user upload",
		"test -n \"$HTTPS_PROXY\" && echo proxy":        "proxy",
		"touch /usr/pool-escape 2>/dev/null || echo ro": "ro",
	} {
		if got := strings.TrimSpace(e.mustDS("exec", "one", "--", "sh", "-c", cmd)); got != want {
			t.Errorf("in the claimed sandbox, %s: %q, want %q", cmd, got, want)
		}
	}
	ph := strings.TrimSpace(e.mustDS("exec", "one", "--", "sh", "-c", `printf %s "$DARKSHELL_POOL_SECRET"`))
	if ph == "" || strings.Contains(ph, sec) {
		t.Errorf("the provider's key inside: %q, want a placeholder, never the secret", ph)
	}
	if out := e.mustDS("sandbox", "list", "--selector", "team=blue"); !strings.Contains(out, "one") {
		t.Errorf("the claimed sandbox lacks the blueprint's label:\n%s", out)
	}

	// Refill, then two concurrent claims get two different members.
	st = e.waitPoolReady("pooled", 2)
	before := map[int]bool{}
	for _, m := range st.Members {
		before[localMemberPID(t, e.home, "pooled", m.Name)] = true
	}
	var wg sync.WaitGroup
	for _, n := range []string{"two", "three"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.mustDS("sandbox", "create", "--from", bp, "--name", n)
		}()
	}
	wg.Wait()
	p2, p3 := e.sandboxPID("two"), e.sandboxPID("three")
	if p2 == p3 || !before[p2] || !before[p3] {
		t.Fatalf("concurrent claims: two=%d three=%d, want two different members of %v", p2, p3, before)
	}
	if got := strings.TrimSpace(e.mustDS("exec", "three", "--", "hostname")); got != "three" {
		t.Errorf("hostname in three: %q", got)
	}

	// A member that died is replaced, never handed out.
	st = e.waitPoolReady("pooled", 2)
	dead := localMemberPID(t, e.home, "pooled", st.Members[0].Name)
	syscall.Kill(dead, syscall.SIGKILL)
	waitFor(t, 10*time.Second, "the killed member's init to end", func() bool { return !alive(dead) })
	e.mustDS("sandbox", "create", "--from", bp, "--name", "four")
	if p4 := e.sandboxPID("four"); p4 == dead || !alive(p4) {
		t.Fatalf("sandbox four got init %d (the killed member was %d)", p4, dead)
	}
	if got := strings.TrimSpace(e.mustDS("exec", "four", "--", "sh", "-c", `printf %s "$MODE"`)); got != "personal" {
		t.Errorf("four: MODE=%q", got)
	}
	waitFor(t, 90*time.Second, "the pool to replace the dead member and refill", func() bool {
		st = e.poolGet("pooled")
		return st.Replaced >= 1 && st.Ready == 2
	})

	// The pool survives a daemon restart: the same members stay ready.
	names := func(st poolStatus) []string {
		var n []string
		for _, m := range st.Members {
			n = append(n, m.Name)
		}
		return n
	}
	keep := names(st)
	var keepPIDs []int
	for _, n := range keep {
		keepPIDs = append(keepPIDs, localMemberPID(t, e.home, "pooled", n))
	}
	var ds struct {
		PID int `json:"pid"`
	}
	json.Unmarshal([]byte(e.mustDS("-o", "json", "daemon", "status")), &ds)
	e.mustDS("daemon", "stop")
	waitFor(t, 10*time.Second, "the daemon to stop", func() bool { return ds.PID > 0 && !alive(ds.PID) })
	st = e.waitPoolReady("pooled", 2)
	if got := names(st); !slices.Equal(got, keep) {
		t.Errorf("after a daemon restart the pool holds %v, want the same members %v", got, keep)
	}
	e.mustDS("sandbox", "create", "--from", bp, "--name", "five")
	if p5 := e.sandboxPID("five"); !slices.Contains(keepPIDs, p5) {
		t.Errorf("after a daemon restart, five's init %d is none of the members kept (%v)", p5, keepPIDs)
	}
	if got := strings.TrimSpace(e.mustDS("exec", "five", "--", "sh", "-c", `printf %s "$MODE"`)); got != "personal" {
		t.Errorf("five (claimed after a daemon restart): MODE=%q", got)
	}

	// Deleting the pool ends its members; claimed sandboxes stay.
	st = e.waitPoolReady("pooled", 2)
	var left []int
	for _, m := range st.Members {
		left = append(left, localMemberPID(t, e.home, "pooled", m.Name))
	}
	e.mustDS("pool", "delete", "pooled")
	for _, p := range left {
		waitFor(t, 10*time.Second, fmt.Sprintf("member init %d to end", p), func() bool { return !alive(p) })
	}
	if _, err := os.Stat(filepath.Join(e.home, "pools", "pooled")); err == nil {
		t.Errorf("pool delete left %s", filepath.Join(e.home, "pools", "pooled"))
	}
	if got := strings.TrimSpace(e.mustDS("exec", "one", "--", "hostname")); got != "one" {
		t.Errorf("a claimed sandbox after its pool went: hostname %q", got)
	}
	// A create with no pool boots as before.
	out = e.mustDS("-o", "json", "sandbox", "create", "--from", bp, "--name", "six")
	if strings.Contains(out, "claimed") {
		t.Errorf("a create after the pool was deleted claimed:\n%s", out)
	}
}

func mapValues(m map[string]int) []int {
	var out []int
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
