// Package daemon is the controller daemon: it keeps one warm session per
// sandbox and serves the control API (HTTP/1.1 + JSON on a unix socket,
// docs/api.md). It holds no state of its own beyond a cache of the records in
// $DARKSHELL_HOME, so it can be killed and restarted at any time.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bohica-labs/darkshell/controller/driver/localdriver"
	"github.com/bohica-labs/darkshell/controller/events"
	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/protocol"
)

// Options configure a daemon.
type Options struct {
	Home *state.Home
	Log  *slog.Logger
	// IdleTimeout stops the daemon after this long without requests or open
	// streams (0: never).
	IdleTimeout time.Duration
}

// Daemon serves the control API.
type Daemon struct {
	opts    Options
	log     *slog.Logger
	pool    *pool
	bus     *events.Bus
	exp     *exportProc // export.go, exportproc.go
	warm    *warmPools  // warmpool.go
	started time.Time

	active   atomic.Int64 // open requests and streams
	lastSeen atomic.Int64 // unix nanos of the last request end

	execs, execsReused atomic.Int64 // exec streams served, and those on a reused connection
	stop               chan struct{}
	stopOnce           sync.Once

	idleMu     sync.Mutex // guards the two below (execreuse.go)
	idleConns  map[net.Conn]struct{}
	idleClosed bool
}

// New returns a daemon for opts.Home.
func New(opts Options) *Daemon {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{opts: opts, log: log, pool: newPool(opts.Home, log), started: time.Now(), stop: make(chan struct{}), idleConns: map[net.Conn]struct{}{}}
	d.bus = events.NewBus(opts.Home.LogDir(), log.With("component", "events"))
	d.startExport()
	d.startAlerts()
	d.warm = newWarmPools(d)
	d.warm.start()
	d.lastSeen.Store(time.Now().UnixNano())
	return d
}

// ErrRunning is returned by Listen when another daemon serves the socket.
var ErrRunning = errors.New("a darkshell daemon is already running for this DARKSHELL_HOME")

// Listen binds the control socket, replacing a stale one. It fails with
// ErrRunning if a live daemon answers on it.
func Listen(h *state.Home) (net.Listener, error) {
	path := h.Socket()
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("%w (%s)", ErrRunning, path)
	}
	os.Remove(path)
	old := syscall.Umask(0o077)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return l, nil
}

// Serve serves the API on l until ctx ends, Stop is called, or the daemon
// has been idle for IdleTimeout.
func (d *Daemon) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: d.routes(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	d.log.Info("daemon serving", "socket", l.Addr().String(), "version", protocol.BuildVersion, "pid", os.Getpid())
	defer d.startProfile()() // profile.go
	// Local sandboxes share one set of eBPF probes: load it now, not in
	// the first create.
	localdriver.WarmProbes()

	var idle <-chan time.Time
	if d.opts.IdleTimeout > 0 {
		t := time.NewTicker(min(d.opts.IdleTimeout/4+time.Millisecond, 10*time.Second))
		defer t.Stop()
		idle = t.C
	}
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-d.stop:
			break loop
		case err = <-errc:
			break loop
		case <-idle:
			if d.active.Load() == 0 && time.Since(time.Unix(0, d.lastSeen.Load())) > d.opts.IdleTimeout {
				d.log.Info("idle; stopping", "idle_timeout", d.opts.IdleTimeout)
				break loop
			}
		}
	}
	d.closeSyncJobs() // policysync.go; first: a helper must not start a daemon anew
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	d.closeIdleExecs()
	d.exp.close()
	d.warm.close()
	d.pool.close()
	l.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Stop asks Serve to return.
func (d *Daemon) Stop() { d.stopOnce.Do(func() { close(d.stop) }) }

func (d *Daemon) track() func() {
	d.active.Add(1)
	return func() {
		d.lastSeen.Store(time.Now().UnixNano())
		d.active.Add(-1)
	}
}
