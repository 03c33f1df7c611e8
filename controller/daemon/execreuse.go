package daemon

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// Reused exec connections. A client that sends "Darkshell-Exec-Reuse: 1"
// with its upgrade runs one exec after another on the connection. For each,
// the daemon passes sandboxd's frames up to the terminal one (exit or error)
// and the client's frames up to its exec-done; the next frame opens the next
// exec. The dial, accept, HTTP request and connection goroutine of a fresh
// connection are then off the path of every exec but the first.

// reuseIdle is how long a reused connection waits for its next exec.
const reuseIdle = 30 * time.Second

// errExecOver ends the copy of sandboxd's frames at the terminal one.
var errExecOver = errors.New("exec over")

// execLoop serves the execs after the first on a reused connection.
func (d *Daemon) execLoop(ctx context.Context, name string, conn net.Conn, br *bufio.Reader) {
	for d.awaitExec(conn, br) && d.execOne(ctx, name, nil, conn, br, true) {
	}
}

// awaitExec waits up to reuseIdle for the first byte of the next exec. The
// wait does not keep the daemon from its idle shutdown, which closes the
// connection.
func (d *Daemon) awaitExec(conn net.Conn, br *bufio.Reader) bool {
	if br.Buffered() > 0 {
		return true
	}
	d.idleMu.Lock()
	if d.idleClosed {
		d.idleMu.Unlock()
		return false
	}
	d.idleConns[conn] = struct{}{}
	d.idleMu.Unlock()
	d.lastSeen.Store(time.Now().UnixNano())
	d.active.Add(-1) // the request this connection came in on
	conn.SetReadDeadline(time.Now().Add(reuseIdle))
	_, err := br.Peek(1)
	conn.SetReadDeadline(time.Time{})
	d.active.Add(1)
	d.idleMu.Lock()
	delete(d.idleConns, conn)
	d.idleMu.Unlock()
	return err == nil
}

// closeIdleExecs closes the reused connections waiting for an exec; the
// daemon is stopping.
func (d *Daemon) closeIdleExecs() {
	d.idleMu.Lock()
	defer d.idleMu.Unlock()
	d.idleClosed = true
	for c := range d.idleConns {
		c.Close()
	}
}

// spliceExec runs one exec of a reused connection: sandboxd's frames (st) to
// the client up to the terminal one, the client's frames to sandboxd up to
// exec-done. It reports whether both ended there, so that conn can carry the
// next exec; otherwise it has closed conn.
func spliceExec(conn net.Conn, br *bufio.Reader, st net.Conn, tap *exitTap) bool {
	out := execOut{conn: conn, tap: tap, over: new(atomic.Bool)}
	in := make(chan bool, 1)
	go func() {
		ok := forwardUntilDone(st, br)
		if !ok || !out.over.Load() {
			// The client is gone, or gave up before the terminal frame:
			// closing the stream kills a non-durable process, and the
			// copy below ends.
			st.Close()
		}
		if !ok {
			conn.Close()
		}
		in <- ok
	}()
	buf := bufPool.Get().(*[]byte)
	_, err := io.CopyBuffer(out, st, *buf)
	bufPool.Put(buf)
	st.Close()
	if err == errExecOver && <-in {
		return true
	}
	conn.Close()
	if err != errExecOver {
		<-in
	}
	return false
}

// execOut writes sandboxd's frames to the client up to the terminal one,
// then ends the copy with errExecOver.
type execOut struct {
	conn net.Conn
	tap  *exitTap
	over *atomic.Bool // the terminal frame went out
}

func (w execOut) Write(p []byte) (int, error) {
	n := w.tap.scan(p)
	if w.tap.last {
		w.over.Store(true) // before the client can see it and answer
	}
	if _, err := w.conn.Write(p[:n]); err != nil {
		return 0, err
	}
	if w.tap.last {
		return len(p), errExecOver
	}
	return len(p), nil
}

// forwardUntilDone copies the client's frames to st, a frame per write,
// until exec-done (true) or the client's end or a malformed frame (false).
// Frames the stream no longer takes (the process has exited) are dropped.
func forwardUntilDone(st io.Writer, br *bufio.Reader) bool {
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	broken := false
	for {
		hdr, err := br.Peek(protocol.HeaderSize)
		if err != nil {
			return false
		}
		t := protocol.FrameType(hdr[0])
		n := binary.BigEndian.Uint32(hdr[1:])
		if t == protocol.FrameExecDone {
			_, err := br.Discard(protocol.HeaderSize)
			return n == 0 && err == nil
		}
		if t == protocol.FrameInvalid || n > protocol.MaxPayload {
			return false
		}
		for left := protocol.HeaderSize + int(n); left > 0; {
			k := min(left, len(*buf))
			if _, err := io.ReadFull(br, (*buf)[:k]); err != nil {
				return false
			}
			if !broken {
				_, err := st.Write((*buf)[:k])
				broken = err != nil
			}
			left -= k
		}
	}
}
