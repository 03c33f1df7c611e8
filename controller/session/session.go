// Package session is a controller's live connection to one sandboxd: the
// yamux session over a carrier whose handshake is done, with typed calls for
// each stream kind.
package session

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/hashicorp/yamux"

	"github.com/bohica-labs/darkshell/controller/stream"
	"github.com/bohica-labs/darkshell/protocol"
)

// Session multiplexes streams to one sandboxd.
type Session struct {
	mux     *yamux.Session
	remote  protocol.Hello
	version int
	closers []io.Closer
	once    sync.Once

	inMu    sync.Mutex
	inbound map[string]ForwardHandler // by forward tag (inbound.go)
}

// New starts the multiplexer on carrier, whose handshake already succeeded
// with remote at protocol version. Extra closers (an SSH client, say) are
// closed with the session.
func New(carrier io.ReadWriteCloser, remote protocol.Hello, version int, closers ...io.Closer) (*Session, error) {
	mux, err := yamux.Client(protocol.MuxConn(carrier), protocol.MuxConfig())
	if err != nil {
		carrier.Close()
		return nil, fmt.Errorf("start multiplexer: %w", err)
	}
	s := &Session{mux: mux, remote: remote, version: version, closers: append([]io.Closer{carrier}, closers...)}
	go func() {
		<-mux.CloseChan()
		s.Close()
	}()
	go s.acceptInbound()
	return s, nil
}

// Dial does the controller side of the handshake on carrier, then New.
func Dial(ctx context.Context, carrier io.ReadWriteCloser, closers ...io.Closer) (*Session, error) {
	stop := context.AfterFunc(ctx, func() { carrier.Close() })
	remote, v, err := protocol.Handshake(carrier, protocol.NewHello(protocol.RoleController, protocol.BuildVersion))
	stop()
	if err != nil {
		carrier.Close()
		for _, c := range closers {
			c.Close()
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("handshake: %w", ctx.Err())
		}
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return New(carrier, remote, v, closers...)
}

// Remote is the hello sandboxd sent.
func (s *Session) Remote() protocol.Hello { return s.remote }

// Version is the negotiated protocol version.
func (s *Session) Version() int { return s.version }

// Done is closed when the session ends.
func (s *Session) Done() <-chan struct{} { return s.mux.CloseChan() }

// Alive reports whether the session is still open.
func (s *Session) Alive() bool { return !s.mux.IsClosed() }

// Close ends the session and everything under it.
func (s *Session) Close() error {
	s.once.Do(func() {
		s.mux.Close()
		for _, c := range s.closers {
			c.Close()
		}
	})
	return nil
}

// Open opens a raw stream; the caller sends the request frame.
func (s *Session) Open(ctx context.Context) (net.Conn, error) {
	st, err := s.mux.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	return st, ctx.Err()
}

// Exec starts a process.
func (s *Session) Exec(ctx context.Context, req *protocol.ExecStart) (*stream.Proc, error) {
	st, err := s.Open(ctx)
	if err != nil {
		return nil, err
	}
	return stream.Start(ctx, st, req)
}

// Attach re-attaches to a durable process.
func (s *Session) Attach(ctx context.Context, req *protocol.ExecAttach) (*stream.Proc, error) {
	st, err := s.Open(ctx)
	if err != nil {
		return nil, err
	}
	return stream.Attach(ctx, st, req)
}

// Info asks sandboxd about itself.
func (s *Session) Info(ctx context.Context) (*protocol.Info, error) {
	var info protocol.Info
	if err := s.call(ctx, protocol.FrameInfo, &protocol.InfoRequest{}, protocol.FrameInfoReply, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// Processes lists the processes sandboxd tracks.
func (s *Session) Processes(ctx context.Context) (*protocol.ExecList, error) {
	var l protocol.ExecList
	if err := s.call(ctx, protocol.FrameExecList, &protocol.ExecListRequest{}, protocol.FrameExecListReply, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

func (s *Session) call(ctx context.Context, t protocol.FrameType, req any, rt protocol.FrameType, reply protocol.Validator) error {
	st, err := s.Open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.Close() })
	defer stop()
	if err := protocol.WriteMsg(st, t, req); err != nil {
		return fmt.Errorf("%s: %w", t, err)
	}
	f, err := protocol.ReadFrame(st, protocol.MaxPayload)
	if err != nil {
		return fmt.Errorf("%s: %w", t, err)
	}
	if f.Type == protocol.FrameError {
		return protocol.ErrorFromFrame(f)
	}
	return protocol.DecodeMsg(f, rt, reply)
}
