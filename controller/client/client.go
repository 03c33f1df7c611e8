// Package client is the Go client of the controller daemon's control API.
// Programs use it to create sandboxes and run commands in them; the darkshell
// CLI is built on it. The daemon is started on demand, like ssh's
// ControlPersist: the first call finds no socket and starts one.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/controller/stream"
	"github.com/bohica-labs/darkshell/internal/cpus"
	"github.com/bohica-labs/darkshell/protocol"
)

// Options configure a Client.
type Options struct {
	// Home is the installation's state dir; empty means state.DefaultDir().
	Home string
	// NoAutoStart disables starting the daemon when none answers.
	NoAutoStart bool
	// Darkshell is the darkshell binary used to start the daemon; empty
	// means this executable if it is darkshell, else `darkshell` on $PATH.
	Darkshell string
	// StartTimeout bounds waiting for a started daemon (default 5 s).
	StartTimeout time.Duration
}

// Client talks to one installation's daemon.
type Client struct {
	home *state.Home
	opts Options
	http *http.Client

	spareMu sync.Mutex // guards the spare, idle and closed
	spare   net.Conn   // dialled ahead for the next exec stream
	spareAt time.Time
	idle    map[string][]idleExec // per sandbox: connections that ran an exec and can run the next
	closed  bool
	execs   atomic.Int64 // exec streams opened without a spare
}

// idleExec is a connection whose exec has ended and whose daemon agreed to
// run the next exec of the same sandbox on it (api.HeaderExecReuse).
type idleExec struct {
	conn net.Conn
	r    *bufio.Reader
	at   time.Time
}

const (
	// spareMaxAge bounds how long a spare connection waits for its exec:
	// well under the daemon's 10 s limit for a request to arrive.
	spareMaxAge = 5 * time.Second
	// idleMaxAge bounds how long an idle exec connection is kept: well
	// under the daemon's 30 s wait for the next exec (execreuse.go).
	idleMaxAge = 20 * time.Second
	// maxIdlePerSandbox bounds the idle exec connections kept per sandbox
	// (as many as the program ran at once, up to this).
	maxIdlePerSandbox = 8
)

// ErrDaemon wraps failures to reach or start the daemon.
var ErrDaemon = errors.New("controller daemon unavailable")

// New returns a client; it does not connect yet.
func New(opts Options) (*Client, error) {
	dir := opts.Home
	if dir == "" {
		var err error
		if dir, err = state.DefaultDir(); err != nil {
			return nil, err
		}
	}
	h, err := state.Open(dir)
	if err != nil {
		return nil, err
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 5 * time.Second
	}
	c := &Client{home: h, opts: opts}
	tr := &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return c.dial(ctx) },
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}
	c.http = &http.Client{Transport: tr}
	return c, nil
}

// Home is the installation the client talks to.
func (c *Client) Home() *state.Home { return c.home }

// dial connects to the daemon socket, starting the daemon if needed.
func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.home.Socket())
	if err == nil || c.opts.NoAutoStart {
		if err != nil {
			return nil, fmt.Errorf("%w: %v (start it with `darkshell daemon run`)", ErrDaemon, err)
		}
		return conn, nil
	}
	if err := c.startDaemon(ctx); err != nil {
		return nil, err
	}
	return d.DialContext(ctx, "unix", c.home.Socket())
}

func (c *Client) startDaemon(ctx context.Context) error {
	lock, err := os.OpenFile(filepath.Join(c.home.Dir, "daemon.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDaemon, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("%w: lock: %v", ErrDaemon, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if conn, err := net.Dial("unix", c.home.Socket()); err == nil {
		conn.Close()
		return nil // another client started it meanwhile
	}
	bin, err := c.darkshell()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(c.home.LogDir(), "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDaemon, err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "daemon", "run", "--idle-timeout", "30m")
	cmd.Env = cpus.Env(append(os.Environ(), "DARKSHELL_HOME="+c.home.Dir))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%w: start %s daemon run: %v", ErrDaemon, bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(c.opts.StartTimeout)
	for delay := time.Millisecond; time.Now().Before(deadline); delay = min(delay*2, 50*time.Millisecond) {
		if conn, err := net.Dial("unix", c.home.Socket()); err == nil {
			conn.Close()
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("%w: daemon exited at start (%v); see %s", ErrDaemon, err, logf.Name())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
	return fmt.Errorf("%w: daemon did not answer within %s; see %s", ErrDaemon, c.opts.StartTimeout, logf.Name())
}

func (c *Client) darkshell() (string, error) {
	if c.opts.Darkshell != "" {
		return c.opts.Darkshell, nil
	}
	if exe, err := os.Executable(); err == nil && strings.HasPrefix(filepath.Base(exe), "darkshell") {
		return exe, nil
	}
	p, err := exec.LookPath("darkshell")
	if err != nil {
		return "", fmt.Errorf("%w: no darkshell binary to start it (set Options.Darkshell or put darkshell on $PATH)", ErrDaemon)
	}
	return p, nil
}

// APIError is an error response from the daemon.
type APIError struct {
	Status  int
	Code    string // api.Code*
	Remote  string // sandboxd's error code for api.CodeRemote
	Message string
}

func (e *APIError) Error() string { return e.Message }

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://darkshell"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, ErrDaemon) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrDaemon, err)
	}
	defer resp.Body.Close()
	return decode(resp, out)
}

func decode(resp *http.Response, out any) error {
	if resp.StatusCode >= 300 {
		var eb api.ErrorBody
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &eb) != nil || eb.Error.Message == "" {
			return &APIError{Status: resp.StatusCode, Code: api.CodeInternal, Message: fmt.Sprintf("daemon answered %s: %s", resp.Status, strings.TrimSpace(string(b)))}
		}
		return &APIError{Status: resp.StatusCode, Code: eb.Error.Code, Remote: eb.Error.Remote, Message: eb.Error.Message}
	}
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode daemon response: %w", err)
	}
	return nil
}

// Version returns the daemon's version.
func (c *Client) Version(ctx context.Context) (*api.Version, error) {
	var v api.Version
	return &v, c.do(ctx, "GET", "/v1/version", nil, &v)
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (*api.DaemonStatus, error) {
	var v api.DaemonStatus
	return &v, c.do(ctx, "GET", "/v1/daemon", nil, &v)
}

// StopDaemon asks the daemon to exit.
func (c *Client) StopDaemon(ctx context.Context) error {
	return c.do(ctx, "POST", "/v1/daemon/stop", nil, nil)
}

// Create creates (or registers) a sandbox.
func (c *Client) Create(ctx context.Context, req *api.CreateRequest) (*api.Sandbox, error) {
	var sb api.Sandbox
	return &sb, c.do(ctx, "POST", "/v1/sandboxes", req, &sb)
}

// List lists sandboxes.
func (c *Client) List(ctx context.Context) ([]api.Sandbox, error) {
	var l []api.Sandbox
	return l, c.do(ctx, "GET", "/v1/sandboxes", nil, &l)
}

// Get returns one sandbox.
func (c *Client) Get(ctx context.Context, name string) (*api.Sandbox, error) {
	var sb api.Sandbox
	return &sb, c.do(ctx, "GET", "/v1/sandboxes/"+url.PathEscape(name), nil, &sb)
}

// Delete deletes a sandbox.
func (c *Client) Delete(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/v1/sandboxes/"+url.PathEscape(name), nil, nil)
}

// Info asks the sandbox's sandboxd about itself.
func (c *Client) Info(ctx context.Context, name string) (*protocol.Info, error) {
	var v protocol.Info
	return &v, c.do(ctx, "GET", "/v1/sandboxes/"+url.PathEscape(name)+"/info", nil, &v)
}

// Processes lists the processes sandboxd tracks.
func (c *Client) Processes(ctx context.Context, name string) (*protocol.ExecList, error) {
	var v protocol.ExecList
	return &v, c.do(ctx, "GET", "/v1/sandboxes/"+url.PathEscape(name)+"/processes", nil, &v)
}

// ExecWait runs a command and returns its whole output and status.
func (c *Client) ExecWait(ctx context.Context, name string, req *api.ExecRequest) (*api.ExecResult, error) {
	var res api.ExecResult
	return &res, c.do(ctx, "POST", "/v1/sandboxes/"+url.PathEscape(name)+"/exec?wait=1", req, &res)
}

// Exec starts a process over an upgraded connection; the returned Proc
// streams output, stdin, signals and resizes, exactly as over a session.
func (c *Client) Exec(ctx context.Context, name string, req *protocol.ExecStart) (*stream.Proc, error) {
	conn, err := c.upgrade(ctx, name)
	if err != nil {
		return nil, err
	}
	p, err := stream.Start(ctx, conn, req)
	return p, upgradeErr(conn, err)
}

// Attach re-attaches to a durable process.
func (c *Client) Attach(ctx context.Context, name string, req *protocol.ExecAttach) (*stream.Proc, error) {
	conn, err := c.upgrade(ctx, name)
	if err != nil {
		return nil, err
	}
	p, err := stream.Attach(ctx, conn, req)
	return p, upgradeErr(conn, err)
}

// upgradeErr returns the daemon's own error (e.g. the sandbox is stopped)
// when the upgrade was refused, rather than the frame reader's wrapping of it.
func upgradeErr(conn net.Conn, err error) error {
	if u, ok := conn.(*upgradeConn); ok && err != nil && u.err != nil {
		return u.err
	}
	return err
}

// upgrade opens a raw exec stream through the daemon. It does not wait for
// the daemon's answer: the HTTP request goes out with the caller's request
// frame in one write, and the first Read consumes the "101 Switching
// Protocols" (or turns an error response into an error), saving a round
// trip per exec.
//
// A connection whose exec ended cleanly is kept (Proc.Close releases it) and
// carries the next exec of the same sandbox without a dial or an HTTP
// request: the exec frames go out at once.
func (c *Client) upgrade(ctx context.Context, name string) (net.Conn, error) {
	if conn, r := c.takeIdle(name); conn != nil {
		u := &upgradeConn{Conn: conn, r: r, c: c, name: name}
		u.reusable.Store(true)
		u.once.Do(func() {}) // answered long ago
		return u, nil
	}
	req := "POST /v1/sandboxes/" + url.PathEscape(name) + "/exec HTTP/1.1\r\nHost: darkshell\r\nConnection: Upgrade\r\nUpgrade: " +
		api.UpgradeStream + "\r\n" + api.HeaderExecReuse + ": 1\r\nContent-Length: 0\r\n\r\n"
	conn, spare := c.takeSpare()
	if conn == nil {
		var err error
		if conn, err = c.dial(ctx); err != nil {
			return nil, err
		}
	}
	u := &upgradeConn{Conn: conn, r: bufio.NewReaderSize(conn, 64<<10), head: []byte(req), c: c, name: name}
	// A program that runs one command (the CLI) needs no spare. The next
	// one is dialled once the daemon has answered (while the command
	// runs), not while this request is on its way; none when a connection
	// of this sandbox is idle (its last exec ended).
	if spare || c.execs.Add(1) > 1 {
		u.answered = func() {
			if !c.hasIdle(name) {
				c.refillSpare()
			}
		}
	}
	return u, nil
}

// takeIdle returns the newest live idle exec connection of sandbox name,
// closing those too old or closed by the daemon.
func (c *Client) takeIdle(name string) (net.Conn, *bufio.Reader) {
	for {
		c.spareMu.Lock()
		l := c.idle[name]
		if len(l) == 0 {
			c.spareMu.Unlock()
			return nil, nil
		}
		ie := l[len(l)-1]
		c.idle[name] = l[:len(l)-1]
		c.spareMu.Unlock()
		if time.Since(ie.at) <= idleMaxAge && alive(ie.conn) {
			return ie.conn, ie.r
		}
		ie.conn.Close()
	}
}

func (c *Client) hasIdle(name string) bool {
	c.spareMu.Lock()
	defer c.spareMu.Unlock()
	return len(c.idle[name]) > 0
}

// putIdle keeps a connection whose exec has ended for the next exec of
// sandbox name.
func (c *Client) putIdle(name string, conn net.Conn, r *bufio.Reader) {
	c.spareMu.Lock()
	defer c.spareMu.Unlock()
	if c.closed || len(c.idle[name]) >= maxIdlePerSandbox {
		conn.Close()
		return
	}
	if c.idle == nil {
		c.idle = map[string][]idleExec{}
	}
	c.idle[name] = append(c.idle[name], idleExec{conn, r, time.Now()})
}

// takeSpare returns the connection dialled ahead for this exec, if a fresh
// one is there (the dial and the daemon's accept are then off the exec's
// path); had reports whether there was one, fresh or not.
func (c *Client) takeSpare() (conn net.Conn, had bool) {
	c.spareMu.Lock()
	conn, at := c.spare, c.spareAt
	c.spare = nil
	c.spareMu.Unlock()
	if conn == nil {
		return nil, false
	}
	if time.Since(at) > spareMaxAge || !alive(conn) {
		conn.Close() // the daemon closed it (restarted, or timed it out): dial afresh
		return nil, true
	}
	return conn, true
}

// alive reports whether the daemon has not closed conn: a non-blocking
// peek finds neither an end of stream nor an error.
func alive(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = err == syscall.EAGAIN || n > 0
		return true
	})
	return err == nil && ok
}

// refillSpare dials a spare exec connection unless one is there.
func (c *Client) refillSpare() {
	var d net.Dialer
	conn, err := d.Dial("unix", c.home.Socket())
	if err != nil {
		return
	}
	c.spareMu.Lock()
	defer c.spareMu.Unlock()
	if c.spare != nil || c.closed {
		conn.Close()
		return
	}
	c.spare, c.spareAt = conn, time.Now()
}

// Close releases the connection the client keeps ready for the next exec.
// The client stays usable; Close is for programs that are done with it.
func (c *Client) Close() error {
	c.spareMu.Lock()
	defer c.spareMu.Unlock()
	c.closed = true
	if c.spare != nil {
		c.spare.Close()
		c.spare = nil
	}
	for _, l := range c.idle {
		for _, ie := range l {
			ie.conn.Close()
		}
	}
	c.idle = nil
	return nil
}

// upgradeConn sends the upgrade request with the first write and reads the
// response before the first byte of the stream. On a reused connection there
// is no request: the exec's frames go out as they are.
type upgradeConn struct {
	net.Conn
	r    *bufio.Reader
	once sync.Once
	err  error

	wmu  sync.Mutex
	head []byte // the HTTP request, not written yet

	answered func() // run once the daemon's answer is read

	c        *Client
	name     string      // the sandbox
	reusable atomic.Bool // the daemon runs further execs on this connection
	released atomic.Bool // Release or Close was called: the exec's use has ended
}

// doneFrame ends one exec on a reused connection.
var doneFrame = protocol.AppendFrame(nil, protocol.FrameExecDone, nil)

// Release ends this exec's use of the connection after its exit was read:
// the daemon is told (exec-done) and the connection waits for the next exec
// of the same sandbox. A connection that cannot be reused is closed.
func (u *upgradeConn) Release() error {
	u.wmu.Lock() // after a write in progress (late stdin), before any other
	defer u.wmu.Unlock()
	if u.released.Swap(true) {
		return nil
	}
	if !u.reusable.Load() || u.head != nil || u.r.Buffered() > 0 {
		return u.Conn.Close()
	}
	if _, err := u.Conn.Write(doneFrame); err != nil {
		return u.Conn.Close()
	}
	u.c.putIdle(u.name, u.Conn, u.r)
	return nil
}

// Close ends the exec stream: the daemon closes it, killing a non-durable
// process. After Release it does nothing (the connection has moved on).
func (u *upgradeConn) Close() error {
	if u.released.Swap(true) {
		return nil
	}
	return u.Conn.Close()
}

func (u *upgradeConn) Write(p []byte) (int, error) {
	u.wmu.Lock()
	defer u.wmu.Unlock()
	if u.released.Load() {
		return 0, net.ErrClosed
	}
	if u.head == nil {
		return u.Conn.Write(p)
	}
	b := append(u.head, p...)
	u.head = nil
	n, err := u.Conn.Write(b)
	if err != nil {
		return max(0, n-(len(b)-len(p))), fmt.Errorf("%w: %v", ErrDaemon, err)
	}
	return len(p), nil
}

func (u *upgradeConn) Read(p []byte) (int, error) {
	if u.released.Load() {
		return 0, net.ErrClosed
	}
	u.wmu.Lock()
	head := u.head != nil
	u.wmu.Unlock()
	if head { // read before any write: the request still goes out first
		if _, err := u.Write(nil); err != nil {
			return 0, err
		}
	}
	u.once.Do(func() {
		if u.answered != nil {
			// Inline: a unix-socket connect does not wait for the
			// daemon's accept, and a goroutine would wake another thread.
			defer u.answered()
		}
		resp, err := http.ReadResponse(u.r, nil)
		if err != nil {
			u.err = fmt.Errorf("%w: no answer to the exec request: %v", ErrDaemon, err)
			return
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			u.reusable.Store(resp.Header.Get(api.HeaderExecReuse) == "1")
		} else {
			if err := decode(resp, nil); err != nil {
				u.err = err
			} else {
				u.err = fmt.Errorf("%w: daemon answered %s to an upgrade", ErrDaemon, resp.Status)
			}
		}
	})
	if u.err != nil {
		return 0, u.err
	}
	return u.r.Read(p)
}

// Sync pushes or pulls a tree (see api.SyncRequest).
func (c *Client) Sync(ctx context.Context, name string, req *api.SyncRequest) (*api.SyncResult, error) {
	var res api.SyncResult
	return &res, c.do(ctx, "POST", "/v1/sandboxes/"+url.PathEscape(name)+"/sync", req, &res)
}

// SyncProgress runs a sync like Sync and calls progress (from this
// goroutine) with each progress event the daemon streams.
func (c *Client) SyncProgress(ctx context.Context, name string, req *api.SyncRequest, progress func(api.SyncProgress)) (*api.SyncResult, error) {
	r := *req
	r.Progress = true
	b, err := json.Marshal(&r)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, "POST", "http://darkshell/v1/sandboxes/"+url.PathEscape(name)+"/sync", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(hr)
	if err != nil {
		if errors.Is(err, ErrDaemon) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrDaemon, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return nil, decode(resp, nil)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var ev api.SyncEvent
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: sync event stream: %v", ErrDaemon, err)
		}
		switch {
		case ev.Type == "progress" && ev.Progress != nil:
			if progress != nil {
				progress(*ev.Progress)
			}
		case ev.Type == "result" && ev.Result != nil:
			return ev.Result, nil
		case ev.Type == "error" && ev.Error != nil:
			return nil, &APIError{Status: http.StatusOK, Code: ev.Error.Code, Remote: ev.Error.Remote, Message: ev.Error.Message}
		}
	}
}
