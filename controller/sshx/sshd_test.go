package sshx_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/sshx"
	"github.com/bohica-labs/darkshell/controller/sshx/sshdtest"
)

// startSSHD starts a real sshd whose sessions get an empty $HOME, so the
// login user's shell rc files do not slow or pollute the tests.
func startSSHD(t *testing.T, opts ...sshdtest.Option) *sshdtest.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("real sshd tests skipped with -short")
	}
	return sshdtest.Start(t, append([]sshdtest.Option{sshdtest.WithHome(t.TempDir())}, opts...)...)
}

func target(s *sshdtest.Server, knownHosts string) sshx.Target {
	return sshx.Target{
		User: s.User, Host: "127.0.0.1", Port: s.Port,
		IdentityFiles:  []string{s.ClientKey},
		KnownHostsFile: knownHosts,
	}
}

func dial(t *testing.T, s *sshdtest.Server) *sshx.Client {
	t.Helper()
	kh := filepath.Join(t.TempDir(), "known_hosts")
	c, err := sshx.Dial(t.Context(), target(s, kh), sshx.Options{TOFU: true})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRun(t *testing.T) {
	s := startSSHD(t)
	c := dial(t, s)
	tests := []struct {
		name       string
		cmd        string
		stdin      io.Reader
		wantOut    string
		wantErrOut string
		wantCode   int
	}{
		{name: "ok", cmd: "echo hello", wantOut: "hello\n"},
		{name: "exit code", cmd: "echo out; echo err >&2; exit 3", wantOut: "out\n", wantErrOut: "err\n", wantCode: 3},
		{name: "stdin", cmd: "tr a-z A-Z", stdin: strings.NewReader("shout"), wantOut: "SHOUT"},
		{name: "not found", cmd: "no-such-command-darkshell", wantCode: 127},
		{name: "signal", cmd: "kill -TERM $$", wantCode: 128 + 15},
		{name: "home", cmd: `test -n "$HOME" && test "$HOME" = "` + s.Home + `" && echo ok`, wantOut: "ok\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code, err := c.Run(t.Context(), tt.cmd, tt.stdin)
			if err != nil {
				t.Fatalf("Run(%q): %v", tt.cmd, err)
			}
			if code != tt.wantCode || string(out) != tt.wantOut || (tt.wantErrOut != "" && string(errOut) != tt.wantErrOut) {
				t.Errorf("Run(%q) = %q, %q, %d; want %q, %q, %d", tt.cmd, out, errOut, code, tt.wantOut, tt.wantErrOut, tt.wantCode)
			}
		})
	}
}

func TestRunContextCancel(t *testing.T) {
	s := startSSHD(t)
	c := dial(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, _, err := c.Run(ctx, "sleep 30", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run after timeout: err = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancelled Run took %s", d)
	}
	// The client is still usable.
	if out, _, _, err := c.Run(t.Context(), "echo alive", nil); err != nil || string(out) != "alive\n" {
		t.Fatalf("Run after cancel = %q, %v", out, err)
	}
}

func TestStartCarrier(t *testing.T) {
	s := startSSHD(t)
	c := dial(t, s)
	p, err := c.Start(t.Context(), "echo to-stderr >&2; cat")
	if err != nil {
		t.Fatal(err)
	}
	conn := p.Conn()
	msg := bytes.Repeat([]byte("darkshell carrier "), 10000) // larger than one SSH window packet
	go func() {
		conn.Write(msg)
		p.Stdin.Close()
	}()
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echoed %d bytes, want %d", len(got), len(msg))
	}
	if code, err := p.Wait(); code != 0 || err != nil {
		t.Fatalf("Wait = %d, %v", code, err)
	}
	if got := p.Stderr.String(); got != "to-stderr\n" {
		t.Fatalf("stderr = %q", got)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestProcCloseEndsRemote(t *testing.T) {
	s := startSSHD(t)
	c := dial(t, s)
	p, err := c.Start(t.Context(), "cat")
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	done := make(chan struct{})
	go func() { p.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after Close")
	}
}

func TestHostKeyPinning(t *testing.T) {
	s := startSSHD(t)
	kh := filepath.Join(t.TempDir(), "ssh", "known_hosts")
	tg := target(s, kh)

	// Unknown host without TOFU is refused and nothing is recorded.
	_, err := sshx.Dial(t.Context(), tg, sshx.Options{})
	if !errors.Is(err, sshx.ErrUnknownHostKey) {
		t.Fatalf("Dial unknown host without TOFU: err = %v, want ErrUnknownHostKey", err)
	}
	if _, err := os.Stat(kh); !os.IsNotExist(err) {
		t.Fatalf("known_hosts written without TOFU: %v", err)
	}

	// First use records the key (0600).
	c, err := sshx.Dial(t.Context(), tg, sshx.Options{TOFU: true})
	if err != nil {
		t.Fatalf("TOFU dial: %v", err)
	}
	c.Close()
	b, err := os.ReadFile(kh)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(b)) != s.KnownHostsLine() {
		t.Fatalf("known_hosts = %q, want %q", b, s.KnownHostsLine())
	}
	if fi, _ := os.Stat(kh); fi.Mode().Perm() != 0o600 {
		t.Fatalf("known_hosts mode = %v, want 0600", fi.Mode().Perm())
	}

	// Second dial verifies (TOFU off).
	c, err = sshx.Dial(t.Context(), tg, sshx.Options{})
	if err != nil {
		t.Fatalf("dial with pinned key: %v", err)
	}
	c.Close()

	// A new host key is refused, even with TOFU on, and the message names both keys and the line.
	old := s.HostKeyFingerprint
	s.RotateHostKey()
	_, err = sshx.Dial(t.Context(), tg, sshx.Options{TOFU: true})
	if !errors.Is(err, sshx.ErrHostKeyMismatch) {
		t.Fatalf("Dial after key rotation: err = %v, want ErrHostKeyMismatch", err)
	}
	for _, want := range []string{old, s.HostKeyFingerprint, kh + ":1", "127.0.0.1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("mismatch error %q does not mention %q", err, want)
		}
	}
	if b2, _ := os.ReadFile(kh); !bytes.Equal(b, b2) {
		t.Fatalf("known_hosts changed after a mismatch: %q", b2)
	}
}

func TestDialErrors(t *testing.T) {
	s := startSSHD(t)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, []byte(s.KnownHostsLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongKey, _, err := sshx.GenerateKey(t.TempDir(), "wrong")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := l.Addr().(*net.TCPAddr).Port
	l.Close()

	tests := []struct {
		name     string
		mutate   func(*sshx.Target)
		sentinel error
		contains []string
	}{
		{
			name:     "connection refused",
			mutate:   func(tg *sshx.Target) { tg.Port = closedPort },
			contains: []string{"connection refused", strconv.Itoa(closedPort)},
		},
		{
			name:     "wrong identity",
			mutate:   func(tg *sshx.Target) { tg.IdentityFiles = []string{wrongKey} },
			sentinel: sshx.ErrAuth,
			contains: []string{wrongKey, "SHA256:", "authorized_keys"},
		},
		{
			name:     "missing identity",
			mutate:   func(tg *sshx.Target) { tg.IdentityFiles = []string{filepath.Join(t.TempDir(), "nope")} },
			contains: []string{"nope", "no such file"},
		},
		{
			name:     "proxy command fails",
			mutate:   func(tg *sshx.Target) { tg.ProxyCommand = "echo proxy-broke >&2; exit 4" },
			contains: []string{"proxy-broke"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := target(s, kh)
			tt.mutate(&tg)
			start := time.Now()
			_, err := sshx.Dial(t.Context(), tg, sshx.Options{})
			if err == nil {
				t.Fatal("Dial succeeded, want error")
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("failing Dial took %s", d)
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("err = %v, want %v", err, tt.sentinel)
			}
			for _, w := range tt.contains {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestHandshakeTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	// A listener that accepts and never speaks.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	key, _, err := sshx.GenerateKey(t.TempDir(), "k")
	if err != nil {
		t.Fatal(err)
	}
	tg := sshx.Target{User: "x", Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port,
		IdentityFiles: []string{key}, KnownHostsFile: filepath.Join(t.TempDir(), "kh")}
	start := time.Now()
	_, err = sshx.Dial(t.Context(), tg, sshx.Options{HandshakeTimeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v, want handshake timeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("handshake timeout took %s", d)
	}
}

func TestProxyCommand(t *testing.T) {
	s := startSSHD(t)
	if _, err := os.Stat("/bin/bash"); err != nil {
		t.Skip("needs bash for /dev/tcp")
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	tg := target(s, kh)
	tg.Host = "sandbox.invalid" // only the proxy knows how to reach it
	tg.HostKeyAlias = "sandbox-1"
	tg.ProxyCommand = fmt.Sprintf(`exec bash -c 'exec 3<>/dev/tcp/127.0.0.1/%%p; cat <&3 & cat >&3; kill $!'`)
	c, err := sshx.Dial(t.Context(), tg, sshx.Options{TOFU: true})
	if err != nil {
		t.Fatalf("Dial via ProxyCommand: %v", err)
	}
	out, _, code, err := c.Run(t.Context(), "echo via-proxy", nil)
	if err != nil || code != 0 || string(out) != "via-proxy\n" {
		t.Fatalf("Run = %q, %d, %v", out, code, err)
	}
	c.Close()
	b, _ := os.ReadFile(kh)
	if !strings.HasPrefix(string(b), "sandbox-1 ") {
		t.Fatalf("host key not pinned under the alias: %q", b)
	}
}

func TestUnixSocket(t *testing.T) {
	s := startSSHD(t)
	// A unix socket that forwards to sshd stands in for the local driver's socket.
	sock := filepath.Join(t.TempDir(), "ssh.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", s.Addr)
				if err != nil {
					return
				}
				defer u.Close()
				go io.Copy(u, c)
				io.Copy(c, u)
			}()
		}
	}()
	tg := sshx.Target{User: s.User, UnixSocket: sock, IdentityFiles: []string{s.ClientKey},
		KnownHostsFile: filepath.Join(t.TempDir(), "known_hosts")}
	c, err := sshx.Dial(t.Context(), tg, sshx.Options{TOFU: true})
	if err != nil {
		t.Fatalf("Dial unix socket: %v", err)
	}
	defer c.Close()
	if out, _, _, err := c.Run(t.Context(), "echo unix", nil); err != nil || string(out) != "unix\n" {
		t.Fatalf("Run = %q, %v", out, err)
	}
	c.Close()
	// Pinned: a second dial without TOFU works.
	c2, err := sshx.Dial(t.Context(), tg, sshx.Options{})
	if err != nil {
		t.Fatalf("second Dial unix socket: %v", err)
	}
	c2.Close()
}

func TestKeepAliveDetectsDeadPeer(t *testing.T) {
	s := startSSHD(t)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	const interval, max = 200 * time.Millisecond, 3
	c, err := sshx.Dial(t.Context(), target(s, kh), sshx.Options{TOFU: true, KeepAliveInterval: interval, KeepAliveMax: max})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := c.Start(t.Context(), "cat")
	if err != nil {
		t.Fatal(err)
	}
	// Healthy for a few intervals.
	select {
	case <-c.Done():
		t.Fatalf("healthy connection declared dead: %v", c.Err())
	case <-time.After(4 * interval):
	}
	s.Freeze()
	defer s.Thaw()
	start := time.Now()
	select {
	case <-c.Done():
	case <-time.After(interval*(max+1) + 3*time.Second):
		t.Fatal("dead peer not detected")
	}
	t.Logf("dead peer detected after %s", time.Since(start))
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), "keepalive") {
		t.Fatalf("Err() = %v, want a keepalive error", err)
	}
	// Everything using the client fails fast.
	if _, err := p.Stdout.Read(make([]byte, 1)); err == nil {
		t.Fatal("read on a dead connection succeeded")
	}
	if _, _, _, err := c.Run(t.Context(), "true", nil); err == nil {
		t.Fatal("Run on a dead connection succeeded")
	}
}

func TestGenerateKey(t *testing.T) {
	dir := t.TempDir()
	priv, pub, err := sshx.GenerateKey(dir, "sandbox-1")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(priv)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key %s: %v mode %v", priv, err, fi.Mode())
	}
	if !strings.HasPrefix(pub, "ssh-ed25519 ") {
		t.Fatalf("pub line = %q", pub)
	}
	b, _ := os.ReadFile(priv)
	if !strings.Contains(string(b), "BEGIN OPENSSH PRIVATE KEY") {
		t.Fatalf("not OpenSSH format: %q", b[:40])
	}
}
