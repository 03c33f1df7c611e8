package forward

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bohica-labs/darkshell/controller/session"
	"github.com/bohica-labs/darkshell/controller/state"
)

// ErrNotFound: no such forward.
var ErrNotFound = errors.New("no such forward")

// ErrExists: the forward already exists.
var ErrExists = errors.New("forward already exists")

// Record is one forward of a sandbox.
//
// A local forward (the default) listens on the host at Bind:Port and
// connects each connection to 127.0.0.1:Port in the sandbox. A reverse
// forward listens on 127.0.0.1:Port in the sandbox and connects each
// connection to Bind:Port on the host.
type Record struct {
	Sandbox string    `json:"sandbox"`
	Port    int       `json:"port"`
	Bind    string    `json:"bind"`
	Reverse bool      `json:"reverse,omitempty"`
	Created time.Time `json:"created"`
}

// Key names a forward among a sandbox's.
func (r *Record) Key() string {
	if r.Reverse {
		return strconv.Itoa(r.Port) + "-reverse"
	}
	return strconv.Itoa(r.Port)
}

// ParseSpec parses "[bind:]PORT".
func ParseSpec(spec string) (bind string, port int, err error) {
	bind = "127.0.0.1"
	p := spec
	if i := strings.LastIndexByte(spec, ':'); i >= 0 {
		bind, p = strings.Trim(spec[:i], "[]"), spec[i+1:]
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("forward %q: want [bind:]PORT with PORT in 1..65535", spec)
	}
	if net.ParseIP(bind) == nil && bind != "localhost" {
		return "", 0, fmt.Errorf("forward %q: bind address must be an IP address", spec)
	}
	return bind, port, nil
}

// Info is what `darkshell forward list` shows.
type Info struct {
	Record
	Active    int    `json:"active_connections"`
	Total     int64  `json:"total_connections"`
	State     string `json:"state"`
	LastError string `json:"last_error,omitempty"`
}

// SessionFunc returns a live session to a sandbox.
type SessionFunc func(ctx context.Context, sandbox string) (*session.Session, error)

// Manager runs a daemon's forwards; records live in $DARKSHELL_HOME/forwards.
type Manager struct {
	home    *state.Home
	dir     string
	session SessionFunc
	hold    func() func()
	log     *slog.Logger

	mu      sync.Mutex
	running map[string]*fwd // sandbox/key
}

// NewManager returns a forward manager.
func NewManager(h *state.Home, sf SessionFunc, hold func() func(), log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if hold == nil {
		hold = func() func() { return func() {} }
	}
	return &Manager{home: h, dir: filepath.Join(h.Dir, "forwards"), session: sf, hold: hold,
		log: log.With("component", "forward"), running: map[string]*fwd{}}
}

func (m *Manager) path(sandbox, key string) string { return filepath.Join(m.dir, sandbox, key+".json") }

// Start validates, stores and starts a forward. For a local forward the
// host listener is bound before Start returns; for a reverse one, the
// sandbox listener.
func (m *Manager) Start(ctx context.Context, r *Record) (*Info, error) {
	if _, err := m.home.Get(r.Sandbox); err != nil {
		return nil, err
	}
	if _, err := os.Stat(m.path(r.Sandbox, r.Key())); err == nil {
		return nil, fmt.Errorf("%w: %s in sandbox %s", ErrExists, r.Key(), r.Sandbox)
	}
	r.Created = time.Now().UTC()
	f, err := m.run(ctx, r)
	if err != nil {
		return nil, err
	}
	if err = os.MkdirAll(filepath.Join(m.dir, r.Sandbox), 0o700); err == nil {
		b, _ := json.MarshalIndent(r, "", "  ")
		err = state.WriteFileAtomic(m.path(r.Sandbox, r.Key()), b, 0o600)
	}
	if err != nil {
		m.mu.Lock()
		delete(m.running, r.Sandbox+"/"+r.Key())
		m.mu.Unlock()
		f.stop()
		return nil, fmt.Errorf("unable to store the forward: %w", err)
	}
	info := f.info()
	return &info, nil
}

// Restore starts every stored forward (daemon start).
func (m *Manager) Restore() {
	ents, _ := os.ReadDir(m.dir)
	for _, e := range ents {
		files, _ := os.ReadDir(filepath.Join(m.dir, e.Name()))
		for _, fe := range files {
			b, err := os.ReadFile(filepath.Join(m.dir, e.Name(), fe.Name()))
			var r Record
			if err != nil || json.Unmarshal(b, &r) != nil {
				continue
			}
			if sb, err := m.home.Get(r.Sandbox); err != nil || r.Created.Before(sb.Created) {
				os.Remove(filepath.Join(m.dir, e.Name(), fe.Name())) // stale: the sandbox is gone or new
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if _, err := m.run(ctx, &r); err != nil {
				m.log.Warn("unable to restore forward", "sandbox", r.Sandbox, "forward", r.Key(), "err", err)
			}
			cancel()
		}
	}
}

// Stop stops a forward and deletes its record.
func (m *Manager) Stop(sandbox string, port int, reverse bool) error {
	r := &Record{Sandbox: sandbox, Port: port, Reverse: reverse}
	m.mu.Lock()
	f := m.running[sandbox+"/"+r.Key()]
	delete(m.running, sandbox+"/"+r.Key())
	m.mu.Unlock()
	if f != nil {
		f.stop()
	}
	err := os.Remove(m.path(sandbox, r.Key()))
	if errors.Is(err, os.ErrNotExist) {
		if f != nil {
			return nil
		}
		return fmt.Errorf("%w: %s in sandbox %s", ErrNotFound, r.Key(), sandbox)
	}
	return err
}

// RemoveSandbox stops and forgets every forward of a deleted sandbox.
func (m *Manager) RemoveSandbox(sandbox string) {
	m.mu.Lock()
	var fs []*fwd
	for k, f := range m.running {
		if strings.HasPrefix(k, sandbox+"/") {
			fs = append(fs, f)
			delete(m.running, k)
		}
	}
	m.mu.Unlock()
	for _, f := range fs {
		f.stop()
	}
	if state.ValidName(sandbox) == nil {
		os.RemoveAll(filepath.Join(m.dir, sandbox))
	}
}

// List returns the running forwards ("" for every sandbox).
func (m *Manager) List(sandbox string) []Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []Info{}
	for _, f := range m.running {
		if sandbox == "" || f.rec.Sandbox == sandbox {
			out = append(out, f.info())
		}
	}
	return out
}

// Close stops every forward; records stay.
func (m *Manager) Close() {
	m.mu.Lock()
	fs := m.running
	m.running = map[string]*fwd{}
	m.mu.Unlock()
	for _, f := range fs {
		f.stop()
	}
}

type fwd struct {
	m      *Manager
	rec    *Record
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	active  int
	total   int64
	state   string
	lastErr string
}

func (f *fwd) info() Info {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Info{Record: *f.rec, Active: f.active, Total: f.total, State: f.state, LastError: f.lastErr}
}

func (f *fwd) stop() {
	f.cancel()
	<-f.done
}

func (f *fwd) conn(a, b net.Conn) {
	f.mu.Lock()
	f.active++
	f.total++
	f.mu.Unlock()
	Pipe(a, b)
	f.mu.Lock()
	f.active--
	f.mu.Unlock()
}

func (f *fwd) fail(err error) {
	f.mu.Lock()
	f.lastErr = err.Error()
	f.mu.Unlock()
}

func (m *Manager) run(ctx context.Context, r *Record) (*fwd, error) {
	fctx, cancel := context.WithCancel(context.Background())
	f := &fwd{m: m, rec: r, ctx: fctx, cancel: cancel, done: make(chan struct{}), state: "running"}
	target := net.JoinHostPort(r.Bind, strconv.Itoa(r.Port))
	inSandbox := fmt.Sprintf("127.0.0.1:%d", r.Port)
	var serve func()
	if !r.Reverse {
		l, err := net.Listen("tcp", target)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("unable to listen on %s on the host: %w", target, err)
		}
		context.AfterFunc(fctx, func() { l.Close() })
		serve = func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					dctx, dcancel := context.WithTimeout(fctx, 15*time.Second)
					defer dcancel()
					s, err := m.session(dctx, r.Sandbox)
					var up net.Conn
					if err == nil {
						up, err = Dial(dctx, s, inSandbox)
					}
					if err != nil {
						f.fail(err)
						c.Close()
						if errors.Is(err, state.ErrNotFound) {
							m.forget(f) // the sandbox was deleted
							f.cancel()
						}
						return
					}
					f.conn(c, up)
				}()
			}
		}
	} else {
		tag := "rfwd:" + strconv.Itoa(r.Port)
		first := make(chan error, 1)
		serve = func() {
			for attempt := 0; fctx.Err() == nil; attempt++ {
				s, err := m.session(fctx, r.Sandbox)
				var l *Listener
				if err == nil {
					l, err = Listen(fctx, s, inSandbox, tag, nil)
				}
				if attempt == 0 {
					first <- err
				}
				if err != nil {
					if errors.Is(err, state.ErrNotFound) {
						m.forget(f)
						return
					}
					f.fail(err)
					f.mu.Lock()
					f.state = "disconnected"
					f.mu.Unlock()
				} else {
					f.mu.Lock()
					f.state = "running"
					f.mu.Unlock()
					stopL := context.AfterFunc(fctx, func() { l.Close() })
					for {
						c, err := l.Accept()
						if err != nil {
							break
						}
						go func() {
							d := net.Dialer{Timeout: 10 * time.Second}
							hc, err := d.DialContext(fctx, "tcp", target)
							if err != nil {
								f.fail(fmt.Errorf("unable to connect to %s on the host: %w", target, err))
								c.Close()
								return
							}
							f.conn(c, hc)
						}()
					}
					stopL()
					l.Close()
				}
				select {
				case <-fctx.Done():
					return
				case <-time.After(min(time.Duration(100<<min(attempt, 6))*time.Millisecond, 5*time.Second)):
				}
			}
		}
		release := m.hold()
		go func() {
			defer close(f.done)
			defer release()
			serve()
		}()
		select {
		case err := <-first:
			if err != nil {
				f.stop()
				return nil, err
			}
		case <-ctx.Done():
			f.stop()
			return nil, ctx.Err()
		}
		m.register(f)
		return f, nil
	}
	release := m.hold()
	go func() {
		defer close(f.done)
		defer release()
		serve()
	}()
	m.register(f)
	return f, nil
}

func (m *Manager) register(f *fwd) {
	m.mu.Lock()
	m.running[f.rec.Sandbox+"/"+f.rec.Key()] = f
	m.mu.Unlock()
}

// forget drops a forward whose sandbox is gone, record included.
func (m *Manager) forget(f *fwd) {
	m.mu.Lock()
	if m.running[f.rec.Sandbox+"/"+f.rec.Key()] == f {
		delete(m.running, f.rec.Sandbox+"/"+f.rec.Key())
	}
	m.mu.Unlock()
	os.Remove(m.path(f.rec.Sandbox, f.rec.Key()))
}
