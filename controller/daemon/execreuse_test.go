package daemon

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// unixPair returns two connected unix stream sockets (buffered both ways,
// unlike net.Pipe).
func unixPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func frame(t protocol.FrameType, payload string) []byte {
	return protocol.AppendFrame(nil, t, []byte(payload))
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// readAll reads what arrives on c until it ends or stays quiet: the caller
// has already seen the splice return, so everything sent is there.
func readAll(c net.Conn) []byte {
	var out []byte
	buf := make([]byte, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out
		}
	}
}

// TestSpliceExec runs one exec of a reused connection between a client
// socket and a stand-in for sandboxd's stream (the integration tests use
// the real one): what each side receives, and whether the connection can
// carry the next exec.
func TestSpliceExec(t *testing.T) {
	started := frame(protocol.FrameExecStarted, `{"id":"p-1","pid":42}`)
	out := frame(protocol.FrameStdout, "hi")
	exit := frame(protocol.FrameExit, `{"code":3}`)
	stdin := frame(protocol.FrameStdin, "in")
	done := frame(protocol.FrameExecDone, "")
	next := frame(protocol.FrameExecStart, `{"argv":["true"]}`)
	cases := []struct {
		name      string
		sandbox   []byte // what sandboxd sends; it then closes unless hold
		sbAfter   []byte // what sandboxd sends once it has read toSandbox
		hold      bool   // sandboxd keeps the stream open until it is closed
		client    []byte // what the client sends
		afterExit []byte // what the client sends once it has read toClient
		clientEnd bool   // the client closes after sending
		again     bool
		toClient  []byte // what the client must receive (nil: anything, then the end)
		toSandbox []byte
		rest      []byte // left unread on the client's reader
	}{
		{name: "clean", sandbox: cat(started, out), sbAfter: cat(exit, frame(protocol.FrameStdout, "after the exit")), hold: true,
			client: stdin, afterExit: cat(done, next), again: true,
			toClient: cat(started, out, exit), toSandbox: stdin, rest: next},
		{name: "error ends it", sandbox: frame(protocol.FrameError, `{"code":"not_found","message":"no"}`), hold: true,
			afterExit: done, again: true, toClient: frame(protocol.FrameError, `{"code":"not_found","message":"no"}`)},
		{name: "client gone", sandbox: started, hold: true, client: stdin, clientEnd: true, toSandbox: stdin},
		{name: "no exit", sandbox: cat(started, out), client: nil, toClient: cat(started, out)},
		{name: "done before exit", sandbox: started, hold: true, client: done, toSandbox: []byte{}},
		{name: "oversized", sandbox: started, hold: true, client: []byte{byte(protocol.FrameStdin), 0x7f, 0, 0, 0}, toSandbox: []byte{}},
		{name: "done with a payload", sandbox: cat(started, exit), hold: true, client: frame(protocol.FrameExecDone, "x"), toSandbox: []byte{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			client, conn := unixPair(t)
			sandbox, st := unixPair(t)
			if _, err := sandbox.Write(c.sandbox); err != nil {
				t.Fatal(err)
			}
			if !c.hold {
				sandbox.(*net.UnixConn).CloseWrite()
			}
			if _, err := client.Write(c.client); err != nil {
				t.Fatal(err)
			}
			if c.clientEnd {
				client.(*net.UnixConn).CloseWrite()
			}
			br := bufio.NewReader(conn)
			res := make(chan bool, 1)
			tap := &exitTap{}
			go func() { res <- spliceExec(conn, br, st, tap) }()
			if c.sbAfter != nil {
				sandbox.SetReadDeadline(time.Now().Add(5 * time.Second))
				got := make([]byte, len(c.toSandbox))
				if _, err := io.ReadFull(sandbox, got); err != nil || !bytes.Equal(got, c.toSandbox) {
					t.Fatalf("sandboxd received %q (%v), want %q", got, err, c.toSandbox)
				}
				c.toSandbox = nil // then its end
				sandbox.Write(c.sbAfter)
			}
			if c.afterExit != nil {
				client.SetReadDeadline(time.Now().Add(5 * time.Second))
				got := make([]byte, len(c.toClient))
				if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, c.toClient) {
					t.Fatalf("client received %q (%v), want %q", got, err, c.toClient)
				}
				c.toClient = []byte{} // and nothing more
				client.Write(c.afterExit)
			}
			var again bool
			select {
			case again = <-res:
			case <-time.After(10 * time.Second):
				t.Fatal("spliceExec did not return")
			}
			if again != c.again {
				t.Fatalf("again = %v, want %v", again, c.again)
			}
			if got := readAll(client); c.toClient != nil && !bytes.Equal(got, c.toClient) && (len(got) > 0 || len(c.toClient) > 0) {
				t.Errorf("client received %q, want %q", got, c.toClient)
			}
			// The stream to sandboxd is closed either way: it reads the
			// client's frames, then its end.
			sandbox.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(sandbox)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("sandboxd's stream was not closed")
			}
			if c.toSandbox != nil && !bytes.Equal(got, c.toSandbox) {
				t.Errorf("sandboxd received %q, want %q", got, c.toSandbox)
			}
			if !again {
				// The connection is closed: the client reads its end.
				client.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := client.Read(make([]byte, 1)); err != io.EOF {
					t.Errorf("client read %v, want the connection's end", err)
				}
				return
			}
			if c.rest != nil {
				conn.SetReadDeadline(time.Now().Add(time.Second))
				rest, _ := br.Peek(len(c.rest))
				if !bytes.Equal(rest, c.rest) {
					t.Errorf("next on the connection %q, want %q", rest, c.rest)
				}
			}
		})
	}
}

// TestExitTapScan: the tap follows frames split anywhere and stops at the
// terminal frame, saying where it ended.
func TestExitTapScan(t *testing.T) {
	stream := cat(frame(protocol.FrameExecStarted, `{"id":"p","pid":7}`), frame(protocol.FrameStdout, "abc"),
		frame(protocol.FrameExit, `{"code":5}`))
	tail := frame(protocol.FrameStdout, "late")
	all := cat(stream, tail)
	for cut := 1; cut < len(all); cut++ {
		tap := &exitTap{}
		n1 := tap.scan(all[:cut])
		n2 := tap.scan(all[cut:])
		if n1+n2 != len(stream) || !tap.last || tap.pid != 7 || tap.exit == nil || tap.exit.Code != 5 {
			t.Fatalf("cut %d: consumed %d+%d of %d, last %v pid %d exit %+v", cut, n1, n2, len(stream), tap.last, tap.pid, tap.exit)
		}
	}
}

// TestAwaitExecIdle: a reused connection waiting for its next exec does not
// count as activity, and the daemon's stop closes it.
func TestAwaitExecIdle(t *testing.T) {
	d := &Daemon{idleConns: map[net.Conn]struct{}{}}
	d.active.Store(1) // the request the connection came in on
	client, conn := unixPair(t)
	res := make(chan bool, 1)
	go func() { res <- d.awaitExec(conn, bufio.NewReader(conn)) }()
	waitUntil(t, func() bool { return d.active.Load() == 0 })
	client.Write(frame(protocol.FrameExecStart, "{}"))
	if !<-res || d.active.Load() != 1 {
		t.Fatalf("a frame did not end the wait (active %d)", d.active.Load())
	}
	go func() { res <- d.awaitExec(conn, bufio.NewReader(conn)) }()
	waitUntil(t, func() bool { return d.active.Load() == 0 })
	d.closeIdleExecs()
	if <-res {
		t.Fatal("the wait went on after the daemon closed idle connections")
	}
	if d.awaitExec(conn, bufio.NewReader(conn)) {
		t.Fatal("a connection waited after the daemon stopped")
	}
	if _, err := conn.Write([]byte{0}); !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrClosed) {
		t.Fatalf("the idle connection is still open: %v", err)
	}
}

func waitUntil(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}
