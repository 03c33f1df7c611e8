package sandboxd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/bohica-labs/darkshell/protocol"
	"github.com/bohica-labs/darkshell/sandboxd/events"
	"github.com/bohica-labs/darkshell/sandboxd/forward"
	"github.com/bohica-labs/darkshell/sandboxd/internal/process"
	"github.com/bohica-labs/darkshell/sandboxd/mcp"
	"github.com/bohica-labs/darkshell/sandboxd/syncd"
)

// Options configures a Server. The zero value is usable.
type Options struct {
	// DefaultDir is the working directory of exec requests that name none
	// (default: $HOME).
	DefaultDir string
	// BaseEnv is the environment exec requests add to (default: sandboxd's
	// own environment without SANDBOXD_* variables).
	BaseEnv []string
	// Logger receives diagnostics (default: discard). sandboxd's stdout
	// carries the protocol, so never point it there.
	Logger *slog.Logger

	// Confinement facts announced in the handshake.
	LandlockABI   int
	Confined      []string
	EventFidelity string

	// Events is the hub of a source started before lock-down (sandboxd
	// init's eBPF probes); nil: procfs+inotify start on the first events stream.
	Events *events.Hub
}

// Server serves the sandboxd protocol. One Server owns all processes it
// started, across any number of connections. It is safe for concurrent use.
type Server struct {
	log   *slog.Logger
	hello protocol.Hello
	start time.Time
	procs *process.Manager
	dir   string // default directory of exec and relative sync roots
	mcp   *mcp.Manager
	fwd   *forward.Server
	ev    eventsState

	mu     sync.Mutex
	conns  int
	closed bool
}

// ForkFromAnyThread makes commands fork from the thread serving the
// request instead of handing each start to one spawner thread. Call it
// before serving, only in a sandboxd confined as a whole from outside (serve
// and agent), never in init, which restricts itself thread by thread.
func ForkFromAnyThread() { process.ForkFromAnyThread() }

// New returns a Server.
func New(opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.DefaultDir == "" {
		opts.DefaultDir, _ = os.UserHomeDir()
	}
	if opts.BaseEnv == nil {
		opts.BaseEnv = DefaultEnv()
	}
	hello := protocol.NewHello(protocol.RoleSandboxd, protocol.BuildVersion,
		protocol.CapExec, protocol.CapPTY, protocol.CapAttach, protocol.CapSync, protocol.CapSyncDirSums,
		protocol.CapForward, protocol.CapMCP, protocol.CapMCPRules, protocol.CapEvents)
	hello.LandlockABI = opts.LandlockABI
	hello.Confined = opts.Confined
	hello.EventFidelity = opts.EventFidelity
	if hello.EventFidelity == "" {
		hello.EventFidelity = eventFidelity(opts.Events)
	}
	mcps := mcp.New(opts.DefaultDir, opts.BaseEnv, log)
	return &Server{
		ev:    eventsState{hub: opts.Events},
		log:   log,
		hello: hello,
		start: time.Now(),
		dir:   opts.DefaultDir,
		mcp:   mcps,
		fwd:   forward.New(log, mcps),
		procs: process.NewManager(process.Config{
			DefaultDir: opts.DefaultDir,
			BaseEnv:    opts.BaseEnv,
			Logger:     log.With("component", "process"),
		}),
	}
}

// DefaultEnv is sandboxd's environment without its own SANDBOXD_* settings.
func DefaultEnv() []string {
	env := os.Environ()
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "SANDBOXD_") {
			out = append(out, kv)
		}
	}
	return out
}

// Hello returns the handshake message the server sends.
func (s *Server) Hello() protocol.Hello { return s.hello }

// Processes returns the number of processes the server tracks (running, or
// finished and retained for re-attach).
func (s *Server) Processes() int { return s.procs.Count() }

// Conns returns the number of connections being served.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// ServeConn serves one connection until the peer closes it or ctx ends; it
// closes conn. Processes it started keep their own lifecycle: non-durable
// ones die with their stream, durable ones wait for a re-attach.
func (s *Server) ServeConn(ctx context.Context, conn io.ReadWriteCloser) error {
	defer conn.Close()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("unable to serve: server closed")
	}
	s.conns++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.conns--
		s.mu.Unlock()
	}()

	// A handshake that never completes must not pin the connection forever.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	remote, version, err := protocol.Handshake(conn, s.hello)
	if err != nil {
		return fmt.Errorf("unable to complete handshake: %w", err)
	}
	log := s.log.With("peer", remote.BuildVersion, "protocol", version)
	log.Debug("handshake done", "caps", remote.Caps)

	sess, err := yamux.Server(protocol.MuxConn(conn), protocol.MuxConfig())
	if err != nil {
		return fmt.Errorf("unable to start multiplexer: %w", err)
	}
	defer sess.Close()
	stopSess := context.AfterFunc(ctx, func() { _ = sess.Close() })
	defer stopSess()
	// Listeners (reverse forwards, MCP bridges) open streams back to the controller.
	ctx = forward.WithOpener(ctx, func() (net.Conn, error) { return sess.OpenStream() })

	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) || errors.Is(err, yamux.ErrSessionShutdown) {
				return nil
			}
			return fmt.Errorf("unable to accept stream: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveStream(ctx, log, st)
		}()
	}
}

// serveStream reads a stream's request frame and dispatches it.
func (s *Server) serveStream(ctx context.Context, log *slog.Logger, st io.ReadWriteCloser) {
	defer st.Close()
	w := protocol.NewWriter(st)
	f, err := protocol.ReadFrame(st, protocol.MaxPayload)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return
		}
		code := protocol.CodeBadRequest
		if errors.Is(err, protocol.ErrFrameTooLarge) {
			code = protocol.CodeLimit
		}
		log.Debug("bad request frame", "err", err)
		_ = w.Error(code, "unable to read request: %v", err)
		return
	}
	if !f.Type.IsRequest() {
		_ = w.Error(protocol.CodeBadRequest, "a stream must open with a request frame, got %s", f.Type)
		return
	}
	if err := s.dispatch(ctx, st, w, f); err != nil {
		var pe *process.Error
		if errors.As(err, &pe) {
			_ = w.Error(pe.Code, "%s", pe.Error())
			return
		}
		code := protocol.CodeInternal
		if errors.Is(err, protocol.ErrInvalid) || errors.Is(err, protocol.ErrBadFrame) {
			code = protocol.CodeBadRequest
		}
		_ = w.Error(code, "%v", err)
	}
}

// dispatch serves one request. A returned error has not been reported yet.
func (s *Server) dispatch(ctx context.Context, st io.ReadWriteCloser, w *protocol.Writer, f protocol.Frame) error {
	switch f.Type {
	case protocol.FrameExecStart:
		var req protocol.ExecStart
		if err := protocol.DecodeMsg(f, f.Type, &req); err != nil {
			return err
		}
		return s.procs.Exec(ctx, &req, st)
	case protocol.FrameExecAttach:
		var req protocol.ExecAttach
		if err := protocol.DecodeMsg(f, f.Type, &req); err != nil {
			return err
		}
		return s.procs.Attach(ctx, &req, st)
	case protocol.FrameInfo:
		var req protocol.InfoRequest
		if err := protocol.DecodeMsg(f, f.Type, &req); err != nil {
			return err
		}
		info := s.Info()
		return w.Msg(protocol.FrameInfoReply, &info)
	case protocol.FrameExecList:
		var req protocol.ExecListRequest
		if err := protocol.DecodeMsg(f, f.Type, &req); err != nil {
			return err
		}
		return w.Msg(protocol.FrameExecListReply, &protocol.ExecList{Processes: s.procs.List()})
	case protocol.FrameSyncPush, protocol.FrameSyncPull:
		return syncd.Serve(ctx, st, f, s.dir)
	case protocol.FrameForwardListen, protocol.FrameForwardDial:
		return s.fwd.Serve(ctx, st, f)
	case protocol.FrameMCPServe:
		return s.mcp.Serve(ctx, st, f)
	case protocol.FrameEvents:
		return s.serveEvents(ctx, st, f)
	}
	return &process.Error{Code: protocol.CodeUnsupported, Msg: fmt.Sprintf("stream kind %s is not offered by this sandboxd", f.Type)}
}

// Info describes the server (the FrameInfo reply).
func (s *Server) Info() protocol.Info {
	return protocol.Info{
		Hello:     s.hello,
		PID:       os.Getpid(),
		UptimeMs:  time.Since(s.start).Milliseconds(),
		Processes: s.procs.Count(),
		RSSBytes:  rss(),
	}
}

// Close kills every process the server started and waits (bounded by ctx)
// until they are reaped. Connections being served end with their streams.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return s.procs.Close(ctx)
}
