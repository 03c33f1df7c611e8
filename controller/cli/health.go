package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/api"
)

func (a *app) healthCmd() *cobra.Command {
	var metrics bool
	cmd := &cobra.Command{
		Use:   "health NAME",
		Short: "Check a sandbox's health; exit 0 healthy, 1 unhealthy (failing checks named)",
		Long: `Check sandbox NAME and print each check: phase; sandboxd reachable and its round trip;
memory, pids and CPU use against the cgroup limits (OOM kills and refused forks fail);
workspace disk use; the egress proxy (probed from inside the sandbox) and its DNS resolver;
each MCP server's state; events lost; confinement (Landlock ABI, seccomp, network namespace).

Exit status 0 when every check passes (warnings included), 1 when one fails: the failing
checks are named on stderr. --metrics prints the same data as Prometheus text.`,
		Example: `  darkshell sandbox health dev
  darkshell sandbox health dev -o json | jq .failing
  darkshell sandbox health dev --metrics`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if metrics {
				m, err := c.HealthMetrics(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				fmt.Fprint(a.stdout, m)
				return nil
			}
			r, err := c.Health(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json() {
				if err := a.printJSON(r); err != nil {
					return err
				}
			} else {
				var rows [][]string
				for _, ch := range r.Checks {
					rows = append(rows, []string{ch.Name, strings.ToUpper(ch.Status), ch.Detail})
				}
				a.table("CHECK\tSTATUS\tDETAIL", rows)
				verdict := "healthy"
				if !r.Healthy {
					verdict = "UNHEALTHY"
				}
				fmt.Fprintf(a.stdout, "sandbox %s: %s (%d ms)\n", r.Sandbox, verdict, r.DurationMs)
			}
			if !r.Healthy {
				return &exitError{code: ExitFail, msg: "sandbox " + r.Sandbox + " is unhealthy: " + strings.Join(r.Failing, ", ")}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&metrics, "metrics", false, "print Prometheus text instead")
	return cmd
}

// healthOf is the health column of `sandbox list` ("-" when unknown).
func healthOf(sb api.Sandbox) string {
	if sb.Health == "" {
		return "-"
	}
	return sb.Health
}
