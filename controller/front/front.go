// Package front is the thin `darkshell` binary. A fresh `darkshell exec`
// is on the hot path of programs that run hundreds of commands, and the
// full CLI (every driver, MCP, OCI images, eBPF, exporters) costs several
// milliseconds just to start: its package initialisation and the pages it
// touches. So the front serves `exec` alone while the daemon is up, with a
// handful of light packages, and hands every other command, every error
// before the command started and every case it does not know to the full
// CLI, darkshell-core, by execve with the same arguments and environment:
// what the user sees is the same either way.
package front

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/bohica-labs/darkshell/controller/execcli"
	"github.com/bohica-labs/darkshell/controller/state"
	"github.com/bohica-labs/darkshell/controller/stream"
)

// CoreName is the full CLI's binary, installed next to darkshell.
const CoreName = "darkshell-core"

// upgradeStream is api.UpgradeStream (the api package is not light).
const upgradeStream = "darkshell-stream"

// Main runs the front for os.Args and exits.
func Main() {
	if code, ok := tryExec(context.Background(), os.Args[1:]); ok {
		os.Exit(code)
	}
	core, err := Core()
	if err != nil {
		fmt.Fprintln(os.Stderr, "darkshell: "+err.Error())
		os.Exit(execcli.ExitExecFailed)
	}
	err = syscall.Exec(core, append([]string{"darkshell"}, os.Args[1:]...), os.Environ())
	fmt.Fprintf(os.Stderr, "darkshell: run %s: %v\n", core, err)
	os.Exit(execcli.ExitExecFailed)
}

// Core finds darkshell-core: $DARKSHELL_CORE, else next to this binary,
// else on $PATH.
func Core() (string, error) {
	if p := os.Getenv("DARKSHELL_CORE"); p != "" {
		return p, nil
	}
	exe, err := os.Executable()
	if err == nil {
		p := filepath.Join(filepath.Dir(exe), CoreName)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(CoreName); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found next to %s or on $PATH: install both binaries (make build puts them in bin/), or set DARKSHELL_CORE", CoreName, exe)
}

// call is one parsed `darkshell exec`.
type call struct {
	name string
	argv []string
	f    execcli.Flags
	home string
	json bool
}

// parse reads exec's command line as the full CLI does (same flags, same
// pflag rules); ok is false for anything else, or anything in doubt.
func parse(args []string) (c call, ok bool) {
	switch {
	case len(args) > 0 && args[0] == "exec":
		args = args[1:]
	case len(args) > 1 && (args[0] == "sandbox" || args[0] == "sb") && args[1] == "exec":
		args = args[2:]
	default:
		return c, false
	}
	fs := pflag.NewFlagSet("exec", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var output string
	fs.BoolVarP(&c.f.TTY, "tty", "t", false, "")
	fs.BoolVarP(&c.f.Interactive, "interactive", "i", false, "")
	fs.BoolVar(&c.f.Shell, "sh", false, "")
	fs.StringArrayVarP(&c.f.Env, "env", "e", nil, "")
	fs.StringVarP(&c.f.Dir, "workdir", "w", "", "")
	fs.DurationVar(&c.f.Timeout, "timeout", 0, "")
	fs.BoolVar(&c.f.Durable, "durable", false, "")
	fs.StringVar(&c.f.Key, "idempotency-key", "", "")
	fs.StringVarP(&output, "output", "o", "text", "")
	fs.StringVar(&c.home, "home", "", "")
	if err := fs.Parse(args); err != nil {
		return c, false // --help, unknown flags, bad values: the core says it
	}
	rest := fs.Args()
	if len(rest) < 2 || (output != "text" && output != "json") {
		return c, false
	}
	c.name, c.argv, c.json = rest[0], rest[1:], output == "json"
	return c, true
}

// tryExec serves `darkshell exec` if it can; ok is false when the core
// must (then nothing was started and nothing written).
func tryExec(ctx context.Context, args []string) (code int, ok bool) {
	c, ok := parse(args)
	if !ok {
		return 0, false
	}
	req, err := execcli.Request(c.argv, c.f)
	if err != nil {
		return 0, false
	}
	dir := c.home
	if dir == "" {
		if dir, err = state.DefaultDir(); err != nil {
			return 0, false
		}
	}
	h := &state.Home{Dir: dir}
	conn, err := net.Dial("unix", h.Socket())
	if err != nil {
		return 0, false // no daemon: the core starts one
	}
	u := &upgradeConn{Conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	hreq := "POST /v1/sandboxes/" + url.PathEscape(c.name) + "/exec HTTP/1.1\r\nHost: darkshell\r\nConnection: Upgrade\r\nUpgrade: " +
		upgradeStream + "\r\nContent-Length: 0\r\n\r\n"
	if _, err := io.WriteString(conn, hreq); err != nil {
		conn.Close()
		return 0, false
	}
	var restore func()
	if c.f.TTY {
		restore = execcli.RawTerminal()
	}
	p, err := stream.Start(ctx, u, req)
	if err != nil {
		conn.Close()
		if restore != nil {
			restore()
		}
		if u.refused {
			return 0, false // the daemon said no before starting anything: the core reports why
		}
		f := execcli.Fail(c.name, err, "")
		if c.json {
			execcli.PrintJSON(os.Stdout, execcli.Result{Error: err.Error(), Status: f.Code})
		} else {
			fmt.Fprintln(os.Stderr, "darkshell: "+f.Msg)
		}
		return f.Code, true
	}
	s := execcli.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	if c.json {
		err = execcli.JSON(ctx, p, s, req.Stdin)
	} else {
		err = execcli.Drive(ctx, p, s, req.Stdin, req.PTY != nil)
	}
	if restore != nil {
		restore()
	}
	if err == nil {
		return 0, true
	}
	var f *execcli.Failure
	if !errors.As(err, &f) {
		fmt.Fprintln(os.Stderr, "darkshell: "+err.Error())
		return 1, true
	}
	if f.Msg != "" {
		fmt.Fprintln(os.Stderr, "darkshell: "+f.Msg)
	}
	return f.Code, true
}

// upgradeConn reads the daemon's answer to the upgrade before the first
// byte of the stream: "101 Switching Protocols", or a refusal.
type upgradeConn struct {
	net.Conn
	r       *bufio.Reader
	once    sync.Once
	err     error
	refused bool
}

func (u *upgradeConn) Read(p []byte) (int, error) {
	u.once.Do(func() {
		status, err := readHead(u.r)
		if err != nil {
			u.err, u.refused = err, true
			return
		}
		if status != 101 {
			u.err, u.refused = fmt.Errorf("daemon answered %d to the upgrade", status), true
		}
	})
	if u.err != nil {
		return 0, u.err
	}
	return u.r.Read(p)
}

// readHead reads an HTTP/1.1 response's status line and headers (the
// body of a refusal is left for nobody: the core asks again).
func readHead(r *bufio.Reader) (int, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("no answer to the exec request: %w", err)
	}
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/1.") {
		return 0, fmt.Errorf("bad answer to the exec request: %q", line)
	}
	status, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, fmt.Errorf("bad status in %q", line)
	}
	for n := 0; ; n++ {
		h, err := r.ReadString('\n')
		if err != nil {
			return 0, fmt.Errorf("reading the answer's headers: %w", err)
		}
		if h == "\r\n" || h == "\n" {
			return status, nil
		}
		if n > 100 {
			return 0, errors.New("too many headers in the answer")
		}
	}
}
