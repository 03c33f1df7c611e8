package agent_test

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
	"github.com/bohica-labs/darkshell/sandboxd"
	"github.com/bohica-labs/darkshell/sandboxd/agent"
	"github.com/bohica-labs/darkshell/sandboxd/internal/testclient"
)

// startAgent runs an in-process agent on socket; it stops at cleanup.
func startAgent(t *testing.T, socket string, idle time.Duration) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	srv := sandboxd.New(sandboxd.Options{DefaultDir: t.TempDir()})
	go func() {
		done <- agent.Run(ctx, agent.Options{Socket: socket, Idle: idle, Server: srv})
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("agent did not stop")
		}
	})
	return done
}

// relayClient dials the agent the way `sandboxd serve` does and returns a
// protocol client talking through the relay.
func relayClient(t *testing.T, socket string, spawn func() error) *testclient.Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	conn, err := agent.Dial(ctx, socket, spawn)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	client, serveEnd := net.Pipe()
	t.Cleanup(func() { _ = client.Close() })
	go func() {
		_ = agent.Relay(ctx, conn, serveEnd, serveEnd)
		_ = serveEnd.Close()
	}()
	return testclient.Connect(t, client)
}

func TestDialSpawnsOnceAndRelays(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "run", agent.SocketName)
	spawned := 0
	spawn := func() error {
		spawned++
		startAgent(t, socket, time.Minute)
		return nil
	}

	c1 := relayClient(t, socket, spawn)
	s := c1.Open(t, protocol.FrameExecStart, &protocol.ExecStart{
		Argv: []string{"echo one; read x; echo two; exit 5"}, Shell: true, Stdin: true, Durable: true,
	})
	started, err := s.Started()
	if err != nil {
		t.Fatal(err)
	}
	if f, err := s.Next(); err != nil || string(f.Payload) != "one\n" {
		t.Fatalf("first output %q, %v", f.Payload, err)
	}
	_ = c1.Close() // the SSH connection dies

	c2 := relayClient(t, socket, spawn)
	a := c2.Open(t, protocol.FrameExecAttach, &protocol.ExecAttach{ID: started.ID, Offset: 4, Stdin: true})
	if st, err := a.Started(); err != nil || !st.Attached || st.Offset != 4 {
		t.Fatalf("attach: %+v, %v", st, err)
	}
	if err := a.Data(protocol.FrameStdin, []byte("\n")); err != nil {
		t.Fatal(err)
	}
	r, err := a.Output(nil)
	if err != nil || string(r.Stdout) != "two\n" || r.Exit.Code != 5 {
		t.Fatalf("output %q exit %+v err %v", r.Stdout, r.Exit, err)
	}
	if spawned != 1 {
		t.Errorf("agent spawned %d times, want 1", spawned)
	}
	if st, err := os.Stat(socket); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode: %v %v", st.Mode(), err)
	}
}

func TestAgentIdleExit(t *testing.T) {
	socket := filepath.Join(t.TempDir(), agent.SocketName)
	// A stale socket file from a crashed agent must not stop a new one.
	if err := os.WriteFile(socket, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	done := startAgent(t, socket, 200*time.Millisecond)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("agent: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("idle agent did not exit")
	}
	if _, err := os.Stat(socket); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestSocketPath(t *testing.T) {
	tmp := t.TempDir()
	long := filepath.Join(tmp, strings.Repeat("x", 120))
	tests := []struct {
		name           string
		runtime, xdg   string
		home           string
		want, wantAlso string
	}{
		{name: "explicit", runtime: tmp, want: filepath.Join(tmp, "agent.sock")},
		{name: "xdg", xdg: tmp, home: "/nonexistent", want: filepath.Join(tmp, "darkshell-sandboxd", "v1.2", "agent.sock")},
		{name: "home", xdg: "/nonexistent-xdg", home: tmp, want: filepath.Join(tmp, ".cache/darkshell/sandboxd/v1.2/run/agent.sock")},
		{name: "too long", runtime: long, wantAlso: filepath.Join(os.TempDir(), "darkshell-sandboxd-")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SANDBOXD_RUNTIME_DIR", tt.runtime)
			t.Setenv("XDG_RUNTIME_DIR", tt.xdg)
			t.Setenv("HOME", tt.home)
			got, err := agent.SocketPath("v1.2")
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != "" && got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
			if tt.wantAlso != "" && !strings.HasPrefix(got, tt.wantAlso) {
				t.Errorf("got %s, want prefix %s", got, tt.wantAlso)
			}
			if len(got) > 107 {
				t.Errorf("socket path of %d bytes", len(got))
			}
		})
	}
}

// pipes joins a child's stdout (read) and stdin (write) into one carrier.
type pipes struct {
	io.Reader
	io.WriteCloser
}

// TestServeBinary runs the real binary: two `sandboxd serve` processes in a
// row share one detached agent, and serve exits as soon as its stdin ends.
func TestServeBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the sandboxd binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sandboxd")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/sandboxd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Skipf("cannot build sandboxd: %v\n%s", err, out)
	}
	runDir := filepath.Join(dir, "run")

	var agentPID int
	t.Cleanup(func() {
		if agentPID > 0 {
			_ = syscall.Kill(agentPID, syscall.SIGTERM)
		}
	})
	for i := range 2 {
		cmd := exec.Command(bin, "serve")
		cmd.Env = append(os.Environ(), "SANDBOXD_RUNTIME_DIR="+runDir, "HOME="+dir)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c := testclient.Connect(t, pipes{stdout, stdin})
		var info protocol.Info
		if err := c.Request(t, protocol.FrameInfo, &protocol.InfoRequest{}, protocol.FrameInfoReply, &info); err != nil {
			t.Fatal(err)
		}
		if info.PID == cmd.Process.Pid {
			t.Errorf("serve %d answered itself instead of relaying to the agent", i)
		}
		if i == 1 && info.PID != agentPID {
			t.Errorf("second serve reached agent %d, want the first one %d", info.PID, agentPID)
		}
		agentPID = info.PID
		_, r, err := c.Run(t, &protocol.ExecStart{Argv: []string{"echo", "hi"}})
		if err != nil || string(r.Stdout) != "hi\n" {
			t.Fatalf("exec through the agent: %q, %v", r.Stdout, err)
		}
		_ = c.Close()
		_ = stdin.Close()
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatal("serve did not exit after its stdin closed")
		}
	}
	if err := syscall.Kill(agentPID, 0); err != nil {
		t.Errorf("agent %d gone after serve exited: %v", agentPID, err)
	}
	if _, err := os.Stat(filepath.Join(runDir, "agent.log")); err != nil {
		t.Errorf("agent log: %v", err)
	}
}
