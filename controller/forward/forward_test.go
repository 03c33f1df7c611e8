package forward

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/session"
	"github.com/bohica-labs/darkshell/protocol"
	"github.com/bohica-labs/darkshell/sandboxd"
)

// pipeSession connects a real controller session to a real sandboxd server
// over net.Pipe.
func pipeSession(t *testing.T, dir string) *session.Session {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv := sandboxd.New(sandboxd.Options{DefaultDir: dir})
	a, b := net.Pipe()
	go srv.ServeConn(ctx, b)
	s, err := session.Dial(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		cancel()
		cctx, c2 := context.WithTimeout(context.Background(), 2*time.Second)
		defer c2()
		srv.Close(cctx)
	})
	return s
}

func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return l.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo = %q, %v", buf, err)
	}
}

func TestDialAndListen(t *testing.T) {
	dir := t.TempDir()
	s := pipeSession(t, dir)
	ctx := context.Background()

	c, err := Dial(ctx, s, echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "hello through the sandbox")
	c.Close()

	if _, err := Dial(ctx, s, "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("dial to a closed port: %v", err)
	}
	if _, err := Dial(ctx, s, "10.1.2.3:80"); err == nil {
		t.Fatal("dial to a non-loopback address accepted")
	}

	l, err := Listen(ctx, s, "127.0.0.1:0", "mcp:demo", &protocol.MCPEndpoint{Name: "demo", Transport: protocol.MCPBridge, Path: "/mcp"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ".darkshell", "mcp.json"))
	if err != nil || !strings.Contains(string(b), "http://"+l.AddrString()+"/mcp") {
		t.Fatalf("mcp.json = %s, %v", b, err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", l.AddrString())
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, "reverse")
		c.Close()
	}
	l.Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", l.AddrString(), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("sandbox listener still open after Close")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		b, _ = os.ReadFile(filepath.Join(dir, ".darkshell", "mcp.json"))
		if !strings.Contains(string(b), "demo") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mcp.json still lists the closed bridge: %s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
