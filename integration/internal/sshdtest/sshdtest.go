// Package sshdtest is the integration tests' handle on a real OpenSSH sshd
// on loopback. It re-exports controller/sshx/sshdtest, which holds the
// implementation so that controller packages (which cannot import an
// integration/internal package) test against the very same harness.
package sshdtest

import (
	"testing"

	impl "github.com/bohica-labs/darkshell/controller/sshx/sshdtest"
)

// Server is a running sshd; see controller/sshx/sshdtest.Server.
type Server = impl.Server

// Option configures Start.
type Option = impl.Option

// Start starts an sshd on a free loopback port, skipping the test when sshd
// is missing (failing it with DARKSHELL_REQUIRE_ALL=1), and stops it at cleanup.
func Start(t testing.TB, opts ...Option) *Server { return impl.Start(t, opts...) }

// Require skips (or fails) t when sshd cannot run here.
func Require(t testing.TB) { impl.Require(t) }

// WithHome makes sessions see $HOME=dir.
func WithHome(dir string) Option { return impl.WithHome(dir) }

// WithEnv sets an environment variable in sessions.
func WithEnv(key, value string) Option { return impl.WithEnv(key, value) }

// WithConfig appends raw lines to sshd_config.
func WithConfig(lines ...string) Option { return impl.WithConfig(lines...) }
