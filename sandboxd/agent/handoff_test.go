package agent

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func listenTest(t *testing.T) (*net.UnixListener, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "a.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, path
}

func TestHandoffCarrier(t *testing.T) {
	ln, path := listenTest(t)
	inR, inW, _ := os.Pipe()   // the "SSH channel" writes inW, serve's stdin is inR
	outR, outW, _ := os.Pipe() // serve's stdout is outW, the channel reads outR
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Handoff(conn, inR, outW) }()
	ac, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	c, err := carrier(ac)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(*fdCarrier); !ok {
		t.Fatalf("carrier is %T, want the handed-off pipes", c)
	}
	inW.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q %v", buf, err)
	}
	c.Write([]byte("pong"))
	if _, err := io.ReadFull(outR, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read back %q %v", buf, err)
	}
	// The serve side waits until the agent is done, then the channel sees EOF.
	select {
	case <-done:
		t.Fatal("Handoff returned while the agent still used the pipes")
	default:
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n, err := outR.Read(buf); err != io.EOF {
		t.Fatalf("after close: %d %v, want EOF", n, err)
	}
}

func TestRelayCarrierKeepsFirstByte(t *testing.T) {
	ln, path := listenTest(t)
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("\x00hello"))
	ac, _ := ln.AcceptUnix()
	c, err := carrier(ac)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "\x00hello" {
		t.Fatalf("got %q %v", buf, err)
	}
}
