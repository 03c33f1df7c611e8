package egress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/bohica-labs/darkshell/controller/forward"
	"github.com/bohica-labs/darkshell/controller/session"
	"github.com/bohica-labs/darkshell/protocol"
)

// ProxyAddr is the egress proxy's address inside a sandbox (its loopback;
// the last port of the range Landlock lets sandbox processes connect to).
// Sandbox processes find it in HTTP_PROXY, HTTPS_PROXY and ALL_PROXY.
const ProxyAddr = "127.0.0.1:7399"

// proxyTag names the proxy's listener on the session.
const proxyTag = "darkshell-egress"

// ProxyEnv is what sandbox processes get in their environment.
func ProxyEnv() []string {
	u := "http://" + ProxyAddr
	return []string{"HTTP_PROXY=" + u, "HTTPS_PROXY=" + u, "ALL_PROXY=" + u,
		"http_proxy=" + u, "https_proxy=" + u, "all_proxy=" + u,
		"NO_PROXY=localhost,127.0.0.1,::1", "no_proxy=localhost,127.0.0.1,::1"}
}

// Serve keeps the proxy listening in the sandbox over the sessions get
// returns, re-listening when a session drops, until ctx ends. Every
// accepted connection is served by p with the caller sandboxd identified.
func Serve(ctx context.Context, get func(context.Context) (*session.Session, error), p *Proxy, log *slog.Logger) {
	backoff := 100 * time.Millisecond
	p.setListening(ErrNotYet)
	defer p.setListening(errStopped)
	for ctx.Err() == nil {
		l, err := listen(ctx, get)
		if err != nil {
			p.setListening(err)
			log.Debug("egress: unable to listen in the sandbox; retrying", "err", err, "in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		p.setListening(nil)
		stop := context.AfterFunc(ctx, func() { l.Close() })
		for {
			c, err := l.Accept()
			if err != nil {
				p.setListening(fmt.Errorf("the listener in the sandbox closed: %w", err))
				break
			}
			var who Caller
			if fc, ok := c.(*forward.Conn); ok && fc.Meta != nil && fc.Meta.Caller != nil {
				who = Caller{PID: fc.Meta.Caller.PID, Binary: fc.Meta.Caller.Binary, Ancestors: fc.Meta.Caller.Ancestors}
			}
			go p.ServeConn(ctx, c, who)
		}
		stop()
		l.Close()
	}
}

// ErrNotYet: the proxy has not listened in the sandbox yet.
var (
	ErrNotYet  = errors.New("not listening yet")
	errStopped = errors.New("stopped")
)

func (p *Proxy) setListening(err error) {
	if err == nil {
		p.listen.Store(nil)
		p.listening.Store(true)
		return
	}
	p.listen.Store(&err)
	p.listening.Store(false)
}

// Listening returns nil while Serve holds the proxy's listener in the
// sandbox, else why not: ErrNotYet before its first listen, or the last
// listen error.
func (p *Proxy) Listening() error {
	if p.listening.Load() {
		return nil
	}
	if e := p.listen.Load(); e != nil {
		return *e
	}
	return ErrNotYet
}

func listen(ctx context.Context, get func(context.Context) (*session.Session, error)) (*forward.Listener, error) {
	s, err := get(ctx)
	if err != nil {
		return nil, err
	}
	return forward.ListenWith(ctx, s, protocol.ForwardListen{Addr: ProxyAddr, Tag: proxyTag, Identify: true})
}
