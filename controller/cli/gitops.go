package cli

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

// mappingFile is gitops.MappingFile (not imported: go-git stays out of the
// CLI's start-up; the darkshell-gitops helper does the work).
const mappingFile = "darkshell-policies.yaml"

func (a *app) policySyncCmd() *cobra.Command {
	var repo, branch, dir string
	var interval time.Duration
	var dryRun, once, daemon bool
	cmd := &cobra.Command{
		Use:   "sync --repo PATH|URL",
		Short: "Apply policies from a git repository to running sandboxes (GitOps), once or every --interval",
		Long: `Read sandbox policies from a git repository and apply their network part to the sandboxes
the repository maps them to, with hot reload (as ` + "`policy set`" + `).

The policy directory (--path, default the repository's top) holds policy files and a
mapping, ` + mappingFile + `:

  version: 1
  sandboxes:
    - policy: web.yaml            # a policy file in the same directory
      names: [dev, ci]            # these sandboxes,
      match: ["agent-*"]          # sandboxes whose name matches a glob,
      selector: {team: infra}     # or whose labels all match
    - policy: strict.yaml
      match: ["*"]                # the first binding that selects a sandbox wins

Files are read from the commit at the tip of --branch (default HEAD), never from a work
tree. A commit whose mapping or any policy it names is invalid is reported and not
applied at all: the last good commit stays in force. A sandbox whose policy was changed by
hand since the last apply is reported as drift and put back. Every apply is an event in
the sandbox's log naming the repository, commit and file.

With --interval the command keeps running (Ctrl-C stops it), fetching a cloned URL and
checking for new commits and drift on each pass; without it, one pass: exit 0 when the
commit is valid and every apply worked, 1 otherwise. -o json prints one JSON line per pass.

With --daemon (and --interval) the daemon runs the sync as a job that outlives this
command and starts again with the daemon: drift and refused commits become events in the
sandboxes' logs, ` + "`policy sync list`" + ` shows each job's last pass and ` + "`policy sync stop ID`" + ` ends it.`,
		Example: `  darkshell policy sync --repo ~/policies --once
  darkshell policy sync --repo https://git.example.com/sec/policies.git --branch prod --path sandboxes --interval 1m
  darkshell policy sync --repo . --dry-run
  darkshell policy sync --repo ~/policies --interval 30s --daemon
  darkshell policy sync list`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if repo == "" {
				return usagef("--repo PATH|URL is required")
			}
			if daemon {
				if interval == 0 || once {
					return usagef("--daemon runs the sync every --interval: give --interval D (1s or more), not --once")
				}
				return a.policySyncDaemon(cmd, repo, branch, dir, interval, dryRun)
			}
			helper, err := gitopsHelper()
			if err != nil {
				return err
			}
			argv := []string{"--repo", repo, "--branch", branch, "--path", dir, "--interval", interval.String(),
				"--once=" + strconv.FormatBool(once), "--dry-run=" + strconv.FormatBool(dryRun), "--json=" + strconv.FormatBool(a.json())}
			x := exec.CommandContext(cmd.Context(), helper, argv...)
			x.Stdin, x.Stdout, x.Stderr = a.stdin, a.stdout, a.stderr
			x.Env = os.Environ()
			if a.home != "" {
				x.Env = append(x.Env, "DARKSHELL_HOME="+a.home)
			}
			err = x.Run()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return &exitError{code: ee.ExitCode()}
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&repo, "repo", "", "the repository: a local path (read in place) or a URL (cloned into $DARKSHELL_HOME/gitops)")
	fl.StringVar(&branch, "branch", "", "branch to follow (default: HEAD)")
	fl.StringVar(&dir, "path", "", "directory of the policies and the mapping inside the repository (default: the top)")
	fl.DurationVar(&interval, "interval", 0, "keep running, checking every D (e.g. 30s, 5m)")
	fl.BoolVar(&once, "once", false, "one pass, even with --interval")
	fl.BoolVarP(&dryRun, "dry-run", "n", false, "report what would be applied; apply nothing")
	fl.BoolVar(&daemon, "daemon", false, "run as a job in the daemon (needs --interval); see `policy sync list` and `stop`")
	cmd.AddCommand(a.policySyncListCmd(), a.policySyncStopCmd()) // gitopsjobs.go
	return cmd
}

// gitopsHelper finds darkshell-gitops next to this binary, else on PATH.
func gitopsHelper() (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "darkshell-gitops")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("darkshell-gitops"); err == nil {
		return p, nil
	}
	return "", errors.New("policy sync needs the darkshell-gitops helper next to darkshell or on PATH (make build makes bin/darkshell-gitops)")
}
