package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
)

// makeTree writes a small tree with nested dirs, an empty dir, a symlink,
// odd names, modes and a file large enough for block deltas.
func makeTree(t testing.TB, dir string, files int, big int) {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "sub/deep"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "empty"), 0o700))
	for i := range files {
		d := []string{"", "sub", "sub/deep"}[i%3]
		must(os.WriteFile(filepath.Join(dir, d, fmt.Sprintf("f%03d ü.txt", i)), bytes.Repeat([]byte(fmt.Sprintf("line %d\n", i)), i*10), 0o644))
	}
	must(os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	b := make([]byte, big)
	for i := range b {
		b[i] = byte(i*7 + i/1000)
	}
	must(os.WriteFile(filepath.Join(dir, "sub/big.bin"), b, 0o600))
	must(os.Symlink("sub/deep", filepath.Join(dir, "link")))
}

// treeDiff compares two trees: types, perm bits, content, symlink targets.
func treeDiff(t testing.TB, a, b string) []string {
	t.Helper()
	read := func(root string) map[string]string {
		m := map[string]string{}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == root {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			fi, err := os.Lstat(p)
			if err != nil {
				return err
			}
			switch {
			case fi.Mode()&fs.ModeSymlink != 0:
				l, _ := os.Readlink(p)
				m[rel] = "l:" + l
			case fi.IsDir():
				m[rel] = fmt.Sprintf("d:%o", fi.Mode().Perm())
			default:
				// A hash, not the content: the bench compares 2 GiB trees.
				h := sha256.New()
				if f, err := os.Open(p); err == nil {
					io.Copy(h, f)
					f.Close()
				}
				m[rel] = fmt.Sprintf("f:%o:%d:%x", fi.Mode().Perm(), fi.ModTime().UnixNano(), h.Sum(nil))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ma, mb := read(a), read(b)
	var out []string
	for k, v := range ma {
		if mb[k] != v {
			out = append(out, "differs or missing: "+k)
		}
	}
	for k := range mb {
		if _, ok := ma[k]; !ok {
			out = append(out, "extra: "+k)
		}
	}
	sort.Strings(out)
	return out
}

func (e *env) syncJSON(args ...string) api.SyncResult {
	e.t.Helper()
	out, errOut, code := e.ds(append(args, "-o", "json")...)
	if code != 0 {
		e.t.Fatalf("darkshell %v: exit %d\n%s%s", args, code, out, errOut)
	}
	// NDJSON: progress events, then the result event.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines[:len(lines)-1] {
		var ev api.SyncEvent
		if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Type != "progress" || ev.Progress == nil {
			e.t.Fatalf("darkshell %v: bad progress line %q (%v)", args, l, err)
		}
	}
	var ev api.SyncEvent
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &ev); err != nil || ev.Type != "result" || ev.Result == nil {
		e.t.Fatalf("darkshell %v: last line is not a result event (%v)\n%s", args, err, out)
	}
	return *ev.Result
}

func TestSyncSSH(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	src := t.TempDir()
	makeTree(t, src, 30, 3<<20)
	remote := filepath.Join(e.sbHome, "work")

	r := e.syncJSON("sync", "s", src+":work")
	if d := treeDiff(t, src, remote); len(d) > 0 {
		t.Fatalf("after the first sync: %v", d)
	}
	if r.Added != r.Entries || r.Entries < 30 {
		t.Fatalf("first sync: %+v", r)
	}

	// Nothing changed.
	r = e.syncJSON("sync", "s", src+":work")
	if r.Unchanged != r.Entries || r.BytesToSend != 0 {
		t.Fatalf("idle sync: %+v", r)
	}

	// One change inside the big file, one file removed: the delta is small.
	big := filepath.Join(src, "sub/big.bin")
	b, _ := os.ReadFile(big)
	copy(b[1<<20:], "CHANGED IN THE MIDDLE")
	os.WriteFile(big, b, 0o600)
	os.Remove(filepath.Join(src, "f000 ü.txt"))
	os.Mkdir(filepath.Join(src, "newdir"), 0o755)

	r = e.syncJSON("sync", "s", src+":work", "--delete", "--dry-run")
	if r.Modified < 1 || r.Deleted != 1 || r.Added != 1 || !r.DryRun {
		t.Fatalf("dry run: %+v", r)
	}
	if len(treeDiff(t, src, remote)) == 0 {
		t.Fatal("dry run wrote")
	}
	r = e.syncJSON("sync", "s", src+":work", "--delete")
	if d := treeDiff(t, src, remote); len(d) > 0 {
		t.Fatalf("after --delete: %v", d)
	}
	if r.Deleted != 1 || r.SentBytes > 200<<10 {
		t.Fatalf("delta sync: %+v", r)
	}
	t.Logf("one change in a 3 MiB file: %d bytes sent, %d received", r.SentBytes, r.RecvBytes)

	// upload: default remote is $HOME/sandbox for the ssh driver.
	out, errOut, code := e.ds("sandbox", "upload", "s", filepath.Join(src, "sub"))
	if code != 0 || !strings.Contains(out, "added") {
		t.Fatalf("upload: %d %s %s", code, out, errOut)
	}
	if d := treeDiff(t, filepath.Join(src, "sub"), filepath.Join(e.sbHome, "sandbox")); len(d) > 0 {
		t.Fatalf("upload: %v", d)
	}

	// Download a subdirectory.
	local := filepath.Join(t.TempDir(), "dl")
	r = e.syncJSON("sandbox", "download", "s", "work/sub", local)
	if d := treeDiff(t, filepath.Join(src, "sub"), local); len(d) > 0 {
		t.Fatalf("download: %v", d)
	}
	if r.Direction != api.SyncPull {
		t.Fatalf("download: %+v", r)
	}

	// Errors are clear.
	_, errOut, code = e.ds("sandbox", "download", "s", "no/such/dir", local)
	if code == 0 || !strings.Contains(errOut, "no/such/dir") {
		t.Fatalf("download of a missing dir: exit %d, %s", code, errOut)
	}
}

// TestSyncLocal: the local driver's default remote is /sandbox (the host
// workspace dir); a symlink made inside the sandbox comes back as a link.
func TestSyncLocal(t *testing.T) {
	e := newLocalEnv(t)
	e.createLocal("l")
	src := t.TempDir()
	makeTree(t, src, 12, 1<<20)
	ws := filepath.Join(e.home, "sandboxes", "l", "workspace")

	r := e.syncJSON("sync", "l", src)
	if r.Remote != "/sandbox" {
		t.Fatalf("default remote %q", r.Remote)
	}
	if d := treeDiff(t, src, ws); len(d) > 0 {
		t.Fatalf("after sync: %v", d)
	}
	out, errOut, code := e.ds("exec", "l", "--", "sh", "-c", "cat /sandbox/run.sh && ln -s /etc /sandbox/evil")
	if code != 0 || !strings.Contains(out, "echo hi") {
		t.Fatalf("exec: %d %s %s", code, out, errOut)
	}
	local := filepath.Join(t.TempDir(), "back")
	e.syncJSON("sandbox", "download", "l", "/sandbox", local)
	if l, err := os.Readlink(filepath.Join(local, "evil")); err != nil || l != "/etc" {
		t.Fatalf("evil should come back as a link to /etc: %q %v", l, err)
	}
	os.Remove(filepath.Join(local, "evil"))
	if d := treeDiff(t, src, local); len(d) > 0 {
		t.Fatalf("download: %v", d)
	}
}

// TestSyncCreateUploadAndFilters: `sandbox create --upload` several trees
// in one create; .gitignore honoured on upload (--no-git-ignore sends all);
// --dry-run writes nothing; download --include /sub/ brings only that.
func TestSyncCreateUploadAndFilters(t *testing.T) {
	e := newEnv(t)
	a, b := t.TempDir(), t.TempDir()
	makeTree(t, a, 10, 1<<20)
	os.WriteFile(filepath.Join(a, ".gitignore"), []byte("*.secret\n/build/\n"), 0o644)
	os.WriteFile(filepath.Join(a, "key.secret"), []byte("s3cr3t"), 0o600)
	os.MkdirAll(filepath.Join(a, "build"), 0o755)
	os.WriteFile(filepath.Join(a, "build", "out"), []byte("bin"), 0o644)
	os.WriteFile(filepath.Join(b, "notes.txt"), []byte("notes"), 0o644)
	out, errOut, code := e.ds("sandbox", "create", "u", "--driver", "ssh",
		"--ssh", fmt.Sprintf("%s@127.0.0.1:%d", e.sshd.User, e.sshd.Port), "--identity", e.sshd.ClientKey,
		"--upload", a+":proj", "--upload", b+":notes", "-o", "json")
	if code != 0 {
		t.Fatalf("create --upload: exit %d\n%s%s", code, out, errOut)
	}
	var sb api.Sandbox
	if err := json.Unmarshal([]byte(out), &sb); err != nil || len(sb.Uploads) != 2 {
		t.Fatalf("create -o json: %v %s", err, out)
	}
	proj := filepath.Join(e.sbHome, "proj")
	for _, p := range []string{"key.secret", "build"} {
		if _, err := os.Lstat(filepath.Join(proj, p)); err == nil {
			t.Errorf("ignored %s was uploaded", p)
		}
	}
	if b, err := os.ReadFile(filepath.Join(e.sbHome, "notes", "notes.txt")); err != nil || string(b) != "notes" {
		t.Fatalf("second upload: %q %v", b, err)
	}
	// Dry run: the plan, nothing written.
	r := e.syncJSON("sync", "u", a+":proj", "--no-git-ignore", "--dry-run")
	if !r.DryRun || r.Added != 3 || r.BytesToSend != int64(len("s3cr3t")+len("bin")) {
		t.Fatalf("dry run plan: %+v", r)
	}
	if _, err := os.Lstat(filepath.Join(proj, "key.secret")); err == nil {
		t.Fatal("dry run wrote a file")
	}
	r = e.syncJSON("sync", "u", a+":proj", "--no-git-ignore")
	if r.Added != 3 {
		t.Fatalf("--no-git-ignore: %+v", r)
	}
	if d := treeDiff(t, a, proj); len(d) > 0 {
		t.Fatalf("after --no-git-ignore: %v", d)
	}
	// Download one subtree by include.
	local := t.TempDir()
	e.syncJSON("sandbox", "download", "u", "proj", local, "--include", "/sub/")
	if d := treeDiff(t, filepath.Join(a, "sub"), filepath.Join(local, "sub")); len(d) > 0 {
		t.Fatalf("include download: %v", d)
	}
	if ents, _ := os.ReadDir(local); len(ents) != 1 {
		t.Fatalf("include download brought more than sub/: %v", ents)
	}
}

// TestSyncInterruptCLI: Ctrl-C (SIGINT) to `darkshell sync` at random
// points: every file is old or new, no temporary file is left, and the
// same command run again completes the sync.
func TestSyncInterruptCLI(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	src := t.TempDir()
	version := func(v byte, n int) []byte { return bytes.Repeat([]byte{v, byte(n)}, 300_000+n*1000) }
	const files = 40
	for i := range files {
		os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", i)), version('a', i), 0o644)
	}
	e.syncJSON("sync", "s", src+":work")
	for i := range files {
		os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", i)), version('b', i), 0o644)
		os.WriteFile(filepath.Join(src, fmt.Sprintf("n%02d", i)), version('n', i), 0o644)
	}
	dst := filepath.Join(e.sbHome, "work")
	for _, delay := range []time.Duration{5 * time.Millisecond, 30 * time.Millisecond, 80 * time.Millisecond, 200 * time.Millisecond} {
		cmd := exec.Command(filepath.Join(binDir, "darkshell"), "sync", "s", src+":work")
		cmd.Env = append(os.Environ(), "DARKSHELL_HOME="+e.home)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		// Killed by the signal: it came before the CLI installed its
		// handler (an early delay on a busy machine); the state must hold too.
		killed := cmd.ProcessState != nil && !cmd.ProcessState.Exited()
		if err != nil && !killed && !strings.Contains(errb.String(), "run the same command again") {
			t.Fatalf("interrupted sync after %v: %v, stderr %q", delay, err, errb.String())
		}
		for i := range files {
			b, _ := os.ReadFile(filepath.Join(dst, fmt.Sprintf("f%02d", i)))
			if !bytes.Equal(b, version('a', i)) && !bytes.Equal(b, version('b', i)) {
				t.Fatalf("after %v: f%02d is neither old nor new (%d bytes)", delay, i, len(b))
			}
			if b, err := os.ReadFile(filepath.Join(dst, fmt.Sprintf("n%02d", i))); err == nil && !bytes.Equal(b, version('n', i)) {
				t.Fatalf("after %v: n%02d is partial (%d bytes)", delay, i, len(b))
			}
		}
		// sandboxd removes its temporary files once the daemon has
		// cancelled the stream.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			var temps []string
			ents, _ := os.ReadDir(dst)
			for _, en := range ents {
				if strings.HasPrefix(en.Name(), ".~ds-sync-") {
					temps = append(temps, en.Name())
				}
			}
			if len(temps) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %v: temporary files left: %v", delay, temps)
			}
		}
	}
	e.syncJSON("sync", "s", src+":work")
	if d := treeDiff(t, src, dst); len(d) > 0 {
		t.Fatalf("rerun did not complete: %v", d)
	}
}
