package mcpproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// rawHTTP is the shim's HTTP/1.1 client for a plain-http loopback endpoint:
// the calling goroutine writes the request (headers and body in one write)
// and reads the answer on a kept-alive connection itself. http.Transport
// hands every request to a connection's write loop and every answer back
// from its read loop, two goroutine switches per call that cost more than
// the rest of the shim on a loaded machine (BenchmarkShimCall).
type rawHTTP struct {
	addr, host, path string
	dialer           net.Dialer

	mu     sync.Mutex
	idle   []*rawConn
	active map[*rawConn]bool
	closed bool
}

type rawConn struct {
	c    net.Conn
	br   *bufio.Reader
	wb   []byte
	idle time.Time // since when it is kept
}

// checkIdle: a connection kept longer than this is checked before reuse
// (servers close idle connections after seconds, not milliseconds; a
// close that races a request is the retry's case).
const checkIdle = 500 * time.Millisecond

// maxIdleRaw bounds the connections kept for reuse.
const maxIdleRaw = 64

func newRawHTTP(u string) (*rawHTTP, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return nil, err
	}
	if pu.Scheme != "http" || pu.User != nil {
		return nil, fmt.Errorf("not a plain http URL: %s", u)
	}
	addr := pu.Host
	if pu.Port() == "" {
		addr = net.JoinHostPort(pu.Hostname(), "80")
	}
	path := pu.RequestURI()
	return &rawHTTP{addr: addr, host: pu.Host, path: path, dialer: net.Dialer{Timeout: 10 * time.Second},
		active: map[*rawConn]bool{}}, nil
}

var errRawClosed = errors.New("the shim is stopping")

// do sends one request and returns its response; closing the body returns
// the connection for reuse once the body was read to its end.
func (r *rawHTTP) do(ctx context.Context, method string, h http.Header, body []byte) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		rc, reused, err := r.get(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := r.roundTrip(ctx, rc, method, h, body)
		if err == nil {
			return resp, nil
		}
		r.drop(rc)
		// A kept connection the server closed (while it was idle: a
		// server answers a request it read) before a byte of the answer:
		// a new connection, once.
		var na *noAnswer
		closed := errors.As(err, &na) && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE))
		if !reused || attempt > 0 || !closed || ctx.Err() != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
	}
}

func (r *rawHTTP) roundTrip(ctx context.Context, rc *rawConn, method string, h http.Header, body []byte) (*http.Response, error) {
	if d, ok := ctx.Deadline(); ok {
		_ = rc.c.SetDeadline(d)
	}
	b := rc.wb[:0]
	b = append(append(append(b, method...), ' '), r.path...)
	b = append(append(append(b, " HTTP/1.1\r\nHost: "...), r.host...), "\r\n"...)
	for k, vs := range h {
		for _, v := range vs {
			if !validHeader(k) || !validHeader(v) {
				return nil, fmt.Errorf("%w: header %s: invalid characters in %q", errBadHeader, k, v)
			}
			b = append(append(append(append(b, k...), ": "...), v...), "\r\n"...)
		}
	}
	if body != nil {
		b = strconv.AppendInt(append(b, "Content-Length: "...), int64(len(body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	b = append(b, body...)
	if cap(b) <= 64<<10 {
		rc.wb = b
	}
	if _, err := rc.c.Write(b); err != nil {
		return nil, &noAnswer{err}
	}
	if _, err := rc.br.Peek(1); err != nil {
		return nil, &noAnswer{err}
	}
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method, Header: h})
	if err != nil {
		return nil, err
	}
	resp.Body = &rawBody{r: r, rc: rc, body: resp.Body, keep: !resp.Close}
	return resp, nil
}

// get returns a kept connection that is still open, or a new one.
func (r *rawHTTP) get(ctx context.Context) (*rawConn, bool, error) {
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil, false, errRawClosed
		}
		n := len(r.idle)
		if n == 0 {
			r.mu.Unlock()
			break
		}
		rc := r.idle[n-1]
		r.idle = r.idle[:n-1]
		r.active[rc] = true
		r.mu.Unlock()
		if time.Since(rc.idle) < checkIdle || rc.alive() {
			return rc, true, nil
		}
		r.drop(rc)
	}
	c, err := r.dialer.DialContext(ctx, "tcp", r.addr)
	if err != nil {
		return nil, false, err
	}
	rc := &rawConn{c: c, br: bufio.NewReaderSize(c, 64<<10)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.Close()
		return nil, false, errRawClosed
	}
	r.active[rc] = true
	return rc, false, nil
}

// alive reports whether an idle connection is still open: nothing may be
// waiting on it but the server's close.
func (rc *rawConn) alive() bool {
	if rc.br.Buffered() > 0 {
		return false
	}
	_ = rc.c.SetReadDeadline(time.Now())
	_, err := rc.br.Peek(1)
	_ = rc.c.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// noAnswer: the connection failed before a byte of the answer came.
type noAnswer struct{ err error }

func (e *noAnswer) Error() string { return e.err.Error() }
func (e *noAnswer) Unwrap() error { return e.err }

// errBadHeader: a header value the shim will not send (it would end the
// header early).
var errBadHeader = errors.New("invalid header")

func validHeader(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func (r *rawHTTP) put(rc *rawConn) {
	_ = rc.c.SetDeadline(time.Time{})
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.active, rc)
	if r.closed || len(r.idle) >= maxIdleRaw {
		rc.c.Close()
		return
	}
	rc.idle = time.Now()
	r.idle = append(r.idle, rc)
}

func (r *rawHTTP) drop(rc *rawConn) {
	r.mu.Lock()
	delete(r.active, rc)
	r.mu.Unlock()
	rc.c.Close()
}

// close closes every connection, ending the requests in flight.
func (r *rawHTTP) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for _, rc := range r.idle {
		rc.c.Close()
	}
	r.idle = nil
	for rc := range r.active {
		rc.c.Close()
	}
}

// rawBody returns its connection for reuse when it was read to its end.
type rawBody struct {
	r    *rawHTTP
	rc   *rawConn
	body io.ReadCloser
	keep bool
	eof  bool
	once sync.Once
}

func (b *rawBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	return n, err
}

func (b *rawBody) Close() error {
	b.once.Do(func() {
		// Kept only when read to its end: a body left unread may be a
		// stream that does not end.
		if b.eof && b.keep {
			b.r.put(b.rc)
		} else {
			b.r.drop(b.rc)
		}
	})
	return nil
}
