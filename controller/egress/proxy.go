package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Caller identifies the sandbox process behind a proxied connection, as
// sandboxd found it from the connection's socket (never from argv).
type Caller struct {
	PID       int      `json:"pid,omitempty"`
	Binary    string   `json:"binary,omitempty"`
	Ancestors []string `json:"ancestors,omitempty"`
}

// Resolver resolves names for the proxy (net.DefaultResolver by default).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Outcome is one decided request, for the event stream and the log.
type Outcome struct {
	Request  Request  `json:"request"`
	Decision Decision `json:"decision"`
	// Addr is the address dialed after the SSRF checks, if any.
	Addr string `json:"addr,omitempty"`
	// Err is a failure after an allow (resolution, SSRF refusal, dial).
	Err string `json:"error,omitempty"`
}

// Proxy is a sandbox's egress proxy: an HTTP proxy (CONNECT and
// absolute-form requests) that decides every request with the sandbox's
// policy, resolves names only after an allow, refuses loopback,
// link-local, private and the host's own addresses (private ones may be
// allowed per endpoint with allowed_ips), and dials exactly the address it
// checked, so a name cannot rebind between check and connect.
type Proxy struct {
	Resolver Resolver
	// Dial dials the checked address (tests inject one; default net.Dialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// OnDecision receives every decision (it must not block).
	OnDecision func(Outcome)
	Logger     *slog.Logger
	// DialTimeout bounds resolution plus connect (default 10s).
	DialTimeout time.Duration
	// CA, when set, lets the proxy terminate TLS for endpoints whose rules
	// need the requests (REST rules, credential bindings); UpstreamRoots
	// verifies the real servers then (nil: the system's roots).
	CA            *CA
	UpstreamRoots *x509.CertPool
	// Secrets returns a provider's placeholder -> real value pairs, read
	// at each request (so a rotation applies at once).
	Secrets func(provider string) map[string]string
	// Inference, when set, answers requests to InferenceHost (plain HTTP,
	// or HTTPS terminated with the CA) instead of the policy: the
	// sandbox's inference endpoint, relayed by the host (inference.go).
	Inference func(ctx context.Context, req *http.Request) *http.Response

	engine    atomic.Pointer[Engine]
	listen    atomic.Pointer[error] // why Serve holds no listener
	listening atomic.Bool
	once      sync.Once
	own       []netip.Prefix // the host's own addresses
}

// SetEngine installs the policy the next decisions use (hot reload:
// requests in flight finish under the engine that decided them).
func (p *Proxy) SetEngine(e *Engine) { p.engine.Store(e) }

// Engine returns the engine in force.
func (p *Proxy) Engine() *Engine {
	if e := p.engine.Load(); e != nil {
		return e
	}
	return &Engine{}
}

func (p *Proxy) init() {
	p.once.Do(func() {
		if p.Resolver == nil {
			p.Resolver = net.DefaultResolver
		}
		if p.Dial == nil {
			d := &net.Dialer{}
			p.Dial = d.DialContext
		}
		if p.Logger == nil {
			p.Logger = slog.New(slog.DiscardHandler)
		}
		if p.DialTimeout == 0 {
			p.DialTimeout = 10 * time.Second
		}
		addrs, _ := net.InterfaceAddrs()
		for _, a := range addrs {
			if pfx, err := netip.ParsePrefix(a.String()); err == nil {
				p.own = append(p.own, netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Addr().BitLen()))
			}
		}
	})
}

// ServeConn serves one connection from the sandbox until it closes.
func (p *Proxy) ServeConn(ctx context.Context, conn net.Conn, who Caller) {
	p.init()
	defer conn.Close()
	br := bufio.NewReader(conn)
	up := &upstreams{}
	defer up.close()
	for {
		conn.SetReadDeadline(time.Now().Add(5 * time.Minute))
		req, err := http.ReadRequest(br)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				p.Logger.Debug("egress: bad request", "err", err)
			}
			return
		}
		conn.SetReadDeadline(time.Time{})
		if req.Method == http.MethodConnect {
			p.connect(ctx, conn, br, req, who)
			return
		}
		if !p.forward(ctx, conn, req, who, up) {
			return
		}
	}
}

// hostPort splits authority (host:port, default port def).
func hostPort(authority string, def int) (string, int, error) {
	h, ps, err := net.SplitHostPort(authority)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			return strings.Trim(authority, "[]"), def, nil
		}
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", ps)
	}
	return h, port, nil
}

func (p *Proxy) connect(ctx context.Context, conn net.Conn, br *bufio.Reader, req *http.Request, who Caller) {
	host, port, err := hostPort(req.Host, 443)
	if err != nil {
		deny(conn, http.StatusBadRequest, "bad CONNECT authority: "+err.Error())
		return
	}
	if p.isInference(host) {
		p.serveInferenceTLS(ctx, conn, br, host)
		return
	}
	r := Request{Host: host, Port: port, Binary: who.Binary, Ancestors: who.Ancestors}
	d := p.Engine().Decide(r)
	if d.Allow && (d.Inspect || d.Provider != "") && p.CA != nil {
		p.intercept(ctx, conn, br, r, d)
		return
	}
	if d.Allow && d.Inspect && !d.Audit {
		// Rules need the method and path, which TLS hides: refuse rather
		// than let every request of the tunnel through.
		d.Allow = false
		d.Reason = fmt.Sprintf("%s; but these rules need TLS inspection, which this proxy does not do: use access: full for the endpoint, or plain HTTP", d.Reason)
	}
	out := Outcome{Request: r, Decision: d}
	if !d.Allow {
		p.report(out)
		deny(conn, http.StatusForbidden, d.Reason)
		return
	}
	upc, addr, err := p.dial(ctx, host, port, d)
	out.Addr = addr
	if err != nil {
		out.Err = err.Error()
		p.report(out)
		deny(conn, http.StatusBadGateway, err.Error())
		return
	}
	defer upc.Close()
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	// Domain fronting: the TLS server name must be the CONNECT host.
	if sni, isTLS := peekSNI(br, conn); isTLS && sni != "" && !strings.EqualFold(sni, host) {
		out.Decision.Allow = false
		out.Decision.Reason = fmt.Sprintf("TLS server name %q does not match the CONNECT host %q (domain fronting is refused)", sni, host)
		p.report(out)
		return // the client sees the tunnel close before any byte reached the server
	}
	p.report(out)
	splice(conn, br, upc)
}

// forward proxies one absolute-form request; it reports whether the client
// connection may carry another.
func (p *Proxy) forward(ctx context.Context, conn net.Conn, req *http.Request, who Caller, up *upstreams) bool {
	if req.URL.Scheme != "http" || req.URL.Host == "" {
		deny(conn, http.StatusBadRequest, "the egress proxy takes absolute http:// URLs and CONNECT for https")
		return false
	}
	host, port, err := hostPort(req.URL.Host, 80)
	if err != nil {
		deny(conn, http.StatusBadRequest, err.Error())
		return false
	}
	// Domain fronting: the Host header the server gets is the authority
	// the policy checked (net/http takes an absolute URL's host over the
	// client's Host header, and writes it).
	req.Host = req.URL.Host
	if p.isInference(host) {
		return p.serveInference(ctx, conn, req)
	}
	r := Request{Host: host, Port: port, Binary: who.Binary, Ancestors: who.Ancestors,
		Method: req.Method, Path: req.URL.EscapedPath(), Query: req.URL.RawQuery}
	if r.Path == "" {
		r.Path = "/"
	}
	d := p.Engine().Decide(r)
	out := Outcome{Request: r, Decision: d}
	if !d.Allow {
		p.report(out)
		deny(conn, http.StatusForbidden, d.Reason)
		return !req.Close
	}
	key := net.JoinHostPort(host, strconv.Itoa(port))
	uc := up.get(key)
	if uc == nil {
		c, addr, err := p.dial(ctx, host, port, d)
		out.Addr = addr
		if err != nil {
			out.Err = err.Error()
			p.report(out)
			deny(conn, http.StatusBadGateway, err.Error())
			return !req.Close
		}
		uc = up.put(key, c, addr)
	}
	out.Addr = uc.addr
	p.report(out)
	p.substitute(req, d)
	// Origin-form to the server; hop-by-hop proxy headers dropped.
	req.RequestURI = ""
	req.Header.Del("Proxy-Connection")
	req.Header.Del("Proxy-Authorization")
	if err := req.Write(uc.c); err != nil {
		up.drop(key)
		deny(conn, http.StatusBadGateway, "write to upstream: "+err.Error())
		return false
	}
	resp, err := http.ReadResponse(uc.br, req)
	if err != nil {
		up.drop(key)
		deny(conn, http.StatusBadGateway, "read from upstream: "+err.Error())
		return false
	}
	err = resp.Write(conn)
	resp.Body.Close()
	if resp.Close {
		up.drop(key)
	}
	return err == nil && !req.Close && !resp.Close
}

func (p *Proxy) report(o Outcome) {
	if o.Decision.Allow {
		p.Logger.Debug("egress allowed", "host", o.Request.Host, "port", o.Request.Port, "binary", o.Request.Binary, "policy", o.Decision.Policy, "addr", o.Addr, "err", o.Err)
	} else {
		p.Logger.Info("egress denied", "host", o.Request.Host, "port", o.Request.Port, "binary", o.Request.Binary, "reason", o.Decision.Reason)
	}
	if p.OnDecision != nil {
		p.OnDecision(o)
	}
}

// dial resolves host (only now, after the allow), checks every address
// and dials the first permitted one: the address checked is the address
// connected to.
func (p *Proxy) dial(ctx context.Context, host string, port int, d Decision) (net.Conn, string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.DialTimeout)
	defer cancel()
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		addrs, err = p.Resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, "", fmt.Errorf("resolve %s: %w", host, err)
		}
	}
	var refused []string
	for _, a := range addrs {
		a = a.Unmap()
		if why := p.forbidden(a, d.AllowedIPs); why != "" {
			refused = append(refused, a.String()+" ("+why+")")
			continue
		}
		ap := netip.AddrPortFrom(a, uint16(port)).String()
		c, err := p.Dial(ctx, "tcp", ap)
		if err != nil {
			return nil, ap, fmt.Errorf("connect %s (%s): %w", host, ap, err)
		}
		return c, ap, nil
	}
	return nil, "", fmt.Errorf("%s resolves only to refused addresses: %s (SSRF protection; a private address can be allowed with allowed_ips on the endpoint)", host, strings.Join(refused, ", "))
}

var privateRanges = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("fc00::/7"),
}

// forbidden says why a is refused, or "".
func (p *Proxy) forbidden(a netip.Addr, allowed []netip.Prefix) string {
	switch {
	case a.IsLoopback():
		return "loopback"
	case a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast():
		return "link-local"
	case a.IsUnspecified() || a.IsMulticast() || a.IsInterfaceLocalMulticast():
		return "not a unicast address"
	}
	for _, pfx := range allowed {
		if pfx.Contains(a) {
			return ""
		}
	}
	for _, pfx := range p.own {
		if pfx.Contains(a) {
			return "an address of the host itself"
		}
	}
	for _, pfx := range privateRanges {
		if pfx.Contains(a) {
			return "private"
		}
	}
	return ""
}

// deny answers with status and the reason as a text body.
func deny(w io.Writer, status int, reason string) {
	body := "darkshell egress proxy: " + reason + "\n"
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nX-Darkshell-Policy-Decision: deny\r\nContent-Length: %d\r\n\r\n%s",
		status, http.StatusText(status), len(body), body)
}

// splice copies both ways until either side ends.
func splice(client net.Conn, br *bufio.Reader, upstream net.Conn) {
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(upstream, br)
		if cw, ok := upstream.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		done <- struct{}{}
	}()
	go func() {
		io.Copy(client, upstream)
		if cw, ok := client.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		done <- struct{}{}
	}()
	// When one direction ends, the exchange is over: close both so the
	// other copy ends too.
	<-done
	client.Close()
	upstream.Close()
	<-done
}

type upstream struct {
	c    net.Conn
	br   *bufio.Reader
	addr string
}

// upstreams keeps one connection per host:port for a client connection.
type upstreams struct{ m map[string]*upstream }

func (u *upstreams) get(k string) *upstream { return u.m[k] }
func (u *upstreams) put(k string, c net.Conn, addr string) *upstream {
	if u.m == nil {
		u.m = map[string]*upstream{}
	}
	x := &upstream{c: c, br: bufio.NewReader(c), addr: addr}
	u.m[k] = x
	return x
}
func (u *upstreams) drop(k string) {
	if x := u.m[k]; x != nil {
		x.c.Close()
		delete(u.m, k)
	}
}
func (u *upstreams) close() {
	for k := range u.m {
		u.drop(k)
	}
}

// substitute swaps the placeholders of the provider the decision binds
// for their real values in the request's headers. Requests to anything
// else keep the placeholders: no secret leaves for an unbound host.
func (p *Proxy) substitute(req *http.Request, d Decision) {
	if d.Provider == "" || p.Secrets == nil {
		return
	}
	pairs := p.Secrets(d.Provider)
	if len(pairs) == 0 {
		return
	}
	for k, vs := range req.Header {
		for i, v := range vs {
			for ph, real := range pairs {
				if strings.Contains(v, ph) {
					v = strings.ReplaceAll(v, ph, real)
				}
			}
			req.Header[k][i] = v
		}
	}
}

// acceptTLS answers a CONNECT to host and terminates the client's TLS
// with a leaf for leafName from the sandbox's CA; a client that names
// another server in its hello is refused (domain fronting). It returns a
// nil conn when the client left before the handshake began, else the
// conn (the caller closes it) and the handshake's error.
func (p *Proxy) acceptTLS(ctx context.Context, conn net.Conn, br *bufio.Reader, host, leafName string) (*tls.Conn, error) {
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return nil, err
	}
	tconn := tls.Server(&readerConn{Conn: conn, r: br}, &tls.Config{
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if h.ServerName != "" && !strings.EqualFold(h.ServerName, host) {
				return nil, fmt.Errorf("TLS server name %q does not match the CONNECT host %q (domain fronting is refused)", h.ServerName, host)
			}
			return p.CA.Leaf(leafName)
		},
	})
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return tconn, tconn.HandshakeContext(hctx)
}

// intercept terminates the client's TLS with a leaf of the sandbox's CA,
// decides every request at L7, and relays the allowed ones over TLS to the
// checked address of the real server.
func (p *Proxy) intercept(ctx context.Context, conn net.Conn, br *bufio.Reader, r Request, d Decision) {
	host, port := r.Host, r.Port
	tconn, err := p.acceptTLS(ctx, conn, br, host, host)
	if tconn == nil {
		return
	}
	defer tconn.Close()
	if err != nil {
		d.Allow, d.Reason = false, "TLS with the client failed: "+err.Error()
		p.report(Outcome{Request: r, Decision: d})
		return
	}
	tbr := bufio.NewReader(tconn)
	var up *tls.Conn
	var upbr *bufio.Reader
	var upAddr string
	defer func() {
		if up != nil {
			up.Close()
		}
	}()
	for {
		req, err := http.ReadRequest(tbr)
		if err != nil {
			return
		}
		r2 := r
		r2.Method, r2.Path, r2.Query = req.Method, req.URL.EscapedPath(), req.URL.RawQuery
		d2 := p.Engine().Decide(r2)
		out := Outcome{Request: r2, Decision: d2}
		if !d2.Allow {
			p.report(out)
			io.Copy(io.Discard, io.LimitReader(req.Body, 1<<20))
			deny(tconn, http.StatusForbidden, d2.Reason)
			continue
		}
		if up == nil {
			c, addr, err := p.dial(ctx, host, port, d2)
			out.Addr, upAddr = addr, addr
			if err == nil {
				up = tls.Client(c, &tls.Config{ServerName: host, RootCAs: p.UpstreamRoots, NextProtos: []string{"http/1.1"}})
				hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err = up.HandshakeContext(hctx)
				cancel()
				if err != nil {
					up.Close()
					up = nil
					err = fmt.Errorf("TLS with %s (%s): %w", host, addr, err)
				}
			}
			if err != nil {
				out.Err = err.Error()
				p.report(out)
				deny(tconn, http.StatusBadGateway, err.Error())
				return
			}
			upbr = bufio.NewReader(up)
		}
		out.Addr = upAddr
		p.report(out)
		p.substitute(req, d2)
		req.RequestURI = ""
		req.Header.Del("Proxy-Connection")
		req.Header.Del("Proxy-Authorization")
		if err := req.Write(up); err != nil {
			deny(tconn, http.StatusBadGateway, "write to upstream: "+err.Error())
			return
		}
		resp, err := http.ReadResponse(upbr, req)
		if err != nil {
			deny(tconn, http.StatusBadGateway, "read from upstream: "+err.Error())
			return
		}
		err = resp.Write(tconn)
		resp.Body.Close()
		if err != nil || req.Close || resp.Close {
			return
		}
	}
}

// readerConn reads through a bufio.Reader that may hold bytes already
// read from the connection.
type readerConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }
