// Package testclient is a minimal protocol client for sandboxd's tests: a
// handshake, a yamux client session and helpers to run exec streams.
package testclient

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/hashicorp/yamux"

	"github.com/bohica-labs/darkshell/protocol"
)

// Client is a controller-side session.
type Client struct {
	Hello protocol.Hello // the server's hello
	sess  *yamux.Session
}

// SocketPair returns two connected unix stream sockets.
func SocketPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatalf("socketpair conn: %v", err)
		}
		return c
	}
	a, b := conn(fds[0]), conn(fds[1])
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return a, b
}

// Connect does the controller side of the handshake on conn and starts a
// yamux client session. The session is closed at test cleanup.
func Connect(t testing.TB, conn io.ReadWriteCloser) *Client {
	t.Helper()
	hello := protocol.NewHello(protocol.RoleController, "test", protocol.CapExec)
	remote, _, err := protocol.Handshake(conn, hello)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	sess, err := yamux.Client(protocol.MuxConn(conn), protocol.MuxConfig())
	if err != nil {
		t.Fatalf("yamux client: %v", err)
	}
	t.Cleanup(func() { _ = sess.Close() })
	return &Client{Hello: remote, sess: sess}
}

// Close ends the session (as a connection cut would).
func (c *Client) Close() error { return c.sess.Close() }

// Stream is one open stream.
type Stream struct {
	*protocol.Writer
	St *yamux.Stream
}

// Open opens a stream and writes its request frame.
func (c *Client) Open(t testing.TB, typ protocol.FrameType, req any) *Stream {
	t.Helper()
	st, err := c.sess.OpenStream()
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	s := &Stream{Writer: protocol.NewWriter(st), St: st}
	if err := s.Msg(typ, req); err != nil {
		t.Fatalf("write %s: %v", typ, err)
	}
	return s
}

// OpenRaw opens a stream and writes raw bytes.
func (c *Client) OpenRaw(t testing.TB, b []byte) *Stream {
	t.Helper()
	st, err := c.sess.OpenStream()
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := st.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
	return &Stream{Writer: protocol.NewWriter(st), St: st}
}

// Next reads one frame.
func (s *Stream) Next() (protocol.Frame, error) {
	return protocol.ReadFrame(s.St, protocol.MaxPayload)
}

// Started reads the ExecStarted reply (or returns the remote error).
func (s *Stream) Started() (protocol.ExecStarted, error) {
	var m protocol.ExecStarted
	f, err := s.Next()
	if err != nil {
		return m, err
	}
	if f.Type == protocol.FrameError {
		return m, protocol.ErrorFromFrame(f)
	}
	return m, protocol.DecodeMsg(f, protocol.FrameExecStarted, &m)
}

// Result is what an exec stream delivered.
type Result struct {
	Stdout, Stderr []byte
	Exit           *protocol.ExitMsg
}

// Output reads data frames until the exit (or an error). Data is passed to
// onData as it arrives when onData is not nil, and collected otherwise.
func (s *Stream) Output(onData func(t protocol.FrameType, p []byte)) (Result, error) {
	var r Result
	for {
		f, err := s.Next()
		if err != nil {
			return r, fmt.Errorf("read: %w", err)
		}
		switch f.Type {
		case protocol.FrameStdout, protocol.FrameStderr:
			if onData != nil {
				onData(f.Type, f.Payload)
			} else if f.Type == protocol.FrameStdout {
				r.Stdout = append(r.Stdout, f.Payload...)
			} else {
				r.Stderr = append(r.Stderr, f.Payload...)
			}
		case protocol.FrameExit:
			var m protocol.ExitMsg
			if err := protocol.DecodeMsg(f, protocol.FrameExit, &m); err != nil {
				return r, err
			}
			r.Exit = &m
			return r, nil
		case protocol.FrameError:
			return r, protocol.ErrorFromFrame(f)
		default:
			return r, fmt.Errorf("unexpected %s frame", f.Type)
		}
	}
}

// Run starts req and collects its output and exit.
func (c *Client) Run(t testing.TB, req *protocol.ExecStart) (protocol.ExecStarted, Result, error) {
	t.Helper()
	s := c.Open(t, protocol.FrameExecStart, req)
	started, err := s.Started()
	if err != nil {
		return started, Result{}, err
	}
	r, err := s.Output(nil)
	return started, r, err
}

// Request sends a one-shot request and decodes its reply of type want into reply.
func (c *Client) Request(t testing.TB, typ protocol.FrameType, req any, want protocol.FrameType, reply protocol.Validator) error {
	t.Helper()
	s := c.Open(t, typ, req)
	f, err := s.Next()
	if err != nil {
		return err
	}
	if f.Type == protocol.FrameError {
		return protocol.ErrorFromFrame(f)
	}
	return protocol.DecodeMsg(f, want, reply)
}

// IsCode reports whether err is a remote error with code.
func IsCode(err error, code string) bool {
	var re *protocol.RemoteError
	return errors.As(err, &re) && re.Code == code
}
