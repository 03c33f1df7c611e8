package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bohica-labs/darkshell/internal/cpus"
)

// startWait bounds how long Dial waits for a freshly started agent.
const startWait = 2 * time.Second

// Dial connects to the agent listening on socket. When none answers it takes
// a lock next to the socket, checks again, and calls spawn to start one,
// then waits (at most 2 s) until the socket accepts.
func Dial(ctx context.Context, socket string, spawn func() error) (*net.UnixConn, error) {
	if c, err := dialUnix(socket); err == nil {
		return c, nil
	} else if !isMissing(err) {
		return nil, fmt.Errorf("unable to reach agent: %w", err)
	}
	dir := filepath.Dir(socket)
	if err := ensureDir(dir); err != nil {
		return nil, err
	}
	unlock, err := lock(filepath.Join(dir, "agent.lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if c, err := dialUnix(socket); err == nil {
		return c, nil
	}
	if err := spawn(); err != nil {
		return nil, fmt.Errorf("unable to start agent: %w", err)
	}
	deadline := time.Now().Add(startWait)
	for delay := time.Millisecond; ; delay = min(2*delay, 20*time.Millisecond) {
		c, err := dialUnix(socket)
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("agent did not come up on %s within %v: %w", socket, startWait, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
	}
}

func dialUnix(socket string) (*net.UnixConn, error) {
	return net.DialUnix("unix", nil, &net.UnixAddr{Name: socket, Net: "unix"})
}

// lock takes an exclusive flock on path and returns its release.
func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("unable to open agent lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("unable to lock %s: %w", path, err)
	}
	return func() { _ = f.Close() }, nil
}

// Spawner returns a spawn function for Dial that runs `exe agent --socket
// socket` plus extra arguments fully detached: in a new session, stdin from
// /dev/null, stdout and stderr appended to agent.log next to the socket, and
// not waited for, so that an SSH channel closes when serve exits.
func Spawner(exe, socket string, extra ...string) func() error {
	return func() error {
		logf, err := os.OpenFile(filepath.Join(filepath.Dir(socket), "agent.log"),
			os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("unable to open agent log: %w", err)
		}
		defer logf.Close()
		cmd := exec.Command(exe, append([]string{"agent", "--socket", socket}, extra...)...)
		cmd.Env = cpus.Env(os.Environ())
		cmd.Stdin = nil
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("unable to run %s: %w", exe, err)
		}
		return cmd.Process.Release()
	}
}

// Relay copies in to conn and conn to out until either direction ends or
// ctx is done, then closes conn. The bytes are not inspected: the handshake
// and the multiplexer run end to end between the client and the agent.
func Relay(ctx context.Context, conn net.Conn, in io.Reader, out io.Writer) error {
	errc := make(chan error, 2)
	go func() {
		_, err := io.Copy(conn, in)
		errc <- err
	}()
	go func() {
		_, err := io.Copy(out, conn)
		errc <- err
	}()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		err = ctx.Err()
	}
	_ = conn.Close()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}
