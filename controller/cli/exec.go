package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/bohica-labs/darkshell/controller/client"
	"github.com/bohica-labs/darkshell/controller/stream"
	"github.com/bohica-labs/darkshell/protocol"
)

type execFlags struct {
	tty, interactive, shell, durable bool
	env                              []string
	dir, key                         string
	timeout                          time.Duration
}

func (a *app) execCmd() *cobra.Command {
	var f execFlags
	cmd := &cobra.Command{
		Use:   "exec NAME [flags] -- CMD [ARGS...]",
		Short: "Run a command in a sandbox",
		Long: `Run a command in a sandbox through the daemon's warm session.

The command runs directly (execve, no shell) unless --sh is given. Output is
streamed; stdout and stderr stay separate unless -t allocates a terminal.

Exit status: the command's own; 128+N if it was killed by signal N;
125 if darkshell failed (unknown sandbox, transport down); 126 if the command
cannot be invoked; 127 if it was not found.`,
		Example: `  darkshell exec dev -- go test ./...
  darkshell exec dev -i -- sh -c 'wc -l' < big.txt
  darkshell exec dev --sh -- 'make && ./run | tee log'
  darkshell exec dev --timeout 30s --idempotency-key job-17 -- ./deploy.sh`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runExec(cmd.Context(), args[0], args[1:], f)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&f.tty, "tty", "t", false, "allocate a pseudo-terminal")
	fl.BoolVarP(&f.interactive, "interactive", "i", false, "send stdin to the command (otherwise it reads /dev/null)")
	fl.BoolVar(&f.shell, "sh", false, "run CMD as one string with sh -c")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "KEY=VALUE for the command (repeatable)")
	fl.StringVarP(&f.dir, "workdir", "w", "", "working directory inside the sandbox")
	fl.DurationVar(&f.timeout, "timeout", 0, "kill the command's process group after this long (e.g. 30s)")
	fl.BoolVar(&f.durable, "durable", false, "keep the command running if darkshell goes away; re-attach with `sandbox attach`")
	fl.StringVar(&f.key, "idempotency-key", "", "run at most once per key: a repeat attaches to the first run (implies --durable)")
	return cmd
}

func (a *app) runExec(ctx context.Context, name string, argv []string, f execFlags) error {
	if f.shell && len(argv) != 1 {
		argv = []string{strings.Join(argv, " ")}
	}
	for _, e := range f.env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return usagef("-e %q is not KEY=VALUE", e)
		}
	}
	if f.timeout < 0 {
		return usagef("--timeout must not be negative")
	}
	req := &protocol.ExecStart{
		Argv: argv, Shell: f.shell, Env: f.env, Dir: f.dir, Stdin: f.interactive || f.tty,
		TimeoutMs: f.timeout.Milliseconds(), Durable: f.durable || f.key != "", IdempotencyKey: f.key,
	}
	var restore func()
	if f.tty {
		stdinFd := int(os.Stdin.Fd())
		rows, cols := uint16(24), uint16(80)
		if w, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
			rows, cols = uint16(h), uint16(w)
		}
		t := os.Getenv("TERM")
		if t == "" {
			t = "xterm-256color"
		}
		req.PTY = &protocol.PTY{Term: t, Rows: rows, Cols: cols}
		if term.IsTerminal(stdinFd) {
			old, err := term.MakeRaw(stdinFd)
			if err == nil {
				restore = func() { term.Restore(stdinFd, old) }
			}
		}
	}
	if restore != nil {
		defer restore()
	}
	if err := req.Validate(); err != nil {
		return usagef("%v", err)
	}
	c, err := a.client()
	if err != nil {
		return &exitError{ExitExecFailed, err.Error()}
	}
	p, err := c.Exec(ctx, name, req)
	if err != nil {
		if a.json() {
			a.printJSON(execJSON{Error: err.Error(), Status: exitStatusOf(execFailure(name, err))})
		}
		return execFailure(name, err)
	}
	if a.json() {
		return a.execJSON(ctx, p, req.Stdin)
	}
	return a.drive(ctx, p, req.Stdin, req.PTY != nil)
}

// execJSON is `exec -o json`'s one document.
type execJSON struct {
	ID     string `json:"id,omitempty"`
	PID    int    `json:"pid,omitempty"`
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	// Binary output that is not UTF-8 is given base64-encoded instead.
	StdoutBase64 []byte `json:"stdout_base64,omitempty"`
	StderrBase64 []byte `json:"stderr_base64,omitempty"`
	ExitCode     int    `json:"exit_code"`
	Signal       int    `json:"signal,omitempty"`
	TimedOut     bool   `json:"timed_out,omitempty"`
	DurationMs   int64  `json:"duration_ms"`
	// Status is what the process exit status of this command is.
	Status int    `json:"status"`
	Error  string `json:"error,omitempty"`
}

// execJSON collects the whole output and prints one JSON document.
func (a *app) execJSON(ctx context.Context, p *stream.Proc, stdin bool) error {
	defer p.Close()
	if stdin {
		go p.CopyStdin(a.stdin)
	}
	var out, errb bytes.Buffer
	res := execJSON{ID: p.Started.ID, PID: p.Started.PID}
	exit, err := p.Wait(&out, &errb)
	setText := func(b []byte, s *string, raw *[]byte) {
		if utf8.Valid(b) {
			*s = string(b)
		} else {
			*raw = b
		}
	}
	setText(out.Bytes(), &res.Stdout, &res.StdoutBase64)
	setText(errb.Bytes(), &res.Stderr, &res.StderrBase64)
	var ret error
	if err != nil {
		ret = execFailure("", err)
		res.Error, res.Status = err.Error(), exitStatusOf(ret)
	} else {
		res.ExitCode, res.Signal, res.TimedOut, res.DurationMs, res.Status = exit.Code, exit.Signal, exit.TimedOut, exit.DurationMs, exit.Status()
		if res.Status != 0 {
			ret = &exitError{code: res.Status}
		}
	}
	if perr := a.printJSON(res); perr != nil {
		return perr
	}
	if ee, ok := ret.(*exitError); ok {
		ee.msg = "" // the document says it all
	}
	return ret
}

func exitStatusOf(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return ExitExecFailed
}

// drive pumps stdin, signals and window changes into p and output out of it.
func (a *app) drive(ctx context.Context, p *stream.Proc, stdin, tty bool) error {
	defer p.Close()
	sigs := make(chan os.Signal, 8)
	if tty {
		signal.Notify(sigs, syscall.SIGWINCH)
	} else {
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	}
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			if s == syscall.SIGWINCH {
				if w, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
					p.Resize(uint16(h), uint16(w))
				}
				continue
			}
			p.Signal(int(s.(syscall.Signal)))
		}
	}()
	if stdin {
		go p.CopyStdin(a.stdin)
	}
	exit, err := p.Wait(a.stdout, a.stderr)
	if err != nil {
		return execFailure("", err)
	}
	if exit.TimedOut {
		fmt.Fprintf(a.stderr, "darkshell: command timed out after %s and was killed\n", time.Duration(exit.DurationMs)*time.Millisecond)
	}
	if s := exit.Status(); s != 0 {
		return &exitError{code: s}
	}
	return nil
}

// execFailure maps a failure before or during exec to exec's exit statuses.
func execFailure(name string, err error) error {
	code := ""
	if re, ok := protocol.AsRemoteError(err); ok {
		code = re.Code
	}
	var ae *client.APIError
	if errors.As(err, &ae) && ae.Remote != "" {
		code = ae.Remote
	}
	msg := err.Error()
	if name != "" {
		msg = fmt.Sprintf("exec in %s: %s", name, msg)
	}
	switch code {
	case protocol.CodeNotFound:
		return &exitError{ExitNotFound, msg}
	case protocol.CodeCannotInvoke:
		return &exitError{ExitCannotInvoke, msg}
	}
	if errors.Is(err, stream.ErrNoExit) {
		msg += " (the connection to the sandbox broke; a --durable command keeps running: see `darkshell sandbox ps`)"
	}
	return &exitError{ExitExecFailed, msg}
}

func (a *app) connectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "connect NAME",
		Short: "Open an interactive shell in a sandbox",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sh := `if [ -x /bin/bash ]; then exec /bin/bash -l; else exec /bin/sh -l; fi`
			return a.runExec(cmd.Context(), args[0], []string{sh}, execFlags{tty: true, shell: true})
		},
	}
}

func (a *app) attachCmd() *cobra.Command {
	var offset int64
	var stdin bool
	cmd := &cobra.Command{
		Use:   "attach NAME ID",
		Short: "Re-attach to a durable command and stream its output from --offset",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return &exitError{ExitExecFailed, err.Error()}
			}
			p, err := c.Attach(cmd.Context(), args[0], &protocol.ExecAttach{ID: args[1], Offset: offset, Stdin: stdin})
			if err != nil {
				return execFailure(args[0], err)
			}
			if p.Started.Lost > 0 {
				fmt.Fprintf(a.stderr, "darkshell: %d bytes of output were no longer kept\n", p.Started.Lost)
			}
			return a.drive(cmd.Context(), p, stdin, false)
		},
	}
	cmd.Flags().Int64Var(&offset, "offset", 0, "output bytes already seen (stdout+stderr)")
	cmd.Flags().BoolVarP(&stdin, "interactive", "i", false, "send stdin to the command")
	return cmd
}
