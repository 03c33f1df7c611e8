// Package forward serves sandboxd's forward streams: it dials loopback
// addresses in the sandbox for the controller (FrameForwardDial), and it
// listens on loopback addresses (FrameForwardListen), relaying every accepted
// connection over a new stream it opens to the controller. Reverse forwards
// and MCP bridges use listeners; nothing listens outside the sandbox's
// loopback and no TCP port is opened on the host.
package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
	"github.com/bohica-labs/darkshell/sandboxd/internal/process"
)

// Opener opens a stream to the controller on the session a request came on.
type Opener func() (net.Conn, error)

type openerKey struct{}

// WithOpener returns ctx carrying the session's stream opener.
func WithOpener(ctx context.Context, o Opener) context.Context {
	return context.WithValue(ctx, openerKey{}, o)
}

// Endpoints is told about listeners that serve MCP bridges, so that the
// sandbox's generated MCP client config lists them.
type Endpoints interface {
	Register(ep *protocol.MCPEndpoint, addr string)
	Unregister(name, addr string)
}

// Server serves forward streams. The zero value is not usable; use New.
type Server struct {
	log       *slog.Logger
	endpoints Endpoints
	listeners atomic.Int64
}

// New returns a forward server. endpoints may be nil.
func New(log *slog.Logger, endpoints Endpoints) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{log: log.With("component", "forward"), endpoints: endpoints}
}

// Serve serves one forward request stream (its request frame already read).
func (s *Server) Serve(ctx context.Context, st io.ReadWriteCloser, f protocol.Frame) error {
	switch f.Type {
	case protocol.FrameForwardDial:
		var req protocol.ForwardDial
		if err := protocol.DecodeMsg(f, f.Type, &req); err != nil {
			return err
		}
		return s.dial(ctx, st, &req)
	case protocol.FrameForwardListen:
		var req protocol.ForwardListen
		if err := protocol.DecodeMsg(f, f.Type, &req); err != nil {
			return err
		}
		open, _ := ctx.Value(openerKey{}).(Opener)
		if open == nil {
			return errors.New("this connection cannot open streams to the controller")
		}
		return s.listen(ctx, st, &req, open)
	}
	return fmt.Errorf("%w: %s is not a forward request", protocol.ErrUnexpectedFrame, f.Type)
}

func (s *Server) dial(ctx context.Context, st io.ReadWriteCloser, req *protocol.ForwardDial) error {
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", req.Addr)
	if err != nil {
		return fmt.Errorf("unable to connect to %s in the sandbox: %w", req.Addr, err)
	}
	if err := protocol.WriteMsg(st, protocol.FrameForwardReady, &protocol.ForwardReady{Addr: req.Addr}); err != nil {
		c.Close()
		return err
	}
	Pipe(st, c)
	return nil
}

func (s *Server) listen(ctx context.Context, st io.ReadWriteCloser, req *protocol.ForwardListen, open Opener) error {
	if s.listeners.Add(1) > protocol.MaxForwardListeners {
		s.listeners.Add(-1)
		return &process.Error{Code: protocol.CodeLimit, Msg: fmt.Sprintf("%d forward listeners already", protocol.MaxForwardListeners)}
	}
	defer s.listeners.Add(-1)
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", req.Addr)
	if err != nil {
		return fmt.Errorf("unable to listen on %s in the sandbox: %w", req.Addr, err)
	}
	defer l.Close()
	addr := l.Addr().String()
	unregister := func() {}
	if req.MCP != nil && s.endpoints != nil {
		s.endpoints.Register(req.MCP, addr)
		var once sync.Once
		unregister = func() { once.Do(func() { s.endpoints.Unregister(req.MCP.Name, addr) }) }
		defer unregister()
	}
	if err := protocol.WriteMsg(st, protocol.FrameForwardReady, &protocol.ForwardReady{Addr: addr}); err != nil {
		return err
	}
	log := s.log.With("tag", req.Tag, "addr", addr)
	log.Debug("listening")
	// The controller ends the listener by closing the stream.
	go func() {
		_, _ = io.Copy(io.Discard, st)
		l.Close()
	}()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			log.Debug("listener closed", "err", err)
			unregister() // now, not after the connections in flight end
			return nil
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			up, err := open()
			if err != nil {
				log.Warn("unable to open a stream to the controller", "err", err)
				c.Close()
				return
			}
			if err := protocol.WriteMsg(up, protocol.FrameForwardConn, &protocol.ForwardConn{Tag: req.Tag, Peer: c.RemoteAddr().String()}); err != nil {
				c.Close()
				up.Close()
				return
			}
			Pipe(up, c)
		}()
	}
}

// Pipe copies between a and b in both directions until both directions
// end, half-closing each side when its source ends, then closes both.
func Pipe(a, b io.ReadWriteCloser) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src io.ReadWriteCloser) {
		defer wg.Done()
		_, err := io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
			_ = cw.CloseWrite()
			return
		}
		// A yamux stream's Close is a half-close (FIN) that still lets
		// the peer's data in; on errors close everything.
		if err != nil {
			a.Close()
			b.Close()
			return
		}
		_ = dst.Close()
	}
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}
