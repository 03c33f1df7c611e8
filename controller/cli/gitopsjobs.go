package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/api"
)

// policySyncDaemon registers a `policy sync` job in the daemon.
func (a *app) policySyncDaemon(cmd *cobra.Command, repo, branch, dir string, interval time.Duration, dryRun bool) error {
	// A local repository is named by its absolute path: the daemon does
	// not run in this directory.
	if abs, err := filepath.Abs(repo); err == nil {
		if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
			repo = abs
		}
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	j, err := c.PolicySyncStart(cmd.Context(), &api.PolicySyncJobRequest{Repo: repo, Branch: branch, Path: dir, Interval: interval.String(), DryRun: dryRun})
	if err != nil {
		return err
	}
	if a.json() {
		return a.printJSON(j)
	}
	fmt.Fprintf(a.stdout, "policy sync job %s: %s every %s (%s); `darkshell policy sync list` shows its passes\n", j.ID, j.Repo, j.Interval, j.State)
	return nil
}

func (a *app) policySyncListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the daemon's policy sync jobs and their last pass",
		Long: `List the policy sync jobs the daemon runs (` + "`policy sync --daemon`" + `): repository, interval,
state (running, restarting), passes so far and the last pass (commit and status:
applied, unchanged, invalid, error). -o json has every pass field.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			l, err := c.PolicySyncList(cmd.Context())
			if err != nil {
				return err
			}
			if a.json() {
				if l == nil {
					l = []api.PolicySyncJob{}
				}
				return a.printJSON(l)
			}
			var rows [][]string
			for _, j := range l {
				last, commit := "-", "-"
				if p := j.Last; p != nil {
					last, commit = p.Status, shortID(p.Commit)
					if p.Error != "" {
						last += ": " + oneLine(p.Error)
					}
				}
				where := j.Repo
				if j.Branch != "" {
					where += "@" + j.Branch
				}
				if j.Path != "" {
					where += ":" + j.Path
				}
				rows = append(rows, []string{j.ID, where, j.Interval, j.State, fmt.Sprint(j.Passes), commit, last})
			}
			a.table("ID\tREPO\tEVERY\tSTATE\tPASSES\tCOMMIT\tLAST", rows)
			return nil
		},
	}
}

func shortID(c string) string {
	if c == "" {
		return "-"
	}
	return c[:min(12, len(c))]
}

func (a *app) policySyncStopCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "stop ID",
		Short: "Stop and remove a policy sync job of the daemon",
		Long: `Stop the daemon's policy sync job ID (see ` + "`policy sync list`" + `) and remove it: it does not
start again with the daemon. The policies it applied stay as they are.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			j, err := c.PolicySyncStop(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(j)
			}
			fmt.Fprintf(a.stdout, "policy sync job %s stopped after %d pass(es)\n", j.ID, j.Passes)
			return nil
		},
	}
}
