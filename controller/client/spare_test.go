package client

import (
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
// and an exit frame, and counts the connections it accepted and the execs
// it served. With reuse its 101 agrees to reuse (api.HeaderExecReuse), and
// after each exit it expects the client's exec-done and serves the next
// exec on the connection.
func execServer(t *testing.T, sock string, reuse bool) (accepted, served *atomic.Int64, srv *http.Server) {
	t.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	accepted, served = new(atomic.Int64), new(atomic.Int64)
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
			if r.Header.Get(api.HeaderExecReuse) != "1" {
				t.Error("the client did not ask for reuse")
				return
			}
			head := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + api.UpgradeStream + "\r\nConnection: Upgrade\r\n"
			if reuse {
				head += api.HeaderExecReuse + ": 1\r\n"
			}
			brw.WriteString(head + "\r\n")
			brw.Flush()
			for {
				f, err := protocol.ReadFrame(brw, protocol.MaxPayload)
				if err != nil {
					return
				}
				if f.Type != protocol.FrameExecStart {
					t.Errorf("opening frame %s", f.Type)
					return
				}
				served.Add(1)
				protocol.WriteMsg(conn, protocol.FrameExecStarted, &protocol.ExecStarted{ID: "p-1", PID: 42})
				protocol.WriteMsg(conn, protocol.FrameExit, &protocol.ExitMsg{Code: 7})
				if !reuse {
					return
				}
				if f, err = protocol.ReadFrame(brw, protocol.MaxPayload); err != nil || f.Type != protocol.FrameExecDone {
					return // closed: the exec was not released
				}
			}
		}),
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return accepted, served, srv
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
	accepted, _, srv := execServer(t, c.home.Socket(), false)

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

// TestExecReuse: execs that ended cleanly leave their connection for the
// next exec of the same sandbox; one closed before its exit does not; an
// idle connection the daemon closed is replaced by a fresh dial.
func TestExecReuse(t *testing.T) {
	c, err := New(Options{Home: t.TempDir(), NoAutoStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	accepted, served, _ := execServer(t, c.home.Socket(), true)
	execOnce(t, c) // the first dials
	for range 9 {
		execOnce(t, c)
	}
	if served.Load() != 10 || accepted.Load() != 1 {
		t.Fatalf("10 execs: %d served on %d connections, want 1 connection", served.Load(), accepted.Load())
	}
	if !c.hasIdle("s") || c.hasIdle("other") {
		t.Fatal("the idle connection is not kept for its own sandbox only")
	}

	// Closed before its exit was read: the connection is not kept.
	p, err := c.Exec(context.Background(), "s", &protocol.ExecStart{Argv: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if c.hasIdle("s") {
		t.Fatal("a connection whose exit was not read was kept")
	}
	if _, err := p.Write([]byte("late")); err == nil {
		t.Fatal("a closed exec still writes")
	}
	execOnce(t, c)

	// The daemon dropped the idle connection, or it is past its age: the
	// next exec runs on another connection.
	for _, spoil := range []func(*idleExec){
		func(ie *idleExec) { ie.conn.(*net.UnixConn).CloseRead() }, // reads its end, as if the daemon had closed it
		func(ie *idleExec) { ie.at = time.Now().Add(-2 * idleMaxAge) },
	} {
		c.spareMu.Lock()
		if len(c.idle["s"]) != 1 {
			t.Fatalf("%d idle connections, want 1", len(c.idle["s"]))
		}
		old := c.idle["s"][0].conn
		spoil(&c.idle["s"][0])
		c.spareMu.Unlock()
		execOnce(t, c)
		c.spareMu.Lock()
		if len(c.idle["s"]) != 1 || c.idle["s"][0].conn == old {
			t.Fatal("a spoilt idle connection was used")
		}
		c.spareMu.Unlock()
	}

	// A released exec's Proc cannot touch the connection the next exec uses.
	p, err = c.Exec(context.Background(), "s", &protocol.ExecStart{Argv: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(nil, nil); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if err := p.CloseStdin(); err == nil {
		t.Fatal("a released exec still writes")
	}
	execOnce(t, c)
	if served.Load() != 16 {
		t.Fatalf("served %d execs, want 16", served.Load())
	}
}
