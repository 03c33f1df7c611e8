// Package cli is the darkshell command line. Every command is a client of the
// controller daemon's API (controller/client); `daemon run` serves that API.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/client"
	"github.com/bohica-labs/darkshell/controller/execcli"
)

// Exit statuses of commands other than exec.
const (
	ExitOK    = 0
	ExitFail  = 1
	ExitUsage = 2
)

// Exit statuses of exec when darkshell itself is the cause.
const (
	ExitExecFailed   = execcli.ExitExecFailed // darkshell failed (unknown sandbox, transport down)
	ExitCannotInvoke = execcli.ExitCannotInvoke
	ExitNotFound     = execcli.ExitNotFound
)

// exitError carries an exit status out of a command; msg (if any) is printed.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	output         string
	home           string
	c              *client.Client
}

func (a *app) client() (*client.Client, error) {
	if a.c != nil {
		return a.c, nil
	}
	c, err := client.New(client.Options{Home: a.home})
	if err != nil {
		return nil, err
	}
	a.c = c
	return c, nil
}

func (a *app) json() bool { return a.output == "json" }

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *app) table(header string, rows [][]string) {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// Run runs darkshell with args (without the program name) and returns the exit status.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, "darkshell: "+ee.msg)
		}
		return ee.code
	}
	var ue *usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag") ||
		strings.HasPrefix(err.Error(), "unknown shorthand flag") || strings.Contains(err.Error(), "flag needs an argument") ||
		strings.HasPrefix(err.Error(), "accepts ") || strings.HasPrefix(err.Error(), "requires at least") || strings.HasPrefix(err.Error(), "invalid argument") {
		fmt.Fprintf(stderr, "darkshell: %v\nRun 'darkshell --help' for usage.\n", err)
		return ExitUsage
	}
	fmt.Fprintln(stderr, "darkshell: "+err.Error())
	return ExitFail
}

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "darkshell",
		Short: "Fast exec, sync, tracing and tools for kernel-confined AI-agent sandboxes",
		Long: `darkshell controls AI-agent sandboxes: it creates them, runs commands in them
through one warm multiplexed session per sandbox, and keeps credentials on the host.

State lives in $DARKSHELL_HOME (default ~/.local/state/darkshell). Commands talk to
a controller daemon on $DARKSHELL_HOME/darkshell.sock, started on demand.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "text", "output format: text or json")
	root.PersistentFlags().StringVar(&a.home, "home", "", "state directory (default $DARKSHELL_HOME or ~/.local/state/darkshell)")
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if a.output != "text" && a.output != "json" {
			return usagef("--output must be text or json, not %q", a.output)
		}
		return nil
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err.Error()} })
	sandbox := &cobra.Command{Use: "sandbox", Aliases: []string{"sb"}, Short: "Create, inspect and use sandboxes"}
	sandbox.AddCommand(a.createCmd(), a.listCmd(), a.getCmd(), a.deleteCmd(), a.withSelector(a.execCmd(), "exec", a.fleetExec), a.connectCmd(), a.attachCmd(), a.psCmd())
	sandbox.AddCommand(a.lifecycleCmds()...)
	sandbox.AddCommand(a.uploadCmd(), a.downloadCmd())
	sandbox.AddCommand(a.netTestCmd(), a.imageSaveCmd())
	root.AddCommand(sandbox, a.withSelector(a.execCmd(), "exec", a.fleetExec), a.withSelector(a.syncCmd(), "sync", a.fleetSync), a.versionCmd(), a.daemonCmd())
	root.AddCommand(a.policyCmd(), a.blueprintCmd(), a.imageCmd(), a.traceCmd())
	root.AddCommand(a.mcpCmd(), a.providerCmd(), a.forwardCmd()) // mcp.go, provider.go, forward.go
	root.AddCommand(a.exportCmd(), a.alertsCmd())                // export.go, alerts.go
	root.AddCommand(a.poolCmd())                                 // pool.go
	root.AddCommand(a.inferenceCmd())                            // inference.go
	sandbox.AddCommand(a.watchCmd(), a.logsCmd())
	sandbox.AddCommand(a.snapshotCmds()...) // snapshot.go
	sandbox.AddCommand(a.healthCmd())       // health.go
	return root
}

// Main runs darkshell for os.Args and exits.
func Main() {
	ctx := context.Background()
	os.Exit(Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
