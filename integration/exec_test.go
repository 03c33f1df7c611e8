package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/stream"
	"github.com/bohica-labs/darkshell/protocol"
)

// TestInjectAndReuse: an empty home gets sandboxd pushed on create; the next
// connection (after a daemon restart) reuses it instead of pushing again.
func TestInjectAndReuse(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	bins, _ := filepath.Glob(filepath.Join(e.sbHome, ".cache/darkshell/sandboxd/*/sandboxd"))
	if len(bins) != 1 {
		t.Fatalf("injected binaries: %v", bins)
	}
	st1, err := os.Stat(bins[0])
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := e.ds("exec", "s", "--", "echo", "hello")
	if code != 0 || out != "hello\n" {
		t.Fatalf("exec: code %d out %q err %q", code, out, errOut)
	}
	if _, _, code := e.ds("daemon", "stop"); code != 0 {
		t.Fatal("daemon stop failed")
	}
	out, _, code = e.ds("-o", "json", "version", "s")
	if code != 0 || !strings.Contains(out, `"sandboxd"`) || !strings.Contains(out, protocol.CapExec) {
		t.Fatalf("version: %d %s", code, out)
	}
	st2, _ := os.Stat(bins[0])
	if !st2.ModTime().Equal(st1.ModTime()) || !os.SameFile(st1, st2) {
		t.Fatal("sandboxd was pushed again on the second connection")
	}
}

// TestVersionUpgrade: a sandboxd of another build at the versioned path is
// replaced by this build's.
func TestVersionUpgrade(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	bins, _ := filepath.Glob(filepath.Join(e.sbHome, ".cache/darkshell/sandboxd/*/sandboxd"))
	if len(bins) != 1 {
		t.Fatalf("injected binaries: %v", bins)
	}
	e.ds("daemon", "stop")
	e.cleanupAgents()
	// An "old build": a script that answers like a sandboxd that is not ours.
	// (Replace the file rather than overwrite it: an exiting agent may still map it.)
	os.Remove(bins[0])
	if err := os.WriteFile(bins[0], []byte("#!/bin/sh\necho 'sandboxd 0.0.1-old'; exit 3\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := e.ds("exec", "s", "--", "echo", "upgraded")
	if code != 0 || out != "upgraded\n" {
		t.Fatalf("exec after upgrade: %d %q %q", code, out, errOut)
	}
	b, _ := os.ReadFile(bins[0])
	if bytes.HasPrefix(b, []byte("#!")) {
		t.Fatal("the old sandboxd was not replaced")
	}
}

func (e *env) cleanupAgents() {
	for _, pid := range pgrep("sandboxd", e.sbHome) {
		syscallKill(pid)
	}
	waitFor(e.t, 5*time.Second, "agents to exit", func() bool { return len(pgrep("sandboxd", e.sbHome)) == 0 })
}

// TestExecShapes runs the exec contract through the CLI.
func TestExecShapes(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	tests := []struct {
		name       string
		stdin      string
		args       []string
		wantCode   int
		wantOut    string
		wantErrSub string
	}{
		{"exit 0", "", []string{"--", "true"}, 0, "", ""},
		{"exit 3", "", []string{"--sh", "--", "exit 3"}, 3, "", ""},
		{"signal", "", []string{"--sh", "--", "kill -KILL $$"}, 128 + 9, "", ""},
		{"stderr separate", "", []string{"--sh", "--", "echo out; echo err >&2"}, 0, "out\n", "err\n"},
		{"stdin", "abc\n", []string{"-i", "--", "tr", "a-z", "A-Z"}, 0, "ABC\n", ""},
		{"no stdin without -i", "abc\n", []string{"--", "cat"}, 0, "", ""},
		{"env and dir", "", []string{"-e", "FOO=bar baz", "-w", "/tmp", "--sh", "--", "echo \"$FOO\"; pwd"}, 0, "bar baz\n/tmp\n", ""},
		{"argv not through a shell", "", []string{"--", "echo", "$HOME", "a;b"}, 0, "$HOME a;b\n", ""},
		{"not found", "", []string{"--", "no-such-command-xyz"}, 127, "", "no-such-command-xyz"},
		{"cannot invoke", "", []string{"--", "/etc/hostname"}, 126, "", "/etc/hostname"},
		{"missing dir", "", []string{"-w", "/no/such/dir", "--", "true"}, 126, "", "/no/such/dir"},
		{"timeout", "", []string{"--timeout", "300ms", "--", "sleep", "30"}, 128 + 15, "", "timed out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in []byte
			if tt.stdin != "" {
				in = []byte(tt.stdin)
			}
			args := append([]string{"exec", "s"}, tt.args...)
			out, errOut, code := e.dsIn(in, args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr %q", code, tt.wantCode, errOut)
			}
			if out != tt.wantOut {
				t.Errorf("stdout %q, want %q", out, tt.wantOut)
			}
			if !strings.Contains(errOut, tt.wantErrSub) {
				t.Errorf("stderr %q lacks %q", errOut, tt.wantErrSub)
			}
		})
	}
	t.Run("unknown sandbox", func(t *testing.T) {
		_, errOut, code := e.ds("exec", "nope", "--", "true")
		if code != 125 || !strings.Contains(errOut, "nope") {
			t.Fatalf("exit %d stderr %q", code, errOut)
		}
	})
	t.Run("binary output", func(t *testing.T) {
		var all []byte
		for i := range 256 {
			all = append(all, byte(i))
		}
		all = bytes.Repeat(all, 1000)
		out, _, code := e.dsIn(all, "exec", "s", "-i", "--", "cat")
		if code != 0 || !bytes.Equal([]byte(out), all) {
			t.Fatalf("binary round trip: exit %d, %d bytes back of %d", code, len(out), len(all))
		}
	})
}

// TestTimeoutKillsGroup: a timed-out command and its children are gone.
func TestTimeoutKillsGroup(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	marker := fmt.Sprintf("darkshell-timeout-%d", time.Now().UnixNano())
	// A background sleep of a length no other test uses: suites run in
	// parallel, and the check below looks at the whole host.
	bg := fmt.Sprintf("300.%06d", time.Now().UnixNano()%1000000)
	_, _, code := e.ds("exec", "s", "--timeout", "500ms", "--sh", "--", "sleep "+bg+" & sleep 301; : "+marker)
	if code != 128+15 && code != 128+9 {
		t.Fatalf("exit %d, want killed", code)
	}
	waitFor(t, 5*time.Second, "the timed-out group to die", func() bool { return len(pgrep(marker)) == 0 && len(pgrep("sleep "+bg)) == 0 })
}

// TestClientGoneKillsProcess: when the CLI dies, a non-durable command dies too.
func TestClientGoneKillsProcess(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	ctx, cancel := context.WithCancel(context.Background())
	p, err := e.c.Exec(ctx, "s", &protocol.ExecStart{Argv: []string{"sleep", "313"}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "sleep to start", func() bool { return pidAlive(p.Started.PID) })
	cancel()
	p.Close()
	waitFor(t, 5*time.Second, "sleep to be killed", func() bool { return !pidAlive(p.Started.PID) })
}

// TestLargeOutputFlatMemory streams 1 GiB of stdout through the daemon and
// checks that neither sandboxd nor the daemon grew with it.
func TestLargeOutputFlatMemory(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	p, err := e.c.Exec(context.Background(), "s", &protocol.ExecStart{Argv: []string{"head", "-c", "1073741824", "/dev/zero"}})
	if err != nil {
		t.Fatal(err)
	}
	var n countWriter
	exit, err := p.Wait(&n, nil)
	if err != nil || exit.Status() != 0 {
		t.Fatalf("exit %+v err %v", exit, err)
	}
	if n != 1<<30 {
		t.Fatalf("got %d bytes, want 1 GiB", n)
	}
	st, err := e.c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for name, pid := range map[string]int{"daemon": st.PID, "sandboxd": agentPID(t, e)} {
		hwm := vmHWM(t, pid)
		t.Logf("%s peak RSS %d MiB after 1 GiB", name, hwm>>20)
		if hwm > 150<<20 {
			t.Errorf("%s peak RSS %d MiB: output is being buffered", name, hwm>>20)
		}
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

func agentPID(t testing.TB, e *env) int {
	info, err := e.c.Info(context.Background(), "s")
	if err != nil {
		t.Fatal(err)
	}
	return info.PID
}

func vmHWM(t testing.TB, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM for %d", pid)
	return 0
}

// TestPTYResize: a PTY reports its size, and a resize reaches it.
func TestPTYResize(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	p, err := e.c.Exec(context.Background(), "s", &protocol.ExecStart{
		Argv: []string{"stty size; read x; stty size"}, Shell: true, Stdin: true,
		PTY: &protocol.PTY{Rows: 24, Cols: 80},
	})
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuf
	done := make(chan struct{})
	var exit *protocol.ExitMsg
	go func() {
		exit, err = p.Wait(&out, nil)
		close(done)
	}()
	waitFor(t, 5*time.Second, "first stty", func() bool { return strings.Contains(out.String(), "24 80") })
	if err := p.Resize(40, 132); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	p.Write([]byte("\n"))
	<-done
	if err != nil || exit.Status() != 0 {
		t.Fatalf("exit %+v err %v out %q", exit, err, out.String())
	}
	if !strings.Contains(out.String(), "40 132") {
		t.Fatalf("after resize: %q", out.String())
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestReattachAfterCut: a durable command survives the SSH connection being
// cut; re-attaching from the last offset gives the rest of its output exactly
// once, and its exit status.
func TestReattachAfterCut(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	ctx := context.Background()
	p, err := e.c.Exec(ctx, "s", &protocol.ExecStart{
		Argv: []string{"for i in $(seq 1 30); do echo line$i; sleep 0.1; done; exit 7"}, Shell: true, Durable: true, GraceMs: 30000,
	})
	if err != nil {
		t.Fatal(err)
	}
	var first syncBuf
	go p.Wait(&first, nil)
	waitFor(t, 5*time.Second, "some output", func() bool { return strings.Contains(first.String(), "line3\n") })
	// Cut: kill the sshd processes serving the daemon's connection.
	for _, pid := range childPIDs(e.sshd.PID()) {
		syscallKill(pid)
	}
	time.Sleep(200 * time.Millisecond)
	off := p.Offset()
	got := first.String()[:off]
	p.Close()
	p2, err := e.c.Attach(ctx, "s", &protocol.ExecAttach{ID: p.Started.ID, Offset: off})
	if err != nil {
		t.Fatalf("re-attach: %v", err)
	}
	var rest bytes.Buffer
	exit, err := p2.Wait(&rest, nil)
	if err != nil {
		t.Fatal(err)
	}
	if exit.Status() != 7 {
		t.Fatalf("exit %+v", exit)
	}
	var want strings.Builder
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&want, "line%d\n", i)
	}
	if got+rest.String() != want.String() {
		t.Fatalf("output across the cut:\n%q\nwant\n%q", got+rest.String(), want.String())
	}
}

// TestIdempotentStart: the same key twice runs the command once.
func TestIdempotentStart(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	counter := filepath.Join(e.sbHome, "counter")
	cmd := "echo run >> " + counter + "; echo done"
	for i := range 3 {
		out, errOut, code := e.ds("exec", "s", "--idempotency-key", "job-1", "--sh", "--", cmd)
		if code != 0 || out != "done\n" {
			t.Fatalf("run %d: %d %q %q", i, code, out, errOut)
		}
	}
	b, _ := os.ReadFile(counter)
	if string(b) != "run\n" {
		t.Fatalf("command ran %d times", strings.Count(string(b), "run"))
	}
}

// TestConcurrentExecs: 200 execs at once through one warm session.
func TestConcurrentExecs(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.c.ExecWait(context.Background(), "s", &api.ExecRequest{ExecStart: protocol.ExecStart{Argv: []string{"echo", strconv.Itoa(i)}}})
			if err != nil {
				errs <- err
				return
			}
			if res.Status != 0 || string(res.Stdout) != strconv.Itoa(i)+"\n" {
				errs <- fmt.Errorf("exec %d: status %d out %q", i, res.Status, res.Stdout)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestExecReuseThroughDaemon: a Go client's execs run one after another on
// one daemon connection (api.HeaderExecReuse), each with its own output,
// stderr, stdin and status and nothing of the one before; an exec closed
// before its exit still kills its process, and the next exec works;
// concurrent execs each get their own connection.
func TestExecReuseThroughDaemon(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	ctx := context.Background()
	st0, err := e.c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	run := func(i int) {
		t.Helper()
		req := &protocol.ExecStart{Argv: []string{"sh", "-c", `printf "out$1"; printf "err$1" >&2; cat; exit $(($1 % 7))`, "sh", strconv.Itoa(i)}, Stdin: true}
		p, err := e.c.Exec(ctx, "s", req)
		if err != nil {
			t.Fatalf("exec %d: %v", i, err)
		}
		defer p.Close()
		go p.CopyStdin(strings.NewReader(fmt.Sprintf("in%d", i)))
		var out, errOut bytes.Buffer
		x, err := p.Wait(&out, &errOut)
		if err != nil || x.Status() != i%7 || out.String() != fmt.Sprintf("out%din%d", i, i) || errOut.String() != fmt.Sprintf("err%d", i) {
			t.Fatalf("exec %d: status %+v err %v stdout %q stderr %q", i, x, err, out.String(), errOut.String())
		}
	}
	for i := range 20 {
		run(i)
	}
	st1, err := e.c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if execs, reused := st1.Execs-st0.Execs, st1.ExecsReused-st0.ExecsReused; execs != 20 || reused < 19 {
		t.Fatalf("20 execs: the daemon served %d, %d on a reused connection; want 19 reused", execs, reused)
	}
	out, _, code := e.ds("daemon", "status")
	if want := fmt.Sprintf("exec streams: %d (%d on reused connections)", st1.Execs, st1.ExecsReused); code != 0 || !strings.Contains(out, want) {
		t.Fatalf("daemon status (exit %d) does not say %q:\n%s", code, want, out)
	}

	// Closed before its exit: the process dies, the connection is not
	// reused, and the next exec runs.
	p, err := e.c.Exec(ctx, "s", &protocol.ExecStart{Argv: []string{"sleep", "319"}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "sleep to start", func() bool { return pidAlive(p.Started.PID) })
	p.Close()
	waitFor(t, 5*time.Second, "sleep to be killed", func() bool { return !pidAlive(p.Started.PID) })
	run(20)

	// Concurrent execs, each on its own connection, then reused.
	var wg sync.WaitGroup
	errs := make(chan error, 80)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				res := new(bytes.Buffer)
				p, err := e.c.Exec(ctx, "s", &protocol.ExecStart{Argv: []string{"echo", fmt.Sprint(g, i)}})
				if err != nil {
					errs <- err
					return
				}
				x, err := p.Wait(res, nil)
				p.Close()
				if err != nil || x.Status() != 0 || res.String() != fmt.Sprint(g, i)+"\n" {
					errs <- fmt.Errorf("exec %d/%d: %+v %v %q", g, i, x, err, res.String())
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st2, err := e.c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if reused := st2.ExecsReused - st1.ExecsReused; reused < 80-16 {
		t.Errorf("80 concurrent execs: %d on reused connections, want at least %d", reused, 80-16)
	}
}

// TestDaemonRestart: killing the daemon loses nothing; a durable process
// started before is re-attached through the new daemon.
func TestDaemonRestart(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	ctx := context.Background()
	p, err := e.c.Exec(ctx, "s", &protocol.ExecStart{Argv: []string{"sleep 1; echo survived"}, Shell: true, Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	syscallKill(st.PID)
	waitFor(t, 5*time.Second, "daemon to die", func() bool { return !pidAlive(st.PID) })
	// A killed Go process shows as a zombie before its last thread has
	// closed its files: wait until the socket no longer answers.
	waitFor(t, 5*time.Second, "daemon socket to close", func() bool {
		c, err := net.Dial("unix", filepath.Join(e.home, "darkshell.sock"))
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	p.Close()
	p2, err := e.c.Attach(ctx, "s", &protocol.ExecAttach{ID: p.Started.ID})
	if err != nil {
		t.Fatalf("attach through a new daemon: %v", err)
	}
	var out bytes.Buffer
	exit, err := p2.Wait(&out, nil)
	if err != nil || exit.Status() != 0 || out.String() != "survived\n" {
		t.Fatalf("exit %+v err %v out %q", exit, err, out.String())
	}
	st2, _ := e.c.Status(ctx)
	if st2.PID == st.PID {
		t.Fatal("daemon was not restarted")
	}
}

// TestBadTargets: unreachable hosts and changed host keys fail with clear
// errors and leave no record or process behind.
func TestBadTargets(t *testing.T) {
	e := newEnv(t)
	t.Run("unreachable", func(t *testing.T) {
		_, errOut, code := e.ds("sandbox", "create", "gone", "--driver", "ssh", "--ssh", "root@127.0.0.1:1", "--identity", e.sshd.ClientKey)
		if code == 0 || !strings.Contains(errOut, "127.0.0.1:1") {
			t.Fatalf("exit %d stderr %q", code, errOut)
		}
		if _, _, code := e.ds("sandbox", "get", "gone"); code == 0 {
			t.Fatal("a failed create left a record")
		}
	})
	t.Run("wrong host key", func(t *testing.T) {
		e.create("s")
		e.ds("daemon", "stop")
		e.sshd.RotateHostKey()
		_, errOut, code := e.ds("exec", "s", "--", "true")
		if code != 125 || !strings.Contains(strings.ToLower(errOut), "host key") {
			t.Fatalf("exit %d stderr %q", code, errOut)
		}
	})
}

// TestShellNoise: login-shell output before sandboxd starts is skipped.
func TestShellNoise(t *testing.T) {
	e := newEnv(t)
	if err := os.WriteFile(filepath.Join(e.sbHome, ".bashrc"), []byte("echo 'welcome to the sandbox host'\nprintf '\\x00\\xd5 not magic\\n'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.create("s")
	out, errOut, code := e.ds("exec", "s", "--", "echo", "clean")
	if code != 0 || out != "clean\n" {
		t.Fatalf("exit %d out %q err %q", code, out, errOut)
	}
}

// TestSandboxdKilledMidStream: the exec fails with a clear error, and the
// command does not keep running.
func TestSandboxdKilledMidStream(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	p, err := e.c.Exec(context.Background(), "s", &protocol.ExecStart{Argv: []string{"sleep", "317"}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "sleep", func() bool { return pidAlive(p.Started.PID) })
	for _, pid := range pgrep("sandboxd", e.sbHome) {
		syscallKill(pid)
	}
	if _, err = p.Wait(nil, nil); !errors.Is(err, stream.ErrNoExit) {
		t.Fatalf("exec after its sandboxd died: %v, want %v", err, stream.ErrNoExit)
	}
	waitFor(t, 5*time.Second, "the command to die with sandboxd", func() bool { return !pidAlive(p.Started.PID) })
	// The next exec works again (a new sandboxd is started).
	out, errOut, code := e.ds("exec", "s", "--", "echo", "back")
	if code != 0 || out != "back\n" {
		t.Fatalf("after kill: %d %q %q", code, out, errOut)
	}
}

// TestOversizedFrameThroughDaemon: a frame over the limit gets an error and
// the daemon keeps serving.
func TestOversizedFrameThroughDaemon(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	conn, err := rawUpgrade(e, "s")
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte{byte(protocol.FrameExecStart), 0x7f, 0xff, 0xff, 0xff})
	f, err := protocol.ReadFrame(conn, 0)
	conn.Close()
	if err != nil || f.Type != protocol.FrameError || !strings.Contains(string(f.Payload), "too large") {
		t.Fatalf("frame %v %q err %v", f.Type, f.Payload, err)
	}
	out, _, code := e.ds("exec", "s", "--", "echo", "ok")
	if code != 0 || out != "ok\n" {
		t.Fatal("daemon broken after an oversized frame")
	}
}

// TestFrontExec: with the daemon up, the thin front serves `darkshell exec`
// alone (DARKSHELL_CORE points nowhere, and it still works: output, exit
// status, stdin, -o json, a command that cannot be found); anything it
// cannot serve (an unknown sandbox, a refusal before the command started,
// another command) goes to darkshell-core, which says why.
func TestFrontExec(t *testing.T) {
	e := newEnv(t)
	e.create("s")
	front := func(stdin string, env []string, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(filepath.Join(binDir, "darkshell"), args...)
		cmd.Env = append(append(os.Environ(), "DARKSHELL_HOME="+e.home), env...)
		var o, eb bytes.Buffer
		cmd.Stdout, cmd.Stderr, cmd.Stdin = &o, &eb, strings.NewReader(stdin)
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return o.String(), eb.String(), code
	}
	noCore := []string{"DARKSHELL_CORE=/nonexistent/darkshell-core"}
	if out, errOut, code := front("", noCore, "exec", "s", "--", "sh", "-c", "echo out; echo err >&2; exit 7"); code != 7 || out != "out\n" || errOut != "err\n" {
		t.Fatalf("front exec: %d %q %q", code, out, errOut)
	}
	if out, errOut, code := front("piped\n", noCore, "exec", "-i", "s", "--", "cat"); code != 0 || out != "piped\n" {
		t.Fatalf("front exec -i: %d %q %q", code, out, errOut)
	}
	out, errOut, code := front("", noCore, "exec", "-o", "json", "s", "--", "sh", "-c", "printf hi; exit 3")
	var doc struct {
		Stdout string `json:"stdout"`
		Exit   int    `json:"exit_code"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 3 || doc.Stdout != "hi" || doc.Exit != 3 || doc.Status != 3 {
		t.Fatalf("front exec -o json: %d %q %q (%v)", code, out, errOut, err)
	}
	if _, errOut, code := front("", noCore, "exec", "s", "--", "/no/such/binary"); code != 127 || !strings.Contains(errOut, "exec in s:") {
		t.Fatalf("front exec of a missing binary: %d %q", code, errOut)
	}
	// Not the front's to serve: it runs the core (here: nowhere, so it says so).
	if _, errOut, code := front("", noCore, "exec", "nosuch", "--", "true"); code != 125 || !strings.Contains(errOut, "/nonexistent/darkshell-core") {
		t.Fatalf("unknown sandbox did not go to the core: %d %q", code, errOut)
	}
	if _, errOut, code := front("", noCore, "sandbox", "list"); code != 125 || !strings.Contains(errOut, "/nonexistent/darkshell-core") {
		t.Fatalf("sandbox list did not go to the core: %d %q", code, errOut)
	}
	// With the core next to it, the same refusal is the core's own message.
	if _, errOut, code := front("", nil, "exec", "nosuch", "--", "true"); code != 125 || !strings.Contains(errOut, "nosuch") {
		t.Fatalf("unknown sandbox: %d %q", code, errOut)
	}
}
