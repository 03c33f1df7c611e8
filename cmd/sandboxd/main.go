// Command sandboxd is DarkShell's in-sandbox helper. It is started by the
// darkshell controller and speaks a binary protocol on stdin/stdout; it is
// not meant to be run by humans. Logs go to stderr (SANDBOXD_DEBUG=1 for
// debug logs); SANDBOXD_RUNTIME_DIR overrides where the agent socket lives and
// SANDBOXD_AGENT_IDLE (a Go duration) how long an agent serve starts stays idle.
//
//	sandboxd serve [--no-agent] [--workdir DIR]   serve the protocol on stdin/stdout
//	sandboxd agent --socket PATH [--idle D]       the persistent agent behind serve
//	sandboxd version [--json]                     print the build (for the controller)
//	sandboxd mcp connect [--workdir DIR] SERVER   stdio shim to an MCP server listed in DIR/.darkshell/mcp.json
//	sandboxd init --name N --workspace DIR ...     PID 1 of a local-driver sandbox (see sandboxd/localinit)
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/bohica-labs/darkshell/internal/cpus"
	"github.com/bohica-labs/darkshell/protocol"
	"github.com/bohica-labs/darkshell/sandboxd"
	"github.com/bohica-labs/darkshell/sandboxd/agent"
	"github.com/bohica-labs/darkshell/sandboxd/localinit"
	"github.com/bohica-labs/darkshell/sandboxd/mcp"
)

const usage = `sandboxd is DarkShell's in-sandbox helper. It speaks a binary protocol on
stdin/stdout for the darkshell controller and is not meant to be run by humans.

Usage:
  sandboxd serve [--no-agent] [--workdir DIR]
  sandboxd agent --socket PATH [--idle DURATION]
  sandboxd version [--json]        (also: sandboxd --version)
  sandboxd mcp connect [--workdir DIR] SERVER
  sandboxd init --name N --workspace DIR --root-dir DIR --socket PATH
                --host-key FILE --authorized-key FILE [--uid N] [--gid N]
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	level := slog.LevelInfo
	if os.Getenv("SANDBOXD_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := run(ctx, log, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "sandboxd: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, args []string) error {
	if len(args) == 0 {
		args = []string{"serve"}
	}
	switch args[0] {
	case "serve", "agent", "init":
		cpus.LatencyMode() // one P while relaying and forking; widened for sync
	}
	switch args[0] {
	case "serve":
		fs := newFlags("serve")
		noAgent := fs.Bool("no-agent", false, "serve in this process instead of relaying to the persistent agent")
		workdir := fs.String("workdir", "", "default working directory for exec (default $HOME)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return serve(ctx, log, *noAgent, *workdir)
	case "agent":
		fs := newFlags("agent")
		socket := fs.String("socket", "", "unix socket to listen on (required)")
		idle := fs.Duration("idle", agent.DefaultIdle, "exit after this long without connections or processes")
		workdir := fs.String("workdir", "", "default working directory for exec (default $HOME)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *socket == "" {
			return errors.New("agent: --socket is required")
		}
		sandboxd.ForkFromAnyThread() // confined as a whole from outside, if at all
		srv := sandboxd.New(sandboxd.Options{DefaultDir: *workdir, Logger: log})
		return agent.Run(ctx, agent.Options{Socket: *socket, Idle: *idle, Server: srv, Logger: log})
	case "init":
		return runInit(ctx, log, args[1:])
	case "mcp":
		return runMCP(ctx, log, args[1:])
	case "version", "--version", "-version":
		fs := newFlags("version")
		asJSON := fs.Bool("json", false, "print JSON including the executable's sha256")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return version(os.Stdout, *asJSON)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(os.Stderr, usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	return fs
}

// stdio is the protocol carrier of serve: stdin and stdout.
type stdio struct{}

func (stdio) Read(p []byte) (int, error)  { return os.Stdin.Read(p) }
func (stdio) Write(p []byte) (int, error) { return os.Stdout.Write(p) }
func (stdio) Close() error {
	return errors.Join(os.Stdin.Close(), os.Stdout.Close())
}

// serve relays stdin/stdout to the agent (starting it if needed), or serves
// in this process with noAgent or when no agent can be started.
func serve(ctx context.Context, log *slog.Logger, noAgent bool, workdir string) error {
	if !noAgent {
		err := relay(ctx, log, workdir)
		if err == nil || !errors.Is(err, errNoAgent) {
			return err
		}
		log.Warn("serving without the persistent agent: durable processes will not survive this connection", "err", err)
	}
	sandboxd.ForkFromAnyThread() // confined as a whole from outside, if at all
	srv := sandboxd.New(sandboxd.Options{DefaultDir: workdir, Logger: log})
	err := srv.ServeConn(ctx, stdio{})
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(err, srv.Close(cctx))
}

var errNoAgent = errors.New("no agent")

func relay(ctx context.Context, log *slog.Logger, workdir string) error {
	socket, err := agent.SocketPath(protocol.BuildVersion)
	if err != nil {
		return fmt.Errorf("%w: %v", errNoAgent, err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("%w: %v", errNoAgent, err)
	}
	var extra []string
	if workdir != "" {
		extra = append(extra, "--workdir", workdir)
	}
	if idle := os.Getenv("SANDBOXD_AGENT_IDLE"); idle != "" {
		extra = append(extra, "--idle", idle)
	}
	conn, err := agent.Dial(ctx, socket, agent.Spawner(exe, socket, extra...))
	if err != nil {
		return fmt.Errorf("%w: %v", errNoAgent, err)
	}
	// Hand the channel's pipes to the agent so it reads and writes them
	// directly; relay byte by byte only when they cannot be passed.
	if os.Getenv("SANDBOXD_RELAY") == "" {
		log.Debug("handing stdio to agent", "socket", socket)
		return agent.Handoff(conn, os.Stdin, os.Stdout)
	}
	log.Debug("relaying to agent", "socket", socket)
	return agent.Relay(ctx, conn, os.Stdin, os.Stdout)
}

func version(w io.Writer, asJSON bool) error {
	if !asJSON {
		_, err := fmt.Fprintf(w, "sandboxd %s protocol %d..%d %s/%s\n", protocol.BuildVersion,
			protocol.MinProtocolVersion, protocol.ProtocolVersion, runtime.GOOS, runtime.GOARCH)
		return err
	}
	sum, err := selfSHA256()
	if err != nil {
		return err
	}
	return json.NewEncoder(w).Encode(map[string]any{
		"build_version": protocol.BuildVersion,
		"protocol_min":  protocol.MinProtocolVersion,
		"protocol_max":  protocol.ProtocolVersion,
		"os":            runtime.GOOS,
		"arch":          runtime.GOARCH,
		"sha256":        sum,
	})
}

// selfSHA256 hashes the running executable.
func selfSHA256() (string, error) {
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		exe, eerr := os.Executable()
		if eerr != nil {
			return "", fmt.Errorf("unable to open own executable: %w", err)
		}
		if f, err = os.Open(exe); err != nil {
			return "", fmt.Errorf("unable to open own executable: %w", err)
		}
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("unable to hash own executable: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func runInit(ctx context.Context, log *slog.Logger, args []string) error {
	fs := newFlags("init")
	var o localinit.Options
	var extra string
	fs.StringVar(&o.Name, "name", "", "sandbox name (the hostname)")
	fs.StringVar(&o.Workspace, "workspace", "", "host directory bound at /sandbox")
	fs.StringVar(&o.RootDir, "root-dir", "", "host directory the new root is mounted on")
	fs.StringVar(&o.Socket, "socket", "", "host path of the SSH unix socket")
	fs.StringVar(&o.HostKey, "host-key", "", "SSH host private key")
	fs.StringVar(&o.AuthorizedKey, "authorized-key", "", "the one authorized client public key")
	fs.IntVar(&o.UID, "uid", 65000, "uid the sandbox runs as")
	fs.IntVar(&o.GID, "gid", 65000, "gid the sandbox runs as")
	fs.BoolVar(&o.Unconfined, "unconfined", false, "development only: no Landlock, no seccomp")
	fs.BoolVar(&o.UserNS, "userns", false, "started in a user namespace")
	fs.StringVar(&extra, "report", "", "comma-separated confinements applied by the controller (e.g. cgroups)")
	// The local driver passes the options as JSON in SANDBOXD_INIT, so that
	// host paths do not show in the sandbox's /proc/1/cmdline (environ of a
	// non-dumpable PID 1 is not readable by sandbox processes; they never
	// inherit it). Flags override it.
	if j := os.Getenv("SANDBOXD_INIT"); j != "" {
		if err := json.Unmarshal([]byte(j), &o); err != nil {
			return fmt.Errorf("init: SANDBOXD_INIT: %w", err)
		}
		os.Unsetenv("SANDBOXD_INIT")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"name", o.Name}, {"workspace", o.Workspace}, {"root-dir", o.RootDir},
		{"socket", o.Socket}, {"host-key", o.HostKey}, {"authorized-key", o.AuthorizedKey}} {
		if f.v == "" {
			return fmt.Errorf("init: --%s is required", f.name)
		}
	}
	if extra != "" {
		o.Extra = strings.Split(extra, ",")
	}
	o.Logger = log
	return localinit.Run(ctx, o)
}

// runMCP serves `sandboxd mcp connect SERVER`: MCP over stdin/stdout for
// agents that only speak stdio, relayed to the server's loopback URL.
func runMCP(ctx context.Context, log *slog.Logger, args []string) error {
	if len(args) == 0 || args[0] != "connect" {
		return errors.New("usage: sandboxd mcp connect [--workdir DIR] SERVER")
	}
	fs := newFlags("mcp connect")
	workdir := fs.String("workdir", "", "workspace holding .darkshell/mcp.json (default /sandbox if it has one, else $HOME)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: sandboxd mcp connect [--workdir DIR] SERVER")
	}
	dir := *workdir
	if dir == "" {
		dir = "/sandbox"
		if _, err := os.Stat(dir + "/" + mcp.ConfigPath); err != nil {
			dir, _ = os.UserHomeDir()
		}
	}
	return mcp.Connect(ctx, dir, fs.Arg(0), log)
}
