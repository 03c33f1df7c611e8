package integration

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/snapshot"
	"github.com/bohica-labs/darkshell/controller/snapshot/snapshottest"
)

// snap runs `sandbox snapshot NAME ARGS... -o json`.
func (e *env) snap(name string, args ...string) *api.SnapshotResult {
	e.t.Helper()
	out, errOut, code := e.ds(append([]string{"-o", "json", "sandbox", "snapshot", name}, args...)...)
	if code != 0 {
		e.t.Fatalf("snapshot %s: exit %d\nstdout: %s\nstderr: %s", name, code, out, errOut)
	}
	var r api.SnapshotResult
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Snapshot == nil {
		e.t.Fatalf("snapshot %s: %v\n%s", name, err, out)
	}
	return &r
}

// restore runs `sandbox restore NAME S ARGS... -o json`.
func (e *env) restore(name, s string, args ...string) *api.RestoreResult {
	e.t.Helper()
	out, errOut, code := e.ds(append([]string{"-o", "json", "sandbox", "restore", name, s}, args...)...)
	if code != 0 {
		e.t.Fatalf("restore %s %s: exit %d\nstdout: %s\nstderr: %s", name, s, code, out, errOut)
	}
	var r api.RestoreResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		e.t.Fatalf("restore: %v\n%s", err, out)
	}
	return &r
}

// pushTree makes the sandbox's workspace a copy of dir (sync --delete).
func (e *env) pushTree(name, dir, remote string) {
	e.t.Helper()
	if out, errOut, code := e.ds("sync", name, dir+":"+remote, "--delete", "--no-git-ignore"); code != 0 {
		e.t.Fatalf("sync: exit %d %s %s", code, out, errOut)
	}
}

// withoutRoot drops the root entry (the workspace root's own mode and
// mtime belong to the driver: a bind mount point) and symlink mtimes
// (the sync stream, the capture path, does not carry them).
func withoutRoot(t snapshottest.Tree) snapshottest.Tree {
	delete(t, ".")
	return snapshottest.WithoutLinkTimes(t)
}

// TestLocalSnapshotRestore: random trees with random edits, pushed into a
// local sandbox, snapshotted through sandboxd's sync with the sandbox's
// processes frozen; restore in place (stop, staged swap, start) and --to a
// new sandbox give byte-identical trees (content, modes, symlinks, empty
// dirs, mtimes) the sandbox can use; a one-file change adds little to the
// store; verify finds a damaged chunk.
func TestLocalSnapshotRestore(t *testing.T) {
	e := newLocalEnv(t)
	const name = "snap"
	e.createLocal(name, "--pids-limit", "200")
	ws := filepath.Join(e.home, "sandboxes", name, "workspace")
	rng := rand.New(rand.NewPCG(42, 1))
	src := t.TempDir()
	snapshottest.GenTree(t, rng, src, 250)
	e.pushTree(name, src, "/sandbox")
	want1 := withoutRoot(snapshottest.Describe(t, ws))
	r1 := e.snap(name, "--name", "one", "--label", "phase=before")
	if !r1.Snapshot.Frozen || r1.Snapshot.Files == 0 || r1.Snapshot.Labels["phase"] != "before" {
		t.Fatalf("snapshot one: %+v", r1.Snapshot)
	}

	snapshottest.EditTree(t, rng, src, 40)
	e.pushTree(name, src, "/sandbox")
	want2 := withoutRoot(snapshottest.Describe(t, ws))
	r2 := e.snap(name, "--name", "two")

	// One small file changed: the store grows by about that file.
	e.mustBash(name, "echo one-line-change >> /sandbox/"+firstFile(t, want2))
	r3 := e.snap(name, "--name", "three")
	t.Logf("added to the store: first %d, after edits %d, after a one-line change %d bytes", r1.Snapshot.AddedBytes, r2.Snapshot.AddedBytes, r3.Snapshot.AddedBytes)
	if r3.Snapshot.AddedBytes > 256<<10 {
		t.Errorf("a one-line change added %d bytes to the store", r3.Snapshot.AddedBytes)
	}

	// In place: a running process is stopped, the tree swapped, the sandbox started.
	e.mustBash(name, "sleep 1000 </dev/null >/dev/null 2>&1 &")
	res := e.restore(name, "one")
	if res.Method != "swap" || !res.Restarted {
		t.Fatalf("restore: %+v", res)
	}
	snapshottest.SameTree(t, want1, withoutRoot(snapshottest.Describe(t, ws)))
	if out := e.mustBash(name, "touch /sandbox/after-restore && stat -c %u /sandbox/after-restore && pgrep -c sleep || true"); !strings.HasPrefix(out, "65000\n0") {
		t.Fatalf("after restore (owner of a new file, sleeps running): %q", out)
	}
	if fi, err := os.Stat(filepath.Join(ws, firstFile(t, want1))); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 65000 {
		t.Fatalf("restored files must belong to the sandbox's uid: %v %v", fi, err)
	}

	// --to: a new sandbox made like the first, holding snapshot two.
	if res = e.restore(name, "two", "--to", "snap-copy"); res.Sandbox != "snap-copy" || res.Snapshot.Name != "two" {
		t.Fatalf("restore --to: %+v", res)
	}
	snapshottest.SameTree(t, want2, withoutRoot(snapshottest.Describe(t, filepath.Join(e.home, "sandboxes", "snap-copy", "workspace"))))
	if sb := e.getJSON("snap-copy"); sb.Phase != "Running" {
		t.Fatalf("snap-copy: phase %s", sb.Phase)
	}

	// list, verify, damage, verify again, delete.
	out, _, code := e.ds("-o", "json", "sandbox", "snapshot", "list", name)
	var l []*snapshot.Snapshot
	if code != 0 || json.Unmarshal([]byte(out), &l) != nil || len(l) != 3 || l[0].Name != "one" {
		t.Fatalf("list: exit %d %s", code, out)
	}
	if out, errOut, code := e.ds("sandbox", "snapshot", "verify"); code != 0 || !strings.Contains(out, "0 problems") {
		t.Fatalf("verify: exit %d %s %s", code, out, errOut)
	}
	chunks, _ := filepath.Glob(filepath.Join(e.home, "snapshots", "store", "chunks", "*", "*"))
	victim := chunks[len(chunks)/2]
	orig, _ := os.ReadFile(victim)
	os.WriteFile(victim, []byte("damaged"), 0o600)
	out, _, code = e.ds("sandbox", "snapshot", "verify")
	if code != 1 || !strings.Contains(out, filepath.Base(victim)) {
		t.Fatalf("verify of a damaged store: exit %d, want 1 naming %s:\n%s", code, filepath.Base(victim), out)
	}
	os.WriteFile(victim, orig, 0o600)
	if out, errOut, code := e.ds("-o", "json", "sandbox", "snapshot", "delete", "two", "--sandbox", name); code != 0 {
		t.Fatalf("delete: %d %s %s", code, out, errOut)
	}
	if _, _, code := e.ds("sandbox", "restore", name, "two"); code != 1 {
		t.Fatalf("restore of a deleted snapshot: exit %d, want 1", code)
	}
	// Retention: keep the newest one.
	out, _, code = e.ds("-o", "json", "sandbox", "snapshot", "prune", name, "--keep", "1")
	var pr api.PruneResult
	if code != 0 || json.Unmarshal([]byte(out), &pr) != nil || len(pr.Deleted) != 1 || pr.GC == nil || pr.GC.Removed == 0 {
		t.Fatalf("prune: exit %d %s", code, out)
	}
	if out, errOut, code := e.ds("sandbox", "snapshot", "verify"); code != 0 {
		t.Fatalf("verify after prune: exit %d %s %s", code, out, errOut)
	}
}

// firstFile names a regular file of a tree (the first in path order).
func firstFile(t *testing.T, tr snapshottest.Tree) string {
	t.Helper()
	f := snapshottest.Files(tr)
	if len(f) == 0 {
		t.Fatal("no file in the tree")
	}
	return f[0]
}

// daemonPID is the pid of this installation's daemon (started if need be).
func (e *env) daemonPID() int {
	e.t.Helper()
	out, errOut, code := e.ds("-o", "json", "daemon", "status")
	var st api.DaemonStatus
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.PID <= 0 {
		e.t.Fatalf("daemon status: exit %d %s %s", code, out, errOut)
	}
	return st.PID
}

// dsCmd is the darkshell CLI in this installation, not started.
func (e *env) dsCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(binDir, "darkshell"), args...)
	cmd.Env = append(os.Environ(), "DARKSHELL_HOME="+e.home)
	return cmd
}

// TestLocalSnapshotFreezes: while a snapshot reads the workspace, every
// process of the sandbox but sandboxd sits in a frozen freezer cgroup;
// afterwards they run on and the cgroup is gone.
func TestLocalSnapshotFreezes(t *testing.T) {
	e := newLocalEnv(t)
	const name = "frz"
	e.createLocal(name)
	// Enough data that the capture takes a while.
	e.mustBash(name, "mkdir -p /sandbox/d && for i in $(seq 200); do head -c 200000 /dev/urandom > /sandbox/d/f$i; done")
	// The writer appends: rewriting the file in place (O_TRUNC) leaves
	// it empty while ext4 waits on the old page's writeback, which is
	// most of the time, so two reads could both see "".
	e.mustBash(name, "(i=0; while :; do i=$((i+1)); echo $i >> /sandbox/tick; done) </dev/null >/dev/null 2>&1 &")
	fz := "/sys/fs/cgroup/freezer/darkshell-snap-" + name
	if _, err := os.Stat("/sys/fs/cgroup/freezer"); err != nil {
		fz = "" // v2: found below through the init's cgroup
	}
	var mu sync.Mutex
	var seen []string
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if fz != "" {
				st, err := os.ReadFile(filepath.Join(fz, "freezer.state"))
				procs, _ := os.ReadFile(filepath.Join(fz, "cgroup.procs"))
				if err == nil {
					mu.Lock()
					seen = append(seen, strings.TrimSpace(string(st))+fmt.Sprintf(" %d", len(strings.Fields(string(procs)))))
					mu.Unlock()
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	r := e.snap(name)
	close(stop)
	<-done
	if !r.Snapshot.Frozen {
		t.Fatal("the snapshot does not say it froze the sandbox")
	}
	if fz != "" {
		frozen := false
		for _, s := range seen {
			if strings.HasPrefix(s, "FROZEN ") && s != "FROZEN 0" {
				frozen = true
			}
		}
		if !frozen {
			t.Fatalf("never saw the sandbox's processes frozen during the snapshot: %v", seen)
		}
		if _, err := os.Stat(fz); err == nil {
			t.Fatalf("freezer cgroup %s left behind", fz)
		}
	}
	a := e.mustBash(name, "stat -c %s /sandbox/tick")
	time.Sleep(200 * time.Millisecond)
	if b := e.mustBash(name, "stat -c %s /sandbox/tick"); a == b {
		t.Fatalf("the writer did not run on after the snapshot (tick file stays %s bytes)", strings.TrimSpace(a))
	}
}

// TestLocalRestoreKilled: the daemon is killed (SIGKILL) at random
// moments of an in-place restore; after `sandbox start` the workspace is
// exactly the old tree or the new one.
func TestLocalRestoreKilled(t *testing.T) {
	e := newLocalEnv(t)
	const name = "kill"
	e.createLocal(name)
	ws := filepath.Join(e.home, "sandboxes", name, "workspace")
	rng := rand.New(rand.NewPCG(7, 7))
	src := t.TempDir()
	snapshottest.GenTree(t, rng, src, 400)
	e.pushTree(name, src, "/sandbox")
	wantA := withoutRoot(snapshottest.Describe(t, ws))
	e.snap(name, "--name", "a")
	snapshottest.EditTree(t, rng, src, 150)
	e.pushTree(name, src, "/sandbox")
	wantB := withoutRoot(snapshottest.Describe(t, ws))
	e.snap(name, "--name", "b")
	// How long an uninterrupted restore takes: the kills land across it.
	t0 := time.Now()
	e.restore(name, "a")
	e.restore(name, "b")
	full := time.Since(t0) / 2
	t.Logf("an uninterrupted restore takes %v", full)
	cur, other := "b", "a"
	for i := 0; i < 8; i++ {
		pid := e.daemonPID()
		cmd := e.dsCmd("sandbox", "restore", name, other)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.Int64N(int64(full) * 5 / 4)))
		syscall.Kill(pid, syscall.SIGKILL)
		t.Logf("%s round %d: killed daemon %d", time.Now().UTC().Format("15:04:05.000"), i, pid)
		cmd.Wait()
		waitFor(t, 5*time.Second, "daemon gone", func() bool { return !pidAlive(pid) })
		// The next command starts a daemon (two racing to start may
		// reset one connection: ask again).
		waitFor(t, 10*time.Second, "a daemon answering", func() bool {
			_, _, code := e.ds("sandbox", "get", name)
			return code == 0
		})
		if sb := e.getJSON(name); sb.Phase != "Running" {
			e.lifecycleOp("start", name)
		}
		got := withoutRoot(snapshottest.Describe(t, ws))
		switch {
		case snapshottest.Equal(got, wantA):
			cur = "a"
		case snapshottest.Equal(got, wantB):
			cur = "b"
		default:
			snapshottest.SameTree(t, wantB, got) // fails, naming the differences
		}
		t.Logf("round %d: workspace is %s", i, cur)
		if cur == "a" {
			other = "b"
		} else {
			other = "a"
		}
		leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(ws), ".workspace.ds-*"))
		if len(leftovers) > 0 {
			t.Fatalf("left behind: %v", leftovers)
		}
		if out, errOut, code := e.bash(name, "true"); code != 0 {
			b, _ := os.ReadFile(filepath.Join(e.home, "sandboxes", name, "sandboxd.log"))
			t.Fatalf("exec after round %d: exit %d %s %s\nsandboxd.log:\n%s", i, code, out, errOut, lastN(string(b), 30))
		}
	}
}

func lastN(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// TestSSHSnapshotRestore: the same through the ssh driver (no freezer, no
// host workspace): captured through sandboxd's sync, restored by a push
// with --delete.
func TestSSHSnapshotRestore(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	rng := rand.New(rand.NewPCG(3, 1))
	src := t.TempDir()
	snapshottest.GenTree(t, rng, src, 120)
	e.pushTree("s", src, "sandbox")
	ws := filepath.Join(e.sbHome, "sandbox")
	want1 := withoutRoot(snapshottest.Describe(t, ws))
	r1 := e.snap("s", "--name", "one")
	if r1.Snapshot.Frozen || r1.Pulled == nil {
		t.Fatalf("ssh snapshot: %+v", r1)
	}
	snapshottest.EditTree(t, rng, src, 30)
	e.pushTree("s", src, "sandbox")
	res := e.restore("s", "one")
	if res.Method != "sync" {
		t.Fatalf("restore method %q", res.Method)
	}
	snapshottest.SameTree(t, want1, withoutRoot(snapshottest.Describe(t, ws)))
}
