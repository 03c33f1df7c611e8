package client

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/protocol"
)

// execServer is a stand-in for the daemon's exec upgrade (the integration
// tests use the real daemon): it answers every exec stream with a started
// and an exit frame, and counts the connections it accepted.
func execServer(t *testing.T, sock string) (accepted *atomic.Int64, srv *http.Server) {
	t.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int64)
	srv = &http.Server{
		ReadHeaderTimeout: 300 * time.Millisecond, // closes an unused spare, like the daemon's (longer) limit
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				accepted.Add(1)
			}
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, brw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + api.UpgradeStream + "\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
			if _, err := protocol.ReadFrame(bufio.NewReader(brw), protocol.MaxPayload); err != nil {
				return
			}
			protocol.WriteMsg(conn, protocol.FrameExecStarted, &protocol.ExecStarted{ID: "p-1", PID: 42})
			protocol.WriteMsg(conn, protocol.FrameExit, &protocol.ExitMsg{Code: 7})
		}),
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return accepted, srv
}

func execOnce(t *testing.T, c *Client) {
	t.Helper()
	p, err := c.Exec(context.Background(), "s", &protocol.ExecStart{Argv: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	x, err := p.Wait(nil, nil)
	if err != nil || x.Status() != 7 {
		t.Fatalf("exit %+v, %v; want status 7", x, err)
	}
}

// waitSpare waits for the background dial of a spare connection.
func waitSpare(t *testing.T, c *Client) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		c.spareMu.Lock()
		ok := c.spare != nil
		c.spareMu.Unlock()
		if ok {
			return
		}
	}
	t.Fatal("no spare connection was dialled")
}

// waitAccepted waits until the server has accepted n connections: a dial
// returns before the server's accept.
func waitAccepted(t *testing.T, accepted *atomic.Int64, n int64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if accepted.Load() >= n {
			break
		}
	}
	time.Sleep(20 * time.Millisecond) // and no more than n
	if got := accepted.Load(); got != n {
		t.Fatalf("the daemon accepted %d connections, want %d", got, n)
	}
}

// TestExecSpareConnection: a client that runs more than one command keeps a
// connection dialled ahead, and the next exec uses it; one that runs a
// single command (the CLI) dials no spare; a spare the daemon closed is
// replaced by a fresh dial without failing the exec.
func TestExecSpareConnection(t *testing.T) {
	dir := t.TempDir()
	c, err := New(Options{Home: dir, NoAutoStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	accepted, srv := execServer(t, c.home.Socket())

	execOnce(t, c)
	waitAccepted(t, accepted, 1) // no spare for a one-shot client (the CLI)
	execOnce(t, c)
	waitSpare(t, c)
	waitAccepted(t, accepted, 3) // two execs and a spare
	execOnce(t, c)               // on the spare; a new spare is dialled behind it
	waitSpare(t, c)
	waitAccepted(t, accepted, 4)

	// The daemon drops the spare (its limit for a request to arrive, or a
	// restart): the exec still succeeds on a fresh connection.
	time.Sleep(600 * time.Millisecond)
	before := accepted.Load()
	execOnce(t, c)
	if accepted.Load() == before {
		t.Fatal("the exec after the daemon dropped the spare did not dial afresh")
	}

	// An old spare is not used.
	waitSpare(t, c)
	c.spareMu.Lock()
	c.spareAt = time.Now().Add(-2 * spareMaxAge)
	c.spareMu.Unlock()
	before = accepted.Load()
	execOnce(t, c)
	if accepted.Load() == before {
		t.Fatal("an expired spare connection was used")
	}
	srv.Close()
}
