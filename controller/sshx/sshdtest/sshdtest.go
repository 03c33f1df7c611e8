// Package sshdtest starts a real OpenSSH sshd on loopback for tests: fresh
// host and client keys in a temp dir, public-key login for the current user,
// and helpers to rotate the host key or freeze the server to simulate a dead
// peer. Tests skip when sshd is not installed, unless DARKSHELL_REQUIRE_ALL=1.
//
// The sshd needs root (privilege separation, /run/sshd); tests that use it
// should skip under -short.
package sshdtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHD is where OpenSSH's server is expected.
const SSHD = "/usr/sbin/sshd"

// Server is a running sshd.
type Server struct {
	// Addr is "127.0.0.1:PORT".
	Addr string
	Port int
	// User is the login user (the current user).
	User string
	// ClientKey is an unencrypted ed25519 private key authorised to log in.
	ClientKey string
	// HostKeyFingerprint is the SHA256 fingerprint of the current host key.
	HostKeyFingerprint string
	// HostKey is the current host public key.
	HostKey ssh.PublicKey
	// Dir holds the config, keys and logs.
	Dir string
	// Home is the $HOME of sessions when WithHome was given, else "".
	Home string

	t      testing.TB
	cfg    config
	mu     sync.Mutex
	cmd    *exec.Cmd
	log    *bytes.Buffer
	exited chan struct{}
	nkeys  int
}

type config struct {
	home  string
	env   []string
	extra []string
}

// Option configures Start.
type Option func(*config)

// WithHome makes sessions see $HOME=dir (sshd_config SetEnv), so a test can
// give the login user an empty home without a dedicated system user.
func WithHome(dir string) Option { return func(c *config) { c.home = dir } }

// WithEnv sets an environment variable in sessions (sshd_config SetEnv),
// e.g. PATH to put fake tools first.
func WithEnv(key, value string) Option {
	return func(c *config) { c.env = append(c.env, key+"="+value) }
}

// WithConfig appends raw lines to sshd_config.
func WithConfig(lines ...string) Option {
	return func(c *config) { c.extra = append(c.extra, lines...) }
}

// Require skips (or, with DARKSHELL_REQUIRE_ALL=1, fails) t when sshd cannot
// be run here.
func Require(t testing.TB) {
	t.Helper()
	why := ""
	if _, err := os.Stat(SSHD); err != nil {
		why = "sshd not installed at " + SSHD + ": run the README test command (it installs openssh-server)"
	} else if os.Geteuid() != 0 {
		why = "sshd tests need root (privilege separation)"
	}
	if why == "" {
		return
	}
	if os.Getenv("DARKSHELL_REQUIRE_ALL") == "1" {
		t.Fatal("DARKSHELL_REQUIRE_ALL=1 but " + why)
	}
	t.Skip("SKIPPING: " + why)
}

// Start starts an sshd on a free loopback port and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	Require(t)
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshdtest: current user: %v", err)
	}
	s := &Server{t: t, Dir: t.TempDir(), User: u.Username}
	for _, o := range opts {
		o(&s.cfg)
	}
	s.Home = s.cfg.home
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("sshdtest: create privilege separation dir: %v", err)
	}
	s.ClientKey = filepath.Join(s.Dir, "client_ed25519")
	clientPub := writeKey(t, s.ClientKey)
	if err := os.WriteFile(filepath.Join(s.Dir, "authorized_keys"), ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		t.Fatal(err)
	}
	s.newHostKey()
	t.Cleanup(s.Stop)
	var lastErr error
	for range 5 { // a free port can be taken between probing and binding
		s.Port = freePort(t)
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("sshdtest: %v", lastErr)
	return nil
}

func writeKey(t testing.TB, path string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "sshdtest")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sshdtest: find free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *Server) newHostKey() {
	s.nkeys++
	s.HostKey = writeKey(s.t, s.hostKeyPath())
	s.HostKeyFingerprint = ssh.FingerprintSHA256(s.HostKey)
}

func (s *Server) hostKeyPath() string {
	return filepath.Join(s.Dir, fmt.Sprintf("host_ed25519_%d", s.nkeys))
}

func quote(s string) string { return `"` + s + `"` }

func (s *Server) writeConfig() string {
	lines := []string{
		"ListenAddress 127.0.0.1:" + strconv.Itoa(s.Port),
		"HostKey " + quote(s.hostKeyPath()),
		"PidFile " + quote(filepath.Join(s.Dir, "sshd.pid")),
		"AuthorizedKeysFile " + quote(filepath.Join(s.Dir, "authorized_keys")),
		"UsePAM no",
		"StrictModes no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"PermitRootLogin prohibit-password",
		"LogLevel ERROR",
		"PrintMotd no",
		"MaxStartups 100:30:200",
		"MaxSessions 100",
	}
	// The marker lets Stop find what sessions left behind (detached sandboxd
	// agents); the idle bound limits what a crashed test leaks.
	env := append([]string{"DARKSHELL_SSHDTEST=" + s.Dir, "SANDBOXD_AGENT_IDLE=2m"}, s.cfg.env...)
	if s.cfg.home != "" {
		env = append([]string{"HOME=" + s.cfg.home}, env...)
	}
	if len(env) > 0 {
		var q []string
		for _, e := range env {
			q = append(q, quote(e))
		}
		lines = append(lines, "SetEnv "+strings.Join(q, " "))
	}
	lines = append(lines, s.cfg.extra...)
	path := filepath.Join(s.Dir, "sshd_config")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return path
}

// start runs sshd and waits until it answers with an SSH banner.
func (s *Server) start() error {
	cfg := s.writeConfig()
	s.mu.Lock()
	s.log = new(bytes.Buffer)
	s.cmd = exec.Command(SSHD, "-D", "-e", "-f", cfg)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("start sshd: %w", err)
	}
	s.exited = make(chan struct{})
	cmd, exited := s.cmd, s.exited
	go func() { cmd.Wait(); close(exited) }()
	s.mu.Unlock()

	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("sshd exited at start: %s", s.Log())
		default:
		}
		if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			banner := make([]byte, 4)
			_, err := c.Read(banner)
			c.Close()
			if err == nil && string(banner) == "SSH-" {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.kill()
	return fmt.Errorf("sshd did not accept connections on %s within 10s: %s", s.Addr, s.Log())
}

// Log returns what sshd wrote to stderr.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return ""
	}
	return s.log.String()
}

// PID is the listening sshd's process id.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}

// kill ends the listener and every process it spawned (connection handlers
// and their sessions, which run in their own sessions after setsid).
func (s *Server) kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	for _, pid := range append(Descendants(cmd.Process.Pid), cmd.Process.Pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-exited
}

// Stop kills sshd, all its sessions, and every process its sessions left
// running (found by the DARKSHELL_SSHDTEST marker in their environment). It is
// registered with t.Cleanup.
func (s *Server) Stop() {
	s.kill()
	marker := []byte("DARKSHELL_SSHDTEST=" + s.Dir + "\x00")
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/environ"); err == nil && bytes.Contains(b, marker) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// RotateHostKey restarts sshd on the same port with a new host key.
// Existing connections are cut.
func (s *Server) RotateHostKey() {
	s.t.Helper()
	s.kill()
	s.newHostKey()
	if err := s.start(); err != nil {
		s.t.Fatalf("sshdtest: restart with new host key: %v", err)
	}
}

// Freeze stops (SIGSTOP) sshd and every process it spawned: connections stay
// open but nothing answers, like a peer behind a dead network. Thaw undoes it.
func (s *Server) Freeze() { s.signalAll(syscall.SIGSTOP) }

// Thaw resumes a frozen server.
func (s *Server) Thaw() { s.signalAll(syscall.SIGCONT) }

func (s *Server) signalAll(sig syscall.Signal) {
	pid := s.PID()
	for _, p := range append([]int{pid}, Descendants(pid)...) {
		_ = syscall.Kill(p, sig)
	}
}

// Descendants lists the processes below pid, read from /proc.
func Descendants(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the parenthesised command: state ppid ...
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// KnownHostsLine is a known_hosts line pinning the current host key under Addr.
func (s *Server) KnownHostsLine() string {
	return "[127.0.0.1]:" + strconv.Itoa(s.Port) + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.HostKey)))
}
