package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/client"
	"github.com/bohica-labs/darkshell/controller/execcli"
	"github.com/bohica-labs/darkshell/protocol"
)

func (a *app) execCmd() *cobra.Command {
	var f execcli.Flags
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
	fl.BoolVarP(&f.TTY, "tty", "t", false, "allocate a pseudo-terminal")
	fl.BoolVarP(&f.Interactive, "interactive", "i", false, "send stdin to the command (otherwise it reads /dev/null)")
	fl.BoolVar(&f.Shell, "sh", false, "run CMD as one string with sh -c")
	fl.StringArrayVarP(&f.Env, "env", "e", nil, "KEY=VALUE for the command (repeatable)")
	fl.StringVarP(&f.Dir, "workdir", "w", "", "working directory inside the sandbox")
	fl.DurationVar(&f.Timeout, "timeout", 0, "kill the command's process group after this long (e.g. 30s)")
	fl.BoolVar(&f.Durable, "durable", false, "keep the command running if darkshell goes away; re-attach with `sandbox attach`")
	fl.StringVar(&f.Key, "idempotency-key", "", "run at most once per key: a repeat attaches to the first run (implies --durable)")
	return cmd
}

func (a *app) runExec(ctx context.Context, name string, argv []string, f execcli.Flags) error {
	req, err := execcli.Request(argv, f)
	if err != nil {
		return usagef("%v", err)
	}
	if f.TTY {
		defer execcli.RawTerminal()()
	}
	c, err := a.client()
	if err != nil {
		return &exitError{ExitExecFailed, err.Error()}
	}
	p, err := c.Exec(ctx, name, req)
	if err != nil {
		ef := execFailure(name, err)
		if a.json() {
			execcli.PrintJSON(a.stdout, execcli.Result{Error: err.Error(), Status: ef.code})
		}
		return ef
	}
	s := execcli.IO{Stdin: a.stdin, Stdout: a.stdout, Stderr: a.stderr}
	if a.json() {
		err = execcli.JSON(ctx, p, s, req.Stdin)
	} else {
		err = execcli.Drive(ctx, p, s, req.Stdin, req.PTY != nil)
	}
	return asExitError(err)
}

// asExitError turns execcli's failures into the CLI's exit errors.
func asExitError(err error) error {
	var f *execcli.Failure
	if errors.As(err, &f) {
		return &exitError{f.Code, f.Msg}
	}
	return err
}

// execFailure maps a failure before or during exec to exec's exit statuses.
func execFailure(name string, err error) *exitError {
	remote := ""
	var ae *client.APIError
	if errors.As(err, &ae) {
		remote = ae.Remote
	}
	f := execcli.Fail(name, err, remote)
	return &exitError{f.Code, f.Msg}
}

func (a *app) connectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "connect NAME",
		Short: "Open an interactive shell in a sandbox",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sh := `if [ -x /bin/bash ]; then exec /bin/bash -l; else exec /bin/sh -l; fi`
			return a.runExec(cmd.Context(), args[0], []string{sh}, execcli.Flags{TTY: true, Shell: true})
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
			return asExitError(execcli.Drive(cmd.Context(), p, execcli.IO{Stdin: a.stdin, Stdout: a.stdout, Stderr: a.stderr}, stdin, false))
		},
	}
	cmd.Flags().Int64Var(&offset, "offset", 0, "output bytes already seen (stdout+stderr)")
	cmd.Flags().BoolVarP(&stdin, "interactive", "i", false, "send stdin to the command")
	return cmd
}
