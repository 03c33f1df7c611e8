package sshx

import (
	"errors"
	"fmt"
	"net"
	"os/user"
	"strconv"
	"strings"
)

// DefaultPort is the SSH port used when a target names none.
const DefaultPort = 22

// Target says where an SSH server is and how to trust and log in to it.
// Exactly one way of reaching it is used: ProxyCommand if set, else
// UnixSocket if set, else TCP to Host:Port.
type Target struct {
	User string
	Host string
	Port int
	// UnixSocket is a path to a unix socket that speaks SSH (local driver).
	UnixSocket string
	// ProxyCommand is run with `sh -c` after substituting %h (host), %p (port),
	// %r (user) and %%; its stdin and stdout carry the SSH connection.
	ProxyCommand string
	// IdentityFiles are unencrypted private keys (ed25519, ecdsa, rsa) tried in order.
	IdentityFiles []string
	// KnownHostsFile is the known_hosts-format file that pins host keys.
	KnownHostsFile string
	// HostKeyAlias, if set, is the name host keys are recorded and looked up
	// under instead of [host]:port (useful for unix sockets and proxies).
	HostKeyAlias string
}

// ParseTarget parses "[user@]host[:port]". IPv6 literals need brackets when a
// port is given ("[::1]:2222"); a bare "::1" is accepted too. The port
// defaults to 22 and the user to the current user.
func ParseTarget(s string) (Target, error) {
	var t Target
	rest := s
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		t.User, rest = rest[:i], rest[i+1:]
		if t.User == "" {
			return Target{}, fmt.Errorf("parse ssh target %q: empty user before @", s)
		}
	}
	if rest == "" {
		return Target{}, fmt.Errorf("parse ssh target %q: missing host (want user@host[:port])", s)
	}
	t.Port = DefaultPort
	switch host, port, err := net.SplitHostPort(rest); {
	case err == nil:
		p, perr := strconv.Atoi(port)
		if perr != nil || p < 1 || p > 65535 {
			return Target{}, fmt.Errorf("parse ssh target %q: port %q is not a number in 1..65535", s, port)
		}
		t.Host, t.Port = host, p
	case strings.HasPrefix(rest, "[") && strings.HasSuffix(rest, "]"):
		t.Host = rest[1 : len(rest)-1]
	case strings.Count(rest, ":") > 1: // bare IPv6 literal
		t.Host = rest
	case strings.Contains(rest, ":"):
		return Target{}, fmt.Errorf("parse ssh target %q: %w", s, err)
	default:
		t.Host = rest
	}
	if t.Host == "" {
		return Target{}, fmt.Errorf("parse ssh target %q: missing host", s)
	}
	if strings.ContainsAny(t.Host, " \t/@[]") {
		return Target{}, fmt.Errorf("parse ssh target %q: invalid host %q", s, t.Host)
	}
	if t.User == "" {
		u, err := currentUser()
		if err != nil {
			return Target{}, fmt.Errorf("parse ssh target %q: no user given and %w", s, err)
		}
		t.User = u
	}
	return t, nil
}

func currentUser() (string, error) {
	u, err := user.Current()
	if err != nil {
		return "", fmt.Errorf("cannot determine the current user: %w", err)
	}
	if u.Username == "" {
		return "", errors.New("the current user has no name")
	}
	return u.Username, nil
}

// Addr is the TCP address "host:port" (IPv6 hosts in brackets).
func (t Target) Addr() string {
	port := t.Port
	if port == 0 {
		port = DefaultPort
	}
	return net.JoinHostPort(t.Host, strconv.Itoa(port))
}

// String is a human-readable description for logs and errors.
func (t Target) String() string {
	var where string
	switch {
	case t.ProxyCommand != "":
		where = t.Addr() + " via ProxyCommand"
	case t.UnixSocket != "":
		where = "unix:" + t.UnixSocket
	default:
		where = t.Addr()
	}
	if t.User != "" {
		return t.User + "@" + where
	}
	return where
}

// hostKeyAddr is the "host:port" that host keys are pinned under in
// known_hosts. An alias and a unix socket use port 22, so they are written
// without brackets, as OpenSSH writes HostKeyAlias entries.
func (t Target) hostKeyAddr() string {
	switch {
	case t.HostKeyAlias != "":
		return net.JoinHostPort(t.HostKeyAlias, strconv.Itoa(DefaultPort))
	case t.UnixSocket != "" && t.ProxyCommand == "":
		name := strings.Map(func(r rune) rune {
			if r <= ' ' || r == ',' || r == '#' || r == ':' || r == '[' || r == ']' {
				return '_'
			}
			return r
		}, t.UnixSocket)
		return net.JoinHostPort("unix."+name, strconv.Itoa(DefaultPort))
	default:
		return t.Addr()
	}
}
