package sshserver

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestIsServeCommand(t *testing.T) {
	for cmd, want := range map[string]bool{
		`exec "$HOME"'/.cache/darkshell/sandboxd/v1/sandboxd' serve`: true,
		`/usr/local/bin/sandboxd serve`:                              true,
		`sandboxd serve`:                                             true,
		` exec  sandboxd   serve `:                                   true,
		`sandboxd serve; rm -rf /`:                                   false,
		`sandboxd serve --no-agent`:                                  false,
		`sandboxd version`:                                           false,
		`sh`:                                                         false,
		`/tmp/notsandboxd serve`:                                     false,
		``:                                                           false,
	} {
		if got := IsServeCommand(cmd); got != want {
			t.Errorf("IsServeCommand(%q) = %v, want %v", cmd, got, want)
		}
	}
}

// echo is a stand-in protocol server: it echoes one line, then returns.
type echo struct{ served chan struct{} }

func (e echo) ServeConn(ctx context.Context, rwc io.ReadWriteCloser) error {
	defer rwc.Close()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(rwc, buf); err != nil {
		return err
	}
	_, err := rwc.Write(buf)
	close(e.served)
	return err
}

func newKey(t *testing.T) (ssh.Signer, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, pem.EncodeToMemory(block)
}

func TestServer(t *testing.T) {
	host, hostPEM := newKey(t)
	client, _ := newKey(t)
	other, _ := newKey(t)
	e := echo{served: make(chan struct{})}
	srv, err := New(Options{HostKey: hostPEM, AuthorizedKey: ssh.MarshalAuthorizedKey(client.PublicKey()), Serve: e})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "ssh.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Serve(ctx, l) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	dial := func(key ssh.Signer) (*ssh.Client, error) {
		return ssh.Dial("unix", sock, &ssh.ClientConfig{
			User: "sandbox", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)},
			HostKeyCallback: ssh.FixedHostKey(host.PublicKey()), Timeout: 5 * time.Second,
		})
	}
	if c, err := dial(other); err == nil {
		c.Close()
		t.Fatal("an unauthorized key was accepted")
	}
	c, err := dial(client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	refused := func(what string, f func(*ssh.Session) error) {
		t.Helper()
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var stderr strings.Builder
		s.Stderr = &stderr
		err = f(s)
		var ee *ssh.ExitError
		if err == nil || (errors.As(err, &ee) && ee.ExitStatus() == 0) {
			t.Errorf("%s was not refused (err %v)", what, err)
		}
	}
	refused("shell", func(s *ssh.Session) error { return s.Shell() })
	refused("pty", func(s *ssh.Session) error { return s.RequestPty("xterm", 24, 80, nil) })
	refused("subsystem", func(s *ssh.Session) error { return s.RequestSubsystem("sftp") })
	refused("exec ls", func(s *ssh.Session) error { return s.Run("ls") })
	if _, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		t.Error("a remote port forward was accepted")
	}
	if _, err := c.Dial("tcp", "127.0.0.1:22"); err == nil {
		t.Error("a direct-tcpip channel was accepted")
	}

	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	in, _ := s.StdinPipe()
	out, _ := s.StdoutPipe()
	if err := s.Start(`exec "$HOME"'/.cache/darkshell/sandboxd/x/sandboxd' serve`); err != nil {
		t.Fatal(err)
	}
	in.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo through serve: %q %v", buf, err)
	}
	<-e.served
	if err := s.Wait(); err != nil {
		t.Fatalf("serve session ended with %v, want exit status 0", err)
	}
}
