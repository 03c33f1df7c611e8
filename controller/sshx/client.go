package sshx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Client is an authenticated SSH connection. It is safe for concurrent use.
type Client struct {
	ssh    *ssh.Client
	target Target
	log    *slog.Logger

	done      chan struct{}
	closeOnce sync.Once
	mu        sync.Mutex
	err       error // why the connection ended
}

func newClient(sc *ssh.Client, t Target, opts Options, log *slog.Logger) *Client {
	c := &Client{ssh: sc, target: t, log: log, done: make(chan struct{})}
	go func() {
		err := sc.Wait()
		c.setErr(fmt.Errorf("ssh connection to %s closed: %w", t, orEOF(err)))
		close(c.done)
	}()
	if opts.KeepAliveInterval > 0 {
		go c.keepalive(opts.KeepAliveInterval, opts.KeepAliveMax)
	}
	return c
}

func orEOF(err error) error {
	if err == nil {
		return io.EOF
	}
	return err
}

func (c *Client) setErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

// keepalive sends keepalive@openssh.com every interval and closes the client
// once max requests in a row went unanswered. Any reply counts as an answer
// (OpenSSH answers this request with a failure message).
func (c *Client) keepalive(interval time.Duration, max int) {
	t := time.NewTicker(interval)
	defer t.Stop()
	replies := make(chan error, 1)
	pending, missed := false, 0
	for {
		select {
		case <-c.done:
			return
		case err := <-replies:
			pending = false
			if err != nil {
				missed++
			} else {
				missed = 0
			}
		case <-t.C:
			if pending {
				missed++
			} else {
				pending = true
				go func() {
					_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
					replies <- err
				}()
			}
		}
		if missed >= max {
			err := fmt.Errorf("ssh connection to %s is dead: %d keepalives in a row went unanswered (interval %s)", c.target, missed, interval)
			c.log.Warn("closing dead connection", "missed", missed, "interval", interval)
			c.setErr(err)
			c.ssh.Close()
			return
		}
	}
}

// Target returns the target the client is connected to.
func (c *Client) Target() Target { return c.target }

// SSH returns the underlying x/crypto/ssh client (for port forwards).
func (c *Client) SSH() *ssh.Client { return c.ssh }

// Done is closed when the connection has ended, for any reason.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the connection ended; it is nil while the connection is up.
func (c *Client) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Wait blocks until the connection ends and returns why.
func (c *Client) Wait() error {
	<-c.done
	return c.Err()
}

// Close closes the connection and every session on it.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.setErr(fmt.Errorf("ssh connection to %s: %w", c.target, ErrClosed))
		err = c.ssh.Close()
		<-c.done
	})
	return err
}

// ErrClosed is returned by operations on a client or process that was closed with Close.
var ErrClosed = errors.New("client closed")

// newSession opens a session channel, failing fast on a dead connection.
func (c *Client) newSession(ctx context.Context) (*ssh.Session, error) {
	if err := c.Err(); err != nil {
		return nil, err
	}
	type res struct {
		s   *ssh.Session
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := c.ssh.NewSession()
		ch <- res{s, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			if err := c.Err(); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("unable to open ssh session on %s: %w", c.target, r.err)
		}
		return r.s, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.err == nil {
				r.s.Close()
			}
		}()
		return nil, fmt.Errorf("unable to open ssh session on %s: %w", c.target, ctx.Err())
	case <-c.done:
		return nil, c.Err()
	}
}

// Run runs cmd with the user's login shell, feeding it stdin (if not nil),
// and returns its output and exit code. err is nil whenever the command ran
// to completion, whatever its exit code; a command killed by a signal
// reports 128+N. Cancelling ctx kills the command and returns ctx's error.
func (c *Client) Run(ctx context.Context, cmd string, stdin io.Reader) (stdout, stderr []byte, exitCode int, err error) {
	s, err := c.newSession(ctx)
	if err != nil {
		return nil, nil, -1, err
	}
	defer s.Close()
	// Locked buffers: on cancellation the session's copiers may still write.
	var out, errb syncBuffer
	s.Stdout, s.Stderr = &out, &errb
	if stdin != nil {
		s.Stdin = stdin
	}
	if err := s.Start(cmd); err != nil {
		return nil, nil, -1, fmt.Errorf("unable to start %q on %s: %w", cmd, c.target, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- s.Wait() }()
	select {
	case werr := <-waited:
		code, err := c.exitStatus(werr)
		return out.Bytes(), errb.Bytes(), code, err
	case <-ctx.Done():
		_ = s.Signal(ssh.SIGKILL)
		s.Close()
		return out.Bytes(), errb.Bytes(), -1, fmt.Errorf("%q on %s: %w", cmd, c.target, ctx.Err())
	case <-c.done:
		return out.Bytes(), errb.Bytes(), -1, c.Err()
	}
}

// exitStatus maps a session's Wait error to an exit code.
func (c *Client) exitStatus(err error) (int, error) {
	var ee *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		if sig := ee.Signal(); sig != "" {
			if n, ok := signalNumbers[ssh.Signal(sig)]; ok {
				return 128 + n, nil
			}
			return -1, fmt.Errorf("remote command killed by signal %s", sig)
		}
		return ee.ExitStatus(), nil
	case errors.As(err, &missing):
		if cerr := c.Err(); cerr != nil {
			return -1, cerr
		}
		return -1, fmt.Errorf("remote command on %s ended without an exit status (connection lost or sshd killed it)", c.target)
	default:
		if cerr := c.Err(); cerr != nil {
			return -1, cerr
		}
		return -1, fmt.Errorf("remote command on %s: %w", c.target, err)
	}
}

// signalNumbers maps SSH signal names to Linux signal numbers.
var signalNumbers = map[ssh.Signal]int{
	ssh.SIGHUP: 1, ssh.SIGINT: 2, ssh.SIGQUIT: 3, ssh.SIGILL: 4, ssh.SIGABRT: 6,
	ssh.SIGFPE: 8, ssh.SIGKILL: 9, ssh.SIGUSR1: 10, ssh.SIGSEGV: 11, ssh.SIGUSR2: 12,
	ssh.SIGPIPE: 13, ssh.SIGALRM: 14, ssh.SIGTERM: 15,
}

// Proc is a remote process started with [Client.Start].
type Proc struct {
	// Stdin is the process's standard input; closing it sends EOF.
	Stdin io.WriteCloser
	// Stdout is the process's standard output.
	Stdout io.Reader
	// Stderr keeps the last DefaultTailSize bytes of standard error.
	Stderr *Tail

	client    *Client
	cmd       string
	sess      *ssh.Session
	stdout    *io.PipeReader
	closeOnce sync.Once
	waitOnce  sync.Once
	code      int
	err       error
}

// Start starts cmd with the user's login shell. ctx bounds only opening the
// session and starting the command; the process runs until it exits, Close
// is called, or the connection dies.
func (c *Client) Start(ctx context.Context, cmd string) (*Proc, error) {
	s, err := c.newSession(ctx)
	if err != nil {
		return nil, err
	}
	p := &Proc{client: c, cmd: cmd, sess: s, Stderr: NewTail(DefaultTailSize)}
	s.Stderr = p.Stderr
	if p.Stdin, err = s.StdinPipe(); err != nil {
		s.Close()
		return nil, fmt.Errorf("unable to start %q on %s: %w", cmd, c.target, err)
	}
	stdout, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("unable to start %q on %s: %w", cmd, c.target, err)
	}
	if err := s.Start(cmd); err != nil {
		s.Close()
		return nil, fmt.Errorf("unable to start %q on %s: %w", cmd, c.target, err)
	}
	// Relay stdout through a pipe so that Close unblocks a pending Read at
	// once, even while the remote side has not acknowledged the close.
	pr, pw := io.Pipe()
	go func() {
		_, err := io.Copy(pw, stdout)
		pw.CloseWithError(err)
	}()
	p.Stdout, p.stdout = pr, pr
	return p, nil
}

// Wait waits for the process to exit and returns its exit code (128+N if
// killed by signal N). err is non-nil only if no exit code could be had.
// Read Stdout to its end before calling Wait, or the process may block.
func (p *Proc) Wait() (exitCode int, err error) {
	p.waitOnce.Do(func() {
		p.code, p.err = p.client.exitStatus(p.sess.Wait())
	})
	return p.code, p.err
}

// Close ends the process: it sends SIGTERM, closes the session (so stdin and
// stdout end)
// and makes pending and later reads of Stdout fail with ErrClosed.
func (p *Proc) Close() error {
	p.closeOnce.Do(func() {
		// No Stdin.Close here: x/crypto's CloseWrite races with a concurrent
		// Write, while closing the channel does not.
		// Best effort: OpenSSH delivers signals to the process (no pty:
		// it would otherwise only notice when it next reads or writes).
		_ = p.sess.Signal(ssh.SIGTERM)
		p.sess.Close()
		p.stdout.CloseWithError(fmt.Errorf("%q on %s: %w", p.cmd, p.client.target, ErrClosed))
	})
	return nil
}

// Conn returns the process as a byte stream: Read reads its stdout, Write
// writes its stdin, Close closes the session. This is the carrier that the
// darkshell protocol runs over when the process is `sandboxd serve`.
func (p *Proc) Conn() io.ReadWriteCloser { return procConn{p} }

type procConn struct{ p *Proc }

func (c procConn) Read(b []byte) (int, error)  { return c.p.Stdout.Read(b) }
func (c procConn) Write(b []byte) (int, error) { return c.p.Stdin.Write(b) }
func (c procConn) Close() error                { return c.p.Close() }

// CloseWrite closes the process's stdin, leaving stdout readable.
func (c procConn) CloseWrite() error { return c.p.Stdin.Close() }

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// Bytes returns a copy of the contents.
func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}
