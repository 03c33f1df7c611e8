package process

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// Timing of the process lifecycle.
const (
	// DefaultGrace is how long a durable process waits for a client, and how
	// long a finished durable process is kept, when the request says 0.
	DefaultGrace = 60 * time.Second
	// KillDelay separates SIGTERM and SIGKILL when a timeout expires.
	KillDelay = 2 * time.Second
	// drainIdle is how long output is still read after the main process
	// exited, so that background children holding the pipes cannot hang a stream.
	drainIdle = 200 * time.Millisecond
)

// Config configures a Manager.
type Config struct {
	// DefaultDir is the working directory of requests that name none.
	DefaultDir string
	// BaseEnv is the environment requests add to.
	BaseEnv []string
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
}

// Manager owns every process sandboxd started. It is safe for concurrent use.
type Manager struct {
	cfg Config
	log *slog.Logger

	keyMu sync.Mutex // serialises starts that carry an idempotency key

	mu     sync.Mutex
	procs  map[string]*Process
	keys   map[string]*Process
	seq    uint64
	closed bool
	wg     sync.WaitGroup // one per process: its waiter
}

// NewManager returns an empty Manager.
func NewManager(cfg Config) *Manager {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{
		cfg:   cfg,
		log:   log,
		procs: make(map[string]*Process),
		keys:  make(map[string]*Process),
	}
}

// Exec serves an exec stream opened with req: it starts the command (or, for
// a known idempotency key, attaches to the process that key started) and then
// relays the stream until the client leaves or the exit was delivered.
//
// A returned error means nothing was written on rw; it is an *Error when the
// request was refused, and the caller reports it to the client.
func (m *Manager) Exec(ctx context.Context, req *protocol.ExecStart, rw io.ReadWriteCloser) error {
	if req.IdempotencyKey == "" {
		p, c, err := m.start(req, rw)
		if err != nil {
			return err
		}
		p.serve(ctx, c, protocol.ExecStarted{ID: p.id, PID: p.pid})
		return nil
	}
	m.keyMu.Lock()
	m.mu.Lock()
	p := m.keys[req.IdempotencyKey]
	m.mu.Unlock()
	if p != nil {
		c, started, err := p.join(rw, 0, req.Stdin)
		if err == nil {
			m.keyMu.Unlock()
			p.serve(ctx, c, started)
			return nil
		}
		// The process was forgotten in the meantime: start it afresh.
	}
	p, c, err := m.start(req, rw)
	m.keyMu.Unlock()
	if err != nil {
		return err
	}
	p.serve(ctx, c, protocol.ExecStarted{ID: p.id, PID: p.pid})
	return nil
}

// Attach serves an exec stream opened with req: it joins the process req.ID,
// replaying output from req.Offset. A returned error means nothing was
// written on rw (see Exec).
func (m *Manager) Attach(ctx context.Context, req *protocol.ExecAttach, rw io.ReadWriteCloser) error {
	m.mu.Lock()
	p := m.procs[req.ID]
	m.mu.Unlock()
	if p == nil {
		return errorf(protocol.CodeNoProcess, nil, "no process %q: it never existed, or it ended and its grace period expired", req.ID)
	}
	c, started, err := p.join(rw, req.Offset, req.Stdin)
	if err != nil {
		return err
	}
	p.serve(ctx, c, started)
	return nil
}

// Count returns the number of tracked processes (running or retained).
func (m *Manager) Count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.procs)
}

// List describes every tracked process, oldest first.
func (m *Manager) List() []protocol.ProcState {
	m.mu.Lock()
	procs := slices.Collect(maps.Values(m.procs))
	m.mu.Unlock()
	slices.SortFunc(procs, func(a, b *Process) int { return a.started.Compare(b.started) })
	out := make([]protocol.ProcState, 0, len(procs))
	for _, p := range procs {
		out = append(out, p.state())
	}
	return out
}

// Close kills every tracked process group, disconnects their clients and
// waits (bounded by ctx) until they are reaped. Later requests are refused.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	procs := slices.Collect(maps.Values(m.procs))
	m.mu.Unlock()
	for _, p := range procs {
		p.shutdown()
	}
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("unable to reap all processes: %w", ctx.Err())
	}
}

// start launches req with c as its first client.
func (m *Manager) start(req *protocol.ExecStart, rw io.ReadWriteCloser) (*Process, *client, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, nil, errorf(protocol.CodeInternal, nil, "sandboxd is shutting down")
	}
	m.seq++
	seq := m.seq
	m.mu.Unlock()

	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	id := fmt.Sprintf("p-%d-%s", seq, hex.EncodeToString(rnd[:]))

	env := mergeEnv(m.cfg.BaseEnv, req.Env)
	if req.PTY != nil {
		if _, ok := lookupEnv(req.Env, "TERM"); !ok {
			term := req.PTY.Term
			if term == "" {
				term = "xterm-256color"
			}
			env = mergeEnv(env, []string{"TERM=" + term})
		}
	}
	dir, err := m.workDir(req.Dir)
	if err != nil {
		return nil, nil, err
	}
	argv := req.Argv
	if req.Shell {
		argv = []string{"/bin/sh", "-c", req.Argv[0]}
	}
	pathEnv, _ := lookupEnv(env, "PATH")
	path, err := lookPath(argv[0], pathEnv, dir)
	if err != nil {
		return nil, nil, err
	}

	grace := time.Duration(req.GraceMs) * time.Millisecond
	if grace <= 0 {
		grace = DefaultGrace
	}
	c := newClient(rw, req.Stdin)
	p := &Process{
		m:        m,
		id:       id,
		key:      req.IdempotencyKey,
		argv:     slices.Clone(req.Argv),
		durable:  req.Durable || req.IdempotencyKey != "",
		grace:    grace,
		hasStdin: req.Stdin,
		ring:     newRing(req.RingBytes),
		client:   c,
		log:      m.log.With("proc", id),
	}
	p.cond.L = &p.mu
	if err := p.launch(path, argv, env, dir, req.PTY); err != nil {
		return nil, nil, err
	}

	m.mu.Lock()
	m.procs[id] = p
	if p.key != "" {
		m.keys[p.key] = p
	}
	m.wg.Add(1)
	m.mu.Unlock()
	p.log.Debug("started", "pid", p.pid, "argv", p.argv, "pty", p.master != nil, "durable", p.durable)

	if req.TimeoutMs > 0 {
		p.timeout = time.AfterFunc(time.Duration(req.TimeoutMs)*time.Millisecond, p.expire)
	}
	go p.wait()
	return p, c, nil
}

// workDir resolves the request's directory against the default and checks it.
func (m *Manager) workDir(dir string) (string, error) {
	base := m.cfg.DefaultDir
	if base == "" {
		base, _ = os.UserHomeDir()
	}
	if base == "" {
		base = "/"
	}
	switch {
	case dir == "":
		dir = base
	case !filepath.IsAbs(dir):
		dir = filepath.Join(base, dir)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return "", errorf(protocol.CodeCannotInvoke, nil, "working directory %s does not exist or is not accessible", dir)
	}
	if !st.IsDir() {
		return "", errorf(protocol.CodeCannotInvoke, nil, "working directory %s is not a directory", dir)
	}
	return dir, nil
}

// forget drops p from the tables.
func (m *Manager) forget(p *Process) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.procs[p.id] == p {
		delete(m.procs, p.id)
	}
	if p.key != "" && m.keys[p.key] == p {
		delete(m.keys, p.key)
	}
}
