package sshx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// Defaults for [Options].
const (
	DefaultKeepAliveInterval = 5 * time.Second
	DefaultKeepAliveMax      = 3
	DefaultHandshakeTimeout  = 15 * time.Second
	DefaultDialTimeout       = 10 * time.Second
)

// kexPreference puts curve25519 first: it is the fastest exchange OpenSSH
// offers, and the one measured on the project's machines.
var kexPreference = []string{
	ssh.KeyExchangeCurve25519,
	ssh.KeyExchangeMLKEM768X25519,
	ssh.KeyExchangeECDHP256,
	ssh.KeyExchangeECDHP384,
	ssh.KeyExchangeECDHP521,
	ssh.KeyExchangeDH14SHA256,
}

// Options tune [Dial]. The zero value is usable: host keys must already be
// pinned, keepalives every 5 s, the connection is declared dead after 3
// unanswered ones.
type Options struct {
	// TOFU records the host key on first use instead of refusing an unknown host.
	TOFU bool
	// KeepAliveInterval is the time between keepalive@openssh.com requests
	// (default 5 s; negative disables keepalives).
	KeepAliveInterval time.Duration
	// KeepAliveMax is how many keepalives may go unanswered before the
	// client is closed (default 3).
	KeepAliveMax int
	// DialTimeout bounds reaching the server (default 10 s).
	DialTimeout time.Duration
	// HandshakeTimeout bounds the SSH handshake and authentication (default 15 s).
	HandshakeTimeout time.Duration
	// Logger receives diagnostics (default: discarded).
	Logger *slog.Logger
	// AcceptAnyHostKey skips host key pinning. Only for transports that
	// authenticate the peer themselves: OpenShell's ProxyCommand reaches the
	// sandbox through its gateway's authenticated relay, and its SSH server
	// makes a fresh host key at every start (OpenShell's own ssh-config
	// sets StrictHostKeyChecking no for the same reason).
	AcceptAnyHostKey bool
}

func (o Options) withDefaults() Options {
	if o.KeepAliveInterval == 0 {
		o.KeepAliveInterval = DefaultKeepAliveInterval
	}
	if o.KeepAliveMax <= 0 {
		o.KeepAliveMax = DefaultKeepAliveMax
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Dial connects and authenticates to t. ctx bounds the dial and handshake
// only; the returned client lives until Close or until the connection dies.
func Dial(ctx context.Context, t Target, opts Options) (*Client, error) {
	opts = opts.withDefaults()
	log := opts.Logger.With("component", "sshx", "target", t.String())
	if t.User == "" {
		u, err := currentUser()
		if err != nil {
			return nil, fmt.Errorf("unable to connect to %s: no user given and %w", t, err)
		}
		t.User = u
	}
	if t.Port == 0 {
		t.Port = DefaultPort
	}

	signers, tried, err := loadIdentities(t.IdentityFiles)
	if err != nil {
		return nil, fmt.Errorf("unable to connect to %s: %w", t, err)
	}
	hk := &hostKeys{file: t.KnownHostsFile, addr: t.hostKeyAddr(), tofu: opts.TOFU}
	known, err := hk.known()
	if err != nil {
		return nil, fmt.Errorf("unable to connect to %s: %w", t, err)
	}
	hkcb, err := hk.callback()
	if err != nil {
		return nil, fmt.Errorf("unable to connect to %s: %w", t, err)
	}
	if opts.AcceptAnyHostKey {
		hkcb, known = ssh.InsecureIgnoreHostKey(), nil
	}
	cfg := &ssh.ClientConfig{
		Config:            ssh.Config{KeyExchanges: kexPreference},
		User:              t.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback:   hkcb,
		HostKeyAlgorithms: algorithms(known),
	}

	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	conn, err := dialConn(dctx, t)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("unable to connect to %s: %w", t, err)
	}

	sc, chans, reqs, err := handshake(ctx, conn, t.hostKeyAddr(), cfg, opts.HandshakeTimeout)
	if err != nil {
		if pc, ok := conn.(*proxyConn); ok {
			if d := pc.describe(); d != "" {
				err = fmt.Errorf("%w (%s)", err, d)
			}
		}
		conn.Close()
		return nil, fmt.Errorf("unable to connect to %s: %w", t, classifyHandshake(err, t, tried))
	}
	if hk.recorded {
		log.Info("recorded new host key (trust on first use)", "file", t.KnownHostsFile)
	}
	log.Debug("connected", "elapsed", time.Since(start))
	c := newClient(ssh.NewClient(sc, chans, reqs), t, opts, log)
	return c, nil
}

// dialConn reaches the server by ProxyCommand, unix socket or TCP.
func dialConn(ctx context.Context, t Target) (net.Conn, error) {
	var d net.Dialer
	switch {
	case t.ProxyCommand != "":
		return dialProxy(ctx, t)
	case t.UnixSocket != "":
		c, err := d.DialContext(ctx, "unix", t.UnixSocket)
		if err != nil {
			return nil, fmt.Errorf("cannot reach unix socket %s: %w", t.UnixSocket, err)
		}
		return c, nil
	default:
		if t.Host == "" {
			return nil, errors.New("no host given")
		}
		c, err := d.DialContext(ctx, "tcp", t.Addr())
		switch {
		case err == nil:
			return c, nil
		case errors.Is(err, syscall.ECONNREFUSED):
			return nil, fmt.Errorf("connection refused by %s: is sshd running and listening on port %d?", t.Addr(), t.Port)
		case errors.Is(err, context.DeadlineExceeded):
			return nil, fmt.Errorf("timed out reaching %s: check the host, port and firewall: %w", t.Addr(), err)
		default:
			return nil, fmt.Errorf("cannot reach %s: %w", t.Addr(), err)
		}
	}
}

// handshake runs the SSH handshake, closing conn if it takes longer than
// timeout or ctx ends, so that a silent server cannot hang the caller.
func handshake(ctx context.Context, conn net.Conn, addr string, cfg *ssh.ClientConfig, timeout time.Duration) (ssh.Conn, <-chan ssh.NewChannel, <-chan *ssh.Request, error) {
	type result struct {
		c     ssh.Conn
		chans <-chan ssh.NewChannel
		reqs  <-chan *ssh.Request
		err   error
	}
	done := make(chan result, 1)
	go func() {
		c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
		done <- result{c, chans, reqs, err}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var why error
	select {
	case r := <-done:
		return r.c, r.chans, r.reqs, r.err
	case <-timer.C:
		why = fmt.Errorf("SSH handshake timed out after %s: the server accepted the connection but did not complete the handshake", timeout)
	case <-ctx.Done():
		why = fmt.Errorf("SSH handshake interrupted: %w", ctx.Err())
	}
	conn.Close()
	if r := <-done; r.err == nil {
		r.c.Close()
	}
	return nil, nil, nil, why
}

// classifyHandshake wraps handshake failures in the sentinel they match and
// says what to do.
func classifyHandshake(err error, t Target, tried []string) error {
	if errors.Is(err, ErrHostKeyMismatch) || errors.Is(err, ErrUnknownHostKey) {
		return err
	}
	msg := err.Error()
	if strings.Contains(msg, "unable to authenticate") || strings.Contains(msg, "no supported methods remain") {
		return fmt.Errorf("%w: %s refused keys %s for user %q: add one of them to the user's authorized_keys or pass the right --identity (%v)",
			ErrAuth, t.Addr(), strings.Join(tried, ", "), t.User, err)
	}
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("server closed the connection during the SSH handshake (is it an SSH server? is it overloaded, e.g. MaxStartups?): %w", err)
	}
	return fmt.Errorf("SSH handshake failed: %w", err)
}

// loadIdentities parses private keys. With no files given it tries the
// user's default keys (~/.ssh/id_ed25519, id_ecdsa, id_rsa) that exist.
// tried describes each key as "path (SHA256:...)" for error messages.
func loadIdentities(files []string) (signers []ssh.Signer, tried []string, err error) {
	if len(files) == 0 {
		home, _ := os.UserHomeDir()
		for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			p := filepath.Join(home, ".ssh", n)
			if _, err := os.Stat(p); err == nil {
				files = append(files, p)
			}
		}
		if len(files) == 0 {
			return nil, nil, errors.New("no identity files given and none found in ~/.ssh: pass an identity file")
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("unable to read identity: %w", err)
		}
		s, err := ssh.ParsePrivateKey(b)
		var pme *ssh.PassphraseMissingError
		switch {
		case errors.As(err, &pme):
			return nil, nil, fmt.Errorf("identity %s is passphrase-protected; darkshell needs an unencrypted key (e.g. a per-sandbox key from `darkshell sandbox create`)", f)
		case err != nil:
			return nil, nil, fmt.Errorf("identity %s is not an ed25519, ecdsa or rsa private key: %w", f, err)
		}
		signers = append(signers, s)
		tried = append(tried, fmt.Sprintf("%s (%s)", f, ssh.FingerprintSHA256(s.PublicKey())))
	}
	return signers, tried, nil
}
