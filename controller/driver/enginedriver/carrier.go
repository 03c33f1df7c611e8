package enginedriver

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/bohica-labs/darkshell/controller/inject"
)

// closeGrace is how long Close waits for the exec client to end on its
// own (stdin closed: sandboxd exits) before killing it.
const closeGrace = 3 * time.Second

// execRunner runs commands in a container with `ENGINE exec -i`: the
// carrier of the zero-setup injection and of the session.
type execRunner struct {
	eng       Engine
	env       []string
	container string
}

var _ inject.Runner = execRunner{}

// Start runs cmd with the container's /bin/sh. The process is not tied to
// ctx: a session carrier outlives the request that dialled it.
func (r execRunner) Start(ctx context.Context, cmd string) (inject.Proc, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := r.eng.command(context.Background(), r.env, "exec", "-i", r.container, "/bin/sh", "-c", cmd)
	if err != nil {
		return nil, err
	}
	return startProc(c)
}

// proc is a running exec client. Its stdin and stdout are plain pipes
// (not exec's StdoutPipe) so that Wait may run at any time without
// closing the read side under a reader.
type proc struct {
	cmd    *exec.Cmd
	stdin  *os.File
	stdout *os.File
	stderr *tailBuffer

	done chan struct{}
	code int
	err  error

	closeOnce sync.Once
}

func startProc(cmd *exec.Cmd) (*proc, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, stdin: inW, stdout: outR, stderr: &tailBuffer{max: 8 << 10}, done: make(chan struct{})}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, p.stderr
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, err
	}
	go func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee) && ee.ExitCode() >= 0:
			p.code = ee.ExitCode()
		default:
			p.err = err
		}
		close(p.done)
	}()
	return p, nil
}

func (p *proc) Read(b []byte) (int, error)  { return p.stdout.Read(b) }
func (p *proc) Write(b []byte) (int, error) { return p.stdin.Write(b) }
func (p *proc) CloseWrite() error           { return p.stdin.Close() }
func (p *proc) Stderr() string              { return p.stderr.String() }

// Wait returns the exit code of the command in the container (the engine
// passes it through; 125 and above 125 are the engine's own failures).
func (p *proc) Wait() (int, error) {
	<-p.done
	return p.code, p.err
}

// Close ends the command: stdin is closed (sandboxd exits on EOF) and the
// client is killed if it has not ended within closeGrace.
func (p *proc) Close() error {
	p.closeOnce.Do(func() {
		p.stdin.Close()
		p.stdout.Close()
		go func() {
			select {
			case <-p.done:
			case <-time.After(closeGrace):
				p.cmd.Process.Kill()
			}
		}()
	})
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

var _ io.ReadWriteCloser = (*proc)(nil)

// StartProc starts cmd (a client whose stdin and stdout are the stream to
// a command, as `podman exec -i` or darkshell-kube exec) as an inject.Proc,
// for drivers whose carrier is a local program.
func StartProc(cmd *exec.Cmd) (inject.Proc, error) { return startProc(cmd) }
