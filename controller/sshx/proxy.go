package sshx

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// expandProxyCommand substitutes %h, %p, %r and %% the way OpenSSH does.
func expandProxyCommand(cmd string, t Target) (string, error) {
	var b strings.Builder
	for i := 0; i < len(cmd); i++ {
		if cmd[i] != '%' {
			b.WriteByte(cmd[i])
			continue
		}
		if i+1 == len(cmd) {
			return "", fmt.Errorf("ProxyCommand %q ends with a lone %%", cmd)
		}
		i++
		switch cmd[i] {
		case 'h':
			b.WriteString(t.Host)
		case 'p':
			port := t.Port
			if port == 0 {
				port = DefaultPort
			}
			b.WriteString(strconv.Itoa(port))
		case 'r':
			b.WriteString(t.User)
		case '%':
			b.WriteByte('%')
		default:
			return "", fmt.Errorf("ProxyCommand %q: unknown escape %%%c (supported: %%h %%p %%r %%%%)", cmd, cmd[i])
		}
	}
	return b.String(), nil
}

// proxyConn is a net.Conn over a ProxyCommand's stdin and stdout.
type proxyConn struct {
	cmd     *exec.Cmd
	r, w    *os.File // our ends: read from its stdout, write to its stdin
	stderr  *Tail
	waited  chan struct{}
	waitErr error
	once    sync.Once
}

// dialProxy starts the ProxyCommand. ctx only bounds the start; the command
// lives until the connection is closed.
func dialProxy(ctx context.Context, t Target) (*proxyConn, error) {
	line, err := expandProxyCommand(t.ProxyCommand, t)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("unable to start ProxyCommand: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("unable to start ProxyCommand: %w", err)
	}
	c := &proxyConn{r: outR, w: inW, stderr: NewTail(8 << 10), waited: make(chan struct{})}
	c.cmd = exec.Command("sh", "-c", line)
	c.cmd.Stdin, c.cmd.Stdout, c.cmd.Stderr = inR, outW, c.stderr
	// Its own process group, so Close can end helpers it spawned too.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = c.cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		outR.Close()
		inW.Close()
		return nil, fmt.Errorf("unable to start ProxyCommand %q: %w", line, err)
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.waited)
	}()
	return c, nil
}

// describe explains why the proxy connection failed, if the command died.
func (c *proxyConn) describe() string {
	select {
	case <-c.waited:
	case <-time.After(200 * time.Millisecond):
		return ""
	}
	msg := fmt.Sprintf("ProxyCommand %q exited (%v)", c.cmd.Args[len(c.cmd.Args)-1], c.waitErr)
	if s := strings.TrimSpace(c.stderr.String()); s != "" {
		msg += ": " + s
	}
	return msg
}

func (c *proxyConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *proxyConn) Write(p []byte) (int, error) { return c.w.Write(p) }

func (c *proxyConn) Close() error {
	c.once.Do(func() {
		c.w.Close()
		c.r.Close()
		select {
		case <-c.waited:
		case <-time.After(500 * time.Millisecond):
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.waited
		}
	})
	return nil
}

func (c *proxyConn) LocalAddr() net.Addr  { return pipeAddr("proxy") }
func (c *proxyConn) RemoteAddr() net.Addr { return pipeAddr("proxy") }

func (c *proxyConn) SetDeadline(t time.Time) error {
	if err := c.r.SetReadDeadline(t); err != nil {
		return err
	}
	return c.w.SetWriteDeadline(t)
}
func (c *proxyConn) SetReadDeadline(t time.Time) error  { return c.r.SetReadDeadline(t) }
func (c *proxyConn) SetWriteDeadline(t time.Time) error { return c.w.SetWriteDeadline(t) }

type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }
