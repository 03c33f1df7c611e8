package mcpproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// MaxFrame bounds one newline-delimited message read from a stdio upstream.
// An upstream that sends a longer line is broken: the link ends (the
// calls in flight fail, saying why) and the proxy restarts it.
const MaxFrame = 64 << 20

// rawIDPrefix marks the ids of requests the relay forwards itself; the SDK
// client that shares the upstream numbers its requests, so they never meet.
const rawIDPrefix = `"dsr-`

// link is a stdio upstream shared by two users: the raw relay, which
// writes requests as bytes (with a rewritten id) and takes the replies to
// those ids as bytes, and the SDK client session (initialize, tools/list,
// progress calls, server-to-client requests), which sees every other
// message through the mcp.Connection link implements.
type link struct {
	w    io.WriteCloser
	wmu  sync.Mutex
	msgs chan []byte // for the SDK connection

	seq     atomic.Uint64
	pmu     sync.Mutex
	pending map[uint64]chan []byte

	done      chan struct{} // closed when the upstream's output ended
	err       error         // why (set before done is closed)
	closeOnce sync.Once
	wait      func() error  // reaps the process (nil: no process)
	exited    chan struct{} // closed once the process is reaped
}

// terminateWait is how long Close gives a stdio server to exit after its
// stdin is closed (as the SDK's CommandTransport did); its process group
// is killed after that.
const terminateWait = 2 * time.Second

// errLinkClosed: the upstream's output ended.
var errLinkClosed = fmt.Errorf("%w: the server's output ended", mcp.ErrConnectionClosed)

func newLink(r io.Reader, w io.WriteCloser, wait func() error) *link {
	l := &link{w: w, msgs: make(chan []byte, 64), pending: map[uint64]chan []byte{}, done: make(chan struct{}), wait: wait, exited: make(chan struct{})}
	go l.read(r)
	return l
}

// read routes every line the upstream writes until its output ends.
func (l *link) read(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	err := func() error {
		for {
			line, err := readLine(br, MaxFrame)
			if err != nil {
				return err
			}
			if len(line) == 0 {
				continue
			}
			if n, ok := rawReplyID(line); ok {
				l.pmu.Lock()
				ch := l.pending[n]
				delete(l.pending, n)
				l.pmu.Unlock()
				if ch != nil {
					ch <- line // buffered
				}
				continue
			}
			select {
			case l.msgs <- line:
			case <-l.done:
				return nil
			}
		}
	}()
	if err == nil || errors.Is(err, io.EOF) {
		err = errLinkClosed
	}
	l.end(err)
	if l.wait != nil {
		_ = l.wait()
	}
	close(l.exited)
}

// end records why the link ended and fails every call in flight.
func (l *link) end(err error) {
	l.closeOnce.Do(func() {
		l.err = err
		close(l.done)
		_ = l.w.Close()
		l.pmu.Lock()
		for n, ch := range l.pending {
			close(ch)
			delete(l.pending, n)
		}
		l.pmu.Unlock()
	})
}

// readLine reads one newline-terminated line (without the newline) into a
// new slice of its own; a line longer than limit is an error.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	return readLineMax(br, limit, false)
}

// errFrameTooLong: a line longer than the limit (readLineMax with skip
// consumed the rest of it).
var errFrameTooLong = errors.New("message too long")

// readLineMax is readLine; with skip, a line longer than limit is read to
// its end and dropped, so that the next line can be read, and the error
// (which wraps errFrameTooLong) comes with the line's first limit bytes.
func readLineMax(br *bufio.Reader, limit int, skip bool) ([]byte, error) {
	var acc []byte
	for {
		b, err := br.ReadSlice('\n')
		n := len(acc) + len(b)
		if err == nil {
			n-- // the newline
		}
		if n > limit {
			if !skip {
				return nil, fmt.Errorf("the server sent a message longer than %d bytes", limit)
			}
			acc = append(acc, b[:max(0, min(len(b), limit-len(acc)))]...)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			return acc, fmt.Errorf("%w: longer than %d bytes", errFrameTooLong, limit)
		}
		switch {
		case err == nil:
			if acc == nil {
				return append([]byte(nil), trimCR(b[:len(b)-1])...), nil
			}
			acc = append(acc, b...)
			return trimCR(acc[:len(acc)-1]), nil
		case errors.Is(err, bufio.ErrBufferFull):
			acc = append(acc, b...)
		case errors.Is(err, io.EOF) && len(acc)+len(b) > 0:
			return trimCR(append(acc, b...)), nil
		default:
			return nil, err
		}
	}
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

// rawReplyID reports whether line is a reply to a raw request: a cheap
// look for the id first (most replies are), then a scan.
func rawReplyID(line []byte) (uint64, bool) {
	if !containsRawID(line) {
		return 0, false
	}
	f, err := scanFrame(line)
	if err != nil || f.hasMethod {
		return 0, false
	}
	id := f.id(line)
	if len(id) < len(rawIDPrefix)+2 || string(id[:len(rawIDPrefix)]) != rawIDPrefix {
		return 0, false
	}
	n, err := strconv.ParseUint(string(id[len(rawIDPrefix):len(id)-1]), 10, 64)
	return n, err == nil
}

func containsRawID(b []byte) bool {
	for i := 0; i+len(rawIDPrefix) <= len(b); i++ {
		if b[i] == '"' && string(b[i:i+len(rawIDPrefix)]) == rawIDPrefix {
			return true
		}
	}
	return false
}

// call sends msg (one request, f its scan) upstream under a fresh id and
// returns the reply with the request's own id put back. When ctx ends
// first, the upstream is told the request is cancelled.
func (l *link) call(ctx context.Context, msg []byte, f *frame) ([]byte, error) {
	n := l.seq.Add(1)
	var idb [32]byte
	id := strconv.AppendUint(append(idb[:0], rawIDPrefix...), n, 10)
	id = append(id, '"')
	ch := make(chan []byte, 1)
	l.pmu.Lock()
	select {
	case <-l.done:
		l.pmu.Unlock()
		return nil, l.err
	default:
	}
	l.pending[n] = ch
	l.pmu.Unlock()
	if err := l.write(withID(msg, f, id, true)); err != nil {
		l.forget(n)
		return nil, err
	}
	select {
	case reply, ok := <-ch:
		if !ok {
			return nil, l.err
		}
		rf, err := scanFrame(reply)
		if err != nil || rf.idEnd == 0 {
			return nil, fmt.Errorf("the server sent a malformed reply: %v", err)
		}
		return withID(reply, &rf, msg[f.idStart:f.idEnd], false), nil
	case <-ctx.Done():
		l.forget(n)
		_ = l.write([]byte(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":` + string(id) + `,"reason":"the client went away"}}` + "\n"))
		return nil, ctx.Err()
	}
}

func (l *link) forget(n uint64) {
	l.pmu.Lock()
	delete(l.pending, n)
	l.pmu.Unlock()
}

// write writes one whole line (one syscall for the message and its newline).
func (l *link) write(b []byte) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	select {
	case <-l.done:
		return l.err
	default:
	}
	if _, err := l.w.Write(b); err != nil {
		return fmt.Errorf("%w: write: %v", mcp.ErrConnectionClosed, err)
	}
	return nil
}

// Connect makes link an mcp.Transport for the SDK client session.
func (l *link) Connect(context.Context) (mcp.Connection, error) { return sdkConn{l}, nil }

type sdkConn struct{ l *link }

func (c sdkConn) Read(ctx context.Context) (jsonrpc.Message, error) {
	select {
	case b := <-c.l.msgs:
		return jsonrpc.DecodeMessage(b)
	case <-c.l.done:
		// Deliver what was read before the end.
		select {
		case b := <-c.l.msgs:
			return jsonrpc.DecodeMessage(b)
		default:
		}
		return nil, io.EOF
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c sdkConn) Write(_ context.Context, m jsonrpc.Message) error {
	b, err := jsonrpc.EncodeMessage(m)
	if err != nil {
		return err
	}
	return c.l.write(append(b, '\n'))
}

func (c sdkConn) Close() error {
	// Closing stdin asks a stdio server to exit; it gets terminateWait to
	// do so, then generation.stop ends its process group. Calls in flight
	// fail now.
	c.l.end(mcp.ErrConnectionClosed)
	if c.l.wait != nil {
		t := time.NewTimer(terminateWait)
		defer t.Stop()
		select {
		case <-c.l.exited:
		case <-t.C:
		}
	}
	return nil
}

func (c sdkConn) SessionID() string { return "" }
