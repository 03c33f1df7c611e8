package sshx

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

var (
	// ErrHostKeyMismatch means the server offered a host key other than the
	// one pinned for it: the host was re-keyed or someone is in the middle.
	ErrHostKeyMismatch = errors.New("host key mismatch")
	// ErrUnknownHostKey means no key is pinned for the host and trust on
	// first use was not enabled.
	ErrUnknownHostKey = errors.New("unknown host key")
	// ErrAuth means the server refused every key that was offered.
	ErrAuth = errors.New("ssh authentication failed")
)

// knownHostsMu serialises appends to known_hosts files within this process.
var knownHostsMu sync.Mutex

// hostKeys implements host key pinning against one known_hosts file.
type hostKeys struct {
	file string
	addr string // host:port the key is pinned under
	tofu bool
	// recorded is set when a first-use key was appended.
	recorded bool
}

// load reads the known_hosts file; a missing file is an empty one.
func (h *hostKeys) load() (ssh.HostKeyCallback, error) {
	if h.file == "" {
		return nil, errors.New("no known_hosts file configured: set Target.KnownHostsFile")
	}
	if _, err := os.Stat(h.file); errors.Is(err, fs.ErrNotExist) {
		return func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }, nil
	}
	cb, err := knownhosts.New(h.file)
	if err != nil {
		return nil, fmt.Errorf("unable to read known hosts %s: %w (fix or remove the bad line)", h.file, err)
	}
	return cb, nil
}

// known returns the keys pinned for the host.
func (h *hostKeys) known() ([]knownhosts.KnownKey, error) {
	cb, err := h.load()
	if err != nil {
		return nil, err
	}
	var ke *knownhosts.KeyError
	if err := cb(h.addr, fakeAddr(h.addr), dummyKey{}); errors.As(err, &ke) {
		return ke.Want, nil
	} else if err != nil {
		return nil, fmt.Errorf("unable to look up %s in %s: %w", h.addr, h.file, err)
	}
	return nil, nil
}

// algorithms lists host key algorithms for the pinned key types, so that the
// server is asked for the key we know rather than another of its keys.
func algorithms(keys []knownhosts.KnownKey) []string {
	var algos []string
	for _, k := range keys {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			algos = append(algos, t)
		}
	}
	return algos
}

// callback verifies the offered key against the file and records it on first use.
func (h *hostKeys) callback() (ssh.HostKeyCallback, error) {
	cb, err := h.load()
	if err != nil {
		return nil, err
	}
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		// Check the pinned name, not the dialled address: proxies and unix
		// sockets have no meaningful remote address.
		err := cb(h.addr, fakeAddr(h.addr), key)
		var ke *knownhosts.KeyError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ke) && len(ke.Want) > 0:
			return mismatchError(h.addr, h.file, ke.Want, key)
		case errors.As(err, &ke):
			if !h.tofu {
				return fmt.Errorf("%w: %s offered %s key %s, which is not in %s; connect once with trust on first use enabled, or add the key to that file",
					ErrUnknownHostKey, h.addr, key.Type(), ssh.FingerprintSHA256(key), h.file)
			}
			if err := appendKnownHost(h.file, h.addr, key); err != nil {
				return err
			}
			h.recorded = true
			return nil
		default:
			return fmt.Errorf("host key of %s: %w", h.addr, err)
		}
	}, nil
}

func mismatchError(addr, file string, want []knownhosts.KnownKey, got ssh.PublicKey) error {
	var exp, where []string
	for _, k := range want {
		exp = append(exp, fmt.Sprintf("%s %s", k.Key.Type(), ssh.FingerprintSHA256(k.Key)))
		where = append(where, fmt.Sprintf("%s:%d", k.Filename, k.Line))
	}
	return fmt.Errorf("%w for %s: expected %s, server offered %s %s; if the host was re-keyed on purpose, delete %s and connect again (otherwise someone may be intercepting the connection)",
		ErrHostKeyMismatch, addr, strings.Join(exp, " or "), got.Type(), ssh.FingerprintSHA256(got), strings.Join(where, ", "))
}

// appendKnownHost appends one line for key, creating the file (0600) and its
// directory (0700) as needed. The line is written with a single write on an
// O_APPEND descriptor, so concurrent writers never interleave within a line.
func appendKnownHost(file, addr string, key ssh.PublicKey) error {
	knownHostsMu.Lock()
	defer knownHostsMu.Unlock()
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("unable to record host key of %s: %w", addr, err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("unable to record host key of %s: %w", addr, err)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, key) + "\n"
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("unable to record host key of %s in %s: %w", addr, file, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("unable to record host key of %s in %s: %w", addr, file, err)
	}
	return f.Close()
}

// fakeAddr turns "host:port" into a net.Addr for the knownhosts callback.
type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }

// dummyKey never equals a real key; it is used to list the pinned keys.
type dummyKey struct{}

func (dummyKey) Type() string                        { return "darkshell-lookup" }
func (dummyKey) Marshal() []byte                     { return []byte("\x00\x00\x00\x10darkshell-lookup") }
func (dummyKey) Verify([]byte, *ssh.Signature) error { return errors.New("lookup key") }
