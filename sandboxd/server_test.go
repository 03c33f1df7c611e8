package sandboxd_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
	"github.com/bohica-labs/darkshell/sandboxd"
	"github.com/bohica-labs/darkshell/sandboxd/internal/testclient"
)

// newServer returns a Server whose default directory is a fresh temp dir.
func newServer(t testing.TB) (*sandboxd.Server, string) {
	t.Helper()
	dir := t.TempDir()
	srv := sandboxd.New(sandboxd.Options{DefaultDir: dir})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("close server: %v", err)
		}
	})
	return srv, dir
}

// dial serves a new connection on srv and returns a connected client.
func dial(t testing.TB, srv *sandboxd.Server) *testclient.Client {
	t.Helper()
	a, b := testclient.SocketPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(ctx, a) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Logf("ServeConn: %v", err)
		}
	})
	return testclient.Connect(t, b)
}

func TestExec(t *testing.T) {
	srv, _ := newServer(t)
	c := dial(t, srv)
	tests := []struct {
		name           string
		req            protocol.ExecStart
		code, signal   int
		stdout, stderr string
	}{
		{name: "true", req: protocol.ExecStart{Argv: []string{"true"}}},
		{name: "exit 3", req: protocol.ExecStart{Argv: []string{"sh", "-c", "exit 3"}}, code: 3},
		{name: "shell mode", req: protocol.ExecStart{Argv: []string{"echo a b | tr a-z A-Z"}, Shell: true}, stdout: "A B\n"},
		{name: "killed by signal", req: protocol.ExecStart{Argv: []string{"sh", "-c", "kill -9 $$"}}, code: -1, signal: 9},
		{name: "stderr separate", req: protocol.ExecStart{Argv: []string{"sh", "-c", "echo out; echo err >&2; echo out2"}}, stdout: "out\nout2\n", stderr: "err\n"},
		{name: "env override", req: protocol.ExecStart{Argv: []string{"sh", "-c", "echo $FOO"}, Env: []string{"FOO=1", "FOO=2"}}, stdout: "2\n"},
		{name: "stdin is /dev/null", req: protocol.ExecStart{Argv: []string{"cat"}}},
		{name: "relative dir", req: protocol.ExecStart{Argv: []string{"pwd"}, Dir: "."}, stdout: "<dir>\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			started, r, err := c.Run(t, &tt.req)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if started.PID <= 0 || !strings.HasPrefix(started.ID, "p-") || started.Attached {
				t.Errorf("started = %+v", started)
			}
			if r.Exit.Code != tt.code || r.Exit.Signal != tt.signal {
				t.Errorf("exit = %+v, want code %d signal %d", r.Exit, tt.code, tt.signal)
			}
			if tt.stdout != "<dir>\n" && string(r.Stdout) != tt.stdout {
				t.Errorf("stdout = %q, want %q", r.Stdout, tt.stdout)
			}
			if string(r.Stderr) != tt.stderr {
				t.Errorf("stderr = %q, want %q", r.Stderr, tt.stderr)
			}
		})
	}
	waitFor(t, "processes forgotten", func() bool { return srv.Processes() == 0 })
}

func TestExecStartErrors(t *testing.T) {
	srv, dir := newServer(t)
	c := dial(t, srv)
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("echo hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badInterp := filepath.Join(dir, "badinterp")
	if err := os.WriteFile(badInterp, []byte("#!/nonexistent/interpreter\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  protocol.ExecStart
		code string
		msg  string
	}{
		{"not found", protocol.ExecStart{Argv: []string{"no-such-command-xyz"}}, protocol.CodeNotFound, "no-such-command-xyz"},
		{"not found path", protocol.ExecStart{Argv: []string{"/no/such/file"}}, protocol.CodeNotFound, "/no/such/file"},
		{"not found in request PATH", protocol.ExecStart{Argv: []string{"sh"}, Env: []string{"PATH=" + dir}}, protocol.CodeNotFound, "sh"},
		{"not executable", protocol.ExecStart{Argv: []string{plain}}, protocol.CodeCannotInvoke, "permission denied"},
		{"not executable in PATH", protocol.ExecStart{Argv: []string{"plain"}, Env: []string{"PATH=" + dir}}, protocol.CodeCannotInvoke, "permission denied"},
		{"directory", protocol.ExecStart{Argv: []string{dir}}, protocol.CodeCannotInvoke, "directory"},
		{"bad interpreter", protocol.ExecStart{Argv: []string{badInterp}}, protocol.CodeCannotInvoke, "interpreter"},
		{"missing dir", protocol.ExecStart{Argv: []string{"true"}, Dir: "/no/such/dir"}, protocol.CodeCannotInvoke, "/no/such/dir"},
		{"invalid request", protocol.ExecStart{Argv: []string{""}}, protocol.CodeBadRequest, "argv"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := c.Run(t, &tt.req)
			re, ok := protocol.AsRemoteError(err)
			if !ok {
				t.Fatalf("err = %v, want remote error %s", err, tt.code)
			}
			if re.Code != tt.code || !strings.Contains(re.Message, tt.msg) {
				t.Errorf("error = %s %q, want %s containing %q", re.Code, re.Message, tt.code, tt.msg)
			}
		})
	}
}

func TestStdin(t *testing.T) {
	srv, _ := newServer(t)
	c := dial(t, srv)

	t.Run("echo through cat", func(t *testing.T) {
		s := c.Open(t, protocol.FrameExecStart, &protocol.ExecStart{Argv: []string{"cat"}, Stdin: true})
		if _, err := s.Started(); err != nil {
			t.Fatal(err)
		}
		if err := s.Data(protocol.FrameStdin, []byte("hello\n")); err != nil {
			t.Fatal(err)
		}
		if err := s.Frame(protocol.FrameStdinEOF, nil); err != nil {
			t.Fatal(err)
		}
		r, err := s.Output(nil)
		if err != nil {
			t.Fatal(err)
		}
		if string(r.Stdout) != "hello\n" || r.Exit.Code != 0 {
			t.Errorf("stdout %q exit %+v", r.Stdout, r.Exit)
		}
	})

	t.Run("binary round trip", func(t *testing.T) {
		var in []byte
		for range 300 {
			for b := range 256 {
				in = append(in, byte(b))
			}
		}
		s := c.Open(t, protocol.FrameExecStart, &protocol.ExecStart{Argv: []string{"cat"}, Stdin: true})
		if _, err := s.Started(); err != nil {
			t.Fatal(err)
		}
		go func() {
			_ = s.Data(protocol.FrameStdin, in)
			_ = s.Frame(protocol.FrameStdinEOF, nil)
		}()
		r, err := s.Output(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(r.Stdout, in) {
			t.Errorf("got %d bytes back, want the %d sent", len(r.Stdout), len(in))
		}
	})

	t.Run("refused without stdin", func(t *testing.T) {
		s := c.Open(t, protocol.FrameExecStart, &protocol.ExecStart{Argv: []string{"sleep", "10"}})
		if _, err := s.Started(); err != nil {
			t.Fatal(err)
		}
		if err := s.Data(protocol.FrameStdin, []byte("x")); err != nil {
			t.Fatal(err)
		}
		_, err := s.Output(nil)
		if !testclient.IsCode(err, protocol.CodeBadRequest) {
			t.Errorf("err = %v, want bad_request", err)
		}
	})
}

func TestLargeOutput(t *testing.T) {
	srv, _ := newServer(t)
	c := dial(t, srv)
	size := 64 << 20
	if testing.Short() || raceEnabled {
		size = 8 << 20
	}
	s := c.Open(t, protocol.FrameExecStart, &protocol.ExecStart{
		Argv: []string{"head", "-c", strconv.Itoa(size), "/dev/zero"}, RingBytes: 256 << 10,
	})
	if _, err := s.Started(); err != nil {
		t.Fatal(err)
	}
	var got, frames int
	var peak uint64
	var ms runtime.MemStats
	r, err := s.Output(func(_ protocol.FrameType, p []byte) {
		got += len(p)
		frames++
		if len(p) > protocol.DataChunk {
			t.Errorf("data frame of %d bytes", len(p))
		}
		if frames%256 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != size || r.Exit.Code != 0 {
		t.Fatalf("got %d bytes, exit %+v; want %d", got, r.Exit, size)
	}
	// Server and client share this heap: neither may have buffered the output.
	if peak > 48<<20 {
		t.Errorf("heap in use peaked at %d MiB while streaming %d MiB", peak>>20, size>>20)
	}
}

func TestTimeoutKillsGroup(t *testing.T) {
	srv, _ := newServer(t)
	c := dial(t, srv)
	s := c.Open(t, protocol.FrameExecStart, &protocol.ExecStart{
		Argv: []string{"sh", "-c", "sleep 100 & sleep 100"}, TimeoutMs: 300,
	})
	started, err := s.Started()
	if err != nil {
		t.Fatal(err)
	}
	var group []int
	waitFor(t, "both sleeps started", func() bool {
		group = groupMembers(started.PID)
		return len(group) >= 3
	})
	r, err := s.Output(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Exit.TimedOut || r.Exit.Signal != int(syscall.SIGTERM) {
		t.Errorf("exit = %+v, want timed out by SIGTERM", r.Exit)
	}
	waitFor(t, "whole group dead", func() bool { return allDead(group) })
}

func TestDisconnectKillsNonDurable(t *testing.T) {
	srv, _ := newServer(t)
	c := dial(t, srv)
	s := c.Open(t, protocol.FrameExecStart, &protocol.ExecStart{Argv: []string{"sh", "-c", "sleep 100 & sleep 100"}})
	started, err := s.Started()
	if err != nil {
		t.Fatal(err)
	}
	var group []int
	waitFor(t, "both sleeps started", func() bool {
		group = groupMembers(started.PID)
		return len(group) >= 3
	})
	_ = c.Close()
	waitFor(t, "whole group dead", func() bool { return allDead(group) })
	waitFor(t, "process forgotten", func() bool { return srv.Processes() == 0 })
}

func TestDurableReattach(t *testing.T) {
	srv, dir := newServer(t)
	c1 := dial(t, srv)
	s := c1.Open(t, protocol.FrameExecStart, &protocol.ExecStart{
		Argv:    []string{"echo one; while [ ! -e go ]; do sleep 0.01; done; echo two; exit 7"},
		Shell:   true,
		Durable: true,
	})
	started, err := s.Started()
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.Next()
	if err != nil || f.Type != protocol.FrameStdout || string(f.Payload) != "one\n" {
		t.Fatalf("first frame %s %q, %v", f.Type, f.Payload, err)
	}
	// Connection cut: the process must survive.
	_ = c1.Close()
	time.Sleep(50 * time.Millisecond)
	if err := syscall.Kill(started.PID, 0); err != nil {
		t.Fatalf("durable process died with its connection: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "process finished", func() bool { return syscall.Kill(started.PID, 0) != nil })

	c2 := dial(t, srv)
	tests := []struct {
		name     string
		offset   int64
		want     string
		wantOff  int64
		wantLost int64
	}{
		{"missed output", 4, "two\n", 4, 0},
		{"everything", 0, "one\ntwo\n", 0, 0},
		{"past the end", 100, "", 8, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := c2.Open(t, protocol.FrameExecAttach, &protocol.ExecAttach{ID: started.ID, Offset: tt.offset})
			st, err := a.Started()
			if err != nil {
				t.Fatal(err)
			}
			if !st.Attached || st.PID != started.PID || st.Offset != tt.wantOff || st.Lost != tt.wantLost {
				t.Errorf("started = %+v", st)
			}
			r, err := a.Output(nil)
			if err != nil {
				t.Fatal(err)
			}
			if string(r.Stdout) != tt.want || r.Exit.Code != 7 {
				t.Errorf("stdout %q exit %+v, want %q and 7", r.Stdout, r.Exit, tt.want)
			}
		})
	}

	var list protocol.ExecList
	if err := c2.Request(t, protocol.FrameExecList, &protocol.ExecListRequest{}, protocol.FrameExecListReply, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Processes) != 1 || list.Processes[0].ID != started.ID || list.Processes[0].Running ||
		list.Processes[0].Exit == nil || list.Processes[0].Exit.Code != 7 || list.Processes[0].OutputBytes != 8 {
		t.Errorf("exec list = %+v", list)
	}

	a := c2.Open(t, protocol.FrameExecAttach, &protocol.ExecAttach{ID: "p-nope"})
	if _, err := a.Started(); !testclient.IsCode(err, protocol.CodeNoProcess) {
		t.Errorf("attach unknown id: %v, want no_process", err)
	}
}

func TestLostOutputAndTakeover(t *testing.T) {
	srv, _ := newServer(t)
	c1 := dial(t, srv)
	// 4 KiB of output into a 1 KiB ring while nobody is attached.
	s := c1.Open(t, protocol.FrameExecStart, &protocol.ExecStart{
		Argv: []string{"sh", "-c", "read x; head -c 4096 /dev/zero; read y"}, Stdin: true, Durable: true, RingBytes: 1024,
	})
	started, err := s.Started()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Frame(protocol.FrameDetach, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(); err == nil {
		t.Fatal("stream still open after detach")
	}

	c2 := dial(t, srv)
	a := c2.Open(t, protocol.FrameExecAttach, &protocol.ExecAttach{ID: started.ID, Stdin: true})
	if _, err := a.Started(); err != nil {
		t.Fatal(err)
	}
	if err := a.Data(protocol.FrameStdin, []byte("\n")); err != nil {
		t.Fatal(err)
	}
	var got int
	for got < 4096 {
		f, err := a.Next()
		if err != nil {
			t.Fatal(err)
		}
		got += len(f.Payload)
	}
	if err := a.Frame(protocol.FrameDetach, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Next(); err == nil {
		t.Fatal("stream still open after detach")
	}

	// Nobody attached: the ring keeps the last 1 KiB only.
	b := c2.Open(t, protocol.FrameExecAttach, &protocol.ExecAttach{ID: started.ID, Stdin: true})
	st, err := b.Started()
	if err != nil {
		t.Fatal(err)
	}
	if st.Offset != 4096-1024 || st.Lost != 4096-1024 {
		t.Errorf("started = %+v, want offset and lost 3072", st)
	}
	// A second attach takes over: the first stream is closed.
	c3 := dial(t, srv)
	d := c3.Open(t, protocol.FrameExecAttach, &protocol.ExecAttach{ID: started.ID, Offset: 4096, Stdin: true})
	if _, err := d.Started(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Output(nil); err == nil {
		t.Error("old client still served after takeover")
	}
	if err := d.Data(protocol.FrameStdin, []byte("\n")); err != nil {
		t.Fatal(err)
	}
	r, err := d.Output(nil)
	if err != nil || r.Exit.Code != 0 || len(r.Stdout) != 0 {
		t.Errorf("output %q exit %+v err %v", r.Stdout, r.Exit, err)
	}
}

func TestIdempotentStart(t *testing.T) {
	srv, dir := newServer(t)
	c := dial(t, srv)
	req := &protocol.ExecStart{Argv: []string{"echo run >> count; echo ran"}, Shell: true, IdempotencyKey: "job-1"}
	first, r1, err := c.Run(t, req)
	if err != nil {
		t.Fatal(err)
	}
	second, r2, err := c.Run(t, req)
	if err != nil {
		t.Fatal(err)
	}
	if first.Attached || !second.Attached || first.ID != second.ID {
		t.Errorf("first %+v, second %+v: want the second attached to the first", first, second)
	}
	if string(r1.Stdout) != "ran\n" || string(r2.Stdout) != "ran\n" || r2.Exit.Code != 0 {
		t.Errorf("outputs %q, %q, exit %+v", r1.Stdout, r2.Stdout, r2.Exit)
	}
	b, err := os.ReadFile(filepath.Join(dir, "count"))
	if err != nil || string(b) != "run\n" {
		t.Errorf("count file %q (%v): the command must run once", b, err)
	}
	if n := srv.Processes(); n != 1 {
		t.Errorf("%d processes tracked, want the keyed one retained", n)
	}
}

func TestPTY(t *testing.T) {
	srv, _ := newServer(t)
	c := dial(t, srv)

	t.Run("tty", func(t *testing.T) {
		_, r, err := c.Run(t, &protocol.ExecStart{Argv: []string{"tty"}, PTY: &protocol.PTY{Rows: 24, Cols: 80}})
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`^/dev/pts/\d+\r?\n$`).Match(r.Stdout) || r.Exit.Code != 0 {
			t.Errorf("tty printed %q, exit %+v", r.Stdout, r.Exit)
		}
	})

	t.Run("term and size", func(t *testing.T) {
		_, r, err := c.Run(t, &protocol.ExecStart{Argv: []string{"echo $TERM; stty size"}, Shell: true, PTY: &protocol.PTY{Rows: 33, Cols: 99}})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.ReplaceAll(string(r.Stdout), "\r", ""); got != "xterm-256color\n33 99\n" {
			t.Errorf("output %q", got)
		}
	})

	t.Run("resize", func(t *testing.T) {
		s := c.Open(t, protocol.FrameExecStart, &protocol.ExecStart{
			Argv: []string{"read x; stty size"}, Shell: true, Stdin: true, PTY: &protocol.PTY{Rows: 24, Cols: 80},
		})
		if _, err := s.Started(); err != nil {
			t.Fatal(err)
		}
		if err := s.Msg(protocol.FrameResize, &protocol.ResizeMsg{Rows: 40, Cols: 100}); err != nil {
			t.Fatal(err)
		}
		if err := s.Data(protocol.FrameStdin, []byte("\n")); err != nil {
			t.Fatal(err)
		}
		r, err := s.Output(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(r.Stdout), "40 100") {
			t.Errorf("stty size after resize: %q", r.Stdout)
		}
	})
}

func TestSignalForwarding(t *testing.T) {
	srv, _ := newServer(t)
	c := dial(t, srv)
	for _, pty := range []bool{false, true} {
		t.Run(fmt.Sprintf("pty=%v", pty), func(t *testing.T) {
			req := &protocol.ExecStart{Argv: []string{"sleep", "100"}}
			if pty {
				req.PTY = &protocol.PTY{Rows: 24, Cols: 80}
			}
			s := c.Open(t, protocol.FrameExecStart, req)
			if _, err := s.Started(); err != nil {
				t.Fatal(err)
			}
			if err := s.Msg(protocol.FrameSignal, &protocol.SignalMsg{Signal: int(syscall.SIGINT)}); err != nil {
				t.Fatal(err)
			}
			r, err := s.Output(nil)
			if err != nil {
				t.Fatal(err)
			}
			if r.Exit.Signal != int(syscall.SIGINT) || r.Exit.Code != -1 {
				t.Errorf("exit = %+v, want SIGINT", r.Exit)
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	srv, _ := newServer(t)
	c := dial(t, srv)
	tests := []struct {
		name string
		raw  []byte
		code string
	}{
		{"oversized", []byte{byte(protocol.FrameExecStart), 0x7f, 0, 0, 0}, protocol.CodeLimit},
		{"not a request", protocol.AppendFrame(nil, protocol.FrameStdout, []byte("x")), protocol.CodeBadRequest},
		{"unknown kind", protocol.AppendFrame(nil, 0x7f, []byte("{}")), protocol.CodeUnsupported},
		{"garbage json", protocol.AppendFrame(nil, protocol.FrameExecStart, []byte("{nope")), protocol.CodeBadRequest},
		{"invalid attach", protocol.AppendFrame(nil, protocol.FrameExecAttach, []byte(`{"id":""}`)), protocol.CodeBadRequest},
		{"type zero", []byte{0, 0, 0, 0, 0}, protocol.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := c.OpenRaw(t, tt.raw)
			f, err := s.Next()
			if err != nil {
				t.Fatal(err)
			}
			if err := protocol.ErrorFromFrame(f); !testclient.IsCode(err, tt.code) {
				t.Errorf("reply %s: %v, want %s", f.Type, err, tt.code)
			}
			if _, err := s.Next(); err == nil {
				t.Error("stream not closed after the error")
			}
		})
	}
	// The session still serves.
	_, r, err := c.Run(t, &protocol.ExecStart{Argv: []string{"echo", "ok"}})
	if err != nil || string(r.Stdout) != "ok\n" {
		t.Errorf("exec after bad requests: %q, %v", r.Stdout, err)
	}
}

func TestInfo(t *testing.T) {
	srv, _ := newServer(t)
	c := dial(t, srv)
	if !c.Hello.Has(protocol.CapExec) || !c.Hello.Has(protocol.CapPTY) || !c.Hello.Has(protocol.CapAttach) ||
		c.Hello.Role != protocol.RoleSandboxd || c.Hello.BuildVersion != protocol.BuildVersion {
		t.Errorf("hello = %+v", c.Hello)
	}
	var info protocol.Info
	if err := c.Request(t, protocol.FrameInfo, &protocol.InfoRequest{}, protocol.FrameInfoReply, &info); err != nil {
		t.Fatal(err)
	}
	if info.PID != os.Getpid() || info.RSSBytes <= 0 || info.Processes != 0 || info.Role != protocol.RoleSandboxd {
		t.Errorf("info = %+v", info)
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// groupMembers lists the live processes of process group pgid.
func groupMembers(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pg, state, ok := procStat(pid); ok && pg == pgid && state != "Z" {
			out = append(out, pid)
		}
	}
	return out
}

// allDead reports whether every pid is gone or a zombie.
func allDead(pids []int) bool {
	for _, pid := range pids {
		if _, state, ok := procStat(pid); ok && state != "Z" {
			return false
		}
	}
	return true
}

// procStat returns the process group and state of pid from /proc/PID/stat.
func procStat(pid int) (pgid int, state string, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, "", false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 {
		return 0, "", false
	}
	pg, err := strconv.Atoi(f[2])
	if err != nil {
		return 0, "", false
	}
	return pg, f[0], true
}
