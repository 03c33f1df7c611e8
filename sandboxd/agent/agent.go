package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/bohica-labs/darkshell/sandboxd"
)

// DefaultIdle is how long an agent without connections and processes lives.
const DefaultIdle = 10 * time.Minute

// Options configures Run.
type Options struct {
	// Socket is the unix socket path to listen on.
	Socket string
	// Idle is how long the agent waits, with no connection and no tracked
	// process, before it exits (0: DefaultIdle).
	Idle time.Duration
	// Server serves the connections; Run closes it when it returns.
	Server *sandboxd.Server
	// Logger receives diagnostics (nil: discard).
	Logger *slog.Logger
}

// Run listens on opts.Socket and serves every connection with opts.Server
// until ctx ends or the agent was idle for opts.Idle. A stale socket file is
// replaced; a live one (another agent answers) is an error.
func Run(ctx context.Context, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	idle := opts.Idle
	if idle <= 0 {
		idle = DefaultIdle
	}
	if err := ensureDir(filepath.Dir(opts.Socket)); err != nil {
		return err
	}
	if c, err := net.Dial("unix", opts.Socket); err == nil {
		_ = c.Close()
		return fmt.Errorf("unable to listen on %s: another agent is serving it", opts.Socket)
	}
	if err := os.Remove(opts.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unable to remove stale socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: opts.Socket, Net: "unix"})
	if err != nil {
		return fmt.Errorf("unable to listen: %w", err)
	}
	if err := os.Chmod(opts.Socket, 0o600); err != nil {
		_ = ln.Close()
		return fmt.Errorf("unable to restrict socket: %w", err)
	}
	log.Info("agent listening", "socket", opts.Socket, "idle", idle, "pid", os.Getpid())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		conns    int
		lastBusy = time.Now()
	)
	go func() {
		t := time.NewTicker(min(idle/4, time.Second))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				mu.Lock()
				if conns > 0 || opts.Server.Processes() > 0 {
					lastBusy = now
				}
				quiet := now.Sub(lastBusy)
				mu.Unlock()
				if quiet >= idle {
					log.Info("agent idle: exiting", "idle", quiet.Round(time.Second))
					cancel()
					return
				}
			}
		}
	}()

	var acceptErr error
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() == nil {
				acceptErr = fmt.Errorf("unable to accept: %w", err)
			}
			break
		}
		mu.Lock()
		conns++
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c, err := carrier(conn); err != nil {
				conn.Close()
				log.Warn("connection refused", "err", err)
			} else if err := opts.Server.ServeConn(ctx, c); err != nil {
				log.Warn("connection ended", "err", err)
			}
			mu.Lock()
			conns--
			lastBusy = time.Now()
			mu.Unlock()
		}()
	}
	cancel()
	wg.Wait()
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	if err := opts.Server.Close(cctx); err != nil {
		log.Warn("agent shutdown", "err", err)
	}
	return acceptErr
}
