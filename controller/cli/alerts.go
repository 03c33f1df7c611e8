package cli

import (
	"time"

	"github.com/spf13/cobra"
)

func (a *app) alertsCmd() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "alerts NAME",
		Short: "List a sandbox's alerts: rates far above their baseline, first use of a binary, writes under watched paths, denied-egress bursts, lost events",
		Long: `alerts lists what the daemon's baseline engine raised for a sandbox, oldest first.

The engine keeps per-sandbox rolling baselines (1-minute windows, EWMA) of execs,
distinct binaries, file writes and deletes, egress connections by host and MCP calls
by tool, and raises an alert when a window exceeds 3x its baseline (and at least 20),
after 3 windows of warm-up; and on rules: first use of a binary after the warm-up,
a write (or an attempt) under a watched path, 5 denied egress connections within 10 s.
Tune it in $DARKSHELL_HOME/alerts.json (window, warmup, factor, min_count, alpha,
watch_paths, deny_burst, deny_window; restart the daemon to apply).

Alerts are events (kind alert): 'sandbox watch' shows them live, and every exporter
sends them.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			l, err := c.Alerts(cmd.Context(), args[0], limit)
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(l)
			}
			var rows [][]string
			for _, e := range l {
				rule := e.Rule
				if rule == "" && e.Lost > 0 {
					rule = "events_lost"
				}
				rows = append(rows, []string{e.Time.Local().Format(time.DateTime), rule, oneLine(e.Message)})
			}
			a.table("TIME\tRULE\tMESSAGE", rows)
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "show the newest N (default 1000)")
	return cmd
}
