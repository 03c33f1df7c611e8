package inject

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"

	"github.com/bohica-labs/darkshell/controller/sshx"
)

// Runner starts commands in the sandbox. cmd is a shell command line, run
// by the remote user's shell (as `ssh host CMD` does).
type Runner interface {
	Start(ctx context.Context, cmd string) (Proc, error)
}

// Proc is a started remote command: Read reads its stdout, Write writes its
// stdin, CloseWrite closes its stdin (EOF) leaving stdout readable, Close
// ends it. Stderr returns the (bounded) tail of its standard error. Wait
// returns its exit code once stdout has been read to the end.
type Proc interface {
	io.ReadWriteCloser
	CloseWrite() error
	Stderr() string
	Wait() (int, error)
}

// SSHRunner adapts an SSH client to a Runner.
func SSHRunner(c *sshx.Client) Runner { return sshRunner{c} }

type sshRunner struct{ c *sshx.Client }

func (r sshRunner) Start(ctx context.Context, cmd string) (Proc, error) {
	p, err := r.c.Start(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return sshProc{p}, nil
}

type sshProc struct{ p *sshx.Proc }

func (s sshProc) Read(b []byte) (int, error)  { return s.p.Stdout.Read(b) }
func (s sshProc) Write(b []byte) (int, error) { return s.p.Stdin.Write(b) }
func (s sshProc) CloseWrite() error           { return s.p.Stdin.Close() }
func (s sshProc) Close() error                { return s.p.Close() }
func (s sshProc) Stderr() string              { return s.p.Stderr.String() }
func (s sshProc) Wait() (int, error)          { return s.p.Wait() }

// output is the result of a short command run through a Runner.
type output struct {
	stdout, stderr string
	code           int
	writeErr       error // writing stdin failed (the command may have exited early)
}

// run runs cmd with stdin (may be nil), collecting its output. err is set
// only when no exit code could be had.
func run(ctx context.Context, r Runner, cmd string, stdin io.Reader) (output, error) {
	p, err := r.Start(ctx, cmd)
	if err != nil {
		return output{}, err
	}
	defer p.Close()
	stop := context.AfterFunc(ctx, func() { p.Close() })
	defer stop()

	var wg sync.WaitGroup
	var werr error
	wg.Go(func() {
		if stdin != nil {
			_, werr = io.Copy(p, stdin)
		}
		if cerr := p.CloseWrite(); werr == nil {
			werr = cerr
		}
	})
	var out bytes.Buffer
	_, rerr := io.Copy(&out, io.LimitReader(p, 1<<20))
	code, err := p.Wait()
	wg.Wait()
	if ctx.Err() != nil {
		return output{}, ctx.Err()
	}
	if err != nil {
		if rerr != nil {
			err = errors.Join(err, rerr)
		}
		return output{stdout: out.String(), stderr: p.Stderr()}, err
	}
	return output{stdout: out.String(), stderr: p.Stderr(), code: code, writeErr: werr}, nil
}
