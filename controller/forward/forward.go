// Package forward is the controller side of port forwards over a sandbox's
// yamux session: Dial connects to a loopback port in the sandbox, Listen
// makes sandboxd listen on one and hands each accepted connection to the
// controller as a net.Conn, and Start runs a host-to-sandbox or a reverse
// (sandbox-to-host) forward on top of them. Records (Store) live under
// $DARKSHELL_HOME/forwards so the daemon can restore them.
package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/bohica-labs/darkshell/controller/session"
	"github.com/bohica-labs/darkshell/protocol"
)

// ErrNoForward says the sandbox's sandboxd does not offer forwards.
var ErrNoForward = errors.New("this sandbox's sandboxd does not offer forwards (cap \"forward\"); upgrade it")

func check(s *session.Session) error {
	if h := s.Remote(); !h.Has(protocol.CapForward) {
		return ErrNoForward
	}
	return nil
}

// Dial connects to addr (a loopback address) inside the sandbox.
func Dial(ctx context.Context, s *session.Session, addr string) (net.Conn, error) {
	if err := check(s); err != nil {
		return nil, err
	}
	req := protocol.ForwardDial{Addr: addr}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	st, err := s.Open(ctx)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { st.Close() })
	defer stop()
	if err := protocol.WriteMsg(st, protocol.FrameForwardDial, &req); err != nil {
		st.Close()
		return nil, fmt.Errorf("unable to request a connection to %s: %w", addr, err)
	}
	var ready protocol.ForwardReady
	if err := readReply(st, protocol.FrameForwardReady, &ready); err != nil {
		st.Close()
		return nil, fmt.Errorf("unable to connect to %s in the sandbox: %w", addr, err)
	}
	return st, nil
}

func readReply(st io.Reader, want protocol.FrameType, m protocol.Validator) error {
	f, err := protocol.ReadFrame(st, protocol.MaxControlPayload)
	if err != nil {
		return err
	}
	if f.Type == protocol.FrameError {
		return protocol.ErrorFromFrame(f)
	}
	return protocol.DecodeMsg(f, want, m)
}

// Listener is a loopback listener inside the sandbox. It implements
// net.Listener: Accept returns the connections sandboxd relays.
type Listener struct {
	addr    string
	st      net.Conn
	conns   chan net.Conn
	done    chan struct{}
	once    sync.Once
	unreg   func()
	stopped chan struct{} // closed when the listen stream ends
}

// Listen makes sandboxd listen on addr (port 0: any) under tag; mcp, when
// set, lists the listener in the sandbox's MCP client config.
func Listen(ctx context.Context, s *session.Session, addr, tag string, mcp *protocol.MCPEndpoint) (*Listener, error) {
	if err := check(s); err != nil {
		return nil, err
	}
	req := protocol.ForwardListen{Addr: addr, Tag: tag, MCP: mcp}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	l := &Listener{conns: make(chan net.Conn), done: make(chan struct{}), stopped: make(chan struct{})}
	l.unreg = s.HandleForward(tag, func(c net.Conn, _ *protocol.ForwardConn) {
		select {
		case l.conns <- c:
		case <-l.done:
			c.Close()
		}
	})
	st, err := s.Open(ctx)
	if err != nil {
		l.unreg()
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { st.Close() })
	err = protocol.WriteMsg(st, protocol.FrameForwardListen, &req)
	var ready protocol.ForwardReady
	if err == nil {
		err = readReply(st, protocol.FrameForwardReady, &ready)
	}
	stop()
	if err != nil {
		st.Close()
		l.unreg()
		return nil, fmt.Errorf("unable to listen on %s in the sandbox: %w", addr, err)
	}
	l.addr, l.st = ready.Addr, st
	go func() {
		_, _ = io.Copy(io.Discard, st) // ends when sandboxd or the session goes away
		close(l.stopped)
		l.Close()
	}()
	return l, nil
}

// Accept returns the next connection accepted in the sandbox.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops the listener in the sandbox.
func (l *Listener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.unreg()
		if l.st != nil {
			l.st.Close()
		}
	})
	return nil
}

// Done is closed when the listener has ended (Close, sandboxd or the session gone).
func (l *Listener) Done() <-chan struct{} { return l.done }

// Addr is the listener's address inside the sandbox.
func (l *Listener) Addr() net.Addr { return loopAddr(l.addr) }

// AddrString is the listener's address inside the sandbox, host:port.
func (l *Listener) AddrString() string { return l.addr }

type loopAddr string

func (a loopAddr) Network() string { return "tcp" }
func (a loopAddr) String() string  { return string(a) }

// Pipe copies between a and b in both directions until both end, then
// closes both. A side whose source ended is half-closed when it can be.
func Pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, err := io.Copy(dst, src)
		if err != nil {
			a.Close()
			b.Close()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
			return
		}
		_ = dst.Close() // a yamux stream's Close is a half-close
	}
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}
