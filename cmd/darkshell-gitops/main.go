// Command darkshell-gitops runs `darkshell policy sync` (controller/gitops):
// a helper binary so that go-git's package initialisation stays out of the
// darkshell CLI's start-up, which is on the hot path of `darkshell exec`.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/bohica-labs/darkshell/controller/gitops"
)

func main() {
	o := gitops.Options{Home: os.Getenv("DARKSHELL_HOME"), Out: os.Stdout, Err: os.Stderr}
	fs := flag.NewFlagSet("darkshell-gitops", flag.ContinueOnError)
	fs.StringVar(&o.Repo, "repo", "", "repository path or URL")
	fs.StringVar(&o.Branch, "branch", "", "branch (default HEAD)")
	fs.StringVar(&o.Path, "path", "", "policy dir in the repository")
	fs.DurationVar(&o.Interval, "interval", 0, "keep running, checking every D")
	fs.BoolVar(&o.Once, "once", false, "one pass")
	fs.BoolVar(&o.DryRun, "dry-run", false, "apply nothing")
	fs.BoolVar(&o.JSON, "json", false, "JSON lines")
	fs.BoolVar(&o.NoAutoStart, "no-autostart", false, "never start a daemon (jobs the daemon runs)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(gitops.Run(ctx, o))
}
