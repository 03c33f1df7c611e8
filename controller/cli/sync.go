package cli

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/api"
)

type syncFlags struct {
	delete, dryRun, checksum bool
	exclude                  []string
}

func (f *syncFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.delete, "delete", false, "remove files the source lacks from the destination (mirror)")
	fl.BoolVarP(&f.dryRun, "dry-run", "n", false, "print the plan (added, modified, deleted, bytes to send); write nothing")
	fl.BoolVarP(&f.checksum, "checksum", "c", false, "compare file content instead of size and mtime")
	fl.StringArrayVar(&f.exclude, "exclude", nil, "skip paths matching this glob (repeatable); without / it matches any path component")
}

const remoteHelp = `REMOTE defaults to /sandbox for the local driver and to the sandbox subdirectory
of the remote user's $HOME for the others; a relative REMOTE starts at $HOME.`

func (a *app) syncCmd() *cobra.Command {
	var f syncFlags
	cmd := &cobra.Command{
		Use:   "sync NAME LOCAL[:REMOTE]",
		Short: "Make a directory in the sandbox a copy of a local directory (delta transfer)",
		Long: `Make REMOTE in sandbox NAME a copy of the local directory LOCAL: only files whose size
or mtime differ (or content, with --checksum) are sent, as block deltas against the
old version when there is one. Modes, mtimes, symlinks (as links) and empty
directories are kept; files are replaced atomically.

` + remoteHelp,
		Example: `  darkshell sync dev .
  darkshell sync dev ./src:/sandbox/src --delete --exclude node_modules`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			local, remote, _ := strings.Cut(args[1], ":")
			return a.runSync(cmd, args[0], api.SyncPush, local, remote, f)
		},
	}
	f.add(cmd)
	return cmd
}

func (a *app) uploadCmd() *cobra.Command {
	var f syncFlags
	cmd := &cobra.Command{
		Use:   "upload NAME LOCAL [REMOTE]",
		Short: "Upload a local directory into a sandbox (same engine as sync)",
		Long:  "Upload the directory LOCAL into REMOTE in sandbox NAME.\n\n" + remoteHelp,
		Args:  cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			remote := ""
			if len(args) == 3 {
				remote = args[2]
			}
			return a.runSync(cmd, args[0], api.SyncPush, args[1], remote, f)
		},
	}
	f.add(cmd)
	return cmd
}

func (a *app) downloadCmd() *cobra.Command {
	var f syncFlags
	cmd := &cobra.Command{
		Use:   "download NAME REMOTE [LOCAL]",
		Short: "Download a directory from a sandbox (default into .)",
		Long: `Make the local directory LOCAL (default .) a copy of REMOTE in sandbox NAME.
Every path the sandbox sends is checked: nothing is written outside LOCAL.`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			local := "."
			if len(args) == 3 {
				local = args[2]
			}
			return a.runSync(cmd, args[0], api.SyncPull, local, args[1], f)
		},
	}
	f.add(cmd)
	return cmd
}

func (a *app) runSync(cmd *cobra.Command, name, dir, local, remote string, f syncFlags) error {
	if local == "" {
		return usagef("LOCAL must not be empty")
	}
	abs, err := filepath.Abs(local)
	if err != nil {
		return usagef("%s: %v", local, err)
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	res, err := c.Sync(cmd.Context(), name, &api.SyncRequest{
		Direction: dir, Local: abs, Remote: remote,
		Delete: f.delete, DryRun: f.dryRun, Checksum: f.checksum, Exclude: f.exclude,
	})
	if err != nil {
		return err
	}
	if a.json() {
		return a.printJSON(res)
	}
	from, to := res.Local, name+":"+res.Remote
	if dir == api.SyncPull {
		from, to = to, from
	}
	verb := ""
	if res.DryRun {
		verb = "would be "
	}
	fmt.Fprintf(a.stdout, "%s -> %s: %d %sadded, %d %smodified, %d %sdeleted, %d unchanged; %s to send, %s on the wire in %.2fs\n",
		from, to, res.Added, verb, res.Modified, verb, res.Deleted, verb, res.Unchanged,
		size(res.BytesToSend), size(res.SentBytes+res.RecvBytes), float64(res.DurationMs)/1000)
	for _, s := range res.Skipped {
		fmt.Fprintf(a.stderr, "darkshell: skipped %s\n", s)
	}
	return nil
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
