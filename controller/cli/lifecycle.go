package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/verify"
	"github.com/bohica-labs/darkshell/protocol"
)

// lifecycleCmds are `sandbox stop`, `sandbox start` and `sandbox verify`.
func (a *app) lifecycleCmds() []*cobra.Command {
	return []*cobra.Command{a.stopStartCmd("stop"), a.stopStartCmd("start"), a.verifyCmd()}
}

func (a *app) stopStartCmd(op string) *cobra.Command {
	short := "Stop a sandbox's processes, keeping its state and workspace (driver local)"
	if op == "start" {
		short = "Start a stopped sandbox again with the same workspace, keys and limits (driver local)"
	}
	return &cobra.Command{
		Use:   op + " NAME...",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var out []*api.Sandbox
			for _, n := range args {
				var sb *api.Sandbox
				if op == "stop" {
					sb, err = c.Stop(cmd.Context(), n)
				} else {
					sb, err = c.Start(cmd.Context(), n)
				}
				if err != nil {
					return err
				}
				out = append(out, sb)
				if !a.json() {
					fmt.Fprintf(a.stdout, "sandbox %s %s (phase %s)\n", n, map[string]string{"stop": "stopped", "start": "started"}[op], phaseOf(*sb))
				}
			}
			if a.json() {
				if len(out) == 1 {
					return a.printJSON(out[0])
				}
				return a.printJSON(out)
			}
			return nil
		},
	}
}

// phaseOf is the phase column ("-" when the driver cannot tell).
func phaseOf(sb api.Sandbox) string {
	if sb.Phase == "" {
		return "-"
	}
	return sb.Phase
}

func (a *app) verifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify NAME",
		Short: "Run the escape suite inside a live sandbox and report each case",
		Long: `Run the escape suite inside a live sandbox, through ordinary exec, and print
a per-case report (case, expected refusing layer, result, detail) with the
kernel release and the Landlock ABI in use.

Each case tries an escape that must be refused and a positive control that
must work. The exit status is 0 only if every case was refused as expected
and every control worked. On a driver that does not confine (ssh) most cases
fail: the report says what is and is not enforced on that target.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, name := cmd.Context(), args[0]
			sb, err := c.Get(ctx, name)
			if err != nil {
				return err
			}
			rep := &verify.Report{Sandbox: name, Driver: sb.Driver}
			if info, err := c.Info(ctx, name); err == nil {
				rep.LandlockABI, rep.Confined = info.LandlockABI, info.Confined
			} else {
				return &exitError{ExitFail, fmt.Sprintf("verify %s: %v", name, err)}
			}
			run := func(ctx context.Context, script string) (string, string, int, error) {
				res, err := c.ExecWait(ctx, name, &api.ExecRequest{ExecStart: protocol.ExecStart{Argv: []string{"sh", "-c", script}, TimeoutMs: 30000}})
				if err != nil {
					return "", "", 0, err
				}
				if res.Error != nil {
					return "", "", 0, fmt.Errorf("%s", res.Error.Message)
				}
				return string(res.Stdout), string(res.Stderr), res.Status, nil
			}
			verify.Run(ctx, run, rep)
			if a.json() {
				if err := a.printJSON(rep); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(a.stdout, "sandbox %s (driver %s), kernel %s, Landlock ABI %d\n\n", rep.Sandbox, rep.Driver, rep.Kernel, rep.LandlockABI)
				var rows [][]string
				for _, r := range rep.Cases {
					rows = append(rows, []string{r.Case, r.Layer, r.Result, r.Control, r.Detail})
				}
				a.table("CASE\tEXPECTED LAYER\tRESULT\tCONTROL\tDETAIL", rows)
				verdict := "PASS: every escape was refused by the expected layer and every control worked"
				if !rep.Passed {
					verdict = "FAIL: see the cases not marked " + verify.Refused
				}
				fmt.Fprintf(a.stdout, "\n%s\n", verdict)
			}
			if !rep.Passed {
				return &exitError{code: ExitFail}
			}
			return nil
		},
	}
}
