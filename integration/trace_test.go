package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/probes"
	"github.com/bohica-labs/darkshell/protocol"
)

// traceScript exercises what a trace must show: nested shells, a pipeline,
// a background job killed by a signal, file create/rename/delete, and a
// write Landlock refuses (/dev/urandom is bound writable, but Landlock
// only allows reading it).
const traceScript = `cd /sandbox
echo one > f1
mv f1 f2
rm f2
sh -c 'sh -c "exit 7"; exit 5'
echo abc | tr a-z A-Z > up.txt
sleep 30 & bg=$!
sleep 0.2
kill -9 $bg
wait $bg
echo x > /dev/urandom
exit 3`

// traceEvents runs `darkshell trace NAME -o json` (not a terminal: history
// only) with extra flags and decodes the JSON lines.
func traceEvents(t *testing.T, e *env, name string, flags ...string) []protocol.Event {
	t.Helper()
	out, errOut, code := e.ds(append([]string{"trace", name, "-o", "json"}, flags...)...)
	if code != 0 {
		t.Fatalf("trace %s: exit %d: %s", name, code, errOut)
	}
	var evs []protocol.Event
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var ev protocol.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("trace line %q: %v", line, err)
		}
		if err := ev.Validate(); err != nil {
			t.Fatalf("trace line %q does not validate: %v", line, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// waitEvents polls the trace until cond holds on it.
func waitEvents(t *testing.T, e *env, name, what string, cond func([]protocol.Event) bool, flags ...string) []protocol.Event {
	t.Helper()
	var evs []protocol.Event
	waitFor(t, 10*time.Second, what, func() bool {
		evs = traceEvents(t, e, name, flags...)
		return cond(evs)
	})
	return evs
}

func findExec(evs []protocol.Event, pred func(*protocol.Event) bool) *protocol.Event {
	for i := range evs {
		if evs[i].Kind == protocol.KindExec && pred(&evs[i]) {
			return &evs[i]
		}
	}
	return nil
}

func exitOf(evs []protocol.Event, pid int, after uint64) *protocol.Event {
	for i := range evs {
		if evs[i].Kind == protocol.KindExit && evs[i].PID == pid && evs[i].Seq > after {
			return &evs[i]
		}
	}
	return nil
}

func dumpEvents(t *testing.T, evs []protocol.Event) {
	t.Helper()
	for _, ev := range evs {
		b, _ := json.Marshal(ev)
		t.Log(string(b))
	}
}

// TestTraceLocalEBPF runs the known script in a local sandbox and checks
// the exact process tree, exit codes and file events from the eBPF probes,
// and that neither the host nor another sandbox shows up: with the file
// audit on the syscall tracepoints (what the daemon picks here) and on the
// tp_btf/sys_exit fallback (forced through the daemon's environment).
func TestTraceLocalEBPF(t *testing.T) {
	for _, tc := range []struct{ name, env, probe string }{
		{"tracepoints", "", protocol.FileProbeSyscallTracepoints},
		{"tp_btf", string(probes.HookRawSysExit), protocol.FileProbeRawSysExit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(probes.EnvFileHook, tc.env)
			testTraceLocalEBPF(t, tc.probe)
		})
	}
}

func testTraceLocalEBPF(t *testing.T, probe string) {
	e := newLocalEnv(t)
	e.createLocal("tr")
	e.createLocal("other")
	info, errOut, code := e.ds("sandbox", "get", "tr", "-o", "json")
	if code != 0 {
		t.Fatalf("get: %s", errOut)
	}
	_ = info

	// Noise that must not appear: the host and the other sandbox.
	hostDir := t.TempDir()
	host := exec.Command("/bin/sh", "-c", "echo hostmarker > "+filepath.Join(hostDir, "hostmarker-file")+"; /bin/true hostmarker-arg")
	if out, err := host.CombinedOutput(); err != nil {
		t.Fatalf("host noise: %v %s", err, out)
	}
	if _, errOut, code := e.ds("exec", "other", "--", "sh", "-c", "echo x > /sandbox/othermarker; true othermarker"); code != 0 {
		t.Fatalf("other sandbox: %d %s", code, errOut)
	}

	_, errOut, code = e.ds("exec", "tr", "--", "sh", "-c", traceScript)
	if code != 3 {
		t.Fatalf("script exit %d, want 3: %s", code, errOut)
	}
	if !strings.Contains(errOut, "/dev/urandom: Permission denied") {
		t.Fatalf("the Landlock-refused write did not fail with EACCES: %q", errOut)
	}

	isTop := func(ev *protocol.Event) bool {
		return len(ev.Argv) == 3 && ev.Argv[0] == "sh" && ev.Argv[2] == traceScript
	}
	evs := waitEvents(t, e, "tr", "the script's exit in the trace", func(evs []protocol.Event) bool {
		top := findExec(evs, isTop)
		return top != nil && exitOf(evs, top.PID, top.Seq) != nil
	}, "--files")

	// The stream announces its source and fidelity.
	text, _, _ := e.ds("trace", "tr")
	if !strings.Contains(text, "sources: ebpf (fidelity: complete)") {
		if strings.Contains(text, "procfs") {
			requireFeature(t, "eBPF tracing in a local sandbox (sandboxd fell back to procfs): "+firstLine(text))
		}
		t.Fatalf("trace header: %q", firstLine(text))
	}
	ftext, _, _ := e.ds("trace", "tr", "--files")
	if !strings.Contains(ftext, "file audit: eBPF on "+probe+"\n") {
		if probe == protocol.FileProbeSyscallTracepoints && strings.Contains(ftext, protocol.FileProbeRawSysExit) {
			requireFeature(t, "the syscall tracepoints (the daemon fell back to tp_btf/sys_exit)")
		}
		t.Fatalf("trace --files header does not name the file probe %s:\n%s", probe, ftext[:min(len(ftext), 300)])
	}
	if strings.Contains(text, "file audit:") {
		t.Errorf("trace without --files names the file audit: %q", text[:min(len(text), 300)])
	}
	for _, ev := range evs {
		if ev.Source != protocol.SourceEBPF || ev.Fidelity != protocol.FidelityComplete || ev.Sandbox != "tr" {
			t.Fatalf("event not from the sandbox's eBPF source: %+v", ev)
		}
		b, _ := json.Marshal(ev)
		if strings.Contains(string(b), "hostmarker") || strings.Contains(string(b), "othermarker") {
			t.Fatalf("foreign activity in the trace: %s", b)
		}
	}

	top := findExec(evs, isTop)
	if top.PPID != 1 || top.Binary != "/usr/bin/sh" || top.Cwd != "/sandbox" || top.UID == nil || *top.UID != 65000 {
		t.Errorf("top shell: ppid=%d binary=%q cwd=%q uid=%v, want 1 /usr/bin/sh /sandbox 65000", top.PPID, top.Binary, top.Cwd, top.UID)
	}
	if ex := exitOf(evs, top.PID, top.Seq); ex.ExitCode == nil || *ex.ExitCode != 3 || ex.ExecID != top.ExecID || ex.DurationNs < int64(200*time.Millisecond) {
		t.Errorf("top exit: %+v", ex)
	}

	// The children of the top shell, in order: what ran, and how it ended.
	type want struct {
		argv   []string
		code   int // -1: killed
		signal int
	}
	wants := []want{
		{[]string{"mv", "f1", "f2"}, 0, 0},
		{[]string{"rm", "f2"}, 0, 0},
		{[]string{"sh", "-c", `sh -c "exit 7"; exit 5`}, 5, 0},
		{[]string{"tr", "a-z", "A-Z"}, 0, 0},
		{[]string{"sleep", "30"}, -1, 9},
		{[]string{"sleep", "0.2"}, 0, 0},
	}
	var kids []*protocol.Event
	for i := range evs {
		if evs[i].Kind == protocol.KindExec && evs[i].PPID == top.PID && evs[i].ParentExecID == top.ExecID {
			kids = append(kids, &evs[i])
		}
	}
	// In fork order: a background job may exec after the next command.
	forkSeq := func(pid int) uint64 {
		for _, ev := range evs {
			if ev.Kind == protocol.KindFork && ev.PID == pid && ev.PPID == top.PID {
				return ev.Seq
			}
		}
		return 0
	}
	slices.SortFunc(kids, func(a, b *protocol.Event) int { return int(forkSeq(a.PID)) - int(forkSeq(b.PID)) })
	if len(kids) != len(wants) {
		dumpEvents(t, evs)
		t.Fatalf("%d programs started by the script, want %d", len(kids), len(wants))
	}
	for i, w := range wants {
		k := kids[i]
		if !slices.Equal(k.Argv, w.argv) {
			t.Errorf("child %d: argv %q, want %q", i, k.Argv, w.argv)
			continue
		}
		ex := exitOf(evs, k.PID, k.Seq)
		switch {
		case ex == nil:
			t.Errorf("%q: no exit", w.argv)
		case w.signal != 0 && (ex.Signal != w.signal || ex.ExitCode != nil):
			t.Errorf("%q: signal %d code %v, want signal %d", w.argv, ex.Signal, ex.ExitCode, w.signal)
		case w.signal == 0 && (ex.ExitCode == nil || *ex.ExitCode != w.code):
			t.Errorf("%q: exit %+v, want code %d", w.argv, ex, w.code)
		}
	}
	// Nested: the inner shell's parent is the middle one.
	mid := kids[2]
	inner := findExec(evs, func(ev *protocol.Event) bool {
		return ev.PPID == mid.PID && slices.Equal(ev.Argv, []string{"sh", "-c", "exit 7"})
	})
	if inner == nil || inner.ParentExecID != mid.ExecID {
		t.Fatalf("inner shell under %s: %+v", mid.ExecID, inner)
	}
	if ex := exitOf(evs, inner.PID, inner.Seq); ex == nil || ex.ExitCode == nil || *ex.ExitCode != 7 {
		t.Errorf("inner shell exit: %+v", ex)
	}
	// The pipeline's echo side is a forked subshell of the top shell: a fork, no exec.
	forks := 0
	for _, ev := range evs {
		if ev.Kind == protocol.KindFork && ev.PPID == top.PID {
			forks++
		}
	}
	if forks != len(wants)+1 {
		t.Errorf("%d forks by the script, want %d (6 programs + the pipeline's echo)", forks, len(wants)+1)
	}

	// File events of the sandbox's workspace and the refused write, in order.
	type fwant struct {
		kind, path, newPath, result, errno string
		pid                                int
	}
	fwants := []fwant{
		{protocol.KindFileWrite, "/sandbox/f1", "", protocol.ResultOK, "", top.PID},
		{protocol.KindFileRename, "/sandbox/f1", "/sandbox/f2", protocol.ResultOK, "", kids[0].PID},
		{protocol.KindFileUnlink, "/sandbox/f2", "", protocol.ResultOK, "", kids[1].PID},
		{protocol.KindFileWrite, "/sandbox/up.txt", "", protocol.ResultOK, "", kids[3].PID},
		{protocol.KindFileWrite, "/dev/urandom", "", protocol.ResultDenied, "EACCES", top.PID},
	}
	var got []protocol.Event
	for _, ev := range evs {
		if ev.IsFile() && (strings.HasPrefix(ev.Path, "/sandbox/") || ev.Path == "/dev/urandom") && ev.PID != 1 {
			got = append(got, ev)
		}
	}
	if len(got) != len(fwants) {
		dumpEvents(t, got)
		t.Fatalf("%d file events on /sandbox and /dev/urandom, want %d", len(got), len(fwants))
	}
	for i, w := range fwants {
		g := got[i]
		if g.Kind != w.kind || g.Path != w.path || g.NewPath != w.newPath || g.Result != w.result || g.Errno != w.errno || g.PID != w.pid {
			t.Errorf("file event %d: %s %s->%s %s %s pid %d; want %s %s->%s %s %s pid %d",
				i, g.Kind, g.Path, g.NewPath, g.Result, g.Errno, g.PID, w.kind, w.path, w.newPath, w.result, w.errno, w.pid)
		}
	}
	if got[0].Intent != "write,create,truncate" {
		t.Errorf("intent of `echo one > f1`: %q", got[0].Intent)
	}

	// Without --files there are no file events; --binary and --pid filter.
	for _, ev := range traceEvents(t, e, "tr") {
		if ev.IsFile() {
			t.Fatalf("file event without --files: %+v", ev)
		}
	}
	for _, ev := range traceEvents(t, e, "tr", "--binary", "tr") {
		if ev.Binary != "/usr/bin/tr" && ev.Kind != protocol.KindAlert {
			t.Fatalf("--binary tr let through %+v", ev)
		}
	}
	pathed := traceEvents(t, e, "tr", "--files", "--path", "/sandbox")
	nfiles := 0
	for _, ev := range pathed {
		if ev.IsFile() {
			nfiles++
			if !strings.HasPrefix(ev.Path, "/sandbox/") && !strings.HasPrefix(ev.NewPath, "/sandbox/") {
				t.Fatalf("--path /sandbox let through %+v", ev)
			}
		}
	}
	if nfiles < 4 {
		t.Errorf("--path /sandbox: %d file events, want the script's 4 at least", nfiles)
	}
	sub := traceEvents(t, e, "tr", "--pid", fmt.Sprint(mid.PID))
	pids := map[int]bool{}
	for _, ev := range sub {
		pids[ev.PID] = true
	}
	if !pids[mid.PID] || !pids[inner.PID] || pids[top.PID] || pids[kids[0].PID] {
		t.Errorf("--pid %d gave pids %v, want the middle shell's subtree only", mid.PID, pids)
	}

	// The text tree: indented by parentage, exit codes and the kill.
	if !strings.Contains(text, fmt.Sprintf("[%d] sh -c cd /sandbox", top.PID)) || !strings.Contains(text, "(exit 3,") ||
		!strings.Contains(text, fmt.Sprintf("    [%d] sh -c exit 7  (exit 7,", inner.PID)) || !strings.Contains(text, "killed by signal 9") {
		t.Errorf("text tree:\n%s", text)
	}

	// --since: a window that ends before now excludes the script; a wide one keeps it.
	time.Sleep(1500 * time.Millisecond)
	for _, ev := range traceEvents(t, e, "tr", "--since", "1s") {
		if ev.PID == top.PID {
			t.Fatalf("--since 1s still shows the script: %+v", ev)
		}
	}
	if findExec(traceEvents(t, e, "tr", "--since", "1h"), isTop) == nil {
		t.Error("--since 1h lost the script")
	}

	// The probes' descriptors stay in PID 1: a sandbox process sees none of
	// its own and cannot look at PID 1's (escape checklist 10).
	fds, errOut, code := e.ds("exec", "tr", "--", "sh", "-c", "ls -l /proc/self/fd/; ls -l /proc/1/fd/ && echo READABLE")
	if strings.Contains(fds, "bpf") || strings.Contains(fds, "READABLE") || !strings.Contains(errOut, "Permission denied") {
		t.Errorf("descriptors: exit %d\n%s\n%s", code, fds, errOut)
	}

	// The other sandbox traces its own activity (positive control).
	oevs := traceEvents(t, e, "other", "--files")
	if findExec(oevs, func(ev *protocol.Event) bool {
		return slices.Contains(ev.Argv, "echo x > /sandbox/othermarker; true othermarker")
	}) == nil {
		t.Errorf("the other sandbox's trace lacks its own command")
	}

	// The host event log has the same events.
	logDir := filepath.Join(e.home, "logs", "tr")
	var logged []byte
	waitFor(t, 5*time.Second, "the host event log", func() bool {
		logged, _ = os.ReadFile(filepath.Join(logDir, "events.jsonl"))
		return strings.Contains(string(logged), `"argv":["rm","f2"]`)
	})
	exp := t.TempDir()
	if out, errOut, code := e.ds("sandbox", "logs", "tr", "--export", exp); code != 0 {
		t.Fatalf("logs --export: %d %s %s", code, out, errOut)
	}
	for _, f := range []string{"events.jsonl", "daemon.log", "sandboxd.log"} {
		if _, err := os.Stat(filepath.Join(exp, f)); err != nil {
			t.Errorf("export lacks %s: %v", f, err)
		}
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// TestTraceFallbackSSH traces an ssh sandbox, where sandboxd runs
// unprivileged and cannot load BPF: processes come from /proc polling and
// file changes from inotify, and the stream says so.
func TestTraceFallbackSSH(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	// The fallback sources start with the first events stream.
	if _, errOut, code := e.ds("trace", "s", "-o", "json"); code != 0 {
		t.Fatalf("first trace: %d %s", code, errOut)
	}
	text, _, _ := e.ds("trace", "s")
	if !strings.HasPrefix(text, "sources: procfs+inotify (fidelity: polled)") || !strings.Contains(text, "note: eBPF probes not loaded") {
		t.Fatalf("fallback header: %q", text)
	}
	script := `cd "$HOME"; echo one > f1; mv f1 f2; rm f2; mkdir d; sleep 1; sh -c 'sleep 1.1; exit 2'; exit 0`
	if _, errOut, code := e.ds("exec", "s", "--", "sh", "-c", script); code != 0 {
		t.Fatalf("script: %d %s", code, errOut)
	}
	evs := waitEvents(t, e, "s", "the polled tree", func(evs []protocol.Event) bool {
		top := findExec(evs, func(ev *protocol.Event) bool { return slices.Equal(ev.Argv, []string{"sh", "-c", script}) })
		return top != nil && exitOf(evs, top.PID, top.Seq) != nil
	}, "--files")
	top := findExec(evs, func(ev *protocol.Event) bool { return slices.Equal(ev.Argv, []string{"sh", "-c", script}) })
	sleep := findExec(evs, func(ev *protocol.Event) bool { return slices.Equal(ev.Argv, []string{"sleep", "1"}) })
	if sleep == nil || sleep.PPID != top.PID || sleep.ParentExecID != top.ExecID {
		dumpEvents(t, evs)
		t.Fatalf("polled child `sleep 1` under the script: %+v", sleep)
	}
	inner := findExec(evs, func(ev *protocol.Event) bool { return len(ev.Argv) == 3 && ev.Argv[2] == "sleep 1.1; exit 2" })
	nested := findExec(evs, func(ev *protocol.Event) bool { return slices.Equal(ev.Argv, []string{"sleep", "1.1"}) })
	if inner == nil || nested == nil || nested.PPID != inner.PID || inner.PPID != top.PID {
		dumpEvents(t, evs)
		t.Fatalf("nested polled shells: %+v %+v", inner, nested)
	}
	for _, ev := range evs {
		switch {
		case ev.IsFile():
			if ev.Source != protocol.SourceInotify || ev.Fidelity != protocol.FidelityChanges || ev.PID != 0 {
				t.Errorf("file event not from inotify with fidelity changes: %+v", ev)
			}
		case ev.Kind == protocol.KindExec || ev.Kind == protocol.KindExit:
			if ev.Source != protocol.SourceProcfs || ev.Fidelity != protocol.FidelityPolled {
				t.Errorf("process event not from procfs with fidelity polled: %+v", ev)
			}
			if ev.Kind == protocol.KindExit && (ev.ExitCode != nil || ev.Signal != 0 || ev.UID != nil) {
				t.Errorf("a polled exit cannot know its status or uid: %+v", ev)
			}
		}
	}
	// File changes in order (inotify reports a create, then the write at close).
	home := e.sbHome
	type fw struct{ kind, path, newPath string }
	want := []fw{
		{protocol.KindFileWrite, home + "/f1", ""},
		{protocol.KindFileWrite, home + "/f1", ""},
		{protocol.KindFileRename, home + "/f1", home + "/f2"},
		{protocol.KindFileUnlink, home + "/f2", ""},
		{protocol.KindFileMkdir, home + "/d", ""},
	}
	var got []fw
	for _, ev := range evs {
		if ev.IsFile() && strings.HasPrefix(ev.Path, home+"/") && !strings.Contains(ev.Path, "/.") {
			got = append(got, fw{ev.Kind, ev.Path, ev.NewPath})
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("inotify file events:\n got %v\nwant %v", got, want)
	}
}

// TestWatchLocal follows a sandbox's unified stream live and posts it to a
// webhook: an exec started after the watch shows up on both.
func TestWatchLocal(t *testing.T) {
	e := newLocalEnv(t)
	e.createLocal("w")
	var mu sync.Mutex
	var posted []protocol.Event
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch []protocol.Event
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		mu.Lock()
		posted = append(posted, batch...)
		mu.Unlock()
	}))
	defer hook.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "darkshell"), "sandbox", "watch", "w", "--webhook", hook.URL)
	cmd.Env = append(os.Environ(), "DARKSHELL_HOME="+e.home)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		cmd.Wait()
	}()
	lines := make(chan protocol.Event, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<22)
		for sc.Scan() {
			var ev protocol.Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				lines <- ev
			}
		}
	}()
	// The watch is live once an exec started after it shows up; retry
	// with fresh markers until then (the subscription races the first one).
	deadline := time.After(15 * time.Second)
	var marker string
	for i := 0; ; i++ {
		marker = fmt.Sprintf("watchmarker%d", i)
		if _, errOut, code := e.ds("exec", "w", "--", "sh", "-c", "echo "+marker+" > /sandbox/"+marker); code != 0 {
			t.Fatalf("exec: %d %s", code, errOut)
		}
		got := false
		wait := time.After(time.Second)
	read:
		for {
			select {
			case ev, ok := <-lines:
				if !ok {
					t.Fatal("watch ended")
				}
				if ev.Kind == protocol.KindFileWrite && ev.Path == "/sandbox/"+marker && ev.Sandbox == "w" {
					got = true
					break read
				}
			case <-wait:
				break read
			case <-deadline:
				t.Fatal("no live event on the watch stream")
			}
		}
		if got {
			break
		}
	}
	waitFor(t, 10*time.Second, "the webhook batch", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range posted {
			if ev.Path == "/sandbox/"+marker {
				return true
			}
		}
		return false
	})
}

// TestTraceSurvivesDaemonExit: the host's probe set is loaded by the
// daemon and shared by every local sandbox; a sandbox holds the set's
// links, so after the daemon that loaded it exits, the sandbox's processes
// are still traced by eBPF. No descriptor of the probes reaches a workload.
func TestTraceSurvivesDaemonExit(t *testing.T) {
	e := newLocalEnv(t)
	e.createLocal("keep")
	text, _, _ := e.ds("trace", "keep")
	if !strings.Contains(text, "sources: ebpf (fidelity: complete)") {
		requireFeature(t, "eBPF tracing in a local sandbox: "+firstLine(text))
	}
	fds, errOut, code := e.ds("exec", "keep", "--", "sh", "-c", "ls -l /proc/self/fd/")
	if code != 0 {
		t.Fatalf("list fds: %d %s", code, errOut)
	}
	if !strings.Contains(fds, "0 ->") || strings.Contains(fds, "bpf") {
		t.Fatalf("a probe descriptor reached the workload:\n%s", fds)
	}
	if _, errOut, code := e.ds("daemon", "stop"); code != 0 {
		t.Fatalf("daemon stop: %d %s", code, errOut)
	}
	// The next command starts a new daemon, which loads a set of its own;
	// "keep" is still served by the first one's programs.
	if _, errOut, code := e.ds("exec", "keep", "--", "sh", "-c", "true after-restart-marker"); code != 0 {
		t.Fatalf("exec after restart: %d %s", code, errOut)
	}
	waitEvents(t, e, "keep", "the exec after the daemon restarted", func(evs []protocol.Event) bool {
		return findExec(evs, func(ev *protocol.Event) bool {
			return len(ev.Argv) == 3 && ev.Argv[2] == "true after-restart-marker" && ev.Source == protocol.SourceEBPF
		}) != nil
	})
}

// TestSandboxStateEvents: the daemon records a sandbox's lifecycle as
// sandbox_state events, in order, in the host event log (and so in watch).
func TestSandboxStateEvents(t *testing.T) {
	e := newLocalEnv(t)
	e.createLocal("life")
	for _, op := range []string{"stop", "start"} {
		if _, errOut, code := e.ds("sandbox", op, "life"); code != 0 {
			t.Fatalf("%s: %d %s", op, code, errOut)
		}
	}
	if _, errOut, code := e.ds("sandbox", "delete", "life"); code != 0 {
		t.Fatalf("delete: %d %s", code, errOut)
	}
	var states []string
	waitFor(t, 5*time.Second, "the lifecycle in the event log", func() bool {
		b, _ := os.ReadFile(filepath.Join(e.home, "logs", "life", "events.jsonl"))
		states = states[:0]
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var ev protocol.Event
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Kind == protocol.KindSandboxState && ev.Source == protocol.SourceDaemon {
				if ev.State != "traced" && ev.State != "untraced" {
					states = append(states, ev.State)
				}
			}
		}
		return slices.Equal(states, []string{"created", "stopped", "started", "deleted"})
	})
}
