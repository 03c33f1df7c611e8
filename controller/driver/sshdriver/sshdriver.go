// Package sshdriver is the ssh driver: a sandbox is any host or container
// that runs an OpenSSH server. Creating one registers it (the host key is
// pinned on first use); connecting dials SSH, makes sure darkshell's own
// sandboxd runs there (pushing it if needed) and starts a session.
package sshdriver

import (
	"context"
	"fmt"
	"io"
	"os/user"

	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/inject"
	"github.com/bohica-labs/darkshell/controller/session"
	"github.com/bohica-labs/darkshell/controller/sshx"
	"github.com/bohica-labs/darkshell/controller/state"
)

func init() { driver.Register(Driver{}) }

// Driver implements driver.Driver for SSH-reachable sandboxes.
type Driver struct{}

// Name implements driver.Driver.
func (Driver) Name() string { return "ssh" }

func target(h *state.Home, sb *state.Sandbox) (sshx.Target, error) {
	if sb.SSH == nil {
		return sshx.Target{}, fmt.Errorf("sandbox %s has no ssh target", sb.Name)
	}
	t := sshx.Target{
		User: sb.SSH.User, Host: sb.SSH.Host, Port: sb.SSH.Port,
		UnixSocket: sb.SSH.UnixSocket, ProxyCommand: sb.SSH.ProxyCommand,
		KnownHostsFile: h.KnownHosts(),
	}
	if t.User == "" {
		u, err := user.Current()
		if err != nil {
			return t, fmt.Errorf("no ssh user given and the current user is unknown: %w", err)
		}
		t.User = u.Username
	}
	if t.Port == 0 {
		t.Port = sshx.DefaultPort
	}
	if sb.SSH.Identity != "" {
		t.IdentityFiles = []string{sb.SSH.Identity}
	}
	if t.UnixSocket != "" {
		t.HostKeyAlias = "darkshell-" + sb.Name
	}
	return t, nil
}

// Create registers the sandbox: it dials once, pinning the host key, and
// makes sure sandboxd answers there.
func (d Driver) Create(ctx context.Context, h *state.Home, sb *state.Sandbox) error {
	s, err := d.connect(ctx, h, sb, true)
	if err != nil {
		return err
	}
	return s.Close()
}

// Delete forgets nothing on the remote side: the host is not ours.
func (Driver) Delete(ctx context.Context, h *state.Home, sb *state.Sandbox) error { return nil }

// Connect implements driver.Driver.
func (d Driver) Connect(ctx context.Context, h *state.Home, sb *state.Sandbox) (*session.Session, error) {
	return d.connect(ctx, h, sb, false)
}

func (Driver) connect(ctx context.Context, h *state.Home, sb *state.Sandbox, tofu bool) (*session.Session, error) {
	t, err := target(h, sb)
	if err != nil {
		return nil, err
	}
	cl, err := sshx.Dial(ctx, t, sshx.Options{TOFU: tofu})
	if err != nil {
		return nil, err
	}
	res, err := inject.Open(ctx, inject.SSHRunner(cl), inject.Options{})
	if err != nil {
		cl.Close()
		return nil, err
	}
	return session.New(res.Carrier, res.Remote, res.Version, io.Closer(cl))
}
