package inject_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/controller/agentbin"
	"github.com/bohica-labs/darkshell/controller/inject"
	"github.com/bohica-labs/darkshell/controller/sshx"
	"github.com/bohica-labs/darkshell/controller/sshx/sshdtest"
	"github.com/bohica-labs/darkshell/protocol"
)

// agent is a sandboxd build the tests inject.
type agent struct {
	name string
	bin  string // path of a build whose BuildVersion is protocol.BuildVersion
	// other is the same program built with another BuildVersion.
	other string
	skip  string
	// echoes is true when the carrier echoes after the handshake (stand-in only).
	echoes bool
}

var agents []agent

const otherVersion = "test-other-version"

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if testing.Short() {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "inject-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		build := func(pkg, out, version string) error {
			args := []string{"build", "-o", out}
			if version != "" {
				args = append(args, "-ldflags", "-X github.com/bohica-labs/darkshell/protocol.BuildVersion="+version)
			}
			cmd := exec.Command("go", append(args, pkg)...)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if b, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
			}
			return nil
		}
		// The stand-in speaks the handshake; it exercises injection until
		// (and alongside) the real sandboxd.
		sa := agent{name: "standin", bin: filepath.Join(dir, "standin"), other: filepath.Join(dir, "standin-other"), echoes: true}
		if err := build("./testdata/standin", sa.bin, ""); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := build("./testdata/standin", sa.other, otherVersion); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		agents = append(agents, sa)

		real := agent{name: "sandboxd", bin: filepath.Join(dir, "sandboxd"), other: filepath.Join(dir, "sandboxd-other")}
		if _, err := os.Stat("../../cmd/sandboxd"); err != nil {
			real.skip = "./cmd/sandboxd does not exist yet: the real sandboxd cannot be injected"
		} else if err := build("../../cmd/sandboxd", real.bin, ""); err != nil {
			real.skip = "building ./cmd/sandboxd failed: " + err.Error()
		} else if err := build("../../cmd/sandboxd", real.other, otherVersion); err != nil {
			real.skip = "building ./cmd/sandboxd failed: " + err.Error()
		}
		agents = append(agents, real)
		return m.Run()
	}()
	os.Exit(code)
}

// env is an sshd whose sessions have an empty $HOME, and a client to it.
type env struct {
	home   string
	server *sshdtest.Server
	client *sshx.Client
}

func newEnv(t *testing.T, a agent, opts ...sshdtest.Option) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("real sshd tests skipped with -short")
	}
	if a.skip != "" {
		if os.Getenv("DARKSHELL_REQUIRE_ALL") == "1" {
			t.Fatal(a.skip)
		}
		t.Skip("SKIPPING: " + a.skip)
	}
	bin, err := os.ReadFile(a.bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(agentbin.SetForTest(runtime.GOARCH, bin))
	e := &env{home: t.TempDir()}
	e.server = sshdtest.Start(t, append([]sshdtest.Option{sshdtest.WithHome(e.home)}, opts...)...)
	e.client, err = sshx.Dial(t.Context(), sshx.Target{
		User: e.server.User, Host: "127.0.0.1", Port: e.server.Port,
		IdentityFiles:  []string{e.server.ClientKey},
		KnownHostsFile: filepath.Join(t.TempDir(), "known_hosts"),
	}, sshx.Options{TOFU: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.client.Close() })
	return e
}

// installed is the path Connect uses with default options.
func (e *env) installed() string {
	return filepath.Join(e.home, ".cache/darkshell/sandboxd", protocol.BuildVersion, "sandboxd")
}

func (e *env) open(t *testing.T, opts inject.Options) *inject.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	res, err := inject.Open(ctx, inject.SSHRunner(e.client), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { res.Carrier.Close() })
	if res.Remote.BuildVersion != protocol.BuildVersion || res.Remote.Role != protocol.RoleSandboxd {
		t.Fatalf("remote hello = %+v", res.Remote)
	}
	return res
}

func checkEcho(t *testing.T, a agent, c io.ReadWriteCloser) {
	t.Helper()
	if !a.echoes {
		return
	}
	msg := []byte("after the handshake")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("carrier echo = %q, %v", got, err)
	}
}

func forAgents(t *testing.T, f func(t *testing.T, a agent)) {
	if testing.Short() {
		t.Skip("real sshd tests skipped with -short")
	}
	for _, a := range agents {
		t.Run(a.name, func(t *testing.T) { f(t, a) })
	}
}

func TestInjectThenReuse(t *testing.T) {
	forAgents(t, func(t *testing.T, a agent) {
		e := newEnv(t, a)
		first := e.open(t, inject.Options{})
		if !first.Injected || first.Arch != runtime.GOARCH || first.Reason != "sandboxd missing" {
			t.Fatalf("first connect: Injected=%v Arch=%q Reason=%q, want injected %s because missing", first.Injected, first.Arch, first.Reason, runtime.GOARCH)
		}
		t.Logf("first connect (injected) took %s, upload %s", first.Duration, first.InjectDuration)
		checkEcho(t, a, first.Carrier)
		fi, err := os.Stat(e.installed())
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("installed sandboxd mode = %v, want 0700", fi.Mode().Perm())
		}
		leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(e.installed()), ".sandboxd.*"))
		if len(leftovers) > 0 {
			t.Errorf("temp files left behind: %v", leftovers)
		}

		second := e.open(t, inject.Options{})
		if second.Injected {
			t.Fatalf("second connect injected again (reason %q)", second.Reason)
		}
		t.Logf("second connect (reused) took %s", second.Duration)
		checkEcho(t, a, second.Carrier)
	})
}

func TestReplacesWrongVersion(t *testing.T) {
	forAgents(t, func(t *testing.T, a agent) {
		tests := []struct {
			name       string
			install    func(t *testing.T, path string)
			wantReason string
		}{
			{
				name:       "other build",
				install:    func(t *testing.T, path string) { copyFile(t, a.other, path) },
				wantReason: otherVersion,
			},
			{
				name: "garbage script",
				install: func(t *testing.T, path string) {
					writeExec(t, path, "#!/bin/sh\necho 'garbage, not sandboxd'\n")
				},
				wantReason: "not this build",
			},
			{
				name:       "not executable",
				install:    func(t *testing.T, path string) { writeExec(t, path, "\x01\x02 not an executable\n") },
				wantReason: "",
			},
		}
		e := newEnv(t, a)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tt.install(t, e.installed())
				res := e.open(t, inject.Options{})
				if !res.Injected || !strings.Contains(res.Reason, tt.wantReason) {
					t.Fatalf("Injected=%v Reason=%q, want injected because of %q", res.Injected, res.Reason, tt.wantReason)
				}
				t.Logf("replaced: %s", res.Reason)
				checkEcho(t, a, res.Carrier)
				if again := e.open(t, inject.Options{}); again.Injected {
					t.Fatalf("replaced build not reused: %q", again.Reason)
				}
			})
		}
	})
}

func TestRemoteDirOption(t *testing.T) {
	forAgents(t, func(t *testing.T, a agent) {
		e := newEnv(t, a)
		dir := filepath.Join(t.TempDir(), "with space", "it's")
		res := e.open(t, inject.Options{RemoteDir: dir})
		if !res.Injected {
			t.Fatal("not injected")
		}
		if _, err := os.Stat(filepath.Join(dir, protocol.BuildVersion, "sandboxd")); err != nil {
			t.Fatal(err)
		}
	})
}

func TestInjectErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("real sshd tests skipped with -short")
	}
	a := agents[0]
	// fakeBin makes a directory with the given tools linked from the system
	// and scripts written verbatim.
	fakeBin := func(t *testing.T, links []string, scripts map[string]string) string {
		dir := t.TempDir()
		for _, l := range links {
			p, err := exec.LookPath(l)
			if err != nil {
				t.Skipf("no %s here", l)
			}
			if err := os.Symlink(p, filepath.Join(dir, l)); err != nil {
				t.Fatal(err)
			}
		}
		for n, s := range scripts {
			writeExec(t, filepath.Join(dir, n), s)
		}
		return dir
	}
	tests := []struct {
		name     string
		opts     func(t *testing.T) []sshdtest.Option
		iopts    inject.Options
		sentinel error
		contains []string
	}{
		{
			name: "unsupported arch",
			opts: func(t *testing.T) []sshdtest.Option {
				d := fakeBin(t, nil, map[string]string{"uname": "#!/bin/sh\necho sparc64\n"})
				return []sshdtest.Option{sshdtest.WithEnv("PATH", d+":/usr/bin:/bin")}
			},
			sentinel: inject.ErrUnsupportedArch,
			contains: []string{"sparc64", "amd64", "arm64"},
		},
		{
			name: "no cat",
			opts: func(t *testing.T) []sshdtest.Option {
				d := fakeBin(t, []string{"sh", "uname", "mkdir", "chmod", "mv", "rm"}, nil)
				return []sshdtest.Option{sshdtest.WithEnv("PATH", d)}
			},
			sentinel: inject.ErrMissingTool,
			contains: []string{"`cat`"},
		},
		{
			name: "no sh",
			opts: func(t *testing.T) []sshdtest.Option {
				return []sshdtest.Option{sshdtest.WithEnv("PATH", t.TempDir())}
			},
			sentinel: inject.ErrMissingTool,
			contains: []string{"`sh`"},
		},
		{
			name: "home not writable",
			opts: func(t *testing.T) []sshdtest.Option {
				return []sshdtest.Option{sshdtest.WithHome("/proc/darkshell-no-such-home")}
			},
			sentinel: inject.ErrInstall,
			contains: []string{"cannot create", "/proc/darkshell-no-such-home", "writable"},
		},
		{
			name:     "injection disabled",
			iopts:    inject.Options{NoInject: true},
			sentinel: protocol.ErrNoMagic,
			contains: []string{"injection is disabled", "sandboxd missing"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []sshdtest.Option
			if tt.opts != nil {
				opts = tt.opts(t)
			}
			e := newEnv(t, a, opts...)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			_, _, err := inject.Connect(ctx, inject.SSHRunner(e.client), tt.iopts)
			if !errors.Is(err, tt.sentinel) {
				t.Fatalf("err = %v, want %v", err, tt.sentinel)
			}
			for _, w := range tt.contains {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			t.Logf("error: %v", err)
		})
	}
}

func TestHandshakeTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("real sshd tests skipped with -short")
	}
	e := newEnv(t, agents[0])
	// Something that claims to be this build but never speaks.
	writeExec(t, e.installed(), "#!/bin/sh\necho 'starting...' >&2\nexec sleep 30\n")
	start := time.Now()
	_, _, err := inject.Connect(t.Context(), inject.SSHRunner(e.client), inject.Options{HandshakeTimeout: 500 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "no handshake within") || !strings.Contains(err.Error(), "starting...") {
		t.Fatalf("err = %v, want a handshake timeout quoting stderr", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timeout took %s", d)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeExec(t, to, string(b))
}

func writeExec(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
