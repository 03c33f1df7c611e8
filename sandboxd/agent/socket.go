package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// SocketName is the agent socket's file name.
const SocketName = "agent.sock"

// maxSocketPath is the longest unix socket path the kernel accepts (sun_path
// is 108 bytes including the terminating NUL).
const maxSocketPath = 107

// SocketPath returns where the agent of build listens:
//
//   - $SANDBOXD_RUNTIME_DIR/agent.sock when that variable is set;
//   - $XDG_RUNTIME_DIR/darkshell-sandboxd/<build>/agent.sock when XDG_RUNTIME_DIR is set and writable;
//   - $HOME/.cache/darkshell/sandboxd/<build>/run/agent.sock otherwise;
//
// and /tmp/darkshell-sandboxd-<uid>/<hash of build>/agent.sock when the
// chosen path is too long for a unix socket. It creates nothing.
func SocketPath(build string) (string, error) {
	safe := sanitize(build)
	var dir string
	if d := os.Getenv("SANDBOXD_RUNTIME_DIR"); d != "" {
		dir = d
	} else if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" && unix.Access(x, unix.W_OK) == nil {
		dir = filepath.Join(x, "darkshell-sandboxd", safe)
	} else {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("unable to locate the agent socket: %w", err)
		}
		dir = filepath.Join(home, ".cache", "darkshell", "sandboxd", safe, "run")
	}
	p := filepath.Join(dir, SocketName)
	if len(p) <= maxSocketPath {
		return p, nil
	}
	sum := sha256.Sum256([]byte(build))
	return filepath.Join(os.TempDir(), fmt.Sprintf("darkshell-sandboxd-%d", os.Getuid()),
		hex.EncodeToString(sum[:6]), SocketName), nil
}

// sanitize makes build usable as one path element.
func sanitize(build string) string {
	s := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_', r == '+':
			return r
		}
		return '_'
	}, build)
	if s == "" || s == "." || s == ".." {
		s = "_" + s
	}
	return s
}

// ensureDir creates dir (and parents) with mode 0700 and checks that it is
// a directory owned by this user and closed to others, so that nobody else
// can plant a socket in it.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("unable to create agent directory: %w", err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("unable to check agent directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("agent directory %s is not a directory", dir)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Getuid() {
		return fmt.Errorf("agent directory %s belongs to uid %d, not %d", dir, sys.Uid, os.Getuid())
	}
	if st.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("unable to restrict agent directory: %w", err)
		}
	}
	return nil
}

// isMissing reports whether err says nothing listens at a socket path.
func isMissing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}
